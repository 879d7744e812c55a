"""Issue 10, section 6: drop-in for KoeMorph's training code (compat, signatures, keys)."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import read_jsonl_by_hand, read_wav_by_hand
from torch.utils.data import DataLoader

from koemorph_data import AdaptiveSequentialDataset, SequentialKoeMorphDataset
from koemorph_data.compat import create_adaptive_dataloader, create_sequential_dataloader
from koemorph_data.synthetic import make_dataset

SEQUENTIAL = [
    "data_dir", "window_frames", "stride_frames", "sample_rate", "target_fps", "shuffle_files", "loop_dataset",
    "max_files",
]  # fmt: skip
ADAPTIVE = [
    "data_dir", "window_frames", "stride_mode", "initial_stride", "final_stride", "epoch", "max_epochs",
    "sample_rate", "target_fps", "dense_sampling_ratio", "shuffle_files", "loop_dataset", "max_files",
]  # fmt: skip


@pytest.fixture(scope="module")
def four(tmp_path_factory):
    """Four takes of 270 to 369 frames (one window each at stride 256)."""
    root = tmp_path_factory.mktemp("four")
    make_dataset(root, takes=4, seconds=[9.0, 9.5, 10.0, 12.3], subtype="FLOAT", seed=8)
    return root


def test_positional_parameters_in_koemorph_order():
    for cls, names in ((SequentialKoeMorphDataset, SEQUENTIAL), (AdaptiveSequentialDataset, ADAPTIVE)):
        params = list(inspect.signature(cls).parameters.values())
        positional = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
        assert positional == names
        assert all(p.kind is p.KEYWORD_ONLY for p in params[len(names) :])
    seq = inspect.signature(create_sequential_dataloader).parameters
    assert [(p.name, p.default) for p in list(seq.values())[1:5]] == [
        ("batch_size", 4), ("window_frames", 256), ("stride_frames", 128), ("num_workers", 2),
    ]  # fmt: skip
    ada = inspect.signature(create_adaptive_dataloader).parameters
    assert [(p.name, p.default) for p in list(ada.values())[1:6]] == [
        ("batch_size", 4), ("stride_mode", "progressive"), ("epoch", 0), ("max_epochs", 100), ("num_workers", 2),
    ]  # fmt: skip


class KoeMorphStyleTrainer:
    """The batch handling of KoeMorph's SequentialTrainer (train_epoch and validate): every
    slot's file index is compared with the current one and a change resets the temporal state."""

    def __init__(self):
        self.current_file_idx = None
        self.resets = 0

    def see(self, batch):
        file_indices = batch["file_indices"]
        if self.current_file_idx is None:
            self.current_file_idx = file_indices[0].item()
            self.resets += 1
        for file_idx in file_indices:
            if file_idx.item() != self.current_file_idx:
                self.current_file_idx = file_idx.item()
                self.resets += 1


def transitions(files):
    return 1 + sum(a != b for a, b in zip(files, files[1:]))


def test_koemorph_trainer_through_compat(four):
    train_loader = create_sequential_dataloader(
        data_dir=four, batch_size=2, window_frames=256, stride_frames=16, num_workers=2,
        shuffle_files=True, loop_dataset=True,
    )  # fmt: skip
    assert train_loader.drop_last and train_loader.persistent_workers
    assert train_loader.pin_memory == torch.cuda.is_available()
    ref = SequentialKoeMorphDataset(four, 256, 16, shuffle_files=True, loop_dataset=True)
    want = [(int(s["file_indices"]), int(s["start_frames"])) for _, s in zip(range(40), ref)]
    trainer = KoeMorphStyleTrainer()
    got = []
    for step, batch in enumerate(train_loader):
        trainer.see(batch)
        got += list(zip(batch["file_indices"].tolist(), batch["start_frames"].tolist()))
        if step == 19:
            break
    assert got == want  # whole batches in take order: a take's windows follow each other
    assert trainer.resets == transitions([f for f, _ in want])

    val_loader = create_sequential_dataloader(
        data_dir=four, batch_size=2, window_frames=256, stride_frames=256, num_workers=2,
        shuffle_files=False, loop_dataset=False,
    )  # fmt: skip
    validator = KoeMorphStyleTrainer()
    seen = []
    for batch in val_loader:
        validator.see(batch)
        seen += list(zip(batch["file_indices"].tolist(), batch["start_frames"].tolist(), batch["file_names"]))
    frames = [min(len(read_jsonl_by_hand(j)[1]), sf.info(str(w)).frames * 30 // 16000) for w, j in ref.file_pairs]
    expected = [(f, s, ref.file_pairs[f][0].stem) for f, n in enumerate(frames) for s in range(0, n - 255, 256)]
    assert seen == expected and len(val_loader) == len(expected) // 2  # every window
    assert validator.resets == len(ref.file_pairs)


def test_compat_lanes_and_drop_last(four):
    lanes = create_adaptive_dataloader(
        four, batch_size=3, stride_mode="sparse", num_workers=0, initial_stride=64, loop_dataset=False, lanes=3
    )
    assert lanes.batch_size is None and lanes.dataset.batch_size is None
    assert all(b["audio"].shape[0] == 3 for b in lanes)
    full = create_sequential_dataloader(four, 3, 256, 100, 0, loop_dataset=False, drop_last=False)
    n = full.dataset.num_windows()
    assert n % 3 and sum(len(b["file_names"]) for b in full) == n == full.dataset.get_num_windows()
    assert full.dataset.estimate_epoch_size() == n


def test_window_indices(four):
    seq = SequentialKoeMorphDataset(four, stride_frames=7, loop_dataset=False, batch_size=4)
    for batch in list(DataLoader(seq, batch_size=4, num_workers=2)) + list(seq.loader()):
        assert batch["window_indices"].dtype == torch.int64
        assert torch.equal(batch["window_indices"], batch["start_frames"] // 7)
    mixed = AdaptiveSequentialDataset(four, stride_mode="mixed", initial_stride=9, loop_dataset=False, seed=3)
    samples = list(mixed)
    assert any(bool(s["is_dense"]) for s in samples)
    for s in samples:
        want = int(s["start_frames"]) if s["is_dense"] else int(s["start_frames"]) // 9
        assert int(s["window_indices"]) == want
    lanes = SequentialKoeMorphDataset(four, stride_frames=5, loop_dataset=False, lanes=2)
    for b in lanes.loader():
        assert torch.equal(b["window_indices"], torch.where(b["valid"], b["start_frames"] // 5, -1))


def test_reproduce_koemorph_progressive_formula(four):
    ds = AdaptiveSequentialDataset(four, stride_mode="progressive", max_epochs=10, reproduce="koemorph")
    exact = AdaptiveSequentialDataset(four, stride_mode="progressive", max_epochs=10)
    for epoch in range(13):
        progress = min(1.0, epoch / max(1, 10 - 1))  # KoeMorph's _calculate_stride
        assert ds.stride_for_epoch(epoch) == max(1, int(32 - progress * (32 - 1)))
        assert exact.stride_for_epoch(epoch) == max(1, int(32 - epoch / 10 * 31))
    assert ds.stride_for_epoch(9) == 1 != exact.stride_for_epoch(9)


def test_reproduce_koemorph_windows_by_hand(four):
    ds = SequentialKoeMorphDataset(four, 256, 40, shuffle_files=False, loop_dataset=False, reproduce="koemorph")
    assert ds.alignment == "hop" and ds.hop_length == 533
    samples = list(ds)
    expected = []
    for f, (wav, jsonl) in enumerate(ds.file_pairs):
        audio, values = read_wav_by_hand(wav), read_jsonl_by_hand(jsonl)[0]
        frames = min(len(values), len(audio) // 533)  # KoeMorph's alignment check
        expected += [(f, i, i * 40, audio, values) for i in range((frames - 256) // 40 + 1)]
    assert len(samples) == len(expected)
    for s, (f, i, start, audio, values) in zip(samples, expected):
        assert (int(s["file_indices"]), int(s["window_indices"]), int(s["start_frames"])) == (f, i, start)
        assert np.array_equal(s["audio"].numpy(), audio[start * 533 : (start + 256) * 533])
        assert np.array_equal(s["blendshapes"].numpy(), values[start : start + 256])
    with pytest.raises(ValueError, match="reproduce"):
        SequentialKoeMorphDataset(four, reproduce="koemorph-v2")
    assert math.isclose(ds.window_samples, 256 * 533)
