"""koemorph-data: Rust-accelerated PyTorch data loading for voice-to-blendshape models."""

from __future__ import annotations

from pathlib import Path

from ._core import __version__
from .blendshapes import ARKIT_BLENDSHAPES, KOEMORPH_BLENDSHAPES, POSE_NAMES, read_blendshapes
from .dataset import AdaptiveSequentialDataset, SequentialKoeMorphDataset
from .errors import DataFormatError
from .plan import EpochPlan

#: The small real-speech sample dataset shipped inside the package.
SAMPLE_DATA_DIR = Path(__file__).parent / "sample_data"

__all__ = [
    "ARKIT_BLENDSHAPES",
    "AdaptiveSequentialDataset",
    "DataFormatError",
    "EpochPlan",
    "KOEMORPH_BLENDSHAPES",
    "POSE_NAMES",
    "SAMPLE_DATA_DIR",
    "SequentialKoeMorphDataset",
    "__version__",
    "read_blendshapes",
]
