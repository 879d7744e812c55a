"""Audio loading: soundfile decoding, mono down-mix and soxr resampling (no librosa)."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

from . import _core
from .errors import DataFormatError


@dataclass(frozen=True)
class AudioInfo:
    path: Path
    sample_rate: int  # the file's own rate
    channels: int
    frames: int  # samples per channel in the file
    length: int  # samples after resampling to the dataset's rate

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def audio_info(path: str | Path, sample_rate: int, *, file: BinaryIO | None = None) -> AudioInfo:
    """Reads only the header; ``length`` follows soxr's rounding of the resampled length.
    With ``file`` (an open binary file, e.g. a remote object) the header is read from it and
    ``path`` only names it."""
    name = os.fspath(path)  # as given: a URL keeps its "//"
    try:
        info = sf.info(file if file is not None else name)
    except Exception as exc:  # soundfile raises LibsndfileError/RuntimeError/TypeError
        raise DataFormatError(f"{name}: unreadable audio: {exc}", path=name, reason=f"unreadable audio: {exc}") from exc
    if info.samplerate <= 0 or info.channels <= 0:
        raise DataFormatError(f"{name}: invalid audio header", path=name, reason="invalid audio header")
    if info.frames <= 0:
        raise DataFormatError(f"{name}: audio has no samples", path=name, reason="audio has no samples")
    length = _core.resampled_length(info.frames, info.samplerate, sample_rate)
    return AudioInfo(Path(path), info.samplerate, info.channels, info.frames, length)


def load_audio(path: str | Path, sample_rate: int, *, data: bytes | None = None) -> np.ndarray:
    """Decodes a file to float32 mono at ``sample_rate`` (channels averaged, soxr "HQ"); with
    ``data`` (the file's fetched bytes) those are decoded and ``path`` only names them."""
    name = os.fspath(path)
    try:
        source = io.BytesIO(data) if data is not None else name
        samples, rate = sf.read(source, dtype="float32", always_2d=True)
    except Exception as exc:
        raise DataFormatError(f"{name}: unreadable audio: {exc}", path=name, reason=f"unreadable audio: {exc}") from exc
    mono = samples[:, 0] if samples.shape[1] == 1 else samples.mean(axis=1, dtype=np.float32)
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)
