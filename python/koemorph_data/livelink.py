"""Live Link Face (iPhone) CSV captures, converted into koemorph takes.

A capture is a CSV with the header ``Timecode,BlendshapeCount,EyeBlinkLeft,...,TongueOut,
HeadYaw,HeadPitch,HeadRoll,LeftEyeYaw,...,RightEyeRoll`` (names matched case-insensitively)
and one row per captured frame; ``Timecode`` is ``HH:MM:SS:FF.fff``, FF.fff being the frame
number (with its fraction) at the timecode's rate. :func:`convert_take` writes
``<stem>.jsonl`` (ARKit order, 30 fps by the Rust core's conversion, the nine head and eye
rotations as ``"pose"``) and ``<stem>.wav`` (mono, 16 kHz, PCM 16), trimmed to their common
span. Errors are library errors: ``DataFormatError`` naming the CSV and its line (its
subclass ``TimecodeRateError`` when the timecode rate is not the one given), ``ValueError``,
``FileExistsError``.
"""

from __future__ import annotations

import csv
import errno
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from . import _core
from .audio import load_audio
from .errors import DataFormatError

SAMPLE_RATE = 16000
TARGET_FPS = 30
#: Live Link Face's last nine columns, in its order and spelling: head, then left and right eye
#: rotation (the package's POSE_NAMES, capitalised as the CSV header writes them).
POSE_COLUMNS = tuple(name[0].upper() + name[1:] for name in _core.POSE_NAMES)
#: Timecode rates a capture's FF field is suggested to be counted at when it is not the given one.
TIMECODE_RATES = (24, 25, 30, 48, 50, 60, 100, 120)
_TIMECODE = re.compile(r"^\s*(\d+):(\d{1,2}):(\d{1,2})[:;](\d+(?:\.\d*)?)\s*$")
_DAY_S = 86400


class TimecodeRateError(DataFormatError):
    """The CSV's timecode frame numbers do not count at the given rate; ``looks_like_fps`` is
    the rate they look like and ``timecode_fps`` the one given."""

    def __init__(
        self, message: str, *, path: str, line: int, reason: str, looks_like_fps: float, timecode_fps: float
    ) -> None:
        super().__init__(message, path=path, line=line, reason=reason)
        self.looks_like_fps = looks_like_fps
        self.timecode_fps = timecode_fps

    def __reduce__(self):
        return (
            _rebuild_rate_error,
            (self.args[0], self.path, self.line, self.reason, self.looks_like_fps, self.timecode_fps),
        )


def _rebuild_rate_error(message, path, line, reason, looks_like_fps, timecode_fps):
    return TimecodeRateError(
        message, path=path, line=line, reason=reason, looks_like_fps=looks_like_fps, timecode_fps=timecode_fps
    )


def _fail(path: Path, line: int | None, reason: str) -> DataFormatError:
    where = f"{path}:{line}" if line is not None else str(path)
    return DataFormatError(f"{where}: {reason}", path=str(path), line=line, reason=reason)


# ---------------------------------------------------------------------------- timecodes
def split_timecode(text: str) -> tuple[int, float]:
    """``HH:MM:SS:FF.fff`` as (whole seconds HH:MM:SS, frame number FF.fff); ValueError if malformed."""
    m = _TIMECODE.match(text)
    if not m:
        raise ValueError(f"timecode {text!r} is not HH:MM:SS:FF.fff")
    hours, minutes, seconds = int(m[1]), int(m[2]), int(m[3])
    if minutes >= 60 or seconds >= 60:
        raise ValueError(f"timecode {text!r} has minutes or seconds over 59")
    return hours * 3600 + minutes * 60 + seconds, float(m[4])


def timecode_frames(text: str, timecode_fps: float) -> float:
    """``HH:MM:SS:FF.fff`` counted in frames at ``timecode_fps`` (exact for whole frames, so
    times relative to the first row are correctly rounded k / fps); ValueError if malformed or
    the frame number is not below the rate."""
    seconds, frame = split_timecode(text)
    if frame > timecode_fps - 1e-9:  # at or above the rate
        raise ValueError(f"timecode {text!r} has frame {frame:g}, not below the timecode rate {timecode_fps:g}")
    return seconds * timecode_fps + frame


def parse_timecode(text: str, timecode_fps: float) -> float:
    """Seconds of ``HH:MM:SS:FF.fff`` (FF.fff in frames at ``timecode_fps``); ValueError if malformed."""
    return timecode_frames(text, timecode_fps) / timecode_fps


def audio_start_offset(audio_start: str, first_row_frames: float, timecode_fps: float) -> float:
    """Seconds from the first CSV row to the timecode ``audio_start`` (the nearer way round midnight)."""
    offset = (timecode_frames(audio_start, timecode_fps) - first_row_frames) / timecode_fps
    if offset > _DAY_S / 2:
        offset -= _DAY_S
    elif offset < -_DAY_S / 2:
        offset += _DAY_S
    return offset


def _nearest_rate(estimate: float) -> float:
    nearest = min(TIMECODE_RATES, key=lambda rate: abs(rate - estimate))
    return float(nearest) if abs(nearest - estimate) <= 1 else float(round(estimate, 2))


def check_timecode_rate(
    path: Path, seconds: np.ndarray, frame_numbers: np.ndarray, texts: list[str], lines: list[int], timecode_fps: float
) -> None:
    """Raises TimecodeRateError when the rows' frame numbers (FF.fff, with their whole
    ``seconds`` HH:MM:SS) are not counted at ``timecode_fps``.

    Two signs give a wrong rate away. A frame number at or above the rate (a 60 fps timecode
    read as 30 has frames 30..59). Or the step across a second boundary differs from the step
    within a second: frame numbers wrap to 0 after rate - step, so the rate is
    (last frame of a second) - (first frame of the next) + (the step within seconds); a 30 fps
    timecode (0..29, step 1) wraps after 29: 29 - 0 + 1 = 30, and read as 60 its clock would
    jump 31 frames at every second. A step other than 1 that is the same across boundaries
    (a 30 fps capture on a 60 fps timecode: 0, 2, .., 58, 0) is a lower capture rate, not an
    error."""
    step = _step_within_seconds(seconds, frame_numbers)
    estimate, first_wrap = _wrap_rate(seconds, frame_numbers, step)
    over = np.flatnonzero(frame_numbers > timecode_fps - 1e-9)
    if len(over):
        highest = float(frame_numbers.max())
        looks_like = _nearest_rate(estimate) if estimate is not None else None
        if looks_like is None or looks_like <= highest:  # too few seconds to see a wrap
            looks_like = float(next((r for r in TIMECODE_RATES if r > highest), math.floor(highest) + 1))
        i = int(over[0])
        reason = (
            f"timecode {texts[i]} has frame {frame_numbers[i]:g}, not below the timecode rate "
            f"{timecode_fps:g}: frame numbers run up to {highest:g}, so the timecode looks like "
            f"{looks_like:g} fps"
        )
        raise _rate_error(path, lines[i], reason, looks_like, timecode_fps)
    if estimate is None or abs(estimate - timecode_fps) <= step / 2:
        return
    looks_like = _nearest_rate(estimate)
    i = first_wrap
    last, first = frame_numbers[i - 1], frame_numbers[i]
    reason = (
        f"timecode frame numbers wrap to 0 after {last:g} ({texts[i - 1]} -> {texts[i]}): "
        f"the timecode looks like {looks_like:g} fps, not {timecode_fps:g} (read at "
        f"{timecode_fps:g} fps the clock would jump {timecode_fps - last + first:g} frames at every second)"
    )
    raise _rate_error(path, lines[i], reason, looks_like, timecode_fps)


def _rate_error(path: Path, line: int, reason: str, looks_like: float, timecode_fps: float) -> TimecodeRateError:
    return TimecodeRateError(
        f"{path}:{line}: {reason}",
        path=str(path),
        line=line,
        reason=reason,
        looks_like_fps=looks_like,
        timecode_fps=timecode_fps,
    )


def _step_within_seconds(seconds: np.ndarray, frame_numbers: np.ndarray) -> float | None:
    """The median frame step between consecutive rows in the same second (None without any)."""
    same = seconds[1:] == seconds[:-1]
    steps = np.diff(frame_numbers)[same]
    steps = steps[steps > 0]
    return float(np.median(steps)) if len(steps) else None


def _wrap_rate(seconds: np.ndarray, frame_numbers: np.ndarray, step: float | None) -> tuple[float | None, int]:
    """(the timecode rate the wraps at second boundaries imply, the row after the first wrap
    that shows it);
    (None, 0) without a step or without two consecutive rows in consecutive seconds."""
    next_second = (seconds[1:] - seconds[:-1]) % _DAY_S == 1  # also 23:59:59 -> 00:00:00
    after = np.flatnonzero(next_second) + 1
    if step is None or not len(after):
        return None, 0
    estimates = frame_numbers[after - 1] - frame_numbers[after] + step
    rate = float(np.median(estimates))
    typical = after[np.abs(estimates - rate) <= step / 2]  # not a boundary with dropped rows
    return rate, int(typical[0] if len(typical) else after[0])


def continuous_frames(
    path: Path, seconds: np.ndarray, frames: np.ndarray, texts: list[str], lines: list[int], timecode_fps: float
) -> np.ndarray:
    """Each row's timecode in frames at ``timecode_fps``, continued past midnight; a row earlier
    than the one before it is an error naming its line."""
    absolute = seconds.astype(np.float64) * timecode_fps + frames
    day = _DAY_S * timecode_fps
    back = np.diff(absolute) < 0
    passes_midnight = back & (-np.diff(absolute) > day / 2)
    if np.any(back & ~passes_midnight):
        i = int(np.flatnonzero(back & ~passes_midnight)[0]) + 1
        raise _fail(path, lines[i], f"timecode {texts[i]} is earlier than the previous row's")
    absolute[1:] += np.cumsum(passes_midnight) * day
    return absolute


# ---------------------------------------------------------------------------- the CSV
@dataclass(frozen=True)
class LiveLinkCapture:
    """A Live Link Face CSV's rows."""

    times: np.ndarray  # float64 [R]: seconds from the first row
    values: np.ndarray  # float64 [R, 52]: blendshapes in ARKit order
    pose: np.ndarray | None  # float64 [R, 9] in POSE_COLUMNS order; None when the CSV lacks them
    lines: list[int]  # the CSV line of each row
    first_row_frames: float  # the first row's timecode in frames at the timecode rate


@dataclass
class _Rows:
    texts: list[str]
    seconds: list[int]
    frames: list[float]
    values: list[list[float]]
    pose: list[list[float]]
    lines: list[int]


def _columns(path: Path, header: list[str]) -> tuple[int, list[int], list[int] | None]:
    """(Timecode column, blendshape columns in ARKit order, pose columns or None)."""
    columns = {h.strip().lower(): j for j, h in enumerate(header)}
    if "timecode" not in columns:
        raise _fail(path, 1, "no Timecode column: not a Live Link Face CSV")
    missing = [n for n in _core.ARKIT_BLENDSHAPES if n.lower() not in columns]
    if missing:
        raise _fail(
            path,
            1,
            f"missing blendshape columns: {', '.join(missing[:6])}"
            + (f" and {len(missing) - 6} more" if len(missing) > 6 else ""),
        )
    blendshapes = [columns[n.lower()] for n in _core.ARKIT_BLENDSHAPES]
    has_pose = all(n.lower() in columns for n in POSE_COLUMNS)
    return columns["timecode"], blendshapes, [columns[n.lower()] for n in POSE_COLUMNS] if has_pose else None


def _numbers(path: Path, line: int, record: list[str], names: Iterable[str], columns: list[int]) -> list[float]:
    values = []
    for name, j in zip(names, columns):
        try:
            v = float(record[j])
        except ValueError:
            raise _fail(path, line, f"{name} is {record[j]!r}, not a number") from None
        if not math.isfinite(v):
            raise _fail(path, line, f"{name} is {record[j]!r}, not a finite number")
        values.append(v)
    return values


def _read_rows(path: Path, reader, header: list[str]) -> tuple[_Rows, bool]:
    """Every data row's fields (blank lines skipped); (rows, whether the CSV has pose columns)."""
    tc_col, value_cols, pose_cols = _columns(path, header)
    rows = _Rows([], [], [], [], [], [])
    for record in reader:
        line = reader.line_num
        if not record or all(not c.strip() for c in record):
            continue
        if len(record) != len(header):
            raise _fail(path, line, f"{len(record)} fields, the header has {len(header)}")
        try:
            second, frame = split_timecode(record[tc_col])
        except ValueError as exc:
            raise _fail(path, line, str(exc)) from None
        rows.texts.append(record[tc_col].strip())
        rows.seconds.append(second)
        rows.frames.append(frame)
        rows.values.append(_numbers(path, line, record, _core.ARKIT_BLENDSHAPES, value_cols))
        if pose_cols is not None:
            rows.pose.append(_numbers(path, line, record, POSE_COLUMNS, pose_cols))
        rows.lines.append(line)
    return rows, pose_cols is not None


def _read_csv(path: Path) -> tuple[_Rows, bool]:
    try:
        handle = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise _fail(path, None, f"cannot read: {exc.strerror or exc}") from exc
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header is None:
                raise _fail(path, None, "empty file (expected a Live Link Face CSV header)")
            rows, has_pose = _read_rows(path, reader, header)
        except csv.Error as exc:
            raise _fail(path, reader.line_num, f"malformed CSV: {exc}") from None
        except UnicodeDecodeError as exc:
            raise _fail(path, None, f"not UTF-8 text: {exc}") from None
    if not rows.lines:
        raise _fail(path, None, "no data rows")
    return rows, has_pose


def read_livelink_csv(path: str | Path, timecode_fps: float) -> LiveLinkCapture:
    """Reads a Live Link Face CSV whose timecode counts frames at ``timecode_fps``; raises
    DataFormatError naming the file and line (TimecodeRateError when the frame numbers show
    another rate)."""
    path = Path(path)
    if not timecode_fps > 0:
        raise ValueError(f"timecode_fps must be positive, got {timecode_fps}")
    rows, has_pose = _read_csv(path)
    seconds = np.asarray(rows.seconds, dtype=np.int64)
    frame_numbers = np.asarray(rows.frames, dtype=np.float64)
    check_timecode_rate(path, seconds, frame_numbers, rows.texts, rows.lines, timecode_fps)
    frames = continuous_frames(path, seconds, frame_numbers, rows.texts, rows.lines, timecode_fps)
    pose = np.asarray(rows.pose, dtype=np.float64) if has_pose else None
    return LiveLinkCapture(
        (frames - frames[0]) / timecode_fps,
        np.asarray(rows.values, dtype=np.float64),
        pose,
        rows.lines,
        float(frames[0]),
    )


# ---------------------------------------------------------------------------- JSONL output
def format_float32(value: float) -> str:
    """The shortest decimal that reads back (float32(float(text))) as the same float32."""
    return np.format_float_positional(np.float32(value), unique=True, trim="-")


def _formatter(values: np.ndarray) -> Callable[[float], str]:
    """Shortest round-trip text for the array's own precision (float32 or float64)."""
    return format_float32 if values.dtype == np.float32 else (lambda v: repr(float(v)))


def write_take_jsonl(
    path: str | Path, timestamps: np.ndarray, values: np.ndarray, pose: np.ndarray | None = None
) -> None:
    """Writes one ``{"timestamp": s, "blendshapes": [52 numbers]}`` line per row (with
    ``"pose": [9 numbers]`` when ``pose`` is given); each number as the shortest decimal of
    its array's precision, so float32 values are not written as 0.00205400004."""
    values = np.asarray(values)
    value_text = _formatter(values)
    pose_text = _formatter(pose) if pose is not None else None
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for k, t in enumerate(np.asarray(timestamps, dtype=np.float64).tolist()):
            line = f'{{"timestamp": {t!r}, "blendshapes": [{",".join(map(value_text, values[k]))}]'
            if pose_text is not None:
                line += f', "pose": [{",".join(map(pose_text, pose[k]))}]'
            f.write(line + "}\n")


# ---------------------------------------------------------------------------- conversion
def start_alignment(audio_offset_s: float) -> tuple[int, int]:
    """(frames at TARGET_FPS to drop from the face, samples at SAMPLE_RATE to drop from the audio)
    so that both start at the same instant, given that the audio's first sample lies
    ``audio_offset_s`` seconds after the first CSV row (negative: before). The face keeps its
    frame grid; the audio absorbs the remainder to the nearest sample."""
    dropped_frames = max(0, math.ceil(audio_offset_s * TARGET_FPS - 1e-9))
    dropped_samples = round((dropped_frames / TARGET_FPS - audio_offset_s) * SAMPLE_RATE)
    return dropped_frames, max(0, dropped_samples)


@dataclass(frozen=True)
class FaceTrack:
    """Blendshapes (and pose) converted to TARGET_FPS."""

    values: np.ndarray  # float32 [F, 52]
    timestamps: np.ndarray  # float64 [F]
    pose: np.ndarray | None  # [F, 9], None when the capture or the core has no pose
    source_fps: float | None

    def __getitem__(self, frames: slice) -> FaceTrack:
        pose = None if self.pose is None else self.pose[frames]
        return FaceTrack(self.values[frames], self.timestamps[frames], pose, self.source_fps)


def convert_fps(capture: LiveLinkCapture, csv_path: Path) -> FaceTrack:
    """The capture at TARGET_FPS by the Rust core's rule: the rows are written at their own rate
    to a temporary JSONL and loaded with the datasets' conversion."""
    with tempfile.TemporaryDirectory(prefix="koemorph-livelink-") as tmp:
        source = Path(tmp) / "source.jsonl"
        write_take_jsonl(source, capture.times, capture.values, capture.pose)
        try:
            values, stamps, source_fps, _rows, pose = _core.load_blendshapes(str(source), float(TARGET_FPS))
        except DataFormatError as exc:
            lines = capture.lines
            line = lines[exc.line - 1] if exc.line is not None and 0 < exc.line <= len(lines) else None
            raise _fail(csv_path, line, exc.reason) from None
    return FaceTrack(values, stamps, pose, source_fps)


@dataclass(frozen=True)
class ImportedTake:
    jsonl: Path
    wav: Path
    frames: int


def _output_paths(csv_path: Path, out_dir: Path, force: bool) -> tuple[Path, Path]:
    jsonl_out, wav_out = out_dir / f"{csv_path.stem}.jsonl", out_dir / f"{csv_path.stem}.wav"
    if not force:
        for existing in (jsonl_out, wav_out):
            if existing.exists():
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(existing))
    return jsonl_out, wav_out


def _common_span(
    face: FaceTrack, audio: np.ndarray, csv_path: Path, audio_path: Path, say: Callable[[str], None]
) -> tuple[FaceTrack, np.ndarray]:
    """Both tracks cut to the frames they share: the audio to exactly cover them."""
    audio_frames = int(_core.frames_covered(len(audio), SAMPLE_RATE, TARGET_FPS, "exact"))
    count = min(len(face.values), audio_frames)
    if count == 0:
        raise ValueError(
            f"{audio_path} and {csv_path} have no common span "
            f"({len(audio) / SAMPLE_RATE:.2f} s of audio, {len(face.values)} frames)"
        )
    samples = -(-count * SAMPLE_RATE // TARGET_FPS)  # ceil: the audio covers exactly `count` frames
    say(
        f"audio: {len(audio) / SAMPLE_RATE:.2f} s mono at {SAMPLE_RATE} Hz; common span {count} frames "
        f"({count / TARGET_FPS:.2f} s; dropped {len(face.values) - count} frames, "
        f"{audio_frames - count} frames of audio)"
    )
    audio = audio[:samples]
    clipped = int(np.count_nonzero(np.abs(audio) > 1.0))
    if clipped:
        say(f"warning: {clipped} audio samples outside [-1, 1] clipped")
        audio = np.clip(audio, -1.0, 1.0)
    return face[:count], audio


def _write_outputs(face: FaceTrack, audio: np.ndarray, jsonl_out: Path, wav_out: Path) -> None:
    """Writes both files under temporary names and renames them, so a failure leaves neither half-written."""
    jsonl_out.parent.mkdir(parents=True, exist_ok=True)
    tmp_jsonl = jsonl_out.with_name(f".{jsonl_out.name}.partial")
    tmp_wav = wav_out.with_name(f".{wav_out.name}.partial")
    try:
        write_take_jsonl(tmp_jsonl, face.timestamps - face.timestamps[0], face.values, face.pose)
        sf.write(str(tmp_wav), audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
        os.replace(tmp_jsonl, jsonl_out)
        os.replace(tmp_wav, wav_out)
    finally:
        for leftover in (tmp_jsonl, tmp_wav):
            if leftover.exists():
                leftover.unlink()


def convert_take(
    csv_path: str | Path,
    audio_path: str | Path,
    out_dir: str | Path,
    *,
    timecode_fps: float = 60.0,
    audio_offset: float | None = None,
    audio_start: str | None = None,
    force: bool = False,
    log: Callable[[str], None] | None = None,
) -> ImportedTake:
    """Writes ``out_dir/<csv stem>.jsonl`` and ``.wav`` from a Live Link Face CSV and its audio.

    :param timecode_fps: the rate the timecode's FF field counts at.
    :param audio_offset: seconds from the first CSV row to the audio's first sample (default 0).
    :param audio_start: the audio's first sample as a timecode on the CSV's clock (instead of
        ``audio_offset``).
    :param force: overwrite existing outputs (else FileExistsError).
    :param log: called with one progress message at a time.
    """
    csv_path, audio_path, out_dir = Path(csv_path), Path(audio_path), Path(out_dir)
    say = log or (lambda message: None)
    if audio_offset is not None and not math.isfinite(audio_offset):
        raise ValueError(f"audio_offset must be a finite number of seconds, got {audio_offset}")
    jsonl_out, wav_out = _output_paths(csv_path, out_dir, force)
    capture = read_livelink_csv(csv_path, timecode_fps)
    say(
        f"read {len(capture.times)} rows spanning {capture.times[-1]:.2f} s from {csv_path}"
        + ("" if capture.pose is not None else " (no head/eye rotation columns)")
    )
    if audio_start is not None:
        audio_offset = audio_start_offset(audio_start, capture.first_row_frames, timecode_fps)
    face = convert_fps(capture, csv_path)
    say(f"blendshapes: {face.source_fps or 0:.2f} fps -> {len(face.values)} frames at {TARGET_FPS} fps")
    audio = load_audio(audio_path, SAMPLE_RATE)
    skip_frames, skip_samples = start_alignment(audio_offset or 0.0)
    if skip_frames or skip_samples:
        say(
            f"audio starts {audio_offset:+.4f} s from the first row: dropped {skip_frames} frames of "
            f"blendshapes and {skip_samples} samples of audio to start both together"
        )
        face, audio = face[skip_frames:], audio[skip_samples:]
    face, audio = _common_span(face, audio, csv_path, audio_path, say)
    _write_outputs(face, audio, jsonl_out, wav_out)
    return ImportedTake(jsonl_out, wav_out, len(face.values))
