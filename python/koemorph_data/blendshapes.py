"""Blendshape names and the typed facade over the Rust JSONL parser."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import _core

#: The 52 ARKit blendshape names in ARKit / Live Link Face order (jawOpen is index 17).
ARKIT_BLENDSHAPES: tuple[str, ...] = tuple(_core.ARKIT_BLENDSHAPES)


def read_blendshapes(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A blendshape JSONL file's rows as they are, parsed by the Rust core without the GIL.

    :param path: the ``.jsonl`` file.
    :returns: ``(values float32 [T, 52] C-contiguous, timestamps float64 [T])``; no fps conversion.
    :raises DataFormatError: naming the file and 1-based line.
    """
    return _core.read_blendshapes(str(path))
