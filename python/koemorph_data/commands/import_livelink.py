"""``koemorph-data import-livelink TAKE.csv --audio AUDIO --out DIR [--timecode-fps 60]``.

Converts a Live Link Face (iPhone) CSV into a take: ``DIR/<stem>.jsonl`` (ARKit order,
timestamps in seconds from the first row, converted to 30 fps by the Rust core's rule, the
same linear interpolation the datasets use) and ``DIR/<stem>.wav`` (mono, 16 kHz, PCM 16),
both trimmed to their common span.

CSV: a header ``Timecode,BlendshapeCount,EyeBlinkLeft,...,TongueOut,HeadYaw,...`` (names
matched case-insensitively; head and eye rotation columns are ignored) and one row per
captured frame with timecode ``HH:MM:SS:FF.fff`` (FF.fff = frame number with its fraction at
``--timecode-fps``). The audio is taken to start at the first row unless ``--audio-offset``
or ``--audio-start`` says where it starts.
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from .. import _core
from ..audio import load_audio
from ..errors import DataFormatError

SAMPLE_RATE = 16000
TARGET_FPS = 30
_TIMECODE = re.compile(r"^\s*(\d+):(\d{1,2}):(\d{1,2})[:;](\d+(?:\.\d*)?)\s*$")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("csv", type=Path, help="Live Link Face CSV (TAKE.csv)")
    parser.add_argument("--audio", type=Path, required=True, help="the take's audio (any file soundfile reads)")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--timecode-fps", type=float, default=60.0,
                        help="frame rate of the timecode's FF field (default 60)")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--audio-offset", type=float, default=None, metavar="SECONDS",
                       help="the audio's first sample lies this many seconds after the CSV's first row "
                            "(negative: before it); default 0")
    start.add_argument("--audio-start", default=None, metavar="TIMECODE",
                       help="the audio's first sample as a timecode HH:MM:SS:FF.fff on the CSV's clock "
                            "(e.g. the start timecode of the recording's .mov)")
    parser.add_argument("--force", action="store_true", help="overwrite existing output files")


def _fail(path: Path, line: int | None, reason: str) -> DataFormatError:
    where = f"{path}:{line}" if line is not None else str(path)
    return DataFormatError(f"{where}: {reason}", path=str(path), line=line, reason=reason)


def parse_timecode(text: str, timecode_fps: float) -> float:
    """Seconds of ``HH:MM:SS:FF.fff`` (FF.fff in frames at ``timecode_fps``); ValueError if malformed."""
    return timecode_frames(text, timecode_fps) / timecode_fps


def timecode_frames(text: str, timecode_fps: float) -> float:
    """``HH:MM:SS:FF.fff`` counted in frames at ``timecode_fps`` (exact for whole frames, so
    times relative to the first row are correctly rounded k / fps)."""
    m = _TIMECODE.match(text)
    if not m:
        raise ValueError(f"timecode {text!r} is not HH:MM:SS:FF.fff")
    hours, minutes, seconds, frames = int(m[1]), int(m[2]), int(m[3]), float(m[4])
    if minutes >= 60 or seconds >= 60:
        raise ValueError(f"timecode {text!r} has minutes or seconds over 59")
    if frames >= timecode_fps + 1e-9:
        raise ValueError(f"timecode {text!r} has frame {m[4]}, not below --timecode-fps {timecode_fps:g}")
    return (hours * 3600 + minutes * 60 + seconds) * timecode_fps + frames


def read_livelink_csv(path: Path, timecode_fps: float) -> tuple[np.ndarray, np.ndarray, list[int], float]:
    """(seconds from the first row float64 [R], values float64 [R, 52] in ARKit order, CSV line of
    each row, the first row's timecode in frames at ``timecode_fps``)."""
    names = [n.lower() for n in _core.ARKIT_BLENDSHAPES]
    try:
        handle = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise _fail(path, None, f"cannot read: {exc.strerror or exc}") from exc
    times: list[float] = []
    rows: list[list[float]] = []
    lines: list[int] = []
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header is None:
                raise _fail(path, None, "empty file (expected a Live Link Face CSV header)")
            columns = {h.strip().lower(): j for j, h in enumerate(header)}
            if "timecode" not in columns:
                raise _fail(path, 1, "no Timecode column: not a Live Link Face CSV")
            missing = [n for n, low in zip(_core.ARKIT_BLENDSHAPES, names) if low not in columns]
            if missing:
                raise _fail(path, 1, f"missing blendshape columns: {', '.join(missing[:6])}"
                            + (f" and {len(missing) - 6} more" if len(missing) > 6 else ""))
            tc_col = columns["timecode"]
            value_cols = [columns[low] for low in names]
            day = 0.0
            previous = None
            for record in reader:
                line = reader.line_num
                if not record or all(not c.strip() for c in record):
                    continue
                if len(record) != len(header):
                    raise _fail(path, line, f"{len(record)} fields, the header has {len(header)}")
                try:
                    t = timecode_frames(record[tc_col], timecode_fps) + day
                except ValueError as exc:
                    raise _fail(path, line, str(exc)) from None
                if previous is not None and t < previous:
                    if previous - t > 43200 * timecode_fps:  # the timecode passed midnight
                        day += 86400.0 * timecode_fps
                        t += 86400.0 * timecode_fps
                    else:
                        raise _fail(path, line, f"timecode {record[tc_col]} is earlier than the previous row's")
                previous = t
                values = []
                for name, j in zip(_core.ARKIT_BLENDSHAPES, value_cols):
                    try:
                        v = float(record[j])
                    except ValueError:
                        raise _fail(path, line, f"{name} is {record[j]!r}, not a number") from None
                    if not math.isfinite(v):
                        raise _fail(path, line, f"{name} is {record[j]!r}, not a finite number")
                    values.append(v)
                times.append(t)
                rows.append(values)
                lines.append(line)
        except csv.Error as exc:
            raise _fail(path, reader.line_num, f"malformed CSV: {exc}") from None
        except UnicodeDecodeError as exc:
            raise _fail(path, None, f"not UTF-8 text: {exc}") from None
    if not rows:
        raise _fail(path, None, "no data rows")
    frames = np.asarray(times, dtype=np.float64)
    return (frames - frames[0]) / timecode_fps, np.asarray(rows, dtype=np.float64), lines, float(frames[0])


def start_alignment(audio_offset_s: float) -> tuple[int, int]:
    """(frames at TARGET_FPS to drop from the face, samples at SAMPLE_RATE to drop from the audio)
    so that both start at the same instant, given that the audio's first sample lies
    ``audio_offset_s`` seconds after the first CSV row (negative: before). The face keeps its
    frame grid; the audio absorbs the remainder to the nearest sample."""
    dropped_frames = max(0, math.ceil(audio_offset_s * TARGET_FPS - 1e-9))
    dropped_samples = round((dropped_frames / TARGET_FPS - audio_offset_s) * SAMPLE_RATE)
    return dropped_frames, max(0, dropped_samples)


def audio_start_offset(audio_start: str, first_row_frames: float, timecode_fps: float) -> float:
    """Seconds from the first CSV row to the timecode ``audio_start`` (the nearer way round midnight)."""
    offset = (timecode_frames(audio_start, timecode_fps) - first_row_frames) / timecode_fps
    if offset > 43200:
        offset -= 86400
    elif offset < -43200:
        offset += 86400
    return offset


def _write_jsonl(path: Path, timestamps: np.ndarray, values: np.ndarray, value_format: str) -> None:
    row = '{"timestamp": %s, "blendshapes": [' + ",".join([value_format] * values.shape[1]) + "]}\n"
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for t, v in zip(timestamps.tolist(), values.tolist()):
            f.write(row % (repr(float(t)), *v))


def convert(csv_path: Path, audio_path: Path, out_dir: Path, *, timecode_fps: float = 60.0,
            audio_offset: float | None = None, audio_start: str | None = None,
            force: bool = False, log=None) -> tuple[Path, Path, int]:
    """Writes ``out_dir/<stem>.jsonl`` and ``.wav``; returns their paths and the frame count."""
    from ..cli import UserError

    say = log or (lambda message: None)
    if not csv_path.is_file():
        raise UserError(f"{csv_path} not found")
    if not audio_path.is_file():
        raise UserError(f"{audio_path} not found")
    if not timecode_fps > 0:
        raise UserError("--timecode-fps must be positive")
    jsonl_out = out_dir / f"{csv_path.stem}.jsonl"
    wav_out = out_dir / f"{csv_path.stem}.wav"
    if not force:
        for existing in (jsonl_out, wav_out):
            if existing.exists():
                raise UserError(f"{existing} exists; pass --force to overwrite")

    if audio_offset is not None and not math.isfinite(audio_offset):
        raise UserError("--audio-offset must be a finite number of seconds")
    times, values, lines, first_row_frames = read_livelink_csv(csv_path, timecode_fps)
    say(f"read {len(times)} rows spanning {times[-1]:.2f} s from {csv_path}")
    if audio_start is not None:
        try:
            audio_offset = audio_start_offset(audio_start, first_row_frames, timecode_fps)
        except ValueError as exc:
            raise UserError(f"--audio-start: {exc}") from None
    skip_frames, skip_samples = start_alignment(audio_offset or 0.0)
    # The frame-rate conversion is the Rust core's: write the rows at their own rate, load them.
    with tempfile.TemporaryDirectory(prefix="koemorph-livelink-") as tmp:
        source = Path(tmp) / "source.jsonl"
        _write_jsonl(source, times, values, "%r")
        try:
            frames, stamps, source_fps, _rows = _core.load_blendshapes(str(source), float(TARGET_FPS))
        except DataFormatError as exc:
            line = lines[exc.line - 1] if exc.line is not None and 0 < exc.line <= len(lines) else None
            raise _fail(csv_path, line, exc.reason) from None
    say(f"blendshapes: {source_fps or 0:.2f} fps -> {len(frames)} frames at {TARGET_FPS} fps")

    audio = load_audio(audio_path, SAMPLE_RATE)
    if skip_frames or skip_samples:
        say(f"audio starts {audio_offset:+.4f} s from the first row: dropped {skip_frames} frames of "
            f"blendshapes and {skip_samples} samples of audio to start both together")
        frames, stamps = frames[skip_frames:], stamps[skip_frames:]
        audio = audio[skip_samples:]
    audio_frames = int(_core.frames_covered(len(audio), SAMPLE_RATE, TARGET_FPS, "exact"))
    count = min(len(frames), audio_frames)
    if count == 0:
        raise UserError(f"{audio_path} and {csv_path} have no common span "
                        f"({len(audio) / SAMPLE_RATE:.2f} s of audio, {len(frames)} frames)")
    samples = -(-count * SAMPLE_RATE // TARGET_FPS)  # ceil: the audio covers exactly `count` frames
    audio = audio[:samples]
    say(f"audio: {len(audio) / SAMPLE_RATE:.2f} s mono at {SAMPLE_RATE} Hz; common span {count} frames "
        f"({count / TARGET_FPS:.2f} s; dropped {len(frames) - count} frames, "
        f"{audio_frames - count} frames of audio)")
    clipped = int(np.count_nonzero(np.abs(audio) > 1.0))
    if clipped:
        say(f"warning: {clipped} audio samples outside [-1, 1] clipped")
        audio = np.clip(audio, -1.0, 1.0)

    out_dir.mkdir(parents=True, exist_ok=True)
    stamps = stamps[:count] - stamps[0]
    tmp_jsonl = out_dir / f".{jsonl_out.name}.partial"
    tmp_wav = out_dir / f".{wav_out.name}.partial"
    try:
        _write_jsonl(tmp_jsonl, stamps, frames[:count], "%.9g")
        sf.write(str(tmp_wav), audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
        os.replace(tmp_jsonl, jsonl_out)
        os.replace(tmp_wav, wav_out)
    finally:
        for leftover in (tmp_jsonl, tmp_wav):
            if leftover.exists():
                leftover.unlink()
    return jsonl_out, wav_out, count


def run(args: argparse.Namespace) -> int:
    def say(message: str) -> None:
        print(f"import-livelink: {message}", file=sys.stderr, flush=True)

    jsonl_out, wav_out, count = convert(args.csv, args.audio, args.out, timecode_fps=args.timecode_fps,
                                        audio_offset=args.audio_offset, audio_start=args.audio_start,
                                        force=args.force, log=say)
    print(f"wrote {jsonl_out} and {wav_out}: {count} frames at {TARGET_FPS} fps ({count / TARGET_FPS:.2f} s)")
    return 0
