"""``koemorph-data prepare``: fill the prepared cache of a dataset directory in parallel.

Threads, not processes: the expensive parts (Rust JSONL parse, libsndfile decode, soxr
resampling, writing the .npy files) all run without the GIL, and threads need no pickling
and share nothing but the cache directory, whose writes are atomic.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from ..cache import TakeCache
from ..errors import DataFormatError
from ..takes import find_file_pairs
from ._progress import Progress


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_dir", type=Path, help="dataset directory (every **/*.wav with its .jsonl)")
    parser.add_argument("--cache-dir", type=Path, required=True, help="where the prepared takes are stored")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="parallel threads (default: the CPU count)")
    parser.add_argument("--sample-rate", type=int, default=16000, help="dataset sample_rate (default 16000)")
    parser.add_argument("--fps", type=int, default=30, help="dataset target_fps (default 30)")
    parser.add_argument("--force", action="store_true", help="rebuild entries that are already current")
    parser.add_argument("--no-prune", action="store_true",
                        help="keep outdated entries of these takes (default: remove them)")


def run(args: argparse.Namespace) -> int:
    from ..cli import UserError

    if args.workers <= 0 or args.sample_rate <= 0 or args.fps <= 0:
        raise UserError("--workers, --sample-rate and --fps must be positive")
    pairs, _orphans = find_file_pairs(args.data_dir)
    if not pairs:
        raise UserError(f"no .wav/.jsonl pairs found under {args.data_dir}")
    cache = TakeCache(args.cache_dir, args.sample_rate, args.fps)
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    progress = Progress("prepare", len(pairs))
    built = current = 0
    nbytes = 0
    failed: list[tuple[Path, str]] = []
    started = time.perf_counter()

    def one(pair: tuple[Path, Path]) -> tuple[bool, int]:
        (audio, blendshapes), stored = cache.fill(*pair, force=args.force)
        return stored, int(audio.nbytes + blendshapes.nbytes)

    with ThreadPoolExecutor(max_workers=args.workers, thread_name_prefix="koemorph-prepare") as pool:
        futures = {pool.submit(one, pair): pair for pair in pairs}
        for future in as_completed(futures):
            wav = futures[future][0]
            try:
                stored, size = future.result()
            except (DataFormatError, OSError) as exc:
                failed.append((wav, str(exc)))
                progress.step(f"FAILED {wav.stem}")
                continue
            built += stored
            current += not stored
            nbytes += size
            progress.step(wav.stem)
    progress.close()
    pruned = 0 if args.no_prune else cache.prune(pairs)
    elapsed = time.perf_counter() - started
    print(f"prepared {len(pairs) - len(failed)}/{len(pairs)} takes in {args.cache_dir} "
          f"({built} built, {current} already current, {pruned} outdated removed; "
          f"{nbytes / 1e6:.1f} MB) in {elapsed:.1f} s")
    for wav, reason in failed:
        print(f"failed: {wav}: {reason}", file=sys.stderr)
    return 1 if failed else 0
