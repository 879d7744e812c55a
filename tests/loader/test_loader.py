"""``dataset.loader()``: batches equal the collated in-process iteration exactly, whatever the
mode; the gather binding refuses bad arguments; the benchmark's smoke run prints its table."""

from __future__ import annotations

import functools
import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from koemorph_data import AdaptiveSequentialDataset, SequentialKoeMorphDataset, _core
from koemorph_data.synthetic import make_dataset

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("loader") / "data"
    make_dataset(root, takes=3, seconds=[9.0, 10.5, 8.8], subdirs=True)
    return root


def assert_same(batches: list[dict], expected: list[dict]) -> None:
    assert len(batches) == len(expected)
    for got, want in zip(batches, expected):
        assert list(got) == list(want)
        for key, value in want.items():
            if isinstance(value, torch.Tensor):
                assert got[key].dtype == value.dtype and got[key].shape == value.shape, key
                assert torch.equal(got[key], value), key
            else:
                assert got[key] == value, key


def reference(make, batch_size: int = 4, drop_last: bool = True, limit: int | None = None) -> list[dict]:
    """The DataLoader(num_workers=0) batches of a fresh dataset from ``make()``."""
    ds = make()
    if ds.lanes is not None:
        stream = iter(DataLoader(ds, batch_size=None, num_workers=0))
    else:
        stream = iter(DataLoader(ds, batch_size=batch_size, num_workers=0, drop_last=drop_last))
    return list(itertools.islice(stream, limit)) if limit is not None else list(stream)


def loaded(make, limit: int | None = None, **kwargs) -> list[dict]:
    it = iter(make().loader(**kwargs))
    return list(itertools.islice(it, limit)) if limit is not None else list(it)


def test_dense_default_window(data: Path) -> None:
    make = lambda: SequentialKoeMorphDataset(data, loop_dataset=False, seed=1)  # noqa: E731
    want = reference(make)
    got = loaded(make)
    assert_same(got, want)
    assert got[0]["audio"].shape == (4, 136448) and got[0]["blendshapes"].shape == (4, 256, 52)
    # Independent check of one window against the decoded take.
    ds = make()
    wav = ds.file_pairs[int(got[3]["file_indices"][1])][0]
    import soundfile as sf

    audio, _ = sf.read(str(wav), dtype="float32")
    frame = int(got[3]["start_frames"][1])
    start = frame * 16000 // 30
    np.testing.assert_array_equal(got[3]["audio"][1].numpy(), audio[start : start + 136448])


@pytest.mark.parametrize("threads,prefetch", [(1, 0), (2, 2), (3, 5), (1, 1)])
def test_sparse_threads_and_prefetch(data: Path, threads: int, prefetch: int) -> None:
    make = lambda: SequentialKoeMorphDataset(
        data,
        window_frames=32,
        stride_frames=5,  # noqa: E731
        loop_dataset=False,
        seed=2,
    )
    assert_same(loaded(make, num_threads=threads, prefetch=prefetch, batch_size=3), reference(make, 3))


@pytest.mark.parametrize("mode", ["mixed", "sparse", "progressive", "dense"])
def test_adaptive_modes(data: Path, mode: str) -> None:
    make = lambda: AdaptiveSequentialDataset(
        data,
        window_frames=48,
        stride_mode=mode,
        initial_stride=8,  # noqa: E731
        epoch=30,
        dense_sampling_ratio=0.2,
        loop_dataset=False,
        seed=5,
    )
    want = reference(make, 5)
    got = loaded(make, batch_size=5)
    assert_same(got, want)
    assert got[0]["is_dense"].dtype == torch.bool


@pytest.mark.parametrize("drop_last", [True, False])
def test_drop_last(data: Path, drop_last: bool) -> None:
    make = lambda: SequentialKoeMorphDataset(data, window_frames=40, stride_frames=9, loop_dataset=False)  # noqa: E731
    total = make().num_windows()
    batch = 7
    assert total % batch, "the case must have a partial last batch"
    got = loaded(make, batch_size=batch, drop_last=drop_last)
    assert_same(got, reference(make, batch, drop_last))
    assert len(got) == (total // batch if drop_last else -(-total // batch))
    assert sum(len(b["file_names"]) for b in got) == (total - total % batch if drop_last else total)


@pytest.mark.parametrize("world", [2, 3])
def test_rank_sharding(data: Path, world: int) -> None:
    seen = []
    for rank in range(world):
        make = functools.partial(
            AdaptiveSequentialDataset,
            data,
            window_frames=32,
            stride_mode="mixed",
            initial_stride=6,
            loop_dataset=False,
            rank=rank,
            world_size=world,
            seed=9,
        )
        got = loaded(make, batch_size=2, drop_last=False)
        assert_same(got, reference(make, 2, drop_last=False))
        seen += [(int(f), int(s)) for b in got for f, s in zip(b["file_indices"], b["start_frames"])]
    plan = make().plan()
    assert set(seen) == set(zip(plan.file.tolist(), plan.start_frame.tolist()))


def test_loop_dataset_crosses_epochs(data: Path) -> None:
    make = lambda: SequentialKoeMorphDataset(data, window_frames=64, stride_frames=11, seed=4)  # noqa: E731
    per_epoch = make().num_windows()
    limit = per_epoch // 3 * 2 + 3  # batches of 3: past the end of several epochs, batches spanning them
    assert_same(loaded(make, limit, batch_size=3), reference(make, 3, limit=limit))


def test_resume_with_load_state_dict(data: Path) -> None:
    kwargs = dict(window_frames=32, stride_frames=4, seed=8)
    make = lambda: SequentialKoeMorphDataset(data, **kwargs)  # noqa: E731
    full = reference(make, 4, limit=40)
    # state_dict after consuming k batches from loader(), then resume in a new dataset.
    first = make()
    it = iter(first.loader(batch_size=4))
    head = [next(it) for _ in range(13)]
    assert_same(head, full[:13])
    state = first.state_dict()
    assert state["consumed"] == 13 * 4 or state["epoch"] > 0
    it.close()
    second = make()
    second.load_state_dict(state)
    assert_same(list(itertools.islice(iter(second.loader(batch_size=4)), 27)), full[13:40])
    # load_state_dict from the DataLoader path's convention resumes the loader too.
    third = make()
    third.load_state_dict({"epoch": 0, "consumed": 8})
    assert_same(list(itertools.islice(iter(third.loader(batch_size=4)), 5)), full[2:7])


@pytest.mark.parametrize("lanes", [2, 3])
def test_lanes(data: Path, lanes: int) -> None:
    make = lambda: AdaptiveSequentialDataset(
        data,
        window_frames=32,
        stride_mode="sparse",  # noqa: E731
        initial_stride=10,
        loop_dataset=False,
        lanes=lanes,
        seed=6,
    )
    want = reference(make)
    got = loaded(make)
    assert_same(got, want)
    assert any(not bool(b["valid"].all()) for b in got), "the case should contain invalid slots"
    assert got[0]["audio"].shape[0] == lanes


def test_lanes_resume(data: Path) -> None:
    make = lambda: SequentialKoeMorphDataset(data, window_frames=32, stride_frames=6, lanes=2, seed=3)  # noqa: E731
    full = reference(make, limit=30)
    ds = make()
    it = iter(ds.loader())
    assert_same([next(it) for _ in range(9)], full[:9])
    state = ds.state_dict()
    again = make()
    again.load_state_dict(state)
    assert_same(list(itertools.islice(iter(again.loader()), 21)), full[9:30])


@pytest.mark.parametrize("prefetch", [0, 2])
def test_reused_buffers_never_overwrite_what_the_caller_keeps(data: Path, prefetch: int) -> None:
    """Chunk tensors are reused only when no view of them is alive: views, numpy arrays and
    whole batches kept by the caller keep their values while iteration goes on."""
    make = lambda: SequentialKoeMorphDataset(
        data,
        window_frames=32,
        stride_frames=1,  # noqa: E731
        loop_dataset=False,
        seed=12,
    )
    want = reference(make, 4)
    kept = []
    for k, batch in enumerate(make().loader(batch_size=4, prefetch=prefetch)):
        if k % 7 == 0:
            kept.append((k, "view", batch["audio"][1:3]))
        elif k % 7 == 3:
            kept.append((k, "numpy", batch["blendshapes"].numpy()))
        elif k % 7 == 5:
            kept.append((k, "batch", batch))
    assert len(kept) > 10
    for k, kind, value in kept:
        if kind == "view":
            assert torch.equal(value, want[k]["audio"][1:3])
        elif kind == "numpy":
            np.testing.assert_array_equal(value, want[k]["blendshapes"].numpy())
        else:
            assert_same([value], [want[k]])


def test_cache_backed_and_pinned(data: Path, tmp_path: Path) -> None:
    make = lambda: SequentialKoeMorphDataset(
        data,
        window_frames=48,
        stride_frames=3,
        loop_dataset=False,  # noqa: E731
        cache_dir=tmp_path / "cache",
    )
    want = reference(lambda: SequentialKoeMorphDataset(data, window_frames=48, stride_frames=3, loop_dataset=False))
    assert_same(loaded(make), want)  # fills the cache
    assert_same(loaded(make, pin_memory=True), want)  # reads the memory maps (pinning only with CUDA)


@pytest.mark.parametrize("lanes", [None, 2])
def test_pin_memory_with_cuda_allocates_pinned_batches(
    data: Path, monkeypatch: pytest.MonkeyPatch, lanes: int | None
) -> None:
    """With CUDA present every batch tensor is allocated pinned and never recycled (the
    pinned allocator tracks asynchronous copies). No GPU here: CUDA is reported present and
    torch.empty records the request and allocates ordinary memory."""
    make = lambda: SequentialKoeMorphDataset(
        data,
        window_frames=48,
        stride_frames=3,  # noqa: E731
        loop_dataset=False,
        lanes=lanes,
    )
    want = reference(make, batch_size=1 if lanes else 4)
    real_empty = torch.empty
    requests: list[tuple[tuple, bool]] = []

    def recording_empty(*shape, pin_memory=False, **kwargs):
        requests.append((tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else shape, pin_memory))
        return real_empty(*shape, **kwargs)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch, "empty", recording_empty)
    # Copies kept, batches dropped at once: a recycling loader would reuse their buffers.
    got = [
        {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        for batch in make().loader(pin_memory=True, batch_size=1 if lanes else 4)
    ]
    monkeypatch.undo()
    assert_same(got, want)
    assert requests and all(pinned for _, pinned in requests), requests
    # Not recycled: one fresh allocation per batch at least (a chunk holds several batches).
    audio_allocations = [shape for shape, _ in requests if len(shape) == 2 and shape[1] == 48 * 533]
    chunk_rows = sum(shape[0] for shape in audio_allocations)
    assert chunk_rows >= sum(len(b["file_names"]) for b in got)


def test_augment_falls_back_to_the_sample_path(data: Path) -> None:
    make = lambda: SequentialKoeMorphDataset(data, window_frames=32, stride_frames=7, loop_dataset=False)  # noqa: E731
    ds = make()
    ds.reader.augment = object()  # whatever it is, loader() must build batches through reader.sample()
    plain = make()  # same plan, no augmentation: stands in for the augmented sample path
    calls = []

    def spy(plan, i):
        calls.append(i)
        return plain.reader.sample(plan, i)

    ds.reader.sample = spy
    got = list(ds.loader(batch_size=3))
    assert calls == list(range(len(calls))) and len(calls) == len(got) * 3
    assert_same(got, reference(make, 3))


def test_bad_loader_arguments(data: Path) -> None:
    ds = SequentialKoeMorphDataset(data, window_frames=32, loop_dataset=False)
    for kwargs in ({"batch_size": 0}, {"num_threads": 0}, {"prefetch": -1}, {"batch_size": 2.5}):
        with pytest.raises(ValueError):
            ds.loader(**kwargs)


def test_gather_binding_rejects_bad_arguments() -> None:
    src = np.arange(100, dtype=np.float32)
    ok = np.zeros((2, 10), dtype=np.float32)
    _core.gather_windows([src], np.array([0, 0]), np.array([5, 90]), ok, 2)
    np.testing.assert_array_equal(ok[1], src[90:100])
    cases = [
        ([src], np.array([0, 1]), np.array([0, 0]), ok),  # unknown source id
        ([src], np.array([0, -1]), np.array([0, 0]), ok),  # negative id
        ([src], np.array([0, 0]), np.array([0, 91]), ok),  # past the end
        ([src], np.array([0, 0]), np.array([-1, 0]), ok),  # before the start
        ([src], np.array([0]), np.array([0]), ok),  # first axis != len(ids)
        ([src], np.array([0, 0]), np.array([0]), ok),  # ids/starts lengths differ
        ([src], np.array([0, 0]), np.array([0, 0]), ok[:, ::2]),  # non-contiguous out
        ([src], np.array([0, 0]), np.array([0, 0]), np.zeros((2, 10))),  # float64 out
        ([src.astype(np.float64)], np.array([0, 0]), np.array([0, 0]), ok),  # float64 source
        ([src[::2]], np.array([0, 0]), np.array([0, 0]), ok),  # non-contiguous source
        ([ok], np.array([0, 0]), np.array([0, 0]), ok),  # source aliases out
        ("not a list", np.array([0, 0]), np.array([0, 0]), ok),
        ([src], np.array([0.0, 0.0]), np.array([0, 0]), ok),  # float ids
    ]
    for sources, ids, starts, out in cases:
        with pytest.raises((ValueError, TypeError)):
            _core.gather_windows(sources, ids, starts, out)
    readonly = np.zeros((2, 10), dtype=np.float32)
    readonly.flags.writeable = False
    with pytest.raises((ValueError, TypeError)):
        _core.gather_windows([src], np.array([0, 0]), np.array([0, 0]), readonly)
    empty = np.zeros((0, 10), dtype=np.float32)
    _core.gather_windows([src], np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), empty)


def _gather_sync(*args) -> None:
    _core.gather_batch(*args)


def _gather_background(*args) -> None:
    ticket = _core.gather_batch_async(*args)
    ticket.wait()
    assert ticket.done()


@pytest.mark.parametrize("gather", [_gather_sync, _gather_background], ids=["sync", "background"])
def test_gather_batch_binding(gather) -> None:
    audio = [np.arange(100, dtype=np.float32), np.arange(100, 200, dtype=np.float32)]
    rows = [np.arange(20 * 52, dtype=np.float32).reshape(20, 52), -np.arange(10 * 52, dtype=np.float32).reshape(10, 52)]
    a_out = np.zeros((2, 10), dtype=np.float32)
    b_out = np.zeros((2, 3, 52), dtype=np.float32)
    ids, samples, frames = np.array([1, 0]), np.array([5, 90]), np.array([7, 17])
    gather(audio, rows, ids, samples, frames, a_out, b_out, 2)
    np.testing.assert_array_equal(a_out, [audio[1][5:15], audio[0][90:100]])
    np.testing.assert_array_equal(b_out, [rows[1][7:10], rows[0][17:20]])
    bad = [
        dict(frames=np.array([8, 17])),  # blendshape window past the end of source 1
        dict(samples=np.array([5, 91])),  # audio window past the end
        dict(ids=np.array([2, 0])),  # no such source
        dict(frames=np.array([7])),  # lengths differ
        dict(b_out=np.zeros((3, 3, 52), dtype=np.float32)),
        dict(b_out=np.zeros((2,), dtype=np.float32)),
        dict(rows=rows[:1]),  # source lists differ in length
    ]
    for case in bad:
        args = dict(
            audio=audio,
            rows=rows,
            ids=ids,
            samples=samples,
            frames=frames,
            a_out=a_out.copy() * 0 - 1,
            b_out=np.full((2, 3, 52), -1, dtype=np.float32),
        )
        args.update(case)
        before_a, before_b = args["a_out"].copy(), args["b_out"].copy()
        with pytest.raises((ValueError, TypeError)):
            gather(
                args["audio"], args["rows"], args["ids"], args["samples"], args["frames"], args["a_out"], args["b_out"]
            )
        np.testing.assert_array_equal(args["a_out"], before_a)  # nothing written on a refused request
        np.testing.assert_array_equal(args["b_out"], before_b)


def test_background_gather_keeps_its_arrays_alive() -> None:
    """The ticket holds its sources and outputs: dropping every other reference is safe, and
    dropping the ticket itself waits for the copy."""
    src = np.arange(1 << 22, dtype=np.float32)
    rows = np.arange(100 * 52, dtype=np.float32).reshape(100, 52)
    out = np.zeros((8, 1 << 20), dtype=np.float32)
    ticket = _core.gather_batch_async(
        [src],
        [rows],
        np.zeros(8, dtype=np.int64),
        np.arange(8) * 1000,
        np.arange(8),
        out,
        np.zeros((8, 4, 52), dtype=np.float32),
    )
    del src, rows
    ticket.wait()
    assert out[3, 0] == 3000 and out[7, -1] == 7000 + (1 << 20) - 1
    dropped = _core.gather_batch_async(
        [np.ones(1 << 22, dtype=np.float32)],
        [np.ones((10, 52), dtype=np.float32)],
        np.zeros(4, dtype=np.int64),
        np.zeros(4, dtype=np.int64),
        np.zeros(4, dtype=np.int64),
        np.zeros((4, 1 << 22), dtype=np.float32),
        np.zeros((4, 10, 52), dtype=np.float32),
    )
    del dropped  # blocks until the copy ends


def test_abandoned_loader_then_a_new_one(data: Path) -> None:
    """Stopping mid-stream (copies still running in the background) leaves a later loader correct."""
    make = lambda: SequentialKoeMorphDataset(
        data,
        window_frames=32,
        stride_frames=1,  # noqa: E731
        loop_dataset=False,
        seed=3,
    )
    want = reference(make, 4)
    ds = make()
    for _ in range(3):
        it = iter(ds.loader(batch_size=4, prefetch=4))
        got = list(itertools.islice(it, 5))
        it.close()
        assert_same(got, want[:5])
    assert_same(list(make().loader(batch_size=4)), want)


def test_bench_loader_smoke(tmp_path: Path) -> None:
    """The benchmark's quick CI run on tiny data: it runs and prints its table."""
    out_json = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benches" / "bench_loader.py"),
            "--takes",
            "2",
            "--seconds",
            "12",
            "--quick",
            "--json",
            str(out_json),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for needle in ("JSONL parse", "loader()", "numpy gather", "first batch", "peak RSS", "target"):
        assert needle in proc.stdout, needle
    import json

    results = json.loads(out_json.read_text())
    assert results["windows_per_s"]["loader"] > 0
