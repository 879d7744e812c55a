"""Is a take in sync? The audio's loudness envelope against jawOpen, over a range of lags.

Speech opens the jaw as it gets loud, so the lag at which jawOpen correlates best with the
loudness envelope (RMS per blendshape frame) estimates how far the face is shifted against
the sound. A positive lag means the face is late: the blendshapes move that many frames
after the sound. ``koemorph-data plot`` draws this and ``koemorph-data inspect`` reports it
for every take; both use :func:`audio_face_lag`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _core

#: The blendshape compared with the loudness envelope.
SYNC_BLENDSHAPE = "jawOpen"


def loudness_envelope(audio: np.ndarray, sample_rate: int, fps: float, frames: int | None = None) -> np.ndarray:
    """RMS of each frame's samples, frame k = samples floor(k*sr/fps) .. floor((k+1)*sr/fps)."""
    audio = np.asarray(audio, dtype=np.float64)
    if frames is None:
        frames = int(len(audio) * fps // sample_rate)
    edges = np.minimum(np.floor(np.arange(frames + 1) * (sample_rate / fps)).astype(np.int64), len(audio))
    cumulative = np.concatenate(([0.0], np.cumsum(audio * audio)))
    counts = edges[1:] - edges[:-1]
    energy = cumulative[edges[1:]] - cumulative[edges[:-1]]
    return np.sqrt(np.where(counts > 0, energy / np.maximum(counts, 1), 0.0))


def lag_correlation(envelope: np.ndarray, track: np.ndarray, max_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """(lags, Pearson r of envelope[t] with track[t + lag]) for lag in -max_lag..max_lag
    (NaN where either side is constant)."""
    n = min(len(envelope), len(track))
    envelope = np.asarray(envelope[:n], dtype=np.float64)
    track = np.asarray(track[:n], dtype=np.float64)
    max_lag = max(0, min(int(max_lag), n - 2))
    lags = np.arange(-max_lag, max_lag + 1)
    corr = np.full(len(lags), np.nan)
    for j, lag in enumerate(lags):
        a = envelope[max(0, -lag) : n - max(0, lag)]
        b = track[max(0, lag) : n + min(0, lag)]
        if len(a) >= 2 and a.std() > 0 and b.std() > 0:
            corr[j] = float(np.corrcoef(a, b)[0, 1])
    return lags, corr


def strongest_lag(lags: np.ndarray, corr: np.ndarray) -> tuple[int, float]:
    """The lag of the highest correlation in ``lag_correlation``'s result and that r
    (0 and NaN when no lag has a correlation)."""
    if np.all(np.isnan(corr)):
        return 0, float("nan")
    j = int(np.nanargmax(corr))
    return int(lags[j]), float(corr[j])


def best_lag(envelope: np.ndarray, track: np.ndarray, max_lag: int) -> tuple[int, float]:
    """The lag (frames; positive = track late) with the highest correlation, and that r."""
    return strongest_lag(*lag_correlation(envelope, track, max_lag))


@dataclass(frozen=True)
class SyncEstimate:
    """How a take's face lines up with its sound (see the module docstring)."""

    lag_frames: int  # positive: the face is late
    r: float  # correlation at that lag; NaN when audio or jawOpen is constant
    frames: int  # frames compared (audio and blendshapes both present)
    lags: np.ndarray  # every lag tried, -max_lag..max_lag
    correlation: np.ndarray  # r at each of them
    envelope: np.ndarray  # loudness of each of the ``frames`` frames

    def is_suspicious(self, min_lag: int = 2, min_r: float = 0.5) -> bool:
        """A clear correlation peak (r >= min_r) at least ``min_lag`` frames away from 0."""
        return abs(self.lag_frames) >= min_lag and bool(self.r >= min_r)


def audio_face_lag(
    audio: np.ndarray, sample_rate: int, blendshapes: np.ndarray, fps: int, max_lag_frames: int
) -> SyncEstimate:
    """Correlates the loudness of ``audio`` (mono at ``sample_rate``) with the jawOpen column of
    ``blendshapes`` ([F, 52] at ``fps``, frame k starting at sample floor(k * sr / fps)) for lags
    within ``max_lag_frames``, over the frames both cover."""
    covered = int(_core.frames_covered(len(audio), sample_rate, fps, "exact"))
    frames = min(len(blendshapes), covered)
    envelope = loudness_envelope(audio, sample_rate, fps, frames)
    jaw = np.asarray(blendshapes)[:frames, _core.ARKIT_BLENDSHAPES.index(SYNC_BLENDSHAPE)]
    lags, corr = lag_correlation(envelope, jaw, max_lag_frames)
    lag, r = strongest_lag(lags, corr)
    return SyncEstimate(lag, r, frames, lags, corr, envelope)
