"""The take manifest: what validation learns about every take, written once, so a dataset is
built without opening any take.

``koemorph-data manifest DATA_DIR`` (``write_manifest``) writes ``koemorph-manifest.jsonl.gz``:
gzip'd JSON lines, a header line, then one line per take in the datasets' take order:

    {"format": "koemorph-manifest", "version": 2, "takes": N, "timestamp_unit": "s"}
    {"wav": "a/t.wav", "jsonl": "a/t.jsonl", "wav_size": .., "wav_version": .., "jsonl_size": ..,
     "jsonl_version": .., "rate": 48000, "channels": 1, "frames": 2880000, "rows": 1800,
     "source_fps": 30.0, "first_s": 0.0, "last_s": 59.96, "max_step_s": 0.0334, "pose": false}

Only facts that hold for every ``(sample_rate, target_fps, alignment)`` are stored: the wav's
own rate, channels and frames, and the JSONL's row count, detected frame rate, first and last
timestamps and longest step between timestamps (seconds, exact floats; the step says whether a
track with dropped rows is resampled at a given rate). From them ``audio_length`` is soxr's
resampled length (``_core.resampled_lengths``) and ``blendshape_frames`` the Rust core's
converted frame count (``_core.conformed_frame_counts``), so a table built from the manifest
equals a validated one. Versions are a local file's mtime in ns or an object's ETag. A take
that failed validation is stored with ``"error": {"file": "jsonl", "line": 12, "reason":
...}``: building a dataset raises (or skips) it as validation would, still without reading it.
Timestamps are read with the header's ``timestamp_unit``.

Read back, a manifest is held as columns (``ManifestColumns``: one list or numpy array per
field, parsed by the Rust core), not as an object per take: 100,000 takes load in about 0.2 s.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from . import _core
from .audio import audio_info
from .blendshapes import LabelFormat
from .columns import CountColumns
from .errors import DataFormatError
from .storage import ObjectStat, RelPair, TakeSource, is_url, map_in_order, open_root
from .timing import Timing

#: The manifest's default name inside the data directory.
MANIFEST_NAME = "koemorph-manifest.jsonl.gz"
#: Bumped when the lines' meaning changes; other versions are refused (2: ``max_step_s``).
MANIFEST_VERSION = 2
_FORMAT = "koemorph-manifest"
logger = logging.getLogger("koemorph_data")


def blendshape_frame_counts(
    rows: np.ndarray,
    source_fps: np.ndarray,
    first_s: np.ndarray,
    last_s: np.ndarray,
    max_step_s: np.ndarray,
    target_fps: float,
) -> np.ndarray:
    """Frames at ``target_fps`` after the core's conversion, from the recorded facts (NaN:
    absent), as uint64: the Rust core's ``TrackShape`` rule, the one loading uses.

    :param rows: rows of each JSONL.
    :param source_fps: detected frame rate of each (NaN: none).
    :param first_s: first timestamp of each, seconds.
    :param last_s: last timestamp of each, seconds.
    :param max_step_s: longest step between timestamps of each, seconds.
    :param target_fps: the dataset's frame rate.
    """
    span = np.nan_to_num(np.asarray(last_s, dtype=np.float64) - np.asarray(first_s, dtype=np.float64), nan=0.0)
    step = np.nan_to_num(np.asarray(max_step_s, dtype=np.float64), nan=0.0)
    return _core.conformed_frame_counts(
        np.asarray(rows, dtype=np.uint64), np.asarray(source_fps, dtype=np.float64), span, step, float(target_fps)
    )


@dataclass(frozen=True)
class ManifestEntry:
    """One take's line of the manifest (see the module docstring)."""

    wav: str
    jsonl: str
    wav_size: int
    wav_version: int | str | None
    jsonl_size: int
    jsonl_version: int | str | None
    rate: int = 0
    channels: int = 0
    frames: int = 0
    rows: int = 0
    source_fps: float | None = None
    first_s: float | None = None
    last_s: float | None = None
    max_step_s: float | None = None
    pose: bool = False
    error: dict[str, Any] | None = None

    @property
    def stamps(self) -> tuple[ObjectStat, ObjectStat]:
        return ObjectStat(self.wav_size, self.wav_version), ObjectStat(self.jsonl_size, self.jsonl_version)

    def audio_length(self, sample_rate: int) -> int:
        """Samples after resampling to ``sample_rate`` (what the wav header promises)."""
        return _core.resampled_length(self.frames, self.rate, int(sample_rate))

    def blendshape_frames(self, target_fps: float) -> int:
        """Frames at ``target_fps`` after the core's fps conversion (``blendshape_frame_counts``)."""
        fps, first, last, step = (
            np.array([np.nan if v is None else v], dtype=np.float64)
            for v in (self.source_fps, self.first_s, self.last_s, self.max_step_s)
        )
        return int(blendshape_frame_counts(np.array([self.rows]), fps, first, last, step, target_fps)[0])

    def failure(self, source: TakeSource) -> DataFormatError | None:
        """The DataFormatError validation raised for this take (naming the file and line), or None."""
        return None if self.error is None else _failure(source, self.wav, self.jsonl, self.error)


def _failure(source: TakeSource, wav: str, jsonl: str, error: Mapping[str, Any]) -> DataFormatError:
    name = source.name(jsonl if error.get("file") == "jsonl" else wav)
    line, reason = error.get("line"), str(error.get("reason"))
    where = f"{name}:{line}" if line is not None else name
    return DataFormatError(f"{where}: {reason}", path=name, line=line, reason=reason)


_FLOATS = ("source_fps", "first_s", "last_s", "max_step_s")
_INTS = ("wav_size", "jsonl_size", "rate", "channels", "frames", "rows")


@dataclass
class ManifestColumns:
    """The take lines as columns, in take order: ``wav``, ``jsonl`` and the versions as lists,
    the sizes, rates and counts as uint64 arrays, the facts in ``_FLOATS`` as float64 arrays
    (NaN: absent), ``pose`` as a bool array, and ``errors`` by take index."""

    wav: list[str]
    jsonl: list[str]
    wav_version: list[int | str | None]
    jsonl_version: list[int | str | None]
    wav_size: np.ndarray
    jsonl_size: np.ndarray
    rate: np.ndarray
    channels: np.ndarray
    frames: np.ndarray
    rows: np.ndarray
    source_fps: np.ndarray
    first_s: np.ndarray
    last_s: np.ndarray
    max_step_s: np.ndarray
    pose: np.ndarray
    errors: dict[int, dict[str, Any]]

    def __len__(self) -> int:
        return len(self.wav)

    @classmethod
    def parse(cls, lines: bytes, name: str, first_line: int) -> ManifestColumns:
        """The columns of take lines (``first_line`` is their first line's number in ``name``)."""
        parsed = _core.parse_manifest_lines(lines, name, first_line)
        errors = {
            int(i): {"file": file, "line": line, "reason": reason} for i, file, line, reason in parsed.pop("errors")
        }
        return cls(**parsed, errors=errors)

    @classmethod
    def of_entries(cls, entries: Sequence[ManifestEntry]) -> ManifestColumns:
        def column(name: str) -> list[Any]:
            return [getattr(e, name) for e in entries]

        values: dict[str, Any] = {k: column(k) for k in ("wav", "jsonl", "wav_version", "jsonl_version")}
        values |= {k: np.array(column(k), dtype=np.uint64).reshape(-1) for k in _INTS}
        values |= {k: np.array([np.nan if v is None else v for v in column(k)], dtype=np.float64) for k in _FLOATS}
        values["pose"] = np.array(column("pose"), dtype=bool).reshape(-1)
        values["errors"] = {i: dict(e.error) for i, e in enumerate(entries) if e.error is not None}
        return cls(**values)

    def entry(self, i: int) -> ManifestEntry:
        """Take ``i``'s line as a ManifestEntry."""
        values: dict[str, Any] = {f.name: getattr(self, f.name)[i] for f in fields(ManifestEntry) if f.name != "error"}
        for key in _INTS:
            values[key] = int(values[key])
        for key in _FLOATS:
            values[key] = None if np.isnan(values[key]) else float(values[key])
        values["pose"] = bool(values["pose"])
        return ManifestEntry(**values, error=self.errors.get(i))

    def stamps(self, i: int) -> tuple[ObjectStat, ObjectStat]:
        """Take ``i``'s (wav, jsonl) sizes and versions as the manifest recorded them."""
        return (
            ObjectStat(int(self.wav_size[i]), self.wav_version[i]),
            ObjectStat(int(self.jsonl_size[i]), self.jsonl_version[i]),
        )

    def failure(self, i: int, source: TakeSource) -> DataFormatError | None:
        """The DataFormatError validation raised for take ``i``, or None."""
        error = self.errors.get(i)
        return None if error is None else _failure(source, self.wav[i], self.jsonl[i], error)

    def counts(self, index: np.ndarray, timing: Timing, source: TakeSource) -> CountColumns:
        """Counts of takes ``index`` (positions in the manifest) at ``timing``, and the failures
        recorded for them, named as validation names them."""
        failed = np.zeros(len(self), dtype=bool)
        failed[list(self.errors)] = True
        failed = failed[index]
        rate = self.rate[index]
        if (rate[~failed] == 0).any():
            bad = self.wav[int(index[np.flatnonzero((rate == 0) & ~failed)[0]])]
            raise ValueError(f"manifest entry {bad}: no audio rate and no error (write the manifest again)")
        # A failed take has no rate: its length is computed as if at the dataset's, and unused.
        audio_length = _core.resampled_lengths(
            self.frames[index], np.where(failed, timing.sample_rate, rate).astype(np.uint64), timing.sample_rate
        )
        frames = blendshape_frame_counts(
            self.rows[index], self.source_fps[index], self.first_s[index], self.last_s[index],
            self.max_step_s[index], timing.target_fps,
        )  # fmt: skip
        failures: dict[int, DataFormatError] = {}
        for k in np.flatnonzero(failed).tolist():
            failures[k] = _failure(source, self.wav[index[k]], self.jsonl[index[k]], self.errors[int(index[k])])
        zero = np.uint64(0)
        return CountColumns(
            np.where(failed, zero, audio_length), np.where(failed, zero, frames), self.source_fps[index],
            self.pose[index], failures,
        )  # fmt: skip


class Manifest:
    """A manifest: its header and its takes, as ``columns`` (``entries``: one ManifestEntry
    per take, made when first asked for)."""

    def __init__(
        self,
        header: Mapping[str, Any],
        entries: Sequence[ManifestEntry] | None = None,
        *,
        columns: ManifestColumns | None = None,
    ) -> None:
        if (entries is None) == (columns is None):
            raise TypeError("Manifest needs entries or columns (one of them)")
        self.header = dict(header)
        self._entries = None if entries is None else list(entries)
        self.columns = columns if columns is not None else ManifestColumns.of_entries(self._entries or [])

    @property
    def entries(self) -> list[ManifestEntry]:
        if self._entries is None:
            self._entries = [self.columns.entry(i) for i in range(len(self.columns))]
        return self._entries

    @property
    def timestamp_unit(self) -> str:
        return str(self.header.get("timestamp_unit", "s"))

    def pairs(self) -> list[tuple[str, str]]:
        """(wav, jsonl) relative paths as the manifest's strings (no path parsing: 100,000 takes)."""
        return list(zip(self.columns.wav, self.columns.jsonl))


def _jsonl_facts(data: bytes, name: str, labels: LabelFormat) -> dict[str, Any]:
    """Rows, detected fps, first and last timestamps, longest step and pose presence, with
    loading's checks (one parse, no conversion)."""
    rows, fps, first, last, step, pose = _core.track_facts_bytes(
        data, name, labels.blendshape_order, labels.timestamp_unit
    )
    return {"rows": rows, "source_fps": fps, "first_s": first, "last_s": last, "max_step_s": step, "pose": pose}


def describe_take(
    source: TakeSource, wav: PurePosixPath | str, jsonl: PurePosixPath | str, labels: LabelFormat
) -> ManifestEntry:
    """The manifest entry of one take: its stamps and validation facts, or the error validation
    raises for it (the JSONL is checked first, as ``validate_take`` does)."""
    wav_stat, jsonl_stat = source.listed_stat(wav), source.listed_stat(jsonl)
    base: dict[str, Any] = dict(
        wav=PurePosixPath(wav).as_posix(),
        jsonl=PurePosixPath(jsonl).as_posix(),
        wav_size=wav_stat.size,
        wav_version=wav_stat.version,
        jsonl_size=jsonl_stat.size,
        jsonl_version=jsonl_stat.version,
    )
    try:
        facts = _jsonl_facts(source.read_bytes(jsonl), source.name(jsonl), labels)
        with source.open(wav) as f:
            header = audio_info(source.name(wav), 1, file=f)
    except DataFormatError as exc:
        which = "jsonl" if exc.path == source.name(jsonl) else "wav"
        return ManifestEntry(**base, error={"file": which, "line": exc.line, "reason": exc.reason})
    return ManifestEntry(**base, rate=header.sample_rate, channels=header.channels, frames=header.frames, **facts)


def describe_takes(
    source: TakeSource,
    pairs: Sequence[tuple[PurePosixPath | str, PurePosixPath | str]],
    labels: LabelFormat,
    *,
    workers: int,
    stop_at_error: bool = False,
) -> list[ManifestEntry]:
    """``describe_take`` of every pair, ``workers`` takes at a time (stating, fetching and
    parsing overlap: remotely each take is a few requests), in pair order. A request that fails
    for good raises its StorageError, the takes not yet started are not started.

    :param source: where the takes are.
    :param pairs: (wav, jsonl) paths relative to the source.
    :param labels: how the JSONL is read.
    :param workers: takes described at once.
    :param stop_at_error: stop after the first take that failed validation (the list is then
        shorter).
    """
    return map_in_order(
        lambda pair: describe_take(source, pair[0], pair[1], labels),
        pairs,
        workers=workers,
        until=(lambda entry: entry.error is not None) if stop_at_error else None,
    )


def encode_manifest(header: Mapping[str, Any], entries: Sequence[ManifestEntry]) -> bytes:
    lines = [json.dumps(dict(header), separators=(",", ":"))]
    for entry in entries:
        record = {k: v for k, v in asdict(entry).items() if v is not None or k.endswith("_version")}
        lines.append(json.dumps(record, separators=(",", ":")))
    return gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)


def _write_bytes(target: str, data: bytes, storage_options: Mapping[str, Any] | None) -> None:
    """Writes a local file atomically, or an object through fsspec."""
    if is_url(target) and not target.startswith("file://"):
        import fsspec

        with fsspec.open(target, "wb", **dict(storage_options or {})) as f:
            f.write(data)
        return
    path = Path(target[len("file://") :] if target.startswith("file://") else target)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def default_location(data_dir: str | os.PathLike[str]) -> str:
    """``DATA_DIR/koemorph-manifest.jsonl.gz`` (a URL stays a URL)."""
    text = os.fspath(data_dir)
    return f"{text.rstrip('/')}/{MANIFEST_NAME}" if is_url(text) else str(Path(text) / MANIFEST_NAME)


def manifest_header(entries: int, labels: LabelFormat) -> dict[str, Any]:
    """The header line of a manifest of ``entries`` takes read with ``labels``."""
    return {"format": _FORMAT, "version": MANIFEST_VERSION, "takes": entries, "timestamp_unit": labels.timestamp_unit}


def write_manifest(
    data_dir: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    storage_options: Mapping[str, Any] | None = None,
    labels: LabelFormat | None = None,
    workers: int = 8,
) -> tuple[str, Manifest]:
    """Lists and validates every take and writes the manifest; returns ``(where, manifest)``.

    :param data_dir: local directory or fsspec URL of the takes.
    :param out: where to write (local path or URL); None: ``data_dir``'s default name.
    :param storage_options: fsspec options for ``data_dir`` and ``out``.
    :param labels: how the JSONL is read (only its ``timestamp_unit`` changes the facts).
    :param workers: threads stating, parsing and reading headers at once (I/O-bound remotely).
    """
    labels = labels if labels is not None else LabelFormat()
    source = open_root(data_dir, storage_options)
    pairs, _orphans = source.list_pairs()
    entries = describe_takes(source, pairs, labels, workers=max(1, int(workers)))
    header = manifest_header(len(entries), labels)
    target = os.fspath(out) if out is not None else default_location(data_dir)
    _write_bytes(target, encode_manifest(header, entries), storage_options)
    return target, Manifest(header, entries)


def decode_manifest(data: bytes, name: str) -> Manifest:
    """A manifest from its gzip'd bytes; ValueError naming it (and the line) when it is not one
    this version reads."""
    try:
        first, _, lines = gzip.decompress(data).partition(b"\n")
        header = json.loads(first)
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"{name}: not a koemorph manifest ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != _FORMAT:
        raise ValueError(f"{name}: not a koemorph manifest (no header line)")
    if header.get("version") != MANIFEST_VERSION:
        raise ValueError(
            f"{name}: manifest version {header.get('version')}, this package reads {MANIFEST_VERSION} "
            "(write it again with `koemorph-data manifest`)"
        )
    columns = ManifestColumns.parse(lines, name, first_line=2)
    if len(columns) != header.get("takes"):
        raise ValueError(f"{name}: {len(columns)} takes but the header says {header.get('takes')} (truncated?)")
    return Manifest(header, columns=columns)


def read_manifest(location: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None) -> Manifest:
    """The manifest at a local path or URL.

    :param location: the manifest file (local path or fsspec URL).
    :param storage_options: fsspec options for a URL.
    """
    text = os.fspath(location)
    if is_url(text) and not text.startswith("file://"):
        parent, _, name = text.rstrip("/").rpartition("/")
        return decode_manifest(open_root(parent, storage_options).read_bytes(name), text)
    path = Path(text[len("file://") :] if text.startswith("file://") else text)
    return decode_manifest(path.read_bytes(), str(path))


def _listing_matches(source: TakeSource, manifest: Manifest, listing: tuple[list[RelPair], Any]) -> bool:
    """True when the listing holds exactly the manifest's takes, each object of the size recorded."""
    if [(w.as_posix(), j.as_posix()) for w, j in listing[0]] != manifest.pairs():
        return False
    columns = manifest.columns
    try:
        sizes = [(source.listed_stat(w).size, source.listed_stat(j).size) for w, j in listing[0]]
    except FileNotFoundError:
        return False
    recorded = np.stack([columns.wav_size, columns.jsonl_size], axis=1) if sizes else np.zeros((0, 2))
    return bool(np.array_equal(np.array(sizes, dtype=np.uint64).reshape(-1, 2), recorded))


def _read_default(source: TakeSource) -> Manifest | None:
    """The default-named manifest, or None when there is none or it cannot be read (an older
    version, say: logged, and the takes are validated instead)."""
    try:
        data = source.read_bytes(MANIFEST_NAME)
    except FileNotFoundError:
        return None
    try:
        return decode_manifest(data, source.name(MANIFEST_NAME))
    except ValueError as exc:
        logger.warning("%s; validating every take instead", exc)
        return None


def manifest_for(
    source: TakeSource,
    manifest: str | os.PathLike[str] | bool | None,
    timestamp_unit: str,
    storage_options: Mapping[str, Any] | None = None,
) -> tuple[Manifest | None, tuple[list[RelPair], list[PurePosixPath]] | None]:
    """The manifest a dataset uses, and the listing when one was made to decide.

    ``manifest`` given (path or URL): that manifest, trusted without listing (objects changed
    since are found when read); ValueError when its ``timestamp_unit`` differs. None: the
    default-named file in the data directory when it exists, its unit matches and the listing
    holds exactly its takes with the sizes it records (otherwise it is ignored, with a log
    line). False: no manifest.
    """
    if manifest is False:
        return None, None
    if manifest is not None and manifest is not True:
        found = read_manifest(manifest, storage_options)
        if found.timestamp_unit != timestamp_unit:
            raise ValueError(
                f"manifest {os.fspath(manifest)} was written with timestamp_unit={found.timestamp_unit!r}, "
                f"the dataset reads {timestamp_unit!r}: write one with --timestamp-unit {timestamp_unit}"
            )
        return found, None
    default = _read_default(source)
    if default is None:
        return None, None
    listing = source.list_pairs()
    if default.timestamp_unit != timestamp_unit or not _listing_matches(source, default, listing):
        logger.warning(
            "%s is out of date (takes added, removed or changed): validating every take instead",
            source.name(MANIFEST_NAME),
        )
        return None, listing
    return default, listing
