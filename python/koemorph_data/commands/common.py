"""What several commands share: option types, the dataset options, where takes are stored
(``--storage-options``), the progress bar."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from ..blendshapes import TIMESTAMP_UNITS, BlendshapeOrder, LabelFormat, blendshape_permutation
from ..errors import UserError
from ..storage import TakeSource, is_remote, open_root


def positive_int(text: str) -> int:
    """argparse type: an integer above 0 (anything else is a usage error, exit status 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number above 0."""
    value = _finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number, 0 or more."""
    value = _finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def finite_float(text: str) -> float:
    """argparse type: any finite number."""
    return _finite_float(text)


def add_dataset_options(parser: argparse.ArgumentParser) -> None:
    """The options that choose the view a dataset gives of the takes (one line per option, so
    every command reading takes offers the same ones)."""
    parser.add_argument("--sample-rate", type=positive_int, default=16000, help="dataset sample_rate (default 16000)")
    parser.add_argument("--fps", type=positive_int, default=30, help="dataset target_fps (default 30)")
    parser.add_argument(
        "--blendshape-order",
        type=_blendshape_order,
        default="live_link",
        metavar="ORDER",
        help="column order of positional blendshape arrays: live_link (default), koemorph, "
        "or the 52 names separated by commas",
    )
    parser.add_argument(
        "--timestamp-unit", choices=TIMESTAMP_UNITS, default="s", help="unit of the JSONL timestamps (default s)"
    )


def _blendshape_order(text: str) -> BlendshapeOrder:
    """argparse type: a preset name or a comma-separated list of the 52 names, checked now."""
    order: BlendshapeOrder = text if "," not in text else [name.strip() for name in text.split(",")]
    try:
        blendshape_permutation(order)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return order


def label_format(args: argparse.Namespace) -> LabelFormat:
    """How the command reads the takes' JSONL (from ``add_dataset_options``' options)."""
    return LabelFormat(args.blendshape_order, args.timestamp_unit)


def _json_object(text: str) -> dict[str, Any]:
    """argparse type: a JSON object."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def add_storage_options(parser: argparse.ArgumentParser) -> None:
    """``--storage-options JSON``: fsspec options for data in object storage (a URL argument)."""
    parser.add_argument(
        "--storage-options",
        type=_json_object,
        default=None,
        metavar="JSON",
        help="fsspec options for a URL, as a JSON object (e.g. '{\"anon\": true}', or "
        '\'{"client_kwargs": {"endpoint_url": "http://host:9000"}, "key": "...", "secret": "..."}\')',
    )


def take_source(location: str, args: argparse.Namespace) -> TakeSource:
    """The takes under a directory or URL given on the command line (``--storage-options`` for a
    URL); a local path that is not a directory is a UserError."""
    if not is_remote(location):
        local = Path(location[len("file://") :] if location.startswith("file://") else location)
        if not local.is_dir():
            raise UserError(f"{location} is not a directory")
    return open_root(location, getattr(args, "storage_options", None))


class TakeProgress:
    """A tqdm bar on stderr while a command works through takes, drawn only when stderr is a
    terminal (stdout stays clean for ``--json``; logs get no bar), and one plain line when it
    closes: ``COMMAND: 12/340 takes in 3.1 s``."""

    def __init__(self, command: str, total: int, *, stream: TextIO | None = None) -> None:
        self.command, self.total = command, total
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self.closed = False
        self.started = time.perf_counter()
        terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self.bar = tqdm(
            total=total,
            desc=command,
            unit="take",
            file=self.stream,
            disable=not terminal,
            leave=False,
            dynamic_ncols=True,
        )

    def step(self, label: str = "") -> None:
        self.done += 1
        self.bar.set_postfix_str(label, refresh=False)
        self.bar.update(1)

    def close(self, note: str = "") -> None:
        """Removes the bar and prints the final line (once)."""
        if self.closed:
            return
        self.closed = True
        self.bar.close()
        elapsed = time.perf_counter() - self.started
        self.stream.write(f"{self.command}: {self.done}/{self.total} takes in {elapsed:.1f} s{note}\n")
        self.stream.flush()

    def __enter__(self) -> TakeProgress:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
