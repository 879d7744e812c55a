"""Issue 10, section 4: tail="pad" delivers every frame, with a frame_mask."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from conftest import SR, WINDOW, WINDOW_SAMPLES, read_jsonl_by_hand, read_wav_by_hand, usable_frames
from torch.utils.data import DataLoader

from koemorph_data import AdaptiveSequentialDataset, SequentialKoeMorphDataset
from koemorph_data.synthetic import make_take


@pytest.fixture(scope="module")
def with_short(small_dataset, tmp_path_factory):
    """The three small takes plus one of 5 s (150 frames: shorter than a window)."""
    root = tmp_path_factory.mktemp("with_short")
    shutil.copytree(small_dataset, root, dirs_exist_ok=True)
    make_take(root / "short.wav", root / "short.jsonl", seconds=5.0, subtype="FLOAT", seed=3)
    return root


def start_sample(frame: int) -> int:
    return frame * SR // 30  # exact alignment, by hand


def expected_window(wav, jsonl, frame):
    """(audio, blendshapes, mask) of the window at ``frame``, sliced by hand, zeros past the end."""
    frames = usable_frames(wav, jsonl)
    audio = read_wav_by_hand(wav)[: start_sample(frames)]
    values = read_jsonl_by_hand(jsonl)[0][:frames]
    a = np.zeros(WINDOW_SAMPLES, dtype=np.float32)
    piece = audio[start_sample(frame) : start_sample(frame) + WINDOW_SAMPLES]
    a[: len(piece)] = piece
    b = np.zeros((WINDOW, 52), dtype=np.float32)
    rows = values[frame : frame + WINDOW]
    b[: len(rows)] = rows
    return a, b, np.arange(frame, frame + WINDOW) < frames


def windows_of(batches):
    for batch in batches:
        for k in range(len(batch["file_names"])):
            yield {key: batch[key][k] for key in ("audio", "blendshapes", "file_indices", "start_frames", "frame_mask")}


def check_every_frame_once(ds, windows):
    covered = {f: np.zeros(usable_frames(*pair), dtype=int) for f, pair in enumerate(ds.file_pairs)}
    count = 0
    for w in windows:
        f, s = int(w["file_indices"]), int(w["start_frames"])
        a, b, mask = expected_window(*ds.file_pairs[f], s)
        assert torch.equal(w["frame_mask"], torch.from_numpy(mask))
        assert torch.equal(w["blendshapes"], torch.from_numpy(b))
        assert torch.equal(w["audio"], torch.from_numpy(a))
        covered[f][s : s + WINDOW] += 1
        count += 1
    assert all((c == 1).all() for c in covered.values())
    return count


def test_every_frame_once_in_process(with_short):
    ds = SequentialKoeMorphDataset(with_short, stride_frames=WINDOW, loop_dataset=False, tail="pad", seed=2)
    frames = [usable_frames(*pair) for pair in ds.file_pairs]
    assert min(frames) < WINDOW  # the short take is in
    assert check_every_frame_once(ds, ds) == len(ds) == sum(-(-n // WINDOW) for n in frames)


@pytest.mark.parametrize("workers", [0, 2])
def test_every_frame_once_through_dataloader_and_loader(with_short, workers):
    ds = SequentialKoeMorphDataset(
        with_short, stride_frames=WINDOW, loop_dataset=False, tail="pad", batch_size=3, seed=4
    )
    batches = list(DataLoader(ds, batch_size=3, num_workers=workers, drop_last=False))
    assert all(b["frame_mask"].shape == (len(b["file_names"]), WINDOW) for b in batches)
    check_every_frame_once(ds, windows_of(batches))
    fast = list(ds.loader(drop_last=False))
    for x, y in zip(fast, batches, strict=True):
        assert torch.equal(x["frame_mask"], y["frame_mask"]) and torch.equal(x["audio"], y["audio"])


def test_lanes_batches_carry_frame_mask(with_short):
    ds = SequentialKoeMorphDataset(with_short, stride_frames=WINDOW, loop_dataset=False, tail="pad", lanes=2)
    batches = list(DataLoader(ds, batch_size=None))
    for b in batches:
        assert b["frame_mask"].shape == (2, WINDOW)
        assert not b["frame_mask"][~b["valid"]].any()
    valid = [
        {key: b[key][k] for key in ("audio", "blendshapes", "file_indices", "start_frames", "frame_mask")}
        for b in batches
        for k in range(2)
        if b["valid"][k]
    ]
    check_every_frame_once(ds, valid)
    fast = list(ds.loader())
    assert all(torch.equal(x["frame_mask"], y["frame_mask"]) for x, y in zip(fast, batches, strict=True))


def test_pad_with_overlap_adds_one_window_per_uncovered_tail(small_dataset):
    drop = SequentialKoeMorphDataset(small_dataset, stride_frames=100, loop_dataset=False, shuffle_files=False)
    pad = AdaptiveSequentialDataset(
        small_dataset, stride_mode="sparse", initial_stride=100, loop_dataset=False, shuffle_files=False, tail="pad"
    )
    expected = []
    for f, pair in enumerate(pad.file_pairs):
        n = usable_frames(*pair)
        starts = list(range(0, n - WINDOW + 1, 100))
        if starts[-1] + WINDOW < n:
            starts.append(starts[-1] + 100)
        expected += [(f, s) for s in starts]
    got = [(int(s["file_indices"]), int(s["start_frames"])) for s in pad]
    assert got == expected and len(got) > len(drop)
    for sample in pad:
        full = int(sample["start_frames"]) + WINDOW <= usable_frames(*pad.file_pairs[int(sample["file_indices"])])
        assert bool(sample["frame_mask"].all()) == full


def test_drop_has_no_frame_mask_and_bad_tail(small_dataset):
    assert "frame_mask" not in next(iter(SequentialKoeMorphDataset(small_dataset)))
    with pytest.raises(ValueError, match="tail"):
        SequentialKoeMorphDataset(small_dataset, tail="wrap")
