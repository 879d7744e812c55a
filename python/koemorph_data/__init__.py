"""koemorph-data: Rust-accelerated PyTorch data loading for voice-to-blendshape models."""

from __future__ import annotations

from pathlib import Path

from .blendshapes import ARKIT_BLENDSHAPES, read_blendshapes
from .dataset import AdaptiveSequentialDataset, SequentialKoeMorphDataset
from .errors import DataFormatError
from .sampling import EpochPlan

__version__ = "0.1.0"

#: The small real-speech sample dataset shipped inside the package.
SAMPLE_DATA_DIR = Path(__file__).parent / "sample_data"

__all__ = [
    "ARKIT_BLENDSHAPES",
    "AdaptiveSequentialDataset",
    "DataFormatError",
    "EpochPlan",
    "SAMPLE_DATA_DIR",
    "SequentialKoeMorphDataset",
    "read_blendshapes",
]
