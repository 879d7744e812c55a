"""Blendshape names and orders, and the typed facade over the Rust JSONL parser.

Every array this package returns is in ``ARKIT_BLENDSHAPES`` order (Live Link Face's). A
file whose rows are positional arrays in another order says so with ``blendshape_order``:
``"live_link"`` (default), ``"koemorph"`` (KoeMorph's list: jawLeft before jawRight and
mouthLeft before mouthRight) or the 52 names in the file's order; the Rust parser reorders
the columns while reading. Name-keyed rows (``{"JawOpen": 0.3, ...}``) ignore the order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import _core
from .errors import DataFormatError

#: The 52 ARKit blendshape names in Live Link Face's order (jawOpen is index 17, mouthRight
#: 21, mouthLeft 22); every array this package returns is in this order.
ARKIT_BLENDSHAPES: tuple[str, ...] = tuple(_core.ARKIT_BLENDSHAPES)

#: KoeMorph's positional order (its ``src/model/dual_stream_attention.py``).
KOEMORPH_BLENDSHAPES: tuple[str, ...] = tuple(_core.KOEMORPH_BLENDSHAPES)

#: Live Link Face's 9 head and eye rotation columns, the order of a row's ``"pose"``.
POSE_NAMES: tuple[str, ...] = tuple(_core.POSE_NAMES)

TIMESTAMP_UNITS = ("s", "ms", "us")

BlendshapeOrder = str | Sequence[str]


def blendshape_permutation(order: BlendshapeOrder | None) -> tuple[int, ...]:
    """``perm`` with file column j = ``ARKIT_BLENDSHAPES[perm[j]]``; ValueError naming the
    missing, repeated and unknown names of an order that is not the 52 names once each."""
    return tuple(_core.resolve_blendshape_order("live_link" if order is None else order))


@dataclass(frozen=True)
class LabelFormat:
    """How a take's JSONL is read: positional column order, timestamp unit, and whether the
    head/eye pose is required."""

    blendshape_order: BlendshapeOrder = "live_link"
    timestamp_unit: str = "s"
    pose: bool = False

    def __post_init__(self) -> None:
        if self.timestamp_unit not in TIMESTAMP_UNITS:
            raise ValueError(f"timestamp_unit must be one of {TIMESTAMP_UNITS}, got {self.timestamp_unit!r}")
        order = self.blendshape_order
        if not isinstance(order, str):
            object.__setattr__(self, "blendshape_order", tuple(order))  # hashable, picklable
        blendshape_permutation(self.blendshape_order)  # ValueError now, before any file is read

    @property
    def cache_key(self) -> list[Any]:
        """What identifies this reading of a file in the prepared cache (pose is stored when
        present, whatever ``pose`` says, so it is not part of the key)."""
        perm = list(blendshape_permutation(self.blendshape_order))
        return [None if perm == list(range(len(perm))) else perm, self.timestamp_unit]

    def load(self, path: str | Path, target_fps: float) -> tuple[np.ndarray, float | None, int, np.ndarray | None]:
        """(values float32 [F, 52], detected source fps, source rows, pose float32 [F, 9] or None)
        at ``target_fps`` (whether pose is required is checked by ``check_pose``)."""
        values, _timestamps, source_fps, rows, pose = _core.load_blendshapes(
            str(path), float(target_fps), self.blendshape_order, self.timestamp_unit
        )
        return values, source_fps, rows, pose

    def load_bytes(
        self, data: bytes, name: str, target_fps: float
    ) -> tuple[np.ndarray, float | None, int, np.ndarray | None]:
        """``load`` of a fetched document; errors name ``name`` (its URL) and the line."""
        values, _timestamps, source_fps, rows, pose = _core.load_blendshapes_bytes(
            data, name, float(target_fps), self.blendshape_order, self.timestamp_unit
        )
        return values, source_fps, rows, pose

    def check_pose(self, path: str | Path, has_pose: bool) -> None:
        """DataFormatError naming the file when ``pose`` is required and the file has none."""
        if self.pose and not has_pose:
            reason = 'no head/eye pose (pose=True needs "pose": [9 numbers] or HeadYaw... on every row)'
            raise DataFormatError(f"{path}: {reason}", path=str(path), reason=reason)


def read_blendshapes(
    path: str | Path, blendshape_order: BlendshapeOrder = "live_link", timestamp_unit: str = "s", pose: bool = False
) -> tuple[np.ndarray, ...]:
    """A blendshape JSONL file's rows as they are, parsed by the Rust core without the GIL.

    :param path: the ``.jsonl`` file.
    :param blendshape_order: column order of positional rows: ``"live_link"``, ``"koemorph"``
        or the 52 names (case-insensitive, each once); the result is in ARKIT_BLENDSHAPES order.
    :param timestamp_unit: unit of the file's timestamps: ``"s"``, ``"ms"`` or ``"us"``
        (returned in seconds).
    :param pose: also return the head/eye pose (a file without one is a DataFormatError).
    :returns: ``(values float32 [T, 52] C-contiguous, timestamps float64 [T])``, plus
        ``pose float32 [T, 9]`` with ``pose=True``; no fps conversion.
    :raises DataFormatError: naming the file and 1-based line.
    """
    labels = LabelFormat(blendshape_order, timestamp_unit, pose)
    values, timestamps, pose_values = _core.read_blendshapes(str(path), labels.blendshape_order, timestamp_unit)
    if not pose:
        return values, timestamps
    labels.check_pose(path, pose_values is not None)
    return values, timestamps, pose_values
