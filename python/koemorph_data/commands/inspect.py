"""``koemorph-data inspect DATA_DIR_OR_URL [--json] [--window-frames N] [--stride N]``.

Checks every take the datasets would use, with the datasets' own code (the take listing of
``storage.open_root``, ``take_info``, the Rust JSONL parser): per pair the audio's rate, channels and duration,
the detected blendshape fps, blendshape frames vs the frames the audio covers, dropped frames
(timestamp gaps over 1.5 frame periods), values outside [0, 1] and the windows at the given
window and stride, and the audio-to-face lag (:func:`koemorph_data.sync.audio_face_lag`, the
same as ``plot``); then orphans and the files that fail, with the reason and line. Exit
status 1 when any take fails (or no take is found). A URL (``s3://bucket/prefix``, with
``--storage-options``) is listed and each take fetched once, in memory.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from .. import _core
from ..audio import AudioInfo, audio_info, load_audio
from ..blendshapes import LabelFormat
from ..errors import DataFormatError
from ..storage import TakeSource, open_root
from ..sync import SyncEstimate, audio_face_lag
from ..takes import TakeCounts, TakeInfo, take_info
from ..timing import Timing
from .common import (
    TakeProgress,
    add_dataset_options,
    add_storage_options,
    label_format,
    non_negative_float,
    positive_int,
    take_source,
)

#: A lag is reported as a warning from this many frames on, when its correlation is at least LAG_MIN_R.
LAG_WARN_FRAMES = 2
LAG_MIN_R = 0.5


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "data_dir", help="dataset directory (every **/*.wav with its .jsonl) or fsspec URL (s3://bucket/prefix, ...)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--window-frames", type=positive_int, default=256, help="window length in frames (default 256)")
    parser.add_argument("--stride", type=positive_int, default=1, help="window stride in frames (default 1)")
    parser.add_argument(
        "--max-lag",
        type=non_negative_float,
        default=0.5,
        help="largest audio-to-face lag searched, seconds (default 0.5)",
    )
    add_dataset_options(parser)
    add_storage_options(parser)


def _error(path: Path | str, reason: str, line: int | None = None) -> dict[str, Any]:
    return {"path": str(path), "reason": reason, "line": line}


def _dropped(timestamps: np.ndarray, source_fps: float | None) -> tuple[int, int]:
    """(rows missing, gaps): timestamp steps over 1.5 frame periods."""
    if not source_fps:
        return 0, 0
    period = 1.0 / source_fps
    steps = np.diff(timestamps)
    long = steps[steps > 1.5 * period]
    return int(np.sum(np.round(long / period).astype(np.int64) - 1)), int(len(long))


def _lag_warning(sync: SyncEstimate, fps: int) -> list[str]:
    if not sync.is_suspicious(LAG_WARN_FRAMES, LAG_MIN_R):
        return []
    lag = sync.lag_frames
    return [
        f"the face is {abs(lag)} frames {'late' if lag > 0 else 'early'} against the audio "
        f"({lag * 1000 / fps:+.0f} ms, r = {sync.r:.2f})"
    ]


def _out_of_range(values: np.ndarray) -> tuple[int, list[str]]:
    """How many values lie outside [0, 1], and the blendshapes they belong to."""
    outside = (values < 0.0) | (values > 1.0)
    names = tuple(_core.ARKIT_BLENDSHAPES)
    return int(outside.sum()), [names[j] for j in np.flatnonzero(outside.any(axis=0))]


def _take_warnings(info: TakeInfo, dropped: int, gaps: int, outside: int, outside_names: list[str]) -> list[str]:
    """Warnings about a take's counts and rows: audio and blendshapes that disagree, dropped
    frames and values outside [0, 1]."""
    warnings = []
    if abs(info.blendshape_frames - info.audio_frames) > 1:
        warnings.append(f"{info.blendshape_frames} blendshape frames but the audio covers {info.audio_frames}")
    if gaps:
        warnings.append(f"{dropped} dropped frames in {gaps} timestamp gaps")
    if outside_names:
        more = ", ..." if len(outside_names) > 4 else ""
        warnings.append(f"{outside} values outside [0, 1] ({', '.join(outside_names[:4])}{more})")
    return warnings


@dataclass(frozen=True)
class _ReadTake:
    """A take's names, wav bytes and header, its rows as they are (``values``, ``timestamps``),
    its blendshapes at the dataset's fps and its TakeInfo."""

    wav_name: str
    jsonl_name: str
    wav_bytes: bytes
    header: AudioInfo
    values: np.ndarray
    timestamps: np.ndarray
    at_fps: np.ndarray
    info: TakeInfo


def _read_take(
    source: TakeSource, wav: PurePath | str, jsonl: PurePath | str, sample_rate: int, fps: int, labels: LabelFormat
) -> _ReadTake:
    """Reads a take's two files once and checks them as validation does (the JSONL first)."""
    wav, jsonl = os.fspath(wav), os.fspath(jsonl)
    wav_name, jsonl_name = source.name(wav), source.name(jsonl)
    jsonl_bytes = source.read_bytes(jsonl)
    at_fps, source_fps, _rows, pose = labels.load_bytes(jsonl_bytes, jsonl_name, fps)
    wav_bytes = source.read_bytes(wav)
    header = audio_info(wav_name, sample_rate, file=io.BytesIO(wav_bytes))
    counts = TakeCounts(header.length, len(at_fps), source_fps, pose is not None)
    info = take_info(source.path(wav), source.path(jsonl), counts, Timing(sample_rate, fps, "exact"), labels)
    values, timestamps, _pose = _core.parse_blendshapes_bytes(
        jsonl_bytes, jsonl_name, None, labels.blendshape_order, labels.timestamp_unit
    )
    return _ReadTake(wav_name, jsonl_name, wav_bytes, header, values, timestamps, at_fps, info)


def inspect_pair(
    wav: PurePath | str,
    jsonl: PurePath | str,
    *,
    sample_rate: int,
    fps: int,
    window_frames: int,
    stride: int,
    max_lag_frames: int = 15,
    labels: LabelFormat | None = None,
    source: TakeSource | None = None,
) -> dict[str, Any]:
    """One take's report (raises DataFormatError for a take the datasets would reject).

    :param wav: the take's wav: a local path, or a path relative to ``source``.
    :param jsonl: the take's JSONL, likewise.
    :param sample_rate: the audio rate the datasets would deliver.
    :param fps: the frame rate the datasets would deliver.
    :param window_frames: window length, for the window count.
    :param stride: window stride, for the window count.
    :param max_lag_frames: largest audio-to-face lag searched.
    :param labels: how the JSONL is read.
    :param source: where ``wav`` and ``jsonl`` are (None: local paths).
    """
    labels = labels if labels is not None else LabelFormat()
    take = _read_take(source if source is not None else open_root("."), wav, jsonl, sample_rate, fps, labels)
    info, header, timestamps = take.info, take.header, take.timestamps
    dropped, gaps = _dropped(timestamps, info.source_fps)
    audio = load_audio(take.wav_name, sample_rate, data=take.wav_bytes)
    sync = audio_face_lag(audio, sample_rate, take.at_fps, fps, max_lag_frames)
    outside, outside_names = _out_of_range(take.values)
    usable = info.usable_frames
    windows = 0 if usable < window_frames else (usable - window_frames) // stride + 1
    mismatch = info.blendshape_frames - info.audio_frames
    warnings = _take_warnings(info, dropped, gaps, outside, outside_names) + _lag_warning(sync, fps)
    if windows == 0:
        warnings.append(f"{usable} usable frames: shorter than one window of {window_frames}")
    return {
        "audio": take.wav_name,
        "blendshapes": take.jsonl_name,
        "sample_rate": header.sample_rate,
        "channels": header.channels,
        "duration_s": round(header.duration_s, 6),
        "fps": None if info.source_fps is None else round(float(info.source_fps), 6),
        "rows": int(len(timestamps)),
        "frames": info.blendshape_frames,
        "audio_frames": info.audio_frames,
        "mismatch": mismatch,
        "usable_frames": usable,
        "dropped_frames": dropped,
        "gaps": gaps,
        "out_of_range": outside,
        "out_of_range_names": outside_names,
        "lag_frames": None if math.isnan(sync.r) else sync.lag_frames,
        "lag_r": None if math.isnan(sync.r) else round(sync.r, 4),
        "windows": int(windows),
        "warnings": warnings,
    }


def inspect_dir(
    data_dir: Path | str,
    *,
    sample_rate: int = 16000,
    fps: int = 30,
    window_frames: int = 256,
    stride: int = 1,
    max_lag_frames: int = 15,
    progress: bool = True,
    labels: LabelFormat | None = None,
    storage_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``{"pairs": [...], "orphans": [...], "errors": [...]}`` for a data directory or URL
    (``storage_options``: fsspec options for a URL; the other parameters as ``inspect_pair``'s,
    ``progress``: draw the progress bar)."""
    source = open_root(data_dir, storage_options)
    pairs, orphans = source.list_pairs()
    report: dict[str, Any] = {
        "data_dir": str(data_dir),
        "window_frames": window_frames,
        "stride": stride,
        "pairs": [],
        "orphans": [source.name(p) for p in orphans],
        "errors": [],
    }
    options = dict(sample_rate=sample_rate, fps=fps, window_frames=window_frames, stride=stride)
    bar = TakeProgress("inspect", len(pairs)) if progress else None
    try:
        for wav, jsonl in pairs:
            try:
                report["pairs"].append(
                    inspect_pair(wav, jsonl, max_lag_frames=max_lag_frames, labels=labels, source=source, **options)
                )
            except DataFormatError as exc:
                report["errors"].append(_error(exc.path or source.name(wav), exc.reason, exc.line))
            except Exception as exc:  # an internal error must not hide the other takes
                report["errors"].append(_error(source.name(wav), f"{type(exc).__name__}: {exc}"))
            if bar is not None:
                bar.step(wav.name)
    finally:
        if bar is not None:
            bar.close()
    if not pairs:
        report["errors"].append(_error(data_dir, "no .wav/.jsonl pairs found"))
    return report


def _table(rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(r[j]) for r in rows) for j in range(len(rows[0]))]
    lines = []
    for i, r in enumerate(rows):
        cells = [c.rjust(w) if j in right else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths))]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _relative(path: str, root: str) -> str:
    """``path`` relative to the data directory or URL ``root`` (as it is when outside)."""
    prefix = root.rstrip("/") + "/"
    if path.startswith(prefix):
        return path[len(prefix) :]
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path


def _without_suffix(path: str) -> str:
    head, dot, tail = path.rpartition(".")
    return head if dot and "/" not in tail else path


_COLUMNS = ["take", "rate", "ch", "dur s", "fps", "frames", "audio fr", "diff", "dropped", "out[0,1]", "lag", "r",
            "windows"]  # fmt: skip


def _pair_row(p: dict[str, Any], root: str) -> list[str]:
    no_lag = p["lag_frames"] is None
    return [
        _relative(_without_suffix(p["audio"]), root), str(p["sample_rate"]), str(p["channels"]),
        f"{p['duration_s']:.2f}", "-" if p["fps"] is None else f"{p['fps']:.2f}", str(p["frames"]),
        str(p["audio_frames"]), f"{p['mismatch']:+d}", str(p["dropped_frames"]), str(p["out_of_range"]),
        "-" if no_lag else f"{p['lag_frames']:+d}", "-" if no_lag else f"{p['lag_r']:.2f}", str(p["windows"]),
    ]  # fmt: skip


def _error_line(e: dict[str, Any], root: str) -> str:
    line = f":{e['line']}" if e["line"] is not None else ""
    return f"  {_relative(e['path'], root)}{line}: {e['reason']}"


def format_report(report: dict[str, Any]) -> str:
    """The report as the table, warnings, orphans, errors and a summary line."""
    root = report["data_dir"]
    out = []
    pairs = report["pairs"]
    if pairs:
        out.append(_table([_COLUMNS] + [_pair_row(p, root) for p in pairs], right=set(range(1, len(_COLUMNS)))))
        notes = [f"  {_relative(p['audio'], root)}: {w}" for p in pairs for w in p["warnings"]]
        if notes:
            out.append("warnings:\n" + "\n".join(notes))
    if report["orphans"]:
        orphans = "\n".join(f"  {_relative(o, root)}" for o in report["orphans"])
        out.append("orphans (no partner, not used):\n" + orphans)
    if report["errors"]:
        out.append("errors:\n" + "\n".join(_error_line(e, root) for e in report["errors"]))
    windows = sum(p["windows"] for p in pairs)
    out.append(
        f"{len(pairs)} takes ok, {len(report['errors'])} errors, {len(report['orphans'])} orphans; "
        f"{windows} windows of {report['window_frames']} frames at stride {report['stride']}"
    )
    return "\n\n".join(out)


def run(args: argparse.Namespace) -> int:
    take_source(args.data_dir, args)  # a local path that is not a directory is a usage error
    log = logging.getLogger("koemorph_data")
    level = log.level
    if not getattr(args, "verbose", False):
        log.setLevel(logging.ERROR)  # the report itself lists mismatches and orphans
    try:
        report = inspect_dir(
            args.data_dir,
            sample_rate=args.sample_rate,
            fps=args.fps,
            window_frames=args.window_frames,
            stride=args.stride,
            max_lag_frames=int(round(args.max_lag * args.fps)),
            labels=label_format(args),
            storage_options=args.storage_options,
        )
    finally:
        log.setLevel(level)
    if args.json:
        json.dump(report, sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        print(format_report(report))
    return 1 if report["errors"] else 0
