"""The prepared cache: decoded takes stored as memory-mappable ``.npy`` files.

A take's entry holds its decoded, resampled mono float32 audio, its fps-converted float32
blendshapes ``[F, 52]`` (all rows, before the dataset trims them to the usable frames) and a
small JSON record with what take validation needs. The entry's name is a digest of

    (format version, sample_rate, target_fps,
     absolute wav path, its size, its mtime_ns, absolute jsonl path, its size, its mtime_ns)

so a changed source file, sample rate or frame rate simply has another key: a stale entry is
never found, let alone served. Every file is written to a temporary name and moved into
place with ``os.replace``, the JSON record last, so a reader either sees a complete entry or
none; any number of processes and threads may fill the same cache at once: they write one
at a time under the directory's lock (``budget.py``), and one that decoded a take another
stored meanwhile keeps the stored entry. A source that changes while it is being decoded is
returned but not stored.

Readers ``np.load(..., mmap_mode="r")`` the arrays: epochs, DataLoader workers and other
training processes share the page cache instead of decoding again. With a ``limit``
(``cache_limit=``), storing a take first evicts the least recently used entries
(``budget.py`` says how that stays safe for readers in other processes).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import numpy as np

from . import _core
from .audio import AudioInfo, audio_info, load_audio
from .blendshapes import LabelFormat
from .budget import ARRAYS, RECORD, CacheFull, budget_for, touch
from .storage import ObjectStat, TakeSource, map_in_order

logger = logging.getLogger("koemorph_data")

#: Bumped whenever the stored layout or the decoding changes; old entries are then ignored.
#: 2: ARKit order fixed (mouthRight 21, mouthLeft 22), pose stored, order and unit in the key.
#: 3: timestamp gaps (dropped rows) at the target rate filled by interpolation.
FORMAT_VERSION = 3

_AUDIO, _BLENDSHAPES, _POSE = ARRAYS
_META = RECORD


class TakeArrays(NamedTuple):
    """A decoded take: audio float32 [N], blendshapes float32 [F, 52], pose float32 [F, 9] or None."""

    audio: np.ndarray
    blendshapes: np.ndarray
    pose: np.ndarray | None = None


@dataclass(frozen=True)
class SourceStamp:
    """What identifies one source file's content for the cache."""

    path: str  # absolute, or the object's URL
    size: int
    mtime_ns: int | str | None  # a local file's mtime in ns; an object's ETag (or mtime)

    @classmethod
    def of(cls, path: str | Path) -> SourceStamp:
        absolute = os.path.abspath(os.fspath(path))
        st = os.stat(absolute)
        return cls(absolute, int(st.st_size), int(st.st_mtime_ns))


@dataclass(frozen=True)
class CacheEntry:
    """A complete entry found in the cache (its arrays are memory-mapped on ``arrays()``)."""

    base: Path  # entry path without suffix
    meta: dict[str, Any]

    @property
    def audio_file(self) -> Path:
        return self.base.with_name(self.base.name + _AUDIO)

    @property
    def blendshapes_file(self) -> Path:
        return self.base.with_name(self.base.name + _BLENDSHAPES)

    @property
    def blendshape_frames(self) -> int:
        """Frames at target_fps after fps conversion (before trimming to usable frames)."""
        return int(self.meta["blendshape_frames"])

    @property
    def audio_length(self) -> int:
        """Resampled length promised by the wav header (what validation uses)."""
        return int(self.meta["audio_length"])

    @property
    def source_fps(self) -> float | None:
        return self.meta["source_fps"]

    @property
    def pose_file(self) -> Path:
        return self.base.with_name(self.base.name + _POSE)

    @property
    def record_file(self) -> Path:
        return self.base.with_name(self.base.name + _META)

    def arrays(self) -> TakeArrays:
        """(audio float32 [N], blendshapes float32 [F, 52], pose [F, 9] or None), read-only memory maps."""
        audio = _load_npy(self.audio_file)
        blendshapes = _load_npy(self.blendshapes_file)
        if audio.dtype != np.float32 or audio.shape != (int(self.meta["audio_samples"]),):
            raise ValueError(f"{self.audio_file}: unexpected {audio.dtype} {audio.shape}")
        if blendshapes.dtype != np.float32 or blendshapes.shape != (self.blendshape_frames, _core.NUM_BLENDSHAPES):
            raise ValueError(f"{self.blendshapes_file}: unexpected {blendshapes.dtype} {blendshapes.shape}")
        pose = None
        if self.meta.get("pose"):
            pose = _load_npy(self.pose_file)
            if pose.dtype != np.float32 or pose.shape != (self.blendshape_frames, _core.NUM_POSE):
                raise ValueError(f"{self.pose_file}: unexpected {pose.dtype} {pose.shape}")
            pose = pose.view(np.ndarray)
        touch(self.record_file)  # recency, for the least-recently-used eviction of cache_limit
        # Plain read-only ndarray views of the maps (torch.from_numpy and friends expect ndarray).
        return TakeArrays(audio.view(np.ndarray), blendshapes.view(np.ndarray), pose)


def _npy_bytes(array: np.ndarray) -> int:
    """The size of ``array``'s .npy file (np.save writes a version 1.0 header for these arrays)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(array))
    return header.tell() + array.nbytes


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError:
        # np.memmap cannot map an empty array; a tiny file is read instead.
        array = np.load(path, allow_pickle=False)
        if array.size:
            raise
        return array


class TakeCache:
    """A cache directory for one (sample_rate, target_fps, label format) view of the takes.

    ``limit``: bytes the whole directory may hold (every view's entries); storing a take
    evicts the least recently used entries first. ``protect_since_ns``: entries used since
    then are never evicted; a take that does not fit without evicting one raises
    ``CacheFull`` (``prepare --cache-limit``). Without it a take larger than the limit
    alone is served without being stored (with a warning)."""

    def __init__(
        self,
        cache_dir: str | Path,
        sample_rate: int,
        target_fps: int,
        labels: LabelFormat | None = None,
        *,
        limit: int | None = None,
        protect_since_ns: int | None = None,
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.sample_rate = int(sample_rate)
        self.target_fps = int(target_fps)
        self.labels = labels if labels is not None else LabelFormat()
        self.limit = limit
        self.protect_since_ns = protect_since_ns
        self._view = [self.sample_rate, self.target_fps, *self.labels.cache_key]

    # ------------------------------------------------------------------ keys
    def _stamps(self, wav: str | Path, jsonl: str | Path) -> tuple[SourceStamp, SourceStamp]:
        return SourceStamp.of(wav), SourceStamp.of(jsonl)

    def key(self, wav: str | Path, jsonl: str | Path) -> str:
        return self._key(*self._stamps(wav, jsonl))

    def _key(self, wav: SourceStamp, jsonl: SourceStamp) -> str:
        record = json.dumps(
            [FORMAT_VERSION, *self._view, wav.path, wav.size, wav.mtime_ns, jsonl.path, jsonl.size, jsonl.mtime_ns]
        )
        return hashlib.sha256(record.encode()).hexdigest()[:32]

    def _base(self, wav: SourceStamp, key: str) -> Path:
        return self.cache_dir / f"{Path(wav.path).stem}-{key}"

    # ------------------------------------------------------------------ reading
    def lookup(self, wav: str | Path, jsonl: str | Path) -> CacheEntry | None:
        """The complete, current entry of this take, or None (missing, stale or damaged)."""
        try:
            stamps = self._stamps(wav, jsonl)
        except OSError:
            return None
        return self._lookup(*stamps)

    def _lookup(self, wav: SourceStamp, jsonl: SourceStamp) -> CacheEntry | None:
        key = self._key(wav, jsonl)
        base = self._base(wav, key)
        try:
            with open(base.with_name(base.name + _META), "rb") as f:
                meta = json.loads(f.read())
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or meta.get("key") != key or meta.get("version") != FORMAT_VERSION:
            return None
        return CacheEntry(base, meta)

    def load(self, wav: str | Path, jsonl: str | Path) -> TakeArrays:
        """(audio, blendshapes, pose) of a take: memory-mapped from the cache, filling it first if
        needed (``fill`` serves a current entry as it is and rebuilds a damaged one). Raises
        DataFormatError for a malformed take (nothing is stored then)."""
        return self.fill(wav, jsonl)[0]

    # ------------------------------------------------------------------ writing
    def fill(self, wav: str | Path, jsonl: str | Path, *, force: bool = False) -> tuple[TakeArrays, bool]:
        """Decodes the take and stores it unless a current entry exists (or ``force``).

        Returns ((audio, blendshapes, pose), stored): the arrays are memory maps of the entry when
        it exists, the decoded arrays when the source changed while decoding (not stored).
        """
        before = self._stamps(wav, jsonl)
        if not force:
            entry = self._lookup(*before)
            if entry is not None:
                try:
                    return entry.arrays(), False
                except (OSError, ValueError):
                    pass  # damaged (e.g. a crash between writes outside our control): rebuild
        values, source_fps, rows, pose = self.labels.load(jsonl, self.target_fps)
        header = audio_info(wav, self.sample_rate)
        audio = load_audio(wav, self.sample_rate)
        if self._stamps(wav, jsonl) != before:
            return TakeArrays(audio, values, pose), False  # changed under us: correct now, not cacheable
        return self._store(before, TakeArrays(audio, values, pose), header, source_fps, rows, force=force)

    def fetched_stamps(
        self,
        source: TakeSource,
        wav: PurePosixPath | str,
        jsonl: PurePosixPath | str,
        expected: tuple[ObjectStat, ObjectStat],
    ) -> tuple[SourceStamp, SourceStamp]:
        """What keys a take in object storage: its objects' URLs, sizes and ETags as expected."""
        return SourceStamp(source.name(wav), expected[0].size, expected[0].version), SourceStamp(
            source.name(jsonl), expected[1].size, expected[1].version
        )

    def lookup_fetched(
        self,
        source: TakeSource,
        wav: PurePosixPath | str,
        jsonl: PurePosixPath | str,
        expected: tuple[ObjectStat, ObjectStat],
    ) -> CacheEntry | None:
        """The current entry of a take in object storage, or None; never fetches."""
        return self._lookup(*self.fetched_stamps(source, wav, jsonl, expected))

    def fill_fetched(
        self,
        source: TakeSource,
        wav: PurePosixPath | str,
        jsonl: PurePosixPath | str,
        expected: tuple[ObjectStat, ObjectStat],
        *,
        force: bool = False,
    ) -> TakeArrays:
        """A take in object storage: served from the cache (keyed by URL, size and ETag as the
        listing or manifest saw them), else (or with ``force``) fetched, decoded and stored.
        DataFormatError naming the object when it no longer has the size or ETag expected."""
        stamps = self.fetched_stamps(source, wav, jsonl, expected)
        entry = None if force else self._lookup(*stamps)
        if entry is not None:
            try:
                return entry.arrays()
            except (OSError, ValueError):
                pass  # damaged: fetch again
        # Both objects at once: a take costs one round trip, not two.
        fetched = map_in_order(lambda item: source.read_checked(*item), list(zip((wav, jsonl), expected)), workers=2)
        wav_name, jsonl_name = stamps[0].path, stamps[1].path
        values, source_fps, rows, pose = self.labels.load_bytes(fetched[1], jsonl_name, self.target_fps)
        header = audio_info(wav_name, self.sample_rate, file=io.BytesIO(fetched[0]))
        audio = load_audio(wav_name, self.sample_rate, data=fetched[0])
        arrays = TakeArrays(audio, values, pose)
        return self._store(stamps, arrays, header, source_fps, rows, force=force)[0]  # type: ignore[arg-type]

    def _store(
        self,
        before: tuple[SourceStamp, SourceStamp],
        arrays: TakeArrays,
        header: AudioInfo,
        source_fps: float | None,
        rows: int,
        *,
        force: bool = False,
    ) -> tuple[TakeArrays, bool]:
        """Writes a decoded take's entry (arrays first, record last) under the directory's lock,
        after making room for it; returns (its memory maps, True). (The stored entry, False)
        when another process stored it meanwhile (unless ``force``); (``arrays``, False) when it
        cannot fit under the limit."""
        key = self._key(*before)
        base = self._base(before[0], key)
        meta = _record(self, before, key, arrays, header, source_fps, rows)
        record = json.dumps(meta, indent=1).encode()
        parts = [(suffix, a) for suffix, a in zip((_AUDIO, _BLENDSHAPES, _POSE), arrays) if a is not None]
        bound = len(record) + sum(_npy_bytes(a) for _, a in parts)
        budget = budget_for(self.cache_dir)
        with budget.locked():
            if not force and (stored := self._lookup(*before)) is not None:
                try:
                    return stored.arrays(), False
                except (OSError, ValueError):
                    pass  # damaged: replaced below
            replaced = budget.entry_size(base.name)
            if self.limit is not None and not budget.make_room(
                bound - replaced, self.limit, keep=base.name, protect_since_ns=self.protect_since_ns
            ):
                self._refuse(base, bound, budget.warned)
                return arrays, False
            budget.changing()
            for suffix, array in parts:
                _atomic_write(base.with_name(base.name + suffix), lambda f, a=array: np.save(f, a, allow_pickle=False))
            _atomic_write(base.with_name(base.name + _META), lambda f: f.write(record))
            budget.used += budget.entry_size(base.name) - replaced
            budget.save()
            # Mapped before the lock is released: another process may evict the entry then.
            return CacheEntry(base, meta).arrays(), True

    def _refuse(self, base: Path, bound: int, warned: set[str]) -> None:
        """A take that does not fit: CacheFull when protecting entries, else a warning (once)."""
        if self.protect_since_ns is not None:
            raise CacheFull(f"{base.name}: {bound} bytes do not fit under the cache limit of {self.limit} bytes")
        if base.name not in warned:
            warned.add(base.name)
            logger.warning(
                "%s: the decoded take (%d bytes) is larger than cache_limit=%d bytes; it is used without being cached",
                base.name,
                bound,
                self.limit,
            )

    def prune(self, current: list[tuple[Path, Path]]) -> int:
        """Removes entries of these takes' sources whose key is no longer current (an older
        version of the file, another format version); other entries are left alone.
        Returns the number of entries removed."""
        stamps: list[tuple[SourceStamp, SourceStamp]] = []
        for wav, jsonl in current:
            try:
                stamps.append(self._stamps(wav, jsonl))
            except OSError:
                continue
        return self.prune_stamps(stamps)

    def prune_stamps(self, current: list[tuple[SourceStamp, SourceStamp]]) -> int:
        """``prune`` of takes given by their current stamps (``fetched_stamps`` for objects)."""
        wavs = {wav.path: self._key(wav, jsonl) for wav, jsonl in current}
        removed = 0
        with budget_for(self.cache_dir).locked() as budget:
            for meta_file in self.cache_dir.glob(f"*{_META}"):
                try:
                    meta = json.loads(meta_file.read_bytes())
                    wav, key = meta["wav"], meta["key"]
                    view = [meta.get("sample_rate"), meta.get("target_fps"), *meta.get("labels", [None, "s"])]
                    same_view = view == self._view
                except (OSError, ValueError, KeyError, TypeError):
                    continue
                if wav in wavs and same_view and wavs[wav] != key:
                    budget.remove_entry(meta_file.name[: -len(_META)])
                    removed += 1
        return removed

    def usage(self) -> int:
        """Bytes the cache directory's entries take (every view's)."""
        with budget_for(self.cache_dir).locked() as budget:
            return budget.used

    def trim(self) -> int:
        """Evicts least recently used entries until the directory is within ``limit`` (entries
        used since ``protect_since_ns`` last, most recent first); returns the bytes it then holds."""
        if self.limit is None:
            return self.usage()
        with budget_for(self.cache_dir).locked() as budget:
            budget.make_room(0, self.limit, protect_since_ns=self.protect_since_ns, protected_last=True)
            return budget.used


def _record(
    cache: TakeCache,
    before: tuple[SourceStamp, SourceStamp],
    key: str,
    arrays: TakeArrays,
    header: AudioInfo,
    source_fps: float | None,
    rows: int,
) -> dict[str, Any]:
    """An entry's JSON record: what validation needs and what identifies the entry."""
    audio, values, pose = arrays
    return {
        "version": FORMAT_VERSION,
        "key": key,
        "sample_rate": cache.sample_rate,
        "target_fps": cache.target_fps,
        "wav": before[0].path,
        "wav_size": before[0].size,
        "wav_mtime_ns": before[0].mtime_ns,
        "jsonl": before[1].path,
        "jsonl_size": before[1].size,
        "jsonl_mtime_ns": before[1].mtime_ns,
        "audio_samples": int(len(audio)),
        "audio_length": int(header.length),
        "source_rate": int(header.sample_rate),
        "channels": int(header.channels),
        "blendshape_frames": int(len(values)),
        "source_fps": source_fps,
        "rows": int(rows),
        "pose": pose is not None,
        "labels": cache.labels.cache_key,
    }


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def load_take(
    cache_dir: str | Path,
    wav: str | Path,
    jsonl: str | Path,
    *,
    sample_rate: int,
    target_fps: int,
    labels: LabelFormat | None = None,
) -> TakeArrays:
    """(audio float32 [N], blendshapes float32 [F, 52], pose [F, 9] or None) of a take through
    the cache at ``cache_dir`` (filled on first use)."""
    return TakeCache(cache_dir, sample_rate, target_fps, labels).load(wav, jsonl)


def lookup(
    cache_dir: str | Path,
    wav: str | Path,
    jsonl: str | Path,
    *,
    sample_rate: int,
    target_fps: int,
    labels: LabelFormat | None = None,
) -> CacheEntry | None:
    """The current entry of a take, or None; never decodes."""
    return TakeCache(cache_dir, sample_rate, target_fps, labels).lookup(wav, jsonl)
