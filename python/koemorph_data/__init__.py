"""koemorph-data: Rust-accelerated PyTorch data loading for voice-to-blendshape models."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import _core
from .dataset import AdaptiveSequentialDataset, EpochPlan, SequentialKoeMorphDataset
from .errors import DataFormatError

__version__ = "0.1.0"

#: The 52 ARKit blendshape names in ARKit / Live Link Face order (jawOpen is index 17).
ARKIT_BLENDSHAPES: tuple[str, ...] = tuple(_core.ARKIT_BLENDSHAPES)

#: The small real-speech sample dataset shipped inside the package.
SAMPLE_DATA_DIR = Path(__file__).parent / "sample_data"


def read_blendshapes(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A blendshape JSONL file's rows as they are, parsed by the Rust core without the GIL:
    ``(values float32 [T, 52] C-contiguous, timestamps float64 [T])``. No fps conversion.
    Raises DataFormatError naming the file and 1-based line."""
    return _core.read_blendshapes(str(path))


__all__ = [
    "ARKIT_BLENDSHAPES",
    "AdaptiveSequentialDataset",
    "DataFormatError",
    "EpochPlan",
    "SAMPLE_DATA_DIR",
    "SequentialKoeMorphDataset",
    "read_blendshapes",
]
