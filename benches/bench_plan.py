"""Epoch plan memory and time: per-take runs against the former full arrays.

A simulated epoch of N one-minute takes (1,800 frames at 30 fps, 256-frame windows at stride 1:
1,545 windows per take) is planned in a fresh process per measurement, which reports:

* build: time to plan the epoch (``WindowSampler.plan``);
* held: bytes of the arrays the plan keeps;
* RSS: growth of the process's resident memory from before planning to after the first
  batch's indices, and its peak over that span (``/proc/self/status``, Linux);
* first batch: time from the plan to the first batch's windows (plan indices looked up) of
  rank 1 of 4, DataLoader worker 1 of 2, batch_size 8; "to batch 1": build + first batch.

"former" is the layout this package used before (issue 12): four arrays of one entry per
window (file, start frame and start sample int64, dense bool: 25 bytes per window), built here
with numpy from the same runs, and the former rank-share index arithmetic (an index array over
the whole share). Its time is a lower bound of the former code's (which also copied the
arrays out of Rust). It runs up to ``--former-max`` takes (100,000 would need ~4 GB per plan).

    python benches/bench_plan.py [--takes 2000 20000 100000] [--former-max 20000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

from koemorph_data import _core
from koemorph_data.plan import EpochPlan
from koemorph_data.sampling import AdaptiveStride, FixedStride, WindowSampler
from koemorph_data.timing import Timing

FRAMES = 1800  # one minute at 30 fps
WINDOW = 256
RANK, WORLD, WORKER, WORKERS, BATCH = 1, 4, 1, 2, 8
VARIANTS = ("runs", "runs-mixed", "runs-windows", "former")


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return 0


def _sampler(takes: int, variant: str) -> WindowSampler:
    stride = AdaptiveStride("mixed", 8, 1, 10, mixed_ratio=0.1) if variant == "runs-mixed" else FixedStride(1)
    return WindowSampler(
        np.full(takes, FRAMES, dtype=np.uint64), window_frames=WINDOW, stride=stride, seed=0, shuffle_files=True,
        loop_dataset=False, timing=Timing(16000, 30), epoch=0, rank=RANK, world_size=WORLD, drop_uneven=False,
        lanes=None, batch_size=BATCH, shuffle="windows" if variant == "runs-windows" else None,
    )  # fmt: skip


def _former(plan: EpochPlan) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The former full plan arrays, and the former index array of this worker's rank share."""
    counts = plan.run_count
    n = len(plan)
    file = np.repeat(plan.run_file, counts)
    start = np.arange(n, dtype=np.int64) - np.repeat(plan.run_start, counts)  # stride 1
    arrays = {
        "file": file,
        "start_frame": start,
        "start_sample": plan.timing.frames_to_samples(start),
        "dense": np.ones(n, dtype=bool),
    }
    first, length = _core.rank_share(n, RANK, WORLD, False)
    mine = np.flatnonzero(np.arange(length) // BATCH % WORKERS == WORKER)
    return arrays, (first + mine) % n


def child(variant: str, takes: int) -> dict:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # peak RSS := current RSS
    before = _status("VmRSS")
    sampler = _sampler(takes, variant)
    started = time.perf_counter()
    plan = sampler.plan(0)
    held = plan.run_file.nbytes + plan.run_end.nbytes + plan.frames.nbytes
    if variant == "former":
        arrays, share = _former(plan)
        built = time.perf_counter()
        index = share[:BATCH]
        first = [arrays[k][index] for k in ("file", "start_frame", "start_sample", "dense")]
        held = sum(a.nbytes for a in arrays.values())
    else:
        built = time.perf_counter()
        _plan, index = next(sampler.window_runs(0, WORKER, WORKERS, None))
        first = list(plan.lookup(index[:BATCH]))
    done = time.perf_counter()
    assert len(first[0]) == BATCH
    return {
        "variant": variant,
        "takes": takes,
        "windows": len(plan),
        "build_s": built - started,
        "first_batch_s": done - built,
        "held": held,
        "rss": _status("VmRSS") - before,
        "peak": _status("VmHWM") - before,
    }


def lookups(takes: int) -> list[str]:
    """Windows looked up per second in chunks of 65,536 (a stream's chunk)."""
    lines = []
    for variant in ("runs", "runs-mixed", "runs-windows"):
        plan = _sampler(takes, variant).plan(0)
        index = np.arange(len(plan) // 3, len(plan) // 3 + 65536, dtype=np.int64)
        started = time.perf_counter()
        for _ in range(20):
            plan.lookup(index)
        rate = 20 * len(index) / (time.perf_counter() - started)
        lines.append(f"  {variant:13s} {rate / 1e6:6.1f} M windows/s")
    return lines


def _mb(n: float) -> str:
    return f"{n / 2**20:9.1f} MB"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--takes", type=int, nargs="+", default=[2000, 20000, 100000])
    parser.add_argument("--former-max", type=int, default=20000, help="largest epoch the former layout plans")
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "TAKES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]))))
        return
    print(
        f"simulated epochs: one-minute takes, {WINDOW}-frame windows at stride 1 (mixed: stride 8 + 10 % dense); "
        f"first batch of rank {RANK}/{WORLD}, worker {WORKER}/{WORKERS}, batch {BATCH}"
    )
    print(f"{'variant':13s} {'takes':>7s} {'windows':>12s} {'build':>9s} {'first batch':>12s} "
          f"{'to batch 1':>11s} {'held':>12s} {'RSS growth':>12s} {'RSS peak':>12s}")  # fmt: skip
    for takes in args.takes:
        for variant in VARIANTS:
            if variant == "former" and takes > args.former_max:
                continue
            out = subprocess.run(
                [sys.executable, __file__, "--child", variant, str(takes)], capture_output=True, text=True, check=True
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"{variant:13s} {takes:7d} {r['windows']:12,d} {r['build_s']:8.3f}s {r['first_batch_s'] * 1e3:10.2f}ms "
                f"{r['build_s'] + r['first_batch_s']:10.3f}s {_mb(r['held']):>12s} {_mb(r['rss']):>12s} "
                f"{_mb(r['peak']):>12s}"
            )
    print(f"lookups ({max(args.takes)} takes):")
    print("\n".join(lookups(max(args.takes))))


if __name__ == "__main__":
    main()
