"""Where takes are stored: a local directory or an fsspec URL (``s3://``, ``gs://``, ``memory://``).

``open_root(data_dir, storage_options)`` gives a ``TakeSource``: ``list_pairs`` finds the takes
(every ``*.wav`` with its same-stem ``.jsonl``) as paths relative to the root, ``stat`` says
what identifies an object's content (size, and mtime or ETag) and ``read_bytes`` fetches it.

A local path (or ``file://`` URL) keeps the direct ``os`` fast path: no fsspec, no retries.
A URL goes through fsspec, imported only then (``pip install koemorph-data[remote]``). Every
remote request has a deadline (``timeout``: botocore's connect/read timeouts for ``s3://``,
fsspec's own deadline for any asynchronous filesystem) and a failed request is retried
``retries`` times with exponential backoff (``backoff``, 2x, 4x, ...) before a
``StorageError`` naming the object. A missing object is not retried.

Relative paths are ``PurePosixPath`` and sort as ``find_file_pairs`` sorts, so a bucket and a
local copy of it list the same takes in the same order.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, TypeVar

from .errors import DataFormatError, StorageError

logger = logging.getLogger("koemorph_data")

T = TypeVar("T")
R = TypeVar("R")
RelPair = tuple[PurePosixPath, PurePosixPath]

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# S3's ETag of an object uploaded in one part (without SSE-KMS) is the MD5 of its content.
_MD5_ETAG = re.compile(r"^[0-9a-f]{32}$")

#: Defaults of a remote source's request policy.
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF_S = 0.5


def is_url(data_dir: str | os.PathLike[str]) -> bool:
    """True when ``data_dir`` is a URL with a scheme (``s3://...``, ``file://...``)."""
    return isinstance(data_dir, str) and bool(_URL.match(data_dir))


def is_remote(data_dir: str | os.PathLike[str]) -> bool:
    """True when ``data_dir`` is read through fsspec (a URL other than ``file://``)."""
    return is_url(data_dir) and not str(data_dir).startswith("file://")


@dataclass(frozen=True)
class ObjectStat:
    """What identifies one stored object's content: its size and a version (a local file's
    mtime in ns, an object's ETag, or None when the store offers neither)."""

    size: int
    version: int | str | None = None


def walk(root: Path, suffix: str) -> list[Path]:
    """All files under root with this suffix, following directory symlinks without looping."""
    found: list[Path] = []
    seen_dirs: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:  # a symlink loop or a second link to a directory already walked
            logger.warning("not descending into %s again (directory symlink loop)", dirpath)
            dirnames[:] = []
            continue
        seen_dirs.add(key)
        for name in filenames:
            if name.endswith(suffix):
                found.append(Path(dirpath) / name)
    return found


def pair_up(wavs: list[T], jsonls: set[T], partner: Callable[[T], T]) -> tuple[list[tuple[T, T]], list[T]]:
    """``(pairs, orphans)`` sorted: each wav with its partner jsonl, and the unpaired files."""
    pairs: list[tuple[T, T]] = []
    orphans: list[T] = []
    jsonls = set(jsonls)
    for wav in wavs:
        jsonl = partner(wav)
        if jsonl in jsonls:
            pairs.append((wav, jsonl))
            jsonls.discard(jsonl)
        else:
            orphans.append(wav)
    orphans.extend(jsonls)
    for orphan in sorted(orphans):  # type: ignore[type-var]
        missing = ".jsonl" if str(orphan).endswith(".wav") else ".wav"
        logger.warning("%s has no partner (%s missing); ignored", orphan, missing)
    return sorted(pairs), sorted(orphans)  # type: ignore[type-var]


def find_file_pairs(data_dir: str | Path) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """``(pairs, orphans)``: every ``**/*.wav`` with its ``.jsonl`` beside it, sorted as Python
    sorts Path objects, and the wavs without a jsonl and jsonls without a wav."""
    root = Path(data_dir)
    if not root.is_dir():
        raise ValueError(f"data_dir {root} is not a directory")
    return pair_up(walk(root, ".wav"), set(walk(root, ".jsonl")), lambda wav: wav.with_suffix(".jsonl"))


def map_in_order(
    call: Callable[[T], R], items: Iterable[T], *, workers: int, until: Callable[[R], bool] | None = None
) -> list[R]:
    """``[call(item) for item in items]`` with up to ``workers`` calls running at once (requests
    to a store overlap), results in item order. Stops after the first result ``until`` accepts,
    and at the first exception, which is raised; calls not started by then are never started
    (a store that went away fails one bounded request per worker, not one per item).

    :param call: what is done with each item (run on a pool thread unless ``workers`` is 1).
    :param items: the items, in the order of the results.
    :param workers: calls running at once (1: in the calling thread).
    :param until: stop after the first result it returns True for (None: never).
    """
    if workers <= 1:
        results = []
        for item in items:
            results.append(call(item))
            if until is not None and until(results[-1]):
                break
        return results
    pending: deque[Future[R]] = deque()
    results = []
    source = iter(items)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="koemorph-fetch") as pool:
        try:
            for item in source:  # a bounded window: 100,000 takes are not 100,000 futures at once
                pending.append(pool.submit(call, item))
                if len(pending) >= 4 * workers and _take_first(pending, results, until):
                    return results
            while pending:
                if _take_first(pending, results, until):
                    return results
        finally:
            for future in pending:
                future.cancel()
    return results


def _take_first(pending: deque[Future[R]], results: list[R], until: Callable[[R], bool] | None) -> bool:
    """Moves the oldest future's result to ``results`` (raising its exception); True to stop."""
    results.append(pending.popleft().result())
    return until is not None and until(results[-1])


class TakeSource:
    """The takes under one root; subclasses: ``LocalSource`` and ``RemoteSource``."""

    remote = False

    def __init__(self, root: str) -> None:
        self.root = root  # as the user gave it (a path or a URL)

    def list_pairs(self) -> tuple[list[RelPair], list[PurePosixPath]]:
        """``(pairs, orphans)`` relative to the root, sorted (``find_file_pairs``' rules)."""
        raise NotImplementedError

    def stat(self, rel: PurePosixPath | str) -> ObjectStat:
        """Size and version of one object (FileNotFoundError when it is missing)."""
        raise NotImplementedError

    def listed_stat(self, rel: PurePosixPath | str) -> ObjectStat:
        """``stat`` as the last ``list_pairs`` saw the object (a remote listing records every
        object's size and ETag: no request), else asked now."""
        return self.stat(rel)

    def read_bytes(self, rel: PurePosixPath | str) -> bytes:
        """The whole content of one object."""
        raise NotImplementedError

    def read_checked(self, rel: PurePosixPath | str, expected: ObjectStat) -> bytes:
        """The whole content of one object that still has the size and version it was listed
        with (or the manifest recorded); DataFormatError naming it otherwise."""
        now = self.stat(rel)
        data = self.read_bytes(rel) if now == expected or expected.version is None else None
        if data is None or len(data) != expected.size or now.size != expected.size:
            raise changed_object(self.name(rel), expected, f"size {now.size}, version {now.version!r}")
        return data

    def open(self, rel: PurePosixPath | str) -> BinaryIO:
        """The object as a binary file (reads fetch only what is read: a wav header)."""
        raise NotImplementedError

    def name(self, rel: PurePosixPath | str) -> str:
        """The object's name in messages: its local path or full URL."""
        rel = PurePosixPath(rel).as_posix()
        return self.root if rel == "." else f"{self.root.rstrip('/')}/{rel}"

    def path(self, rel: PurePosixPath | str) -> PurePosixPath | Path:
        """The object's path as the datasets' ``file_pairs`` list it."""
        raise NotImplementedError

    def relative(self, path: PurePosixPath | Path) -> PurePosixPath:
        """Inverse of ``path``."""
        raise NotImplementedError


class LocalSource(TakeSource):
    """A local directory, read with ``os`` directly."""

    def __init__(self, root: str | Path) -> None:
        super().__init__(str(root))
        self.dir = Path(root)

    def list_pairs(self) -> tuple[list[RelPair], list[PurePosixPath]]:
        pairs, orphans = find_file_pairs(self.dir)
        return [(self.relative(w), self.relative(j)) for w, j in pairs], [self.relative(o) for o in orphans]

    def stat(self, rel: PurePosixPath | str) -> ObjectStat:
        st = os.stat(self.path(rel))
        return ObjectStat(int(st.st_size), int(st.st_mtime_ns))

    def read_bytes(self, rel: PurePosixPath | str) -> bytes:
        return Path(self.path(rel)).read_bytes()

    def open(self, rel: PurePosixPath | str) -> BinaryIO:
        return open(self.path(rel), "rb")

    def name(self, rel: PurePosixPath | str) -> str:
        return str(self.path(rel))

    def path(self, rel: PurePosixPath | str) -> Path:
        return self.dir / rel

    def relative(self, path: PurePosixPath | Path) -> PurePosixPath:
        return PurePosixPath(Path(path).relative_to(self.dir).as_posix())


def _version(info: Mapping[str, Any]) -> int | str | None:
    """An object's version from an fsspec ``info`` record: its ETag, else its modification time."""
    for key in ("ETag", "etag", "md5Hash", "generation", "LastModified", "mtime", "created", "updated"):
        value = info.get(key)
        if value is not None:
            return str(value).strip('"') if key.lower() == "etag" else str(value)
    return None


def _with_timeouts(protocol: str, options: dict[str, Any], timeout: float) -> dict[str, Any]:
    """s3fs options with botocore timeouts and no retries of its own (the source retries, with
    a bounded budget); options the caller set win."""
    if protocol not in ("s3", "s3a"):
        return options
    options = dict(options)
    config = dict(options.get("config_kwargs") or {})
    config.setdefault("connect_timeout", timeout)
    config.setdefault("read_timeout", timeout)
    config.setdefault("retries", {"max_attempts": 1})
    options["config_kwargs"] = config
    options.setdefault("use_listings_cache", False)  # stat() must see an object's current ETag
    return options


class RemoteSource(TakeSource):
    """Objects under an fsspec URL; the filesystem is made on first use in each process
    (pickling keeps the URL and options only, so DataLoader workers open their own)."""

    remote = True

    def __init__(
        self, url: str, storage_options: Mapping[str, Any] | None, *, timeout: float, retries: int, backoff: float
    ) -> None:
        super().__init__(url)
        self.storage_options = dict(storage_options or {})
        self.timeout, self.retries, self.backoff = float(timeout), int(retries), float(backoff)
        self.protocol = url.split("://", 1)[0]
        self._fs: Any = None
        self._pid = os.getpid()
        self.base = PurePosixPath(self.fs._strip_protocol(url).rstrip("/"))
        self.listed: dict[PurePosixPath, ObjectStat] = {}  # what the last listing saw
        self.etag_is_md5 = True  # until an unchanged object's content says otherwise

    @property
    def fs(self) -> Any:
        if self._fs is None or self._pid != os.getpid():  # a forked DataLoader worker opens its own
            import fsspec  # only data in object storage needs it

            options = _with_timeouts(self.protocol, self.storage_options, self.timeout)
            self._fs = fsspec.filesystem(self.protocol, **options)
            self._pid = os.getpid()
            if self.protocol in ("s3", "s3a"):
                self._fs.retries = 1  # s3fs's own retry loop: the source retries instead
        return self._fs

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_fs"] = None
        state["listed"] = {}
        return state

    def path(self, rel: PurePosixPath | str) -> PurePosixPath:
        return self.base / rel

    def relative(self, path: PurePosixPath | Path) -> PurePosixPath:
        return PurePosixPath(path).relative_to(self.base)

    def _deadline(self) -> dict[str, Any]:
        """The keyword giving a call on an asynchronous filesystem (s3fs, gcsfs, http) fsspec's
        deadline; synchronous ones (memory, sftp, ...) rely on their own timeouts."""
        return {"timeout": self.timeout} if getattr(self.fs, "async_impl", False) else {}

    def _call(self, what: str, rel: PurePosixPath | str, call: Callable[[], T]) -> T:
        """``call()`` retried with backoff; StorageError naming the object after the last attempt."""
        attempts = self.retries + 1
        for attempt in range(attempts):
            try:
                return call()
            except FileNotFoundError:
                raise
            except Exception as exc:  # each backend has its own errors (botocore, aiohttp, ...)
                if attempt + 1 == attempts:
                    message = (
                        f"{self.name(rel)}: {what} failed after {attempts} attempt(s): {type(exc).__name__}: {exc}"
                    )
                    raise StorageError(message, url=self.name(rel)) from exc
                delay = self.backoff * 2**attempt
                logger.info("%s: %s failed (%s); retrying in %.2f s", self.name(rel), what, exc, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def list_pairs(self) -> tuple[list[RelPair], list[PurePosixPath]]:
        root = self.base.as_posix()
        found = self._call("listing", "", lambda: self.fs.find(root, detail=True, **self._deadline()))
        self.listed = {}
        for name, info in found.items():
            if info.get("type", "file") == "file" and name.endswith((".wav", ".jsonl")):
                rel = self.relative(PurePosixPath(name))
                self.listed[rel] = ObjectStat(int(info.get("size") or 0), _version(info))
        wavs = [rel for rel in self.listed if rel.suffix == ".wav"]
        jsonls = {rel for rel in self.listed if rel.suffix == ".jsonl"}
        return pair_up(wavs, jsonls, lambda wav: wav.with_suffix(".jsonl"))

    def stat(self, rel: PurePosixPath | str) -> ObjectStat:
        path = self.path(rel).as_posix()
        info = self._call("stat", rel, lambda: self.fs.info(path, **self._deadline()))
        return ObjectStat(int(info.get("size") or 0), _version(info))

    def listed_stat(self, rel: PurePosixPath | str) -> ObjectStat:
        found = self.listed.get(PurePosixPath(rel))
        return found if found is not None else self.stat(rel)

    def read_bytes(self, rel: PurePosixPath | str, known_size: int | None = None) -> bytes:
        path = self.path(rel).as_posix()
        options = self._deadline()
        if self.protocol in ("s3", "s3a") and known_size is not None and known_size <= self.fs.default_block_size:
            # s3fs asks for the size (a HEAD) to decide on a split download; it would not split this one.
            options["max_concurrency"] = 1
        return self._call("read", rel, lambda: self.fs.cat_file(path, **options))

    def read_checked(self, rel: PurePosixPath | str, expected: ObjectStat) -> bytes:
        # One GET instead of a HEAD and a GET when the ETag is an MD5 of the content: the bytes
        # received are checked against it. An ETag that looks like one but is not (SSE-KMS)
        # falls back, for this source, to asking the store.
        version = expected.version
        if not (self.etag_is_md5 and isinstance(version, str) and _MD5_ETAG.match(version)):
            return super().read_checked(rel, expected)
        data = self.read_bytes(rel, known_size=expected.size)
        digest = hashlib.md5(data, usedforsecurity=False).hexdigest()
        if len(data) == expected.size and digest == version:
            return data
        if len(data) == expected.size and self.stat(rel) == expected:
            self.etag_is_md5 = False  # unchanged object, other ETag scheme
            return data
        raise changed_object(self.name(rel), expected, f"size {len(data)}, content MD5 {digest!r}")

    def open(self, rel: PurePosixPath | str) -> BinaryIO:
        path = self.path(rel).as_posix()
        # Read in small blocks: a header read fetches a few KiB, not the whole object.
        return self._call("open", rel, lambda: self.fs.open(path, "rb", block_size=1 << 16))


def changed_object(name: str, expected: ObjectStat, now: str) -> DataFormatError:
    """The error for an object whose content is no longer the one listed or in the manifest."""
    reason = (
        f"changed since it was listed or the manifest was written (size {expected.size}, "
        f"version {expected.version!r}; now {now})"
    )
    return DataFormatError(f"{name}: {reason}", path=name, reason=reason)


def open_root(
    data_dir: str | os.PathLike[str],
    storage_options: Mapping[str, Any] | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    retries: int = DEFAULT_RETRIES,
    backoff: float = DEFAULT_BACKOFF_S,
) -> TakeSource:
    """The ``TakeSource`` of a local directory or an fsspec URL.

    :param data_dir: a local directory, a ``file://`` URL (both read directly) or an fsspec URL
        such as ``s3://bucket/prefix``, ``gs://bucket/prefix`` or ``memory://prefix``.
    :param storage_options: keyword arguments of the fsspec filesystem (credentials,
        ``endpoint_url`` inside ``client_kwargs`` for s3, ...); ignored for local paths.
    :param timeout: seconds one remote request may take.
    :param retries: further attempts after a failed remote request (0: none).
    :param backoff: seconds before the first retry; doubled before each further one.
    """
    if timeout <= 0 or retries < 0 or backoff < 0:
        raise ValueError(f"need timeout > 0, retries >= 0, backoff >= 0; got {timeout}, {retries}, {backoff}")
    if not is_url(data_dir):
        return LocalSource(Path(data_dir))
    url = str(data_dir)
    if url.startswith("file://"):
        return LocalSource(Path(url[len("file://") :]))
    return RemoteSource(url, storage_options, timeout=timeout, retries=retries, backoff=backoff)
