"""The prepared cache's size bound (``cache_limit=``): least-recently-used entries are evicted
so that a cache directory stays within it, safely across processes.

Every write to a cache directory (a new entry, an eviction, a prune) happens under an
exclusive ``flock`` on the directory's ``.koemorph-cache.lock`` (threads of one process queue
on a thread lock first). The lock file doubles as the ledger: the bytes the directory's
entries take, or ``dirty`` while a holder changes the directory, so that a holder killed
mid-way leaves a ledger the next one recounts. Each process also recounts once, before its
first write, to see entries added or removed by other means.

Room is made before an entry is written: the least recently used entries are evicted until
the new entry's size bound fits under the limit, so the directory never holds more than the
limit, temporary files included. An entry's recency is its record's mtime, set whenever a
reader maps the entry. Eviction unlinks the record first, then the arrays. Readers never lock:
one that found the record either has the arrays mapped already (an unlinked file stays
readable for every process that has it mapped or open) or fails to open them and rebuilds the
entry, as it does for any damaged entry; a half entry is never served. Leftovers of a killed
writer (temporary files, arrays without a record) are removed by the next recount.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: the threads of one process are still serialised
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("koemorph_data")

#: An entry's files: its record (written last, removed first) and its arrays.
RECORD = ".json"
ARRAYS = (".audio.npy", ".blendshapes.npy", ".pose.npy")
LOCK_NAME = ".koemorph-cache.lock"

_ENTRY_FILE = re.compile(r"^(?P<base>.+-[0-9a-f]{32})(?P<suffix>\.json|\.audio\.npy|\.blendshapes\.npy|\.pose\.npy)$")
_TEMP_FILE = re.compile(r"^\..+\.(?P<pid>\d+)\.\d+\.[0-9a-f]+\.tmp$")  # cache.py's temporary names
#: A temporary file untouched this long belongs to a dead writer even if its pid lives again.
_STALE_TEMP_NS = 600 * 10**9
_LEDGER_WIDTH = 24  # fixed width: a rewrite never leaves digits of a longer value behind
_DIRTY = b"dirty".ljust(_LEDGER_WIDTH - 1) + b"\n"

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE = re.compile(r"^\s*(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>[A-Za-z]*)\s*$")


def parse_size(value: int | float | str) -> int:
    """A size in bytes from an integer or a string such as ``"20GB"``, ``"500 MB"`` or
    ``"1.5GiB"`` (kB/MB/GB/TB are powers of 1000, KiB/MiB/GiB/TiB powers of 1024; case does not
    matter). ValueError for anything else, and for sizes below one byte."""
    if isinstance(value, bool):
        raise ValueError(f"a size must be a number of bytes or a string like '20GB', got {value!r}")
    if isinstance(value, str):
        match = _SIZE.match(value)
        unit = match["unit"].lower() if match else ""
        if match is None or unit not in _UNITS:
            raise ValueError(
                f"cannot read {value!r} as a size: use bytes or a number with one of the units "
                "B, kB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), e.g. '20GB'"
            )
        try:
            size = int(Decimal(match["number"]) * _UNITS[unit])
        except InvalidOperation:
            raise ValueError(f"cannot read {value!r} as a size") from None
    elif isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"a size in bytes must be a whole number, got {value!r}")
        size = int(value)
    else:
        try:
            size = int(value.__index__())
        except (AttributeError, TypeError):
            raise ValueError(
                f"a size must be a number of bytes or a string like '20GB', got {type(value).__name__} {value!r}"
            ) from None
    if size < 1:
        raise ValueError(f"a size must be at least one byte, got {value!r}")
    return size


class CacheFull(Exception):
    """A take does not fit under the cache's limit without evicting an entry that must stay."""


@dataclass
class _Group:
    """One entry's files (or a leftover: arrays without a record)."""

    base: str
    files: list[Path] = field(default_factory=list)
    used_ns: int = -1  # the record's mtime; -1: no record


def touch(record: Path) -> None:
    """Marks an entry as used now (its record's mtime is its recency)."""
    now = time.time_ns()
    try:
        os.utime(record, ns=(now, now))
    except OSError:
        pass  # evicted meanwhile (the reader's maps stay valid) or a read-only cache


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


class CacheBudget:
    """The size accounting and the evictions of one cache directory, for this process.

    ``locked()`` holds the directory's lock; the other methods are called inside it."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        self._recounted = False
        self.used = 0  # bytes of the directory's entries, as the ledger says (valid while locked)
        self.warned: set[str] = set()

    @contextmanager
    def locked(self) -> Iterator[CacheBudget]:
        """Holds the directory's lock, with ``used`` read from the ledger (recounted when the
        ledger is missing or dirty, and once per process)."""
        with self._thread_lock:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            # Opened anew each time: a forked child shares an inherited descriptor's lock, so
            # it would not exclude its parent.
            with _LOCK_FDS_GUARD:  # a fork waits until the descriptor is on the list
                fd = os.open(self.cache_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
                _LOCK_FDS.add(fd)
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                self._fd = fd
                ledger = self._read_ledger()
                if ledger is None or not self._recounted:
                    self.recount()
                else:
                    self.used = ledger
                yield self
            finally:
                self._fd = None
                with _LOCK_FDS_GUARD:
                    _LOCK_FDS.discard(fd)
                    os.close(fd)  # releases the lock

    def _read_ledger(self) -> int | None:
        assert self._fd is not None
        text = os.pread(self._fd, _LEDGER_WIDTH, 0)
        try:
            return int(text) if len(text) == _LEDGER_WIDTH and text.endswith(b"\n") else None
        except ValueError:
            return None

    def _write_ledger(self, content: bytes) -> None:
        assert self._fd is not None
        os.pwrite(self._fd, content, 0)

    def changing(self) -> None:
        """Marks the ledger dirty before the directory changes (a holder killed now leaves a
        ledger the next holder recounts)."""
        self._write_ledger(_DIRTY)

    def save(self) -> None:
        self._write_ledger(str(self.used).rjust(_LEDGER_WIDTH - 1).encode() + b"\n")

    # ------------------------------------------------------------------ the directory
    def _scan(self) -> tuple[dict[str, _Group], list[tuple[Path, int, int]]]:
        """Entries by base name (record mtimes only: cheap) and temporary files (path, pid, mtime)."""
        groups: dict[str, _Group] = {}
        temps: list[tuple[Path, int, int]] = []
        with os.scandir(self.cache_dir) as found:
            for item in found:
                entry = _ENTRY_FILE.match(item.name)
                if entry is not None:
                    group = groups.setdefault(entry["base"], _Group(entry["base"]))
                    group.files.append(Path(item.path))
                    if entry["suffix"] == RECORD:
                        try:
                            group.used_ns = item.stat(follow_symlinks=False).st_mtime_ns
                        except FileNotFoundError:
                            pass
                    continue
                temp = _TEMP_FILE.match(item.name)
                if temp is not None:
                    try:
                        temps.append((Path(item.path), int(temp["pid"]), item.stat(follow_symlinks=False).st_mtime_ns))
                    except FileNotFoundError:
                        pass
        return groups, temps

    def recount(self) -> None:
        """Counts the directory's entries anew and removes the leftovers of killed writers
        (temporary files of dead processes, arrays without a record)."""
        self.changing()
        groups, temps = self._scan()
        used = 0
        for group in groups.values():
            if group.used_ns < 0:
                self._remove(group)  # no record: never served, never completed
            else:
                used += sum(_size(path) for path in group.files)
        now = time.time_ns()
        for path, pid, mtime_ns in temps:
            if pid != os.getpid() and (not _pid_alive(pid) or now - mtime_ns > _STALE_TEMP_NS):
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
            else:
                used += _size(path)
        self.used = used
        self._recounted = True
        self.save()

    def entry_size(self, base: str) -> int:
        """Bytes the files of the entry ``base`` take now (0 when it has none)."""
        return sum(_size(self.cache_dir / (base + suffix)) for suffix in (RECORD, *ARRAYS))

    def _remove(self, group: _Group) -> int:
        """Unlinks an entry, record first; returns the bytes freed."""
        freed = 0
        for path in sorted(group.files, key=lambda p: not p.name.endswith(RECORD)):
            try:
                size = path.stat().st_size
                path.unlink()
                freed += size
            except FileNotFoundError:
                pass
        return freed

    def remove_entry(self, base: str) -> None:
        """Removes the entry ``base`` (a prune) and counts it out."""
        group = _Group(base, [self.cache_dir / (base + suffix) for suffix in (RECORD, *ARRAYS)], 0)
        self.changing()
        self.used = max(0, self.used - self._remove(group))
        self.save()

    def make_room(
        self,
        need: int,
        limit: int,
        *,
        keep: str | None = None,
        protect_since_ns: int | None = None,
        protected_last: bool = False,
    ) -> bool:
        """Evicts the least recently used entries until ``need`` more bytes fit under ``limit``;
        never ``keep``, nor an entry used since ``protect_since_ns`` unless ``protected_last``
        (then those go after all others, most recently used first: ``prepare`` keeps the takes it
        reached first). False when that is not enough."""
        for attempt in range(2):
            if self.used + need <= limit:
                return True
            groups = [g for g in self._scan()[0].values() if g.base != keep]
            since = protect_since_ns
            victims = sorted((g for g in groups if since is None or g.used_ns < since), key=lambda g: g.used_ns)
            if protected_last and since is not None:
                victims += sorted((g for g in groups if g.used_ns >= since), key=lambda g: -g.used_ns)
            self.changing()
            for group in victims:
                if self.used + need <= limit:
                    break
                freed = self._remove(group)
                if group.used_ns >= 0:  # a leftover without a record was not counted
                    self.used = max(0, self.used - freed)
            self.save()
            if self.used + need <= limit:
                return True
            if attempt == 0:
                self.recount()  # the ledger may count what is gone: look once more
        return False


_BUDGETS: dict[str, CacheBudget] = {}
_BUDGETS_LOCK = threading.Lock()
# Lock-file descriptors open in this process. flock belongs to the open file, which a forked
# child shares: a child must close the copies it inherits, or a lock a parent's thread held at
# the fork would stay held by the child for as long as it lives (a deadlock across workers).
_LOCK_FDS: set[int] = set()
_LOCK_FDS_GUARD = threading.Lock()


def budget_for(cache_dir: str | os.PathLike[str]) -> CacheBudget:
    """This process's ``CacheBudget`` of a cache directory (one per directory and process)."""
    key = os.path.abspath(cache_dir)
    with _BUDGETS_LOCK:
        budget = _BUDGETS.get(key)
        if budget is None:
            budget = _BUDGETS[key] = CacheBudget(Path(key))
        return budget


def _forget_after_fork() -> None:
    # A forked child starts with its own budgets (and fresh locks: a parent's thread may have
    # held one at the fork) and without the parent's lock-file descriptors.
    global _BUDGETS_LOCK, _LOCK_FDS_GUARD
    _BUDGETS_LOCK = threading.Lock()
    _BUDGETS.clear()
    for fd in _LOCK_FDS:
        try:
            os.close(fd)
        except OSError:
            pass
    _LOCK_FDS.clear()
    _LOCK_FDS_GUARD = threading.Lock()


def _before_fork() -> None:
    _LOCK_FDS_GUARD.acquire()  # no thread between opening a descriptor and listing it


def _after_fork_in_parent() -> None:
    _LOCK_FDS_GUARD.release()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_forget_after_fork)
