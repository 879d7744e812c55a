#!/usr/bin/env python3
"""Side-by-side benchmark of the design document's loader and koemorph-data (issue 4).

    python benches/bench_loader.py                      # 12 takes x 5 min, ~5 s per measurement
    python benches/bench_loader.py --takes 2 --seconds 12 --quick    # CI smoke run
    python benches/bench_loader.py --json results.json

Makes a synthetic dataset (koemorph_data.synthetic.make_dataset, 16 kHz / 30 fps) and
measures in one run: JSONL parse MB/s (json module, orjson + numpy, ours), dense stride-1
windows/s (the document's code in its DataLoader configuration and with num_workers=0, our
dataset through the same DataLoader configuration, our ``loader()``, a plain numpy gather
of the same windows into a batch buffer), time to first batch, and peak RSS for N and 10N
takes (each in its own subprocess). Prints a table with the ratios the issue targets.
Benchmarks are not tests: absolute numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline_seed import SeedSequentialKoeMorphDataset, seed_dataloader  # noqa: E402

import koemorph_data  # noqa: E402
from koemorph_data import SequentialKoeMorphDataset, read_blendshapes  # noqa: E402
from koemorph_data.cache import TakeCache  # noqa: E402
from koemorph_data.synthetic import make_dataset  # noqa: E402

warnings.filterwarnings("ignore", message=".*pin_memory.*")
BATCH = 4


# --------------------------------------------------------------------------- helpers
def timed_windows(batches, seconds: float, warmup_batches: int = 2) -> dict:
    """Delivered windows per second over ``seconds`` after a few warm-up batches."""
    it = iter(batches)
    for _ in range(warmup_batches):
        next(it)
    windows = n = 0
    start = time.perf_counter()
    while True:
        batch = next(it)
        windows += len(batch["file_names"])
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
    return {"windows": windows, "batches": n, "seconds": elapsed, "windows_per_s": windows / elapsed}


def close(it) -> None:
    del it
    gc.collect()


def parse_rates(jsonl: Path, seconds: float) -> dict:
    import orjson

    size = jsonl.stat().st_size

    def with_json():
        rows = []
        with open(jsonl) as f:
            for line in f:
                rows.append(json.loads(line.strip())["blendshapes"])
        return np.array(rows, dtype=np.float32)

    def with_orjson():
        with open(jsonl, "rb") as f:
            rows = [orjson.loads(line)["blendshapes"] for line in f if line.strip()]
        return np.array(rows, dtype=np.float32)

    def ours():
        return read_blendshapes(jsonl)[0]

    reference = with_json()
    out = {"file_mb": size / 1e6}
    for name, fn in (("json", with_json), ("orjson_numpy", with_orjson), ("ours", ours)):
        assert np.array_equal(fn(), reference), name
        times = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(times) < 3:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        out[name] = size / 1e6 / float(np.median(times))
    return out


def numpy_gather(ds: SequentialKoeMorphDataset, seconds: float, fresh: bool = False) -> dict:
    """The bandwidth limit: copy the plan's windows into one reused batch buffer with numpy
    (``fresh``: into a new batch array each time, as a loader that hands batches over must)."""
    plan = ds.plan()
    takes = {int(f): ds.store.load(int(f)) for f in np.unique(plan.file)}
    takes = {f: (np.ascontiguousarray(t.audio), np.ascontiguousarray(t.blendshapes)) for f, t in takes.items()}
    S, W = ds.window_samples, ds.window_frames
    abuf = np.empty((BATCH, S), dtype=np.float32)
    bbuf = np.empty((BATCH, W, 52), dtype=np.float32)
    files, frames, samples = plan.file.tolist(), plan.start_frame.tolist(), plan.start_sample.tolist()
    windows, i, n = 0, 0, len(files)
    start = time.perf_counter()
    while True:
        if fresh:
            abuf = np.empty((BATCH, S), dtype=np.float32)
            bbuf = np.empty((BATCH, W, 52), dtype=np.float32)
        for j in range(BATCH):
            k = (i + j) % n
            audio, blendshapes = takes[files[k]]
            abuf[j] = audio[samples[k] : samples[k] + S]
            bbuf[j] = blendshapes[frames[k] : frames[k] + W]
        i += BATCH
        windows += BATCH
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
    return {"windows": windows, "seconds": elapsed, "windows_per_s": windows / elapsed}


class PremadeWindows(torch.utils.data.IterableDataset):
    """Transfer ceiling: samples with the issue's layout (audio, blendshapes, two 0-d int64
    tensors, a name) cut as views from one in-memory take, with no other work. Whatever a
    dataset does, the DataLoader cannot deliver its samples faster than this."""

    def __init__(self, window_samples: int, window_frames: int, sharing_strategy: str | None) -> None:
        self.window_samples, self.window_frames = window_samples, window_frames
        self.sharing_strategy = sharing_strategy

    def __iter__(self):
        if self.sharing_strategy is not None and torch.utils.data.get_worker_info() is not None:
            torch.multiprocessing.set_sharing_strategy(self.sharing_strategy)
        hop = self.window_samples // self.window_frames
        audio = torch.rand(self.window_samples + 1000 * hop)
        blendshapes = torch.rand(self.window_frames + 1000, 52)
        for i in itertools.cycle(range(1000)):
            yield {
                "audio": audio[i * hop : i * hop + self.window_samples],
                "blendshapes": blendshapes[i : i + self.window_frames],
                "file_indices": torch.tensor(0),
                "start_frames": torch.tensor(i),
                "file_names": "take",
            }


def transfer_ceiling(ds: SequentialKoeMorphDataset, sharing_strategy: str | None, seconds: float) -> dict:
    loader = DataLoader(
        PremadeWindows(ds.window_samples, ds.window_frames, sharing_strategy),
        batch_size=BATCH,
        num_workers=2,
        pin_memory=True,
        persistent_workers=True,
        drop_last=True,
    )
    result = timed_windows(loader, seconds)
    close(loader)
    return result


def first_batch_seed(data: Path) -> float:
    t0 = time.perf_counter()
    loader = seed_dataloader(SeedSequentialKoeMorphDataset(data))
    it = iter(loader)
    next(it)
    elapsed = time.perf_counter() - t0
    close(it)
    del loader
    gc.collect()
    return elapsed


def first_batch_ours(data: Path, cache: Path, use_loader: bool) -> float:
    t0 = time.perf_counter()
    ds = SequentialKoeMorphDataset(data, cache_dir=cache)
    if use_loader:
        it = iter(ds.loader(batch_size=BATCH))
    else:
        it = iter(
            DataLoader(ds, batch_size=BATCH, num_workers=2, pin_memory=True, persistent_workers=True, drop_last=True)
        )
    next(it)
    elapsed = time.perf_counter() - t0
    close(it)
    return elapsed


# --------------------------------------------------------------------------- peak RSS (subprocess)
def rss_child(config: str, data: Path, seconds: float) -> None:
    """Runs one configuration for ``seconds`` and prints its peak RSS (this process, largest child)."""
    if config == "seed_dataloader":
        batches = seed_dataloader(SeedSequentialKoeMorphDataset(data))
    elif config == "ours_dataloader":
        batches = DataLoader(
            SequentialKoeMorphDataset(data),
            batch_size=BATCH,
            num_workers=2,
            pin_memory=True,
            persistent_workers=True,
            drop_last=True,
        )
    elif config == "ours_loader":
        batches = SequentialKoeMorphDataset(data).loader(batch_size=BATCH)
    else:
        raise SystemExit(f"unknown config {config}")
    it = iter(batches)
    result = timed_windows(it, seconds)
    # Peak RSS of this process and of its DataLoader workers, read while they still run.
    # (/proc's VmHWM, not getrusage: ru_maxrss survives exec, so a child started by a big
    # parent reports the parent's peak.)
    own = _vm_hwm_mb(os.getpid())
    workers = [_vm_hwm_mb(pid) for pid in _children(os.getpid())]
    del it, batches
    gc.collect()
    print(
        json.dumps({"config": config, "main_mb": own, "worker_mb": workers, "windows_per_s": result["windows_per_s"]})
    )


def _vm_hwm_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    if pid == os.getpid():  # not Linux: fall back to getrusage
        scale = 1 / 1024 / 1024 if sys.platform == "darwin" else 1 / 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    return 0.0


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.parent.name))
    return found


def measure_rss(config: str, data: Path, seconds: float) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--rss-child", config, str(data), "--time", str(seconds)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"RSS run {config} failed:\n{proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["total_mb"] = result["main_mb"] + sum(result["worker_mb"])
    return result


def replicate(data: Path, target: Path, copies: int) -> Path:
    """``copies`` times the takes of ``data`` under new names (hard links: no extra disk)."""
    target.mkdir(parents=True, exist_ok=True)
    for c in range(copies):
        for src in sorted(data.glob("*.wav")) + sorted(data.glob("*.jsonl")):
            dst = target / f"copy{c:02d}_{src.name}"
            if not dst.exists():
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copyfile(src, dst)
    return target


# --------------------------------------------------------------------------- report
def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return (
        f"{cpu}, {os.cpu_count()} cores{load}, Python {platform.python_version()}, torch {torch.__version__}, "
        f"numpy {np.__version__}, {platform.system()} {platform.release()}"
    )


def report(r: dict) -> str:
    p, w, t, m = r["parse_mb_per_s"], r["windows_per_s"], r["first_batch_s"], r["peak_rss_mb"]
    lines = [
        f"machine: {r['machine']}",
        f"dataset: {r['takes']} takes x {r['take_seconds']:g} s at 16 kHz / 30 fps, "
        f"{r['windows_per_epoch']} dense stride-1 windows per epoch; {r['measure_seconds']:g} s per measurement",
        "",
        f"{'measurement':58s} {'value':>12s}",
        "-" * 71,
        f"{'JSONL parse, json module (MB/s)':58s} {p['json']:12.1f}",
        f"{'JSONL parse, orjson + numpy (MB/s)':58s} {p['orjson_numpy']:12.1f}",
        f"{'JSONL parse, ours read_blendshapes (MB/s)':58s} {p['ours']:12.1f}",
        f"{'windows/s, (a) document code, DataLoader batch 4 / 2 workers':58s} {w['seed_dataloader']:12.0f}",
        f"{'windows/s, (b) document code, num_workers=0':58s} {w['seed_inprocess']:12.0f}",
        f"{'windows/s, (c) ours, same DataLoader config (cache)':58s} {w['ours_dataloader']:12.0f}",
        f"{'windows/s, (d) ours, loader() batch 4 / 2 threads (cache)':58s} {w['loader']:12.0f}",
        f"{'windows/s, (e) plain numpy gather into a batch buffer':58s} {w['numpy_gather']:12.0f}",
        f"{'windows/s, (e2) numpy gather into a new array per batch':58s} {w['numpy_gather_fresh']:12.0f}",
        f"{'windows/s, (f1) no-work dataset, same config (transfer limit)':58s} {w['ceiling_default']:12.0f}",
        f"{'windows/s, (f2) the same, workers on file_system sharing':58s} {w['ceiling_file_system']:12.0f}",
        f"{'time to first batch, document code DataLoader (s)':58s} {t['seed_dataloader']:12.3f}",
        f"{'time to first batch, ours loader() with prepared cache (s)':58s} {t['ours_loader_cache']:12.3f}",
        f"{'time to first batch, ours DataLoader with prepared cache (s)':58s} {t['ours_dataloader_cache']:12.3f}",
    ]
    for config in ("seed_dataloader", "ours_dataloader", "ours_loader"):
        lines.append(
            f"{'peak RSS MB, ' + config + ' (N / 10N takes)':58s} "
            f"{m[config]['N']['total_mb']:6.0f} /{m[config]['10N']['total_mb']:5.0f}"
        )
    lines.append("(peak RSS: main process + DataLoader workers, each process's own VmHWM)")
    lines += ["", f"{'target':58s} {'ratio':>7s} {'goal':>7s}  met", "-" * 80]
    for name, ratio, goal, higher in r["targets"]:
        if goal is None:  # context for the row above, not a target
            lines.append(f"{name:58s} {ratio:7.2f}")
            continue
        ok = ratio >= goal if higher else ratio <= goal
        lines.append(
            f"{name:58s} {ratio:7.2f} {('>=' if higher else '<=') + format(goal, 'g'):>7s}  {'yes' if ok else 'NO'}"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--takes", type=int, default=12, help="takes in the dataset (default 12)")
    ap.add_argument("--seconds", type=float, default=300.0, help="length of each take in seconds (default 300)")
    ap.add_argument("--time", type=float, default=5.0, help="seconds per throughput measurement (default 5)")
    ap.add_argument("--quick", action="store_true", help="CI smoke run: 1 s per measurement")
    ap.add_argument(
        "--workdir", type=Path, default=None, help="keep the generated dataset and cache here (reused by later runs)"
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the results as JSON to this file")
    ap.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch intra-op threads in this process (default 1: on a busy 2-core machine "
        "OpenMP's spinning threads made torch.stack in default_collate ~30x slower, "
        "penalising the num_workers=0 baseline)",
    )
    ap.add_argument("--rss-child", nargs=2, metavar=("CONFIG", "DATA_DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    seconds = 1.0 if args.quick else args.time
    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    if args.rss_child:
        rss_child(args.rss_child[0], Path(args.rss_child[1]), args.time)
        return 0

    work = args.workdir or Path(tempfile.mkdtemp(prefix="koemorph-bench-"))
    data = work / f"data_{args.takes}x{args.seconds:g}s"
    cache = work / f"cache_{args.takes}x{args.seconds:g}s"
    t0 = time.perf_counter()
    if not data.exists() or len(list(data.glob("*.wav"))) != args.takes:
        print(f"making {args.takes} takes x {args.seconds:g} s under {data} ...", file=sys.stderr)
        make_dataset(data, takes=args.takes, seconds=args.seconds, seed=1)
    print(f"dataset ready in {time.perf_counter() - t0:.1f} s; preparing the cache ...", file=sys.stderr)
    cache_handle = TakeCache(cache, 16000, 30)
    for wav in sorted(data.glob("*.wav")):
        cache_handle.fill(wav, wav.with_suffix(".jsonl"))

    r: dict = {
        "machine": machine(),
        "takes": args.takes,
        "take_seconds": args.seconds,
        "measure_seconds": seconds,
        "koemorph_data": koemorph_data.__version__,
    }
    print("JSONL parse ...", file=sys.stderr)
    r["parse_mb_per_s"] = parse_rates(sorted(data.glob("*.jsonl"))[0], seconds)

    w: dict = {}
    print("windows/s: (a) document code, DataLoader ...", file=sys.stderr)
    loader = seed_dataloader(SeedSequentialKoeMorphDataset(data))
    w["seed_dataloader"] = timed_windows(loader, seconds)["windows_per_s"]
    del loader
    gc.collect()
    print("windows/s: (b) document code, num_workers=0 ...", file=sys.stderr)
    w["seed_inprocess"] = timed_windows(seed_dataloader(SeedSequentialKoeMorphDataset(data), num_workers=0), seconds)[
        "windows_per_s"
    ]
    print("windows/s: (c) ours, DataLoader ...", file=sys.stderr)
    ours = SequentialKoeMorphDataset(data, cache_dir=cache)
    r["windows_per_epoch"] = ours.num_windows()
    loader = DataLoader(ours, batch_size=BATCH, num_workers=2, pin_memory=True, persistent_workers=True, drop_last=True)
    w["ours_dataloader"] = timed_windows(loader, seconds)["windows_per_s"]
    del loader
    gc.collect()
    print("windows/s: (d) ours, loader() ...", file=sys.stderr)
    w["loader"] = timed_windows(SequentialKoeMorphDataset(data, cache_dir=cache).loader(batch_size=BATCH), seconds)[
        "windows_per_s"
    ]
    print("windows/s: (e) numpy gather ...", file=sys.stderr)
    w["numpy_gather"] = numpy_gather(SequentialKoeMorphDataset(data), seconds)["windows_per_s"]
    w["numpy_gather_fresh"] = numpy_gather(SequentialKoeMorphDataset(data), seconds, fresh=True)["windows_per_s"]
    print("windows/s: (f) DataLoader transfer ceiling ...", file=sys.stderr)
    w["ceiling_default"] = transfer_ceiling(ours, None, seconds)["windows_per_s"]
    w["ceiling_file_system"] = transfer_ceiling(ours, "file_system", seconds)["windows_per_s"]
    r["windows_per_s"] = w

    print("time to first batch ...", file=sys.stderr)
    r["first_batch_s"] = {
        "seed_dataloader": first_batch_seed(data),
        "ours_loader_cache": first_batch_ours(data, cache, use_loader=True),
        "ours_dataloader_cache": first_batch_ours(data, cache, use_loader=False),
    }

    print("peak RSS (subprocesses) ...", file=sys.stderr)
    big = replicate(data, work / f"data_{10 * args.takes}x{args.seconds:g}s_links", 10)
    m: dict = {}
    for config in ("seed_dataloader", "ours_dataloader", "ours_loader"):
        m[config] = {"N": measure_rss(config, data, seconds), "10N": measure_rss(config, big, seconds)}
    r["peak_rss_mb"] = m

    p, t = r["parse_mb_per_s"], r["first_batch_s"]
    r["targets"] = [
        ("JSONL parse: ours / orjson + numpy", p["ours"] / p["orjson_numpy"], 10, True),
        ("JSONL parse: ours / json module", p["ours"] / p["json"], 15, True),
        ("loader() / document code in its DataLoader config", w["loader"] / w["seed_dataloader"], 10, True),
        ("loader() / plain numpy gather (e, reused buffer)", w["loader"] / w["numpy_gather"], 0.8, True),
        ("loader() / numpy gather into new arrays (e2)", w["loader"] / w["numpy_gather_fresh"], 0.8, True),
        ("ours DataLoader / document code, same config", w["ours_dataloader"] / w["seed_dataloader"], 1.5, True),
        # The document's code delivers every window once per worker (2 here): half of what it
        # delivers is repeats, so an epoch's distinct windows arrive at half its rate.
        (
            "  the same, distinct windows (document code / 2 workers)",
            w["ours_dataloader"] / (w["seed_dataloader"] / 2),
            1.5,
            True,
        ),
        # No dataset can beat the transfer limit (f2) in this configuration: this is the largest
        # ratio any dataset could reach against the document's code in this run.
        ("  bound: no-work dataset (f2) / document code", w["ceiling_file_system"] / w["seed_dataloader"], None, True),
        ("  ours DataLoader / no-work dataset (f2)", w["ours_dataloader"] / w["ceiling_file_system"], None, True),
        (
            "first batch: ours loader() with cache / document code",
            t["ours_loader_cache"] / t["seed_dataloader"],
            0.05,
            False,
        ),
        (
            "peak RSS 10N / N, ours loader()",
            m["ours_loader"]["10N"]["total_mb"] / m["ours_loader"]["N"]["total_mb"],
            1.2,
            False,
        ),
        (
            "peak RSS 10N / N, ours DataLoader",
            m["ours_dataloader"]["10N"]["total_mb"] / m["ours_dataloader"]["N"]["total_mb"],
            1.2,
            False,
        ),
    ]
    print(report(r))
    if args.json:
        args.json.write_text(json.dumps(r, indent=1))
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
