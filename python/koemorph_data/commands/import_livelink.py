"""``koemorph-data import-livelink TAKE.csv --audio AUDIO --out DIR [--timecode-fps 60]``.

Converts a Live Link Face (iPhone) CSV and its audio into a take with
:func:`koemorph_data.livelink.convert_take` (see that module for the format): ``DIR/<stem>.jsonl``
at 30 fps and ``DIR/<stem>.wav``, mono 16 kHz, trimmed to their common span. The audio is
taken to start at the first row unless ``--audio-offset`` or ``--audio-start`` says where.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import UserError
from ..livelink import TARGET_FPS, TimecodeRateError, convert_take, timecode_frames
from .common import finite_float, positive_float


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("csv", type=Path, help="Live Link Face CSV (TAKE.csv)")
    parser.add_argument("--audio", type=Path, required=True, help="the take's audio (any file soundfile reads)")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument(
        "--timecode-fps", type=positive_float, default=60.0, help="frame rate of the timecode's FF field (default 60)"
    )
    start = parser.add_mutually_exclusive_group()
    start.add_argument(
        "--audio-offset",
        type=finite_float,
        default=None,
        metavar="SECONDS",
        help="the audio's first sample lies this many seconds after the CSV's first row "
        "(negative: before it); default 0",
    )
    start.add_argument(
        "--audio-start",
        default=None,
        metavar="TIMECODE",
        help="the audio's first sample as a timecode HH:MM:SS:FF.fff on the CSV's clock "
        "(e.g. the start timecode of the recording's .mov)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite existing output files")


def run(args: argparse.Namespace) -> int:
    for path in (args.csv, args.audio):
        if not path.is_file():
            raise UserError(f"{path} not found")
    if args.audio_start is not None:
        try:
            timecode_frames(args.audio_start, args.timecode_fps)
        except ValueError as exc:
            raise UserError(f"--audio-start: {exc}") from None

    def say(message: str) -> None:
        print(f"import-livelink: {message}", file=sys.stderr, flush=True)

    try:
        take = convert_take(
            args.csv,
            args.audio,
            args.out,
            timecode_fps=args.timecode_fps,
            audio_offset=args.audio_offset,
            audio_start=args.audio_start,
            force=args.force,
            log=say,
        )
    except TimecodeRateError as exc:
        raise UserError(f"{exc}; pass --timecode-fps {exc.looks_like_fps:g}") from None
    except FileExistsError as exc:
        raise UserError(f"{exc.filename} exists; pass --force to overwrite") from None
    print(
        f"wrote {take.jsonl} and {take.wav}: {take.frames} frames at {TARGET_FPS} fps "
        f"({take.frames / TARGET_FPS:.2f} s)"
    )
    return 0
