"""The take manifest: what validation learns about every take, written once, so a dataset is
built without opening any take.

``koemorph-data manifest DATA_DIR`` (``write_manifest``) writes ``koemorph-manifest.jsonl.gz``:
gzip'd JSON lines, a header line, then one line per take in the datasets' take order:

    {"format": "koemorph-manifest", "version": 1, "takes": N, "timestamp_unit": "s"}
    {"wav": "a/t.wav", "jsonl": "a/t.jsonl", "wav_size": .., "wav_version": .., "jsonl_size": ..,
     "jsonl_version": .., "rate": 48000, "channels": 1, "frames": 2880000, "rows": 1800,
     "source_fps": 30.0, "first_s": 0.0, "last_s": 59.96, "pose": false}

Only facts that hold for every ``(sample_rate, target_fps, alignment)`` are stored: the wav's
own rate, channels and frames, and the JSONL's row count, detected frame rate and first and
last timestamps (seconds, exact floats). From them ``audio_length`` is soxr's resampled length
(``_core.resampled_length``) and ``blendshape_frames`` the Rust core's converted frame count
(rows when no conversion is needed, else ``floor(span * target_fps + 1e-9) + 1``), so a table
built from the manifest equals a validated one. Versions are a local file's mtime in ns or an
object's ETag. A take that failed validation is stored with ``"error": {"file": "jsonl",
"line": 12, "reason": ...}``: building a dataset raises (or skips) it as validation would,
still without reading it. Timestamps are read with the header's ``timestamp_unit``.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from . import _core
from .audio import audio_info
from .blendshapes import LabelFormat
from .errors import DataFormatError
from .storage import ObjectStat, RelPair, TakeSource, is_url, open_root

#: The manifest's default name inside the data directory.
MANIFEST_NAME = "koemorph-manifest.jsonl.gz"
#: Bumped when the lines' meaning changes; other versions are refused.
MANIFEST_VERSION = 1
_FORMAT = "koemorph-manifest"
logger = logging.getLogger("koemorph_data")
_PROBE_FPS = 30.0  # the commonest capture rate: most takes are parsed once


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
    pose: bool = False
    error: dict[str, Any] | None = None

    @property
    def stamps(self) -> tuple[ObjectStat, ObjectStat]:
        return ObjectStat(self.wav_size, self.wav_version), ObjectStat(self.jsonl_size, self.jsonl_version)

    def audio_length(self, sample_rate: int) -> int:
        """Samples after resampling to ``sample_rate`` (what the wav header promises)."""
        return _core.resampled_length(self.frames, self.rate, int(sample_rate))

    def blendshape_frames(self, target_fps: float) -> int:
        """Frames at ``target_fps`` after the core's fps conversion (``fps::conformed_frame_count``)."""
        target = float(target_fps)
        fps = self.source_fps
        if self.rows == 0 or fps is None or not abs(fps - target) > 0.01 * target:
            return self.rows
        last = (float(self.last_s or 0.0) - float(self.first_s or 0.0)) * target + 1e-9
        k = math.floor(last) if math.isfinite(last) else 0
        return (k if k > 0 else 0) + 1

    def failure(self, source: TakeSource) -> DataFormatError | None:
        """The DataFormatError validation raised for this take (naming the file and line), or None."""
        if self.error is None:
            return None
        name = source.name(self.jsonl if self.error.get("file") == "jsonl" else self.wav)
        line, reason = self.error.get("line"), str(self.error.get("reason"))
        where = f"{name}:{line}" if line is not None else name
        return DataFormatError(f"{where}: {reason}", path=name, line=line, reason=reason)


@dataclass
class Manifest:
    """A manifest read back: its header and entries (in take order)."""

    header: dict[str, Any]
    entries: list[ManifestEntry]

    @property
    def timestamp_unit(self) -> str:
        return str(self.header.get("timestamp_unit", "s"))

    def pairs(self) -> list[RelPair]:
        """(wav, jsonl) relative paths as the manifest's strings (no path parsing: 100,000 takes)."""
        return [(e.wav, e.jsonl) for e in self.entries]  # type: ignore[misc]


def _jsonl_facts(data: bytes, name: str, labels: LabelFormat) -> dict[str, Any]:
    """Rows, detected fps, first and last timestamps and pose presence, with the core's checks."""
    _v, stamps, fps, rows, pose = _core.load_blendshapes_bytes(
        data, name, _PROBE_FPS, labels.blendshape_order, labels.timestamp_unit
    )
    if fps is not None and abs(fps - _PROBE_FPS) > 0.01 * _PROBE_FPS:  # converted: get the rows' own stamps
        _v, stamps, fps, rows, pose = _core.load_blendshapes_bytes(
            data, name, fps, labels.blendshape_order, labels.timestamp_unit
        )
    first, last = (float(stamps[0]), float(stamps[-1])) if len(stamps) else (None, None)
    return {"rows": int(rows), "source_fps": fps, "first_s": first, "last_s": last, "pose": pose is not None}


def _stat(source: TakeSource, rel: PurePosixPath) -> ObjectStat:
    listed = getattr(source, "listed", {})
    return listed[rel] if rel in listed else source.stat(rel)


def describe_take(source: TakeSource, wav: PurePosixPath, jsonl: PurePosixPath, labels: LabelFormat) -> ManifestEntry:
    """The manifest entry of one take: its stamps and validation facts, or the error validation
    raises for it (the JSONL is checked first, as ``validate_take`` does)."""
    wav_stat, jsonl_stat = _stat(source, wav), _stat(source, jsonl)
    base: dict[str, Any] = dict(
        wav=wav.as_posix(),
        jsonl=jsonl.as_posix(),
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


def encode_manifest(header: Mapping[str, Any], entries: list[ManifestEntry]) -> bytes:
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
    with ThreadPoolExecutor(max_workers=max(1, int(workers)), thread_name_prefix="koemorph-manifest") as pool:
        entries = list(pool.map(lambda pair: describe_take(source, pair[0], pair[1], labels), pairs))
    header = {"format": _FORMAT, "version": MANIFEST_VERSION, "takes": len(entries)}
    header["timestamp_unit"] = labels.timestamp_unit
    target = os.fspath(out) if out is not None else default_location(data_dir)
    _write_bytes(target, encode_manifest(header, entries), storage_options)
    return target, Manifest(header, entries)


def decode_manifest(data: bytes, name: str) -> Manifest:
    """A manifest from its gzip'd bytes; ValueError naming it when it is not one this version reads."""
    try:
        lines = gzip.decompress(data).decode().splitlines()
        header = json.loads(lines[0])
    except (OSError, ValueError, IndexError, EOFError) as exc:
        raise ValueError(f"{name}: not a koemorph manifest ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != _FORMAT:
        raise ValueError(f"{name}: not a koemorph manifest (no header line)")
    if header.get("version") != MANIFEST_VERSION:
        raise ValueError(f"{name}: manifest version {header.get('version')}, this package reads {MANIFEST_VERSION}")
    entries = [ManifestEntry(**json.loads(line)) for line in lines[1:] if line]
    if len(entries) != header.get("takes"):
        raise ValueError(f"{name}: {len(entries)} takes but the header says {header.get('takes')} (truncated?)")
    return Manifest(header, entries)


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
    if listing[0] != [(PurePosixPath(w), PurePosixPath(j)) for w, j in manifest.pairs()]:
        return False
    try:
        return all(
            _stat(source, PurePosixPath(e.wav)).size == e.wav_size
            and _stat(source, PurePosixPath(e.jsonl)).size == e.jsonl_size
            for e in manifest.entries
        )
    except FileNotFoundError:
        return False


def _read_default(source: TakeSource) -> Manifest | None:
    try:
        data = source.read_bytes(MANIFEST_NAME)
    except FileNotFoundError:
        return None
    return decode_manifest(data, source.name(MANIFEST_NAME))


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
