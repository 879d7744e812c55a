"""Issue 10, section 3: shuffle="takes" | "windows" | "none"."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from conftest import expected_windows, usable_frames
from torch.utils.data import DataLoader

from koemorph_data import AdaptiveSequentialDataset, SequentialKoeMorphDataset


def keys(batches):
    return [(int(f), int(s)) for b in batches for f, s in zip(b["file_indices"], b["start_frames"])]


def every_window(ds, stride):
    return {(f, s) for f, pair in enumerate(ds.file_pairs) for s in expected_windows(usable_frames(*pair), stride)}


def test_windows_need_the_cache_and_no_lanes(many_dataset, tmp_path):
    with pytest.raises(ValueError, match="cache_dir"):
        SequentialKoeMorphDataset(many_dataset, shuffle="windows")
    with pytest.raises(ValueError, match="lanes"):
        SequentialKoeMorphDataset(many_dataset, shuffle="windows", cache_dir=tmp_path, lanes=2)
    with pytest.raises(ValueError, match="shuffle"):
        SequentialKoeMorphDataset(many_dataset, shuffle="frames")


def test_shuffle_files_is_the_seeds_spelling(many_dataset):
    def plan(**kw):
        p = SequentialKoeMorphDataset(many_dataset, stride_frames=9, seed=4, **kw).plan(2)
        return p.file.tolist(), p.start_frame.tolist()

    assert plan(shuffle="takes") == plan(shuffle_files=True) == plan()
    assert plan(shuffle="none") == plan(shuffle_files=False) == plan(shuffle_files=True, shuffle="none")
    ds = SequentialKoeMorphDataset(many_dataset, shuffle="none", loop_dataset=False, stride_frames=9)
    assert keys(
        [{"file_indices": s["file_indices"][None], "start_frames": s["start_frames"][None]} for s in ds]
    ) == sorted(every_window(ds, 9))


@pytest.mark.parametrize("world", [1, 2])
def test_windows_exactly_once_across_ranks_and_workers(many_dataset, tmp_path, world):
    cache = tmp_path / "cache"
    seen = []
    for rank in range(world):

        def make(rank=rank):
            return SequentialKoeMorphDataset(
                many_dataset, stride_frames=8, loop_dataset=False, shuffle="windows", cache_dir=cache, seed=5,
                rank=rank, world_size=world, drop_uneven=True, batch_size=3,
            )  # fmt: skip

        ref = list(DataLoader(make(), batch_size=3, num_workers=0, drop_last=False))
        got = list(DataLoader(make(), batch_size=3, num_workers=2, drop_last=False))
        assert keys(got) == keys(ref)
        assert all(torch.equal(a["audio"], b["audio"]) for a, b in zip(got, ref, strict=True))
        fast = list(make().loader(drop_last=False))
        assert keys(fast) == keys(ref)
        assert all(torch.equal(a["blendshapes"], b["blendshapes"]) for a, b in zip(fast, ref, strict=True))
        seen += keys(ref)
    ds = SequentialKoeMorphDataset(many_dataset, stride_frames=8, shuffle="windows", cache_dir=cache, seed=5)
    everything = every_window(ds, 8)
    assert max(Counter(seen).values()) == 1
    assert set(seen) <= everything and len(everything) - len(seen) < world  # drop_uneven drops < world
    # Takes are interleaved: far more take changes than takes.
    files = [f for f, _ in keys(ref)] if world == 1 else [f for f, _ in seen]
    assert sum(a != b for a, b in zip(files, files[1:])) > 3 * len(ds.file_pairs)


def test_windows_permutation_changes_per_epoch_and_keeps_content(many_dataset, tmp_path):
    ds = AdaptiveSequentialDataset(
        many_dataset, stride_mode="sparse", initial_stride=16, shuffle="windows", cache_dir=tmp_path, seed=1,
        loop_dataset=False,
    )  # fmt: skip
    first = ds.plan(0)
    second = ds.plan(1)
    assert sorted(zip(first.file.tolist(), first.start_frame.tolist())) == sorted(
        zip(second.file.tolist(), second.start_frame.tolist())
    )
    assert not np.array_equal(first.file, second.file) or not np.array_equal(first.start_frame, second.start_frame)
    plain = AdaptiveSequentialDataset(
        many_dataset, stride_mode="sparse", initial_stride=16, shuffle="none", loop_dataset=False
    )
    windows = {(int(s["file_indices"]), int(s["start_frames"])): s for s in plain}
    for sample in ds:
        twin = windows[(int(sample["file_indices"]), int(sample["start_frames"]))]
        assert torch.equal(sample["audio"], twin["audio"]) and torch.equal(sample["blendshapes"], twin["blendshapes"])
        assert int(sample["window_indices"]) == int(sample["start_frames"]) // 16
