"""How blendshape frames map to audio samples: the one definition of hop length and alignment."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _core

ALIGNMENTS = ("exact", "hop")


@dataclass(frozen=True)
class Timing:
    """Audio rate, blendshape rate and the alignment rule between them.

    ``"exact"``: frame f starts at sample ``floor(f * sample_rate / target_fps)`` (computed in
    integers, no drift); ``"hop"``: at ``f * hop_length`` (the original design's rule, and KoeMorph's).
    """

    sample_rate: int
    target_fps: int
    alignment: str = "exact"

    def __post_init__(self) -> None:
        if self.alignment not in ALIGNMENTS:
            raise ValueError(f"alignment must be 'exact' or 'hop', got {self.alignment!r}")

    @property
    def hop_length(self) -> int:
        """Audio samples per blendshape frame, rounded down (533 at 16 kHz / 30 fps)."""
        return self.sample_rate // self.target_fps

    def window_samples(self, window_frames: int) -> int:
        """Audio samples of a window of ``window_frames`` frames."""
        return window_frames * self.hop_length

    def frames_to_samples(self, frames: np.ndarray) -> np.ndarray:
        """The first audio sample of each frame (int64)."""
        return _core.frames_to_samples(
            np.asarray(frames, dtype=np.int64), self.sample_rate, self.target_fps, self.alignment
        )

    def frame_to_sample(self, frame: int) -> int:
        return int(self.frames_to_samples(np.array([frame], dtype=np.int64))[0])

    def frames_covered(self, samples: int) -> int:
        """Frames whose audio lies entirely within ``samples`` samples."""
        return int(_core.frames_covered(samples, self.sample_rate, self.target_fps, self.alignment))

    def frames_covered_each(self, samples: np.ndarray) -> np.ndarray:
        """``frames_covered`` of every element (uint64)."""
        return _core.frames_covered_each(
            np.asarray(samples, dtype=np.uint64), self.sample_rate, self.target_fps, self.alignment
        )
