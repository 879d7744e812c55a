"""``koemorph-data prepare``: fill the prepared cache of a dataset directory in parallel.

``DATA_DIR`` may be a URL (``s3://bucket/prefix``, with ``--storage-options``): each take is
fetched and decoded into the cache entry a dataset on that URL reads (keyed by URL, size and
ETag as listed), so training starts from a warm cache.

Threads, not processes: the expensive parts (Rust JSONL parse, libsndfile decode, soxr
resampling, writing the .npy files) all run without the GIL, and threads need no pickling
and share nothing but the cache directory, whose writes are atomic.

Ctrl-C cancels the takes not started yet and waits only for the ones being decoded (at most
``--workers``; a thread cannot be stopped inside a decode). Those finish their entry: a
cache entry is written file by file under temporary names and renamed into place, its
record last, so an entry is complete or absent, and letting the threads finish means no
temporary file is abandoned. Exit status 130.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ..budget import CacheFull, parse_size
from ..cache import SourceStamp, TakeArrays, TakeCache
from ..errors import UserError
from ..storage import TakeSource
from .common import TakeProgress, add_dataset_options, add_storage_options, label_format, positive_int, take_source


def size(text: str) -> int:
    """argparse type: a size in bytes, or with a unit ("20GB", "1.5GiB")."""
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "data_dir", help="dataset directory (every **/*.wav with its .jsonl) or fsspec URL (s3://bucket/prefix, ...)"
    )
    parser.add_argument(
        "--cache-dir", type=Path, required=True, help="where the prepared takes are stored (a local directory)"
    )
    parser.add_argument(
        "--workers", type=positive_int, default=os.cpu_count() or 1, help="parallel threads (default: the CPU count)"
    )
    add_dataset_options(parser)
    add_storage_options(parser)
    parser.add_argument("--force", action="store_true", help="rebuild entries that are already current")
    parser.add_argument(
        "--no-prune", action="store_true", help="keep outdated entries of these takes (default: remove them)"
    )
    parser.add_argument(
        "--cache-limit",
        type=size,
        metavar="SIZE",
        help="bytes the cache directory may hold, e.g. 20GB or 1.5GiB: takes are prepared in sorted order, "
        "evicting least recently used entries of earlier runs, until the next take does not fit",
    )


@dataclass
class _Tally:
    """What the finished takes came to."""

    built: int = 0
    current: int = 0
    nbytes: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    unfit: int = 0  # did not fit under --cache-limit, or not started once one did not

    @property
    def prepared(self) -> int:
        return self.built + self.current

    def full(self, limit: int | None) -> bool:
        """A take did not fit under the limit, or those prepared fill it."""
        return limit is not None and (self.unfit > 0 or self.nbytes >= limit)

    def add(self, wav: str, future: Future) -> str:
        """Counts a finished take (``wav`` names it); returns its progress label."""
        stem = PurePosixPath(wav).stem
        if future.cancelled():
            self.unfit += 1
            return f"skipped {stem}"
        try:
            (audio, blendshapes, _pose), stored = future.result()
        except CacheFull:
            self.unfit += 1
            return f"did not fit {stem}"
        except (ValueError, OSError) as exc:  # DataFormatError is a ValueError; StorageError an OSError
            self.failed.append((wav, str(exc)))
            return f"FAILED {stem}"
        self.built += stored
        self.current += not stored
        self.nbytes += int(audio.nbytes + blendshapes.nbytes)
        return stem


def _cache_dir_problem(cache_dir: Path) -> str | None:
    """Why ``cache_dir`` cannot be a directory (it or an ancestor is a file), or None."""
    for path in (cache_dir, *cache_dir.parents):
        if path.is_dir():
            return None
        if path.exists():
            return (
                f"{cache_dir} is a file, not a directory"
                if path == cache_dir
                else f"{cache_dir}: {path} is a file, not a directory"
            )
    return None


def _make_cache_dir(cache_dir: Path) -> None:
    problem = _cache_dir_problem(cache_dir)
    if problem is not None:
        raise UserError(f"--cache-dir {problem}")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--cache-dir {cache_dir}: cannot create it: {exc.strerror or exc}") from None


def _takes(n: int) -> str:
    return f"{n} take" if n == 1 else f"{n} takes"


def _stop(
    pool: ThreadPoolExecutor, futures: dict[Future, str], tally: _Tally, progress: TakeProgress, cache_dir: Path
) -> None:
    """After Ctrl-C: cancels the takes not started and lets the running ones finish their entry;
    a second Ctrl-C leaves at once."""
    pool.shutdown(wait=False, cancel_futures=True)
    running = [f for f in futures if not f.done()]
    if running:
        print(
            f"prepare: interrupted; finishing the {_takes(len(running))} being decoded (Ctrl-C again to leave at once)",
            file=sys.stderr,
            flush=True,
        )
    try:
        wait(running)
    except KeyboardInterrupt:
        _leave_now(cache_dir, sum(not f.done() for f in running))
    for future, wav in futures.items():
        if not future.cancelled():
            progress.step(tally.add(wav, future))


def _leave_now(cache_dir: Path, running: int) -> None:
    """Exits without waiting for the decoding threads (nothing else could stop them). An entry
    they had not finished stays invisible (its record is renamed into place last); the
    temporary file of a write they were in is removed here, as it would be on an exception
    (TakeCache names them .NAME.<pid>.<thread>.<random>.tmp)."""
    for leftover in cache_dir.glob(f".*.{os.getpid()}.*.tmp"):
        try:
            leftover.unlink()
        except OSError:
            pass
    print(f"prepare: interrupted again; left {_takes(running)} unfinished (not stored)", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)


Fill = Callable[[Any, Any], tuple[TakeArrays, bool]]


def _fillers(source: TakeSource, cache: TakeCache, force: bool) -> tuple[Fill, Callable[[list], int], Callable]:
    """How one take (given relative to the source) is prepared, returning (arrays, stored), how
    the outdated entries of all of them are pruned, and whether one has a current entry."""
    if not source.remote:
        return (
            lambda wav, jsonl: cache.fill(Path(source.path(wav)), Path(source.path(jsonl)), force=force),
            lambda pairs: cache.prune([(Path(source.path(w)), Path(source.path(j))) for w, j in pairs]),
            lambda wav, jsonl: cache.lookup(Path(source.path(wav)), Path(source.path(jsonl))) is not None,
        )

    def expected(wav: Any, jsonl: Any) -> Any:
        return source.listed_stat(wav), source.listed_stat(jsonl)  # as listed: no request

    def fill(wav: Any, jsonl: Any) -> tuple[TakeArrays, bool]:
        entry = None if force else cache.lookup_fetched(source, wav, jsonl, expected(wav, jsonl))
        if entry is not None:
            try:
                return entry.arrays(), False
            except (OSError, ValueError):
                pass  # damaged: fetched again
        return cache.fill_fetched(source, wav, jsonl, expected(wav, jsonl), force=True), True

    def prune(pairs: list) -> int:
        stamps: list[tuple[SourceStamp, SourceStamp]] = [
            cache.fetched_stamps(source, w, j, expected(w, j)) for w, j in pairs
        ]
        return cache.prune_stamps(stamps)

    def held(wav: Any, jsonl: Any) -> bool:
        return cache.lookup_fetched(source, wav, jsonl, expected(wav, jsonl)) is not None

    return fill, prune, held


def run(args: argparse.Namespace) -> int:
    if (problem := _cache_dir_problem(args.cache_dir)) is not None:  # before the slow search for takes
        raise UserError(f"--cache-dir {problem}")
    source = take_source(args.data_dir, args)
    pairs, _orphans = source.list_pairs()
    if not pairs:
        raise UserError(f"no .wav/.jsonl pairs found under {args.data_dir}")
    _make_cache_dir(args.cache_dir)
    # With a limit, the entries this run uses are never evicted to make room for its next take.
    protect = time.time_ns() if args.cache_limit is not None else None
    cache = TakeCache(
        args.cache_dir, args.sample_rate, args.fps, label_format(args), limit=args.cache_limit, protect_since_ns=protect
    )
    fill, prune, held = _fillers(source, cache, args.force)
    progress = TakeProgress("prepare", len(pairs))
    tally = _Tally()
    started = time.perf_counter()
    futures: dict[Future, str] = {}
    pool = ThreadPoolExecutor(max_workers=args.workers, thread_name_prefix="koemorph-prepare")
    try:
        for wav, jsonl in pairs:
            futures[pool.submit(fill, wav, jsonl)] = source.name(wav)
        for future in as_completed(futures):
            full = tally.full(args.cache_limit)
            progress.step(tally.add(futures.pop(future), future))
            if tally.full(args.cache_limit) and not full:  # the takes not started stay out
                for pending in futures:
                    pending.cancel()
    except KeyboardInterrupt:
        _stop(pool, futures, tally, progress, args.cache_dir)
        progress.close(" (interrupted)")
        print(
            f"interrupted: prepared {tally.prepared}/{len(pairs)} takes in {args.cache_dir} "
            f"({tally.built} built, {tally.current} already current; {tally.nbytes / 1e6:.1f} MB) "
            f"in {time.perf_counter() - started:.1f} s; the others were not started"
        )
        return 130
    pool.shutdown()
    progress.close()
    pruned = 0 if args.no_prune else prune(pairs)
    print(
        f"prepared {tally.prepared}/{len(pairs)} takes in {args.cache_dir} "
        f"({tally.built} built, {tally.current} already current, {pruned} outdated removed; "
        f"{tally.nbytes / 1e6:.1f} MB) in {time.perf_counter() - started:.1f} s"
    )
    if args.cache_limit is not None:
        _report_limit(cache, lambda: [held(wav, jsonl) for wav, jsonl in pairs])
    for name, reason in tally.failed:
        print(f"failed: {name}: {reason}", file=sys.stderr)
    return 1 if tally.failed else 0


def _report_limit(cache: TakeCache, held: Callable[[], list[bool]]) -> None:
    """Brings the cache within its limit (least recently used entries first, then the takes of
    this run reached last) and says how many of the takes it holds."""
    total = cache.trim()
    kept = held()
    line = f"cache limit {(cache.limit or 0) / 1e6:.1f} MB: {sum(kept)} of the {_takes(len(kept))} fit"
    line += f" (the cache holds {total / 1e6:.1f} MB)"
    if sum(kept) < len(kept):
        line += (
            f"; datasets with this cache_dir and cache_limit decode the other {len(kept) - sum(kept)} on first use, "
            "evicting the least recently used takes"
        )
    print(line)
