"""Issue 10, section 1: DataLoader workers deal whole batches in the in-process order."""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import expected_windows, first_batches, usable_frames
from torch.utils.data import DataLoader

import koemorph_data
from koemorph_data import AdaptiveSequentialDataset, SequentialKoeMorphDataset
from koemorph_data.synthetic import make_dataset

KEYS = ("audio", "blendshapes", "file_indices", "start_frames")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Three takes of 264-276 frames: 45 windows at stride 1, 3 at stride 256."""
    root = tmp_path_factory.mktemp("tiny")
    make_dataset(root, takes=3, seconds=[9.0, 9.2, 8.8], subtype="FLOAT", seed=5)
    return root


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for key in KEYS:
            assert torch.equal(x[key], y[key]), key
        assert x["file_names"] == y["file_names"]


def hand_order(ds, stride):
    """The windows of an unshuffled epoch, from the files read by hand."""
    return [
        (f, s)
        for f, (wav, jsonl) in enumerate(ds.file_pairs)
        for s in expected_windows(usable_frames(wav, jsonl), stride)
    ]


@pytest.mark.parametrize("stride", [1, 256])
@pytest.mark.parametrize("drop_last", [True, False])
def test_workers_deliver_the_in_process_batches(tiny, stride, drop_last):
    plain = SequentialKoeMorphDataset(tiny, stride_frames=stride, loop_dataset=False, shuffle_files=False, batch_size=4)
    ref = list(DataLoader(plain, batch_size=4, num_workers=0, drop_last=drop_last))
    order = hand_order(plain, stride)
    keep = len(order) // 4 * 4 if drop_last else len(order)
    assert [(int(f), int(s)) for b in ref for f, s in zip(b["file_indices"], b["start_frames"])] == order[:keep]
    shuffled = SequentialKoeMorphDataset(tiny, stride_frames=stride, loop_dataset=False, seed=3, batch_size=4)
    ref_shuffled = list(DataLoader(shuffled, batch_size=4, num_workers=0, drop_last=drop_last))
    for workers in (2, 3):
        for ds, want in ((plain, ref), (shuffled, ref_shuffled)):
            loader = DataLoader(ds, batch_size=4, num_workers=workers, drop_last=drop_last)
            got = list(loader)
            assert len(loader) == len(got) == len(want)
            assert all(len(b["file_names"]) == 4 for b in got[:-1])
            assert_same(got, want)


def test_sample_data_validation_loader_delivers_its_batch():
    ds = SequentialKoeMorphDataset(
        koemorph_data.SAMPLE_DATA_DIR, stride_frames=256, loop_dataset=False, shuffle_files=False, batch_size=4
    )
    n = len(ds)
    for drop_last in (True, False):
        loader = DataLoader(ds, batch_size=4, num_workers=2, drop_last=drop_last)
        got = list(loader)
        assert len(got) == len(loader) == (n // 4 if drop_last else -(-n // 4))
        assert sum(len(b["file_names"]) for b in got) == (n // 4 * 4 if drop_last else n)


def test_looping_stream_and_resume_across_worker_counts(tiny):
    def make():
        return SequentialKoeMorphDataset(tiny, stride_frames=3, loop_dataset=True, seed=2, batch_size=4)

    per_epoch = make().num_windows()
    assert per_epoch % 4  # batches straddle epochs, as in-process
    ref = first_batches(DataLoader(make(), batch_size=4, num_workers=0), 14)
    assert_same(first_batches(DataLoader(make(), batch_size=4, num_workers=2), 14), ref)
    for consumed in (4 * 5, 4 * 5 + 3, per_epoch + 8):
        for workers in (0, 2, 3):
            resumed = make()
            resumed.load_state_dict(make().state_dict(consumed=consumed))
            got = first_batches(DataLoader(resumed, batch_size=4, num_workers=workers), 4)
            flat = [(int(f), int(s)) for b in got for f, s in zip(b["file_indices"], b["start_frames"])]
            want = [(int(f), int(s)) for b in ref for f, s in zip(b["file_indices"], b["start_frames"])]
            assert flat == want[consumed : consumed + 16]


def test_resume_after_iterating_with_workers(tiny):
    def make():
        return SequentialKoeMorphDataset(tiny, stride_frames=3, loop_dataset=False, seed=4, batch_size=4)

    ds = make()
    full = list(DataLoader(ds, batch_size=4, num_workers=2, drop_last=False))
    state = ds.state_dict(consumed=4 * 3)
    assert state["num_workers"] == 2 and state["batch_size"] == 4
    resumed = make()
    resumed.load_state_dict(state)
    assert_same(list(DataLoader(resumed, batch_size=4, num_workers=3, drop_last=False)), full[3:])
    resumed = make()
    resumed.load_state_dict(state)
    assert_same(list(resumed.loader(drop_last=False, prefetch=0)), full[3:])


@pytest.mark.parametrize("stride", [1, 256])
def test_ddp_ranks_with_workers(tiny, stride):
    seen = []
    for rank in range(2):

        def make(rank=rank):
            return SequentialKoeMorphDataset(
                tiny, stride_frames=stride, loop_dataset=False, seed=6, rank=rank, world_size=2, batch_size=2
            )

        ref = list(DataLoader(make(), batch_size=2, num_workers=0, drop_last=False))
        for workers in (2, 3):
            assert_same(list(DataLoader(make(), batch_size=2, num_workers=workers, drop_last=False)), ref)
        assert_same(list(make().loader(drop_last=False)), ref)
        seen += [(int(f), int(s)) for b in ref for f, s in zip(b["file_indices"], b["start_frames"])]
    ds = SequentialKoeMorphDataset(tiny, stride_frames=stride, loop_dataset=False, shuffle_files=False)
    assert set(seen) == set(hand_order(ds, stride))


def test_fewer_windows_than_workers(tmp_path):
    make_dataset(tmp_path, takes=1, seconds=[9.0], seed=1)  # one window at stride 256
    kw = dict(stride_frames=256, seed=1)
    for batch_size in (None, 4):
        ds = SequentialKoeMorphDataset(tmp_path, loop_dataset=False, batch_size=batch_size, **kw)
        assert len(list(DataLoader(ds, batch_size=4, num_workers=3, drop_last=False))) == 1
        looping = SequentialKoeMorphDataset(tmp_path, loop_dataset=True, batch_size=batch_size, **kw)
        got = first_batches(DataLoader(looping, batch_size=4 if batch_size else 1, num_workers=3), 3)
        assert len(got) == 3 and all(int(b["start_frames"][0]) == 0 for b in got)
    # A rank with no windows in any epoch ends its stream (in-process and in workers).
    empty = SequentialKoeMorphDataset(tmp_path, loop_dataset=True, rank=1, world_size=2, drop_uneven=True, **kw)
    assert list(empty) == []
    assert list(DataLoader(empty, batch_size=2, num_workers=2)) == []


def test_loader_batch_size_agrees_with_the_dataset(tiny):
    ds = AdaptiveSequentialDataset(
        tiny, stride_mode="sparse", initial_stride=7, loop_dataset=False, seed=8, batch_size=3
    )
    ref = list(DataLoader(ds, batch_size=3, num_workers=2, drop_last=False))
    assert_same(list(ds.loader(drop_last=False)), ref)
    with pytest.raises(ValueError, match="batch_size=3"):
        ds.loader(batch_size=4)


def test_warns_once_without_batch_size(tiny):
    ds = SequentialKoeMorphDataset(tiny, stride_frames=64, loop_dataset=False)
    with pytest.warns(UserWarning, match="batch_size"):
        ds.sampler.start_stream(0, 2, None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds.sampler.start_stream(0, 2, None)
        ds.sampler.start_stream(1, 2, None)


def test_idle_worker_gets_work_in_a_later_epoch(tmp_path):
    make_dataset(tmp_path, takes=1, seconds=[9.0], seed=2)  # 270 frames: 15 window positions
    ds = AdaptiveSequentialDataset(
        tmp_path, stride_mode="progressive", initial_stride=32, max_epochs=4, loop_dataset=True, seed=2
    )
    counts = [len(ds.plan(e)) for e in range(5)]
    assert counts[0] == 1 and counts[4] == 15  # epoch 0: fewer windows than workers
    got = first_batches(DataLoader(ds, batch_size=1, num_workers=2), 12)
    starts = [int(b["start_frames"][0]) for b in got]
    assert len(got) == 12 and 8 in starts  # worker 1 idles until epoch 3, then delivers
