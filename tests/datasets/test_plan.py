"""Issue 12, "Plans that grow with takes, not windows": the per-take plan equals the former
full plan window for window, streams hand out bounded chunks, the window shuffle is a
bijection, lanes keep their schedule, and memory stays O(takes).

The references below are the former algorithms written out in plain Python (SplitMix64, the
seeded take shuffle, Floyd's draws, the lane table), independent of the package's code."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import koemorph_data.sampling as sampling
from koemorph_data import _core
from koemorph_data.sampling import AdaptiveStride, FixedStride, Resume, WindowSampler
from koemorph_data.timing import Timing

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
W = 16  # window frames of the sampler-level tests


# ---------------------------------------------------------------- the former plan, in Python
def mix(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


class SplitMix:
    def __init__(self, stream: int, keys: list[int]) -> None:
        state = mix((stream + GOLDEN) & MASK)
        for k in keys:
            state = mix(state ^ mix((k + GOLDEN) & MASK))
        self.state = state

    def below(self, bound: int) -> int:
        while True:
            self.state = (self.state + GOLDEN) & MASK
            m = mix(self.state) * bound
            if (m & MASK) >= ((1 << 64) - bound) % bound:
                return m >> 64

    def shuffle(self, items: list) -> None:
        for i in range(len(items) - 1, 0, -1):
            j = self.below(i + 1)
            items[i], items[j] = items[j], items[i]


def reference_take(frames: int, file: int, stride: int, ratio: float | None, seed: int, epoch: int):
    """(start frames, dense flags) of one take, as the former ``file_windows`` made them."""
    n = frames - W + 1 if frames >= W else 0
    if ratio is None:
        starts = list(range(0, n, stride))
        return starts, [stride == 1] * len(starts)
    draws = min(math.floor(ratio * n), n)
    rng = SplitMix(2, [seed, epoch, file])
    mark = [0] * n
    for p in range(0, n, stride):
        mark[p] = 1
    drawn: set[int] = set()
    for j in range(n - draws, n):
        t = rng.below(j + 1)
        pick = j if t in drawn else t
        drawn.add(pick)
        mark[pick] = 2
    chosen = [p for p in range(n) if mark[p]]
    return chosen, [mark[p] == 2 for p in chosen]


def reference_plan(frames, stride, ratio, seed, epoch, shuffle_takes):
    """(file, start_frame, dense) lists of the former full plan."""
    order = list(range(len(frames)))
    if shuffle_takes:
        SplitMix(1, [seed, epoch]).shuffle(order)
    file, start, dense = [], [], []
    for f in order:
        s, d = reference_take(int(frames[f]), f, stride, ratio, seed, epoch)
        file += [f] * len(s)
        start += s
        dense += d
    return file, start, dense


def reference_padded(frames, stride):
    """``tail="pad"``: a take whose grid leaves frames uncovered gets one more window at the
    next grid position inside it (a short take one window at 0): the frames the planner sees."""
    out = []
    for f in map(int, frames):
        grid = list(range(0, f - W + 1, stride)) if f >= W else []
        uncovered = f > 0 and (not grid or grid[-1] + W < f)
        nxt = len(grid) * stride
        out.append(nxt + W if uncovered and nxt < f else f)
    return out


def make_sampler(frames, stride, **kw):
    defaults = dict(
        window_frames=W, seed=0, shuffle_files=True, loop_dataset=False, timing=Timing(16000, 30), epoch=0,
        rank=0, world_size=1, drop_uneven=False, lanes=None,
    )  # fmt: skip
    return WindowSampler(np.asarray(frames, dtype=np.uint64), stride=stride, **(defaults | kw))


STRIDES = [
    ("fixed1", FixedStride(1), lambda e: (1, None)),
    ("fixed5", FixedStride(5), lambda e: (5, None)),
    ("sparse", AdaptiveStride("sparse", 7, 1, 10), lambda e: (7, None)),
    ("progressive", AdaptiveStride("progressive", 8, 2, 4), lambda e: (max(2, int(8 - e / 4 * 6)), None)),
    ("mixed", AdaptiveStride("mixed", 6, 1, 10, mixed_ratio=0.1), lambda e: (6, 0.1)),
    ("mixed_half", AdaptiveStride("mixed", 3, 1, 10, mixed_ratio=0.5), lambda e: (3, 0.5)),
    ("mixed_all", AdaptiveStride("mixed", 4, 1, 10, mixed_ratio=1.0), lambda e: (4, 1.0)),
    ("mixed_none", AdaptiveStride("mixed", 4, 1, 10, mixed_ratio=0.0), lambda e: (4, 0.0)),
]


def random_frames(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 140, size=int(rng.integers(1, 14)))
    frames[rng.random(len(frames)) < 0.2] = 0  # skipped takes
    return frames


@pytest.mark.parametrize("name,stride,expect", STRIDES, ids=[s[0] for s in STRIDES])
@pytest.mark.parametrize("tail", ["drop", "pad"])
@pytest.mark.parametrize("shuffle", ["takes", "none"])
def test_plan_equals_the_former_full_plan(name, stride, expect, tail, shuffle):
    for case in range(12):
        frames = random_frames(case)
        seed = 1000 + 7 * case
        sampler = make_sampler(frames, stride, seed=seed, tail=tail, shuffle=shuffle)
        for epoch in (0, 1, 3, 5):
            step, ratio = expect(epoch)
            planned = reference_padded(frames, step) if tail == "pad" else frames
            file, start, dense = reference_plan(planned, step, ratio, seed, epoch, shuffle == "takes")
            plan = sampler.plan(epoch)
            assert len(plan) == len(file)
            assert plan.stride == step and plan.epoch == epoch
            assert plan.file.tolist() == file
            assert plan.start_frame.tolist() == start
            assert plan.dense.tolist() == dense
            assert plan.start_sample.tolist() == [f * 16000 // 30 for f in start]  # "exact" alignment


def test_plan_holds_runs_not_windows():
    frames = np.full(100_000, 1800)  # a simulated 100,000-take epoch: 178.5 M windows at stride 1
    plan = make_sampler(frames, FixedStride(1)).plan()
    assert len(plan) == 100_000 * (1800 - W + 1)
    held = plan.run_file.nbytes + plan.run_end.nbytes + plan.frames.nbytes
    assert held == 100_000 * 24  # 24 bytes per take (the former plan: 25 bytes per window)
    last = plan.run_file[-1]
    assert plan.file[-1] == last and plan.start_frame[-1] == 1800 - W
    assert plan.file[len(plan) // 2] == plan.run_file[50_000]


def test_windows_shuffle_is_the_unshuffled_plan_through_a_bijection():
    for case in range(6):
        frames = random_frames(100 + case)
        for name, stride, expect in STRIDES[:5]:
            seed = 3 + case
            sampler = make_sampler(frames, stride, seed=seed, shuffle="windows")
            for epoch in (0, 2):
                step, ratio = expect(epoch)
                file, start, dense = reference_plan(frames, step, ratio, seed, epoch, False)
                plan = sampler.plan(epoch)
                n = len(file)
                assert len(plan) == n
                order = _core.window_order(np.arange(n, dtype=np.int64), n, seed, epoch)
                assert sorted(order.tolist()) == list(range(n)), name
                assert plan.file.tolist() == [file[i] for i in order]
                assert plan.start_frame.tolist() == [start[i] for i in order]
                assert plan.dense.tolist() == [dense[i] for i in order]
    # Deterministic per (seed, epoch), different across epochs.
    frames = np.full(9, 200)
    a, b = (
        make_sampler(frames, FixedStride(1), seed=4, shuffle="windows"),
        make_sampler(frames, FixedStride(1), seed=4, shuffle="windows"),
    )
    assert a.plan(1).start_frame.tolist() == b.plan(1).start_frame.tolist()
    assert a.plan(1).start_frame.tolist() != a.plan(2).start_frame.tolist()
    with pytest.raises(ValueError, match="interleaves"):
        a.plan().file_segments()


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 15, 16, 17, 63, 64, 65, 255, 256, 257, 1023, 1025, 4097, 100_000])
def test_window_order_is_a_deterministic_bijection(n):
    everything = np.arange(n, dtype=np.int64)
    for seed, epoch in [(0, 0), (1, 0), (0, 1), (12345, 678)]:
        order = _core.window_order(everything, n, seed, epoch)
        assert order.dtype == np.int64 and len(order) == n
        assert np.array_equal(np.sort(order), everything)
        assert np.array_equal(order, _core.window_order(everything, n, seed, epoch))
        # Computed per index: any subset, in any order, agrees with the whole.
        pick = everything[::-3]
        assert np.array_equal(_core.window_order(pick, n, seed, epoch), order[pick])
    if n >= 16:
        orders = {tuple(_core.window_order(everything, n, s, e)) for s, e in [(0, 0), (1, 0), (0, 1)]}
        assert len(orders) == 3 and tuple(everything) not in orders
    with pytest.raises(ValueError, match="not in"):
        _core.window_order(np.array([n], dtype=np.int64), n, 0, 0)
    with pytest.raises(ValueError, match="not in"):
        _core.window_order(np.array([-1], dtype=np.int64), n, 0, 0)


def test_window_order_of_a_huge_epoch_needs_no_table():
    n = 155_000_000_000  # far beyond any array
    order = _core.window_order(np.array([0, 1, n - 1], dtype=np.int64), n, 1, 2)
    assert ((order >= 0) & (order < n)).all() and len(set(order.tolist())) == 3


def test_columns_index_like_arrays():
    plan = make_sampler([40, 0, 30], FixedStride(4), shuffle="none").plan()
    file, start = reference_plan([40, 0, 30], 4, None, 0, 0, False)[:2]
    assert len(plan.file) == len(plan) == len(file) == 7 + 4
    assert plan.file[-1] == file[-1] and plan.start_frame[-10] == start[1]
    assert plan.start_frame[2:7].tolist() == start[2:7]
    assert plan.start_frame[::-2].tolist() == start[::-2]
    idx = np.array([[3, 1], [9, 0]])
    assert plan.file[idx].tolist() == [[file[3], file[1]], [file[9], file[0]]]
    mask = np.arange(11) % 3 == 0
    assert plan.start_frame[mask].tolist() == [start[i] for i in range(11) if i % 3 == 0]
    assert np.asarray(plan.file).tolist() == file and list(plan.start_frame) == start
    assert np.unique(plan.file).tolist() == [0, 2]
    assert plan.file_segments() == [(0, 7), (7, 4)]
    assert plan.window(8) == (2, 4, 4 * 16000 // 30, False)
    for bad in (11, -12):
        with pytest.raises(IndexError):
            plan.file[bad]
    with pytest.raises(IndexError):
        plan.file[np.array([0.5])]
    with pytest.raises(ValueError, match="not in"):  # runs that do not match the frames
        _core.plan_windows(plan.frames[:1], plan.run_file, plan.run_end, np.array([9]), W, 4, 0, 0)


# ---------------------------------------------------------------- streams
def share(n, rank, world, drop_uneven):
    per = n // world if drop_uneven else -(-n // world)
    return (rank * per, per) if n else (0, 0)


def reference_dealt(sampler, n_of, epochs, worker, workers, consumed, size, rank, world):
    """The former ``_dealt_runs``: whole index arrays per epoch."""
    out, skip, done = [], consumed, 0
    for e in epochs:
        n = n_of(e)
        start, length = share(n, rank, world, sampler.drop_uneven)
        first = min(skip, length)
        skip -= first
        mine = np.flatnonzero((done + np.arange(length - first)) // size % workers == worker)
        done += length - first
        out.append((e, ((start + first + mine) % n).tolist() if n else []))
    return out


def reference_blocks(sampler, n_of, epochs, worker, workers, skip, rank, world):
    """The former ``_block_runs`` (``skip``: this worker's delivered windows)."""
    out = []
    for e in epochs:
        n = n_of(e)
        start, length = share(n, rank, world, sampler.drop_uneven)
        base, extra = divmod(length, workers)
        offset, count = worker * base + min(worker, extra), base + (worker < extra)
        if skip >= count:
            skip -= count
            out.append((e, []))
            continue
        out.append((e, ((start + offset + np.arange(skip, count)) % n).tolist()))
        skip = 0
    return out


def collect(runs, epochs):
    """Indices per epoch of a runs generator, over the epochs asked for (the stream may loop)."""
    got = {e: [] for e in epochs}
    for plan, index in runs:
        if plan.epoch not in got:
            break
        assert len(index) <= sampling.PLAN_CHUNK + 64
        got[plan.epoch] += index.tolist()
    return [(e, got[e]) for e in epochs]


def expected_runs(sampler, epochs, worker, workers, consumed):
    """(resume, the former per-epoch index lists) of one worker, or None: no exact resume."""
    rank, world, size = sampler.rank, sampler.world_size, sampler.batch_size

    def n_of(e):
        return len(sampler.plan(e))

    if size is None and workers > 1:
        if consumed % workers:
            return None
        resume = Resume(0, consumed) if consumed else None
        return resume, reference_blocks(sampler, n_of, epochs, worker, workers, consumed // workers, rank, world)
    resume = Resume(0, consumed, size) if consumed else None
    return resume, reference_dealt(sampler, n_of, epochs, worker, workers, consumed, size or 1, rank, world)


@pytest.mark.parametrize("loop", [False, True])
def test_dealt_and_block_streams_equal_the_former_index_arrays(monkeypatch, loop):
    monkeypatch.setattr(sampling, "PLAN_CHUNK", 11)  # many chunks per epoch
    frames = [60, 45, 0, 90, 33, 71]
    epochs = [0, 1, 2] if loop else [0]
    stride = AdaptiveStride("progressive", 6, 1, 3)
    for world, drop_uneven in itertools.product([1, 3], [False, True]):
        for rank, workers, size in itertools.product(range(world), [1, 2, 3], [None, 1, 4, 13]):
            sampler = make_sampler(
                frames, stride, seed=9, loop_dataset=loop, rank=rank, world_size=world, drop_uneven=drop_uneven,
                batch_size=size,
            )  # fmt: skip
            for consumed, worker in itertools.product([0, 5, 52, 130], range(workers)):
                case = expected_runs(sampler, epochs, worker, workers, consumed)
                if case is not None:
                    got = collect(sampler.window_runs(0, worker, workers, case[0]), epochs)
                    assert got == case[1], (world, rank, workers, size, consumed, worker)


# ---------------------------------------------------------------- lanes
def reference_lane_table(segments, lanes):
    """The former ``lane_plan``: [steps][lanes] plan indices (-1: invalid) and resets."""
    queue = iter([s for s in segments if s[1] > 0])
    slots = [[0, 0] for _ in range(lanes)]
    index, reset = [], []
    while True:
        row_i, row_r = [], []
        for slot in slots:
            starts = False
            if slot[1] == 0:
                nxt = next(queue, None)
                if nxt is not None:
                    slot[:] = list(nxt)
                    starts = True
            if slot[1] > 0:
                row_i.append(slot[0])
                row_r.append(starts)
                slot[0] += 1
                slot[1] -= 1
            else:
                row_i.append(-1)
                row_r.append(False)
        if all(i < 0 for i in row_i):
            return index, reset
        index.append(row_i)
        reset.append(row_r)


def reference_lanes(file, lanes, rank, world):
    """This rank's former lane table, padded with invalid rows to the longest rank's."""
    segments = []
    for _file, group in itertools.groupby(range(len(file)), key=lambda i: file[i]):
        g = list(group)
        segments.append((g[0], len(g)))
    load, per_rank = [0] * world, [[] for _ in range(world)]
    for seg in segments:
        target = min(range(world), key=lambda r: (load[r], r))
        load[target] += seg[1]
        per_rank[target].append(seg)
    tables = [reference_lane_table(s, lanes) for s in per_rank]
    steps = max(len(t[0]) for t in tables)
    index, reset = tables[rank]
    pad = steps - len(index)
    return index + [[-1] * lanes] * pad, reset + [[False] * lanes] * pad


def test_lane_steps_equal_the_former_lane_table(monkeypatch):
    monkeypatch.setattr(sampling, "LANE_BLOCK", 3)  # many blocks per epoch
    frames = [60, 45, 0, 90, 33, 71, 20, 16, 25]
    for world, lanes in itertools.product([1, 2, 3], [1, 2, 4]):
        for rank in range(world):
            sampler = make_sampler(frames, FixedStride(3), seed=21, loop_dataset=True, rank=rank, world_size=world,
                                   lanes=lanes)  # fmt: skip
            table = {e: reference_lanes(sampler.plan(e).file.tolist(), lanes, rank, world) for e in (0, 1)}
            assert sampler.epoch_items(0) == len(table[0][0])
            assert sampler.num_windows() == sum(i >= 0 for row in table[0][0] for i in row)
            stream = [(e, table[e][0][s], table[e][1][s]) for e in (0, 1) for s in range(len(table[e][0]))]
            for workers, skip_steps in itertools.product([1, 2, 3], [0, 4, len(table[0][0]) + 1]):
                resume = Resume(0, skip_steps * lanes) if skip_steps else None
                mine = stream[skip_steps:]
                for worker in range(workers):
                    expected = mine[worker::workers]
                    got = []
                    for plan, index, reset in sampler.lane_steps(0, worker, workers, resume):
                        if plan.epoch > 1:
                            break
                        got.append((plan.epoch, index.tolist(), reset.tolist()))
                    assert got == expected[: len(got)] and len(got) == len(expected), (world, rank, lanes, workers)


# ---------------------------------------------------------------- memory
MEMORY_PROBE = textwrap.dedent(
    """
    import dataclasses, json, sys
    from pathlib import Path
    import numpy as np
    from koemorph_data import SequentialKoeMorphDataset
    from koemorph_data.manifest import encode_manifest, write_manifest
    from koemorph_data.synthetic import make_dataset

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024

    tmp = Path(sys.argv[1])
    make_dataset(tmp / "takes", takes=2, seconds=60.0, seed=3)
    _where, real = write_manifest(tmp / "takes", tmp / "real.jsonl.gz")
    # 2,000 one-minute takes: the first two exist, the others only in the manifest (the first
    # batch reads only the first take of the unshuffled epoch).
    fake = [dataclasses.replace(real.entries[0], wav=f"zz/t{i}.wav", jsonl=f"zz/t{i}.jsonl") for i in range(1998)]
    entries = list(real.entries) + fake
    (tmp / "big.jsonl.gz").write_bytes(encode_manifest({**real.header, "takes": len(entries)}, entries))
    open("/proc/self/clear_refs", "w").write("5")  # peak RSS := current RSS
    before = status("VmRSS")
    ds = SequentialKoeMorphDataset(
        tmp / "takes", manifest=tmp / "big.jsonl.gz", cache_dir=tmp / "cache", stride_frames=1, shuffle="none",
        loop_dataset=False,
    )
    batch = next(iter(ds.loader(batch_size=8)))
    print(json.dumps({
        "windows": len(ds.plan()), "first_file": int(batch["file_indices"][0]),
        "growth": status("VmRSS") - before, "peak_growth": status("VmHWM") - before,
    }))
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_memory_to_the_first_batch_grows_with_takes_not_windows(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(tmp_path)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    frames = 60 * 30  # one-minute takes at 30 fps: 1,545 windows of 256 frames at stride 1
    assert got["windows"] == 2000 * (frames - 256 + 1) and got["first_file"] == 0
    # The former plan alone was 77 MB here (25 bytes per window), +76 MB at the first batch.
    assert got["growth"] <= 40 * 2**20, got
    assert got["peak_growth"] <= 40 * 2**20, got


def test_bench_plan_smoke():
    """The plan benchmark's CI run on a small epoch: it runs and prints its table."""
    bench = Path(__file__).resolve().parents[2] / "benches" / "bench_plan.py"
    done = subprocess.run(
        [sys.executable, str(bench), "--takes", "300", "--former-max", "300"], capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split() for line in done.stdout.splitlines()]
    variants = {row[0] for row in rows if len(row) > 2 and row[1] == "300"}
    assert variants == {"runs", "runs-mixed", "runs-windows", "former"}
    assert f"{300 * 1545:,d}" in done.stdout and "M windows/s" in done.stdout
