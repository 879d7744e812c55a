"""Issue 3: DDP sharding, exact resume, epoch length and temporal-state lanes."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from conftest import first_batches
from torch.utils.data import DataLoader

from koemorph_data import AdaptiveSequentialDataset, SequentialKoeMorphDataset

HERE = Path(__file__).parent


def keys_of(batches):
    return [(int(f), int(s)) for b in batches for f, s in zip(b["file_indices"], b["start_frames"])]


def position(state):
    return state["epoch"], state["consumed"]


def plan_keys(ds, epoch=None):
    plan = ds.plan(epoch)
    return list(zip(plan.file.tolist(), plan.start_frame.tolist()))


# ---------------------------------------------------------------- sharding
@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("drop_uneven", [False, True])
def test_ranks_cover_the_epoch_with_equal_counts(many_dataset, world, drop_uneven):
    per_rank = []
    for rank in range(world):
        ds = SequentialKoeMorphDataset(
            many_dataset,
            stride_frames=7,
            loop_dataset=False,
            rank=rank,
            world_size=world,
            drop_uneven=drop_uneven,
            seed=2,
        )
        got = [(int(s["file_indices"]), int(s["start_frames"])) for s in ds]
        assert len(got) == ds.num_windows() == len(ds)
        per_rank.append(got)
    order = plan_keys(ds)
    n = len(order)
    assert len({len(r) for r in per_rank}) == 1
    flat = [k for r in per_rank for k in r]
    if drop_uneven:
        assert len(flat) == n // world * world
        assert flat == order[: len(flat)] and len(set(flat)) == len(flat)
    else:
        per = -(-n // world)
        assert len(flat) == per * world
        # Padding repeats windows from the start of the epoch's order, as DistributedSampler does.
        assert flat == (order + order)[: per * world]
        assert set(flat) == set(order)


def test_world_size_does_not_change_the_epochs_windows(many_dataset):
    def windows(world):
        out = []
        for rank in range(world):
            ds = SequentialKoeMorphDataset(
                many_dataset, stride_frames=11, loop_dataset=False, rank=rank, world_size=world, seed=4
            )
            ds.set_epoch(3)
            out += [(int(s["file_indices"]), int(s["start_frames"])) for s in ds]
        return set(out)

    assert windows(1) == windows(2) == windows(3)


def test_ranks_and_workers_together(many_dataset):
    seen = []
    for rank in range(2):
        ds = SequentialKoeMorphDataset(many_dataset, stride_frames=4, loop_dataset=False, rank=rank, world_size=2)
        got = keys_of(DataLoader(ds, batch_size=3, num_workers=2))
        assert len(got) == ds.num_windows()
        seen += got
    order = plan_keys(ds)
    counts = Counter(seen)
    pad = len(seen) - len(order)
    assert set(counts) == set(order)
    assert sorted(k for k, c in counts.items() if c == 2) == sorted(order[:pad])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_real_processes_with_gloo_and_spawned_workers(many_dataset, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(HERE / "ddp_script.py"), str(many_dataset), str(tmp_path), str(_free_port())],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["rank"] for r in ranks] == [0, 1]
    ref = SequentialKoeMorphDataset(many_dataset, stride_frames=5, loop_dataset=False, seed=3)
    for epoch in (0, 1):
        order = plan_keys(ref, epoch)
        got = [[tuple(w) for w in r[f"windows_{epoch}"]] for r in ranks]
        assert len(got[0]) == len(got[1]) == ranks[0]["num_windows"] == ranks[0]["len"] == -(-len(order) // 2)
        pad = len(got[0]) * 2 - len(order)
        union = got[0] + got[1]
        assert set(union) == set(order)
        assert len(union) - len(set(union)) == pad
        assert sorted(union) == sorted(order + order[:pad])
    assert ranks[0]["all_counts"] == ranks[1]["all_counts"]
    # Lanes under DDP: same batch count on both ranks, every window once among valid slots.
    lanes_ref = AdaptiveSequentialDataset(
        many_dataset, stride_mode="sparse", initial_stride=9, loop_dataset=False, lanes=3, seed=3
    )
    assert len(ranks[0]["lane_batches"]) == len(ranks[1]["lane_batches"]) == ranks[0]["lanes_len"]
    valid = [
        (f, s) for r in ranks for b in r["lane_batches"] for f, s, v in zip(b["file"], b["start"], b["valid"]) if v
    ]
    assert sorted(valid) == sorted(plan_keys(lanes_ref))
    files_per_rank = [{f for b in r["lane_batches"] for f, v in zip(b["file"], b["valid"]) if v} for r in ranks]
    assert not files_per_rank[0] & files_per_rank[1], "each rank has its own share of the files"


# ---------------------------------------------------------------- resume
def assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.equal(x["file_indices"], y["file_indices"])
        assert torch.equal(x["start_frames"], y["start_frames"])
        assert torch.equal(x["audio"], y["audio"])
        assert torch.equal(x["blendshapes"], y["blendshapes"])
        assert x["file_names"] == y["file_names"]


def make(many_dataset, **kw):
    args = dict(stride_frames=6, loop_dataset=True, seed=9)
    args.update(kw)
    return SequentialKoeMorphDataset(many_dataset, **args)


@pytest.mark.parametrize("state_extra,consumed", [({}, 8 * 7), ({"batch_size": 4}, 4 * 9), ({"batch_size": 4}, 4 * 30)])
def test_resume_with_workers_yields_the_same_batches(many_dataset, state_extra, consumed):
    ds = make(many_dataset)
    per_epoch = ds.num_windows()
    total = 45
    full = first_batches(DataLoader(ds, batch_size=4, num_workers=2), total)
    # The training loop counts what it received and saves that next to its checkpoint.
    saved = make(many_dataset).state_dict(consumed=consumed, **state_extra)
    assert saved["epoch"] == 0 and saved["consumed"] == consumed
    resumed_ds = make(many_dataset)
    resumed_ds.load_state_dict(saved)
    done = consumed // 4
    rest = first_batches(DataLoader(resumed_ds, batch_size=4, num_workers=2), total - done)
    assert_same_batches(rest, full[done:])
    assert consumed < per_epoch or consumed > per_epoch  # the 120 case crosses into epoch 1


def test_resume_in_process_at_any_window(many_dataset):
    ds = make(many_dataset)
    stream = []
    for s in ds:
        stream.append((int(s["file_indices"]), int(s["start_frames"])))
        if len(stream) == 13:
            break
    state = ds.state_dict()
    assert (state["epoch"], state["consumed"]) == (0, 13)
    full = [(int(s["file_indices"]), int(s["start_frames"])) for _, s in zip(range(60), make(many_dataset))]
    resumed = make(many_dataset)
    resumed.load_state_dict(state)
    rest = [(int(s["file_indices"]), int(s["start_frames"])) for _, s in zip(range(47), resumed)]
    assert stream + rest == full


def test_in_process_state_moves_past_finished_epochs(many_dataset):
    ds = make(many_dataset)
    n0 = ds.num_windows()
    it = iter(ds)
    for _ in range(n0 + 5):
        next(it)
    assert position(ds.state_dict()) == (1, 5)


def test_resume_one_epoch_at_a_time_with_set_epoch(many_dataset):
    def loader(ds):
        return DataLoader(ds, batch_size=4, num_workers=2, drop_last=True)

    ds = make(many_dataset, loop_dataset=False)
    ds.set_epoch(2)
    full = list(loader(ds))
    resumed = make(many_dataset, loop_dataset=False)
    resumed.load_state_dict({"epoch": 2, "consumed": 16})
    assert resumed.epoch == 2
    assert_same_batches(list(loader(resumed)), full[4:])
    # The next epoch plays in full.
    resumed.set_epoch(3)
    ds.set_epoch(3)
    assert_same_batches(list(loader(resumed)), list(loader(ds)))


def test_resume_without_batch_size_needs_a_multiple_of_workers(many_dataset):
    ds = make(many_dataset)
    ds.load_state_dict({"epoch": 0, "consumed": 5})
    with pytest.raises(Exception, match="batch_size"):
        next(iter(DataLoader(ds, batch_size=4, num_workers=2)))
    with pytest.raises(ValueError):
        make(many_dataset).load_state_dict({"epoch": 0})


# ---------------------------------------------------------------- epoch length
def test_num_windows_and_len(many_dataset):
    ds = AdaptiveSequentialDataset(many_dataset, stride_mode="mixed", initial_stride=8, loop_dataset=False, seed=1)
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        n = ds.num_windows()
        assert n == len(ds) == sum(1 for _ in ds)
    ds2 = SequentialKoeMorphDataset(many_dataset, loop_dataset=False)
    assert len(DataLoader(ds2, batch_size=4, drop_last=True)) == ds2.num_windows() // 4
    with pytest.raises(TypeError):
        len(SequentialKoeMorphDataset(many_dataset, loop_dataset=True))


def test_num_windows_does_not_decode_audio(many_dataset, monkeypatch):
    import koemorph_data.store as module

    def no_decoding(*a, **k):
        raise AssertionError("decoded audio")

    ds = SequentialKoeMorphDataset(many_dataset, loop_dataset=False)
    monkeypatch.setattr(module, "load_audio", no_decoding)
    assert ds.num_windows() == sum(max(0, n - 255) for n in ds.usable_frames.tolist())


# ---------------------------------------------------------------- lanes
def check_lanes(batches, plan_keys_, lanes):
    """Each slot follows its file window after window; every window appears once among valid slots."""
    first_window = {}
    for f, s in plan_keys_:
        first_window[f] = min(s, first_window.get(f, s))
    current = [None] * lanes
    valid_keys = []
    for b in batches:
        assert b["audio"].shape[0] == lanes and b["reset"].dtype == torch.bool and b["valid"].dtype == torch.bool
        for slot in range(lanes):
            if not b["valid"][slot]:
                assert not b["reset"][slot]
                assert torch.count_nonzero(b["audio"][slot]) == 0
                assert torch.count_nonzero(b["blendshapes"][slot]) == 0
                current[slot] = None
                continue
            key = (int(b["file_indices"][slot]), int(b["start_frames"][slot]))
            valid_keys.append(key)
            # reset exactly where a slot starts a file (its first window).
            assert bool(b["reset"][slot]) == (key[1] == first_window[key[0]])
            if not b["reset"][slot]:
                prev = current[slot]
                assert prev is not None and prev[0] == key[0] and prev[1] < key[1], "continuity"
            current[slot] = key
    assert sorted(valid_keys) == sorted(plan_keys_) and len(valid_keys) == len(set(valid_keys))
    return valid_keys


@pytest.mark.parametrize("num_workers", [0, 2])
def test_lanes_keep_files_continuous_per_slot(many_dataset, num_workers):
    ds = SequentialKoeMorphDataset(many_dataset, stride_frames=10, loop_dataset=False, lanes=3, seed=5)
    batches = list(DataLoader(ds, batch_size=None, num_workers=num_workers))
    assert len(batches) == len(ds)
    assert ds.num_windows() == sum(int(b["valid"].sum()) for b in batches)
    keys = check_lanes(batches, plan_keys(ds), 3)
    # Windows of one file follow each other in one slot, in temporal order.
    plan = ds.plan()
    for fi in set(plan.file.tolist()):
        starts = [s for f, s in keys if f == fi]
        assert starts == sorted(starts)
    assert batches[0]["reset"].all()


def test_lanes_resume_and_loop(many_dataset):
    def make_lanes():
        return SequentialKoeMorphDataset(many_dataset, stride_frames=10, loop_dataset=True, lanes=2, seed=5)

    full = first_batches(DataLoader(make_lanes(), batch_size=None, num_workers=2), 40)
    resumed = make_lanes()
    resumed.load_state_dict(make_lanes().state_dict(consumed=2 * 13))
    rest = first_batches(DataLoader(resumed, batch_size=None, num_workers=2), 27)
    assert_same_batches(rest, full[13:])
    for a, b in zip(rest, full[13:]):
        assert torch.equal(a["reset"], b["reset"]) and torch.equal(a["valid"], b["valid"])


def test_state_dict_follows_set_epoch(many_dataset):
    ds = make(many_dataset, loop_dataset=False)
    ds.load_state_dict({"epoch": 0, "consumed": 8})
    assert position(ds.state_dict(consumed=12)) == (0, 12)
    ds.set_epoch(1)
    state = ds.state_dict(consumed=4, batch_size=4)
    assert position(state) == (1, 4) and state["batch_size"] == 4
    assert position(ds.state_dict()) == (1, 0)
