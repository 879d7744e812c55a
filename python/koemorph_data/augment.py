"""Seeded, composable window augmentation that keeps audio and blendshapes in sync.

Pass a description as ``augment=`` to either dataset::

    from koemorph_data.augment import Augment, Gain, PinkNoise, PitchShift, SpeedPerturb, WhiteNoise

    augment = Augment([
        SpeedPerturb(factors=(0.9, 1.1), p=0.5),  # audio resampled, blendshapes time-interpolated
        PitchShift(semitones=(-2, 2), p=0.3),     # tempo kept, blendshapes unchanged
        Gain(db=(-6, 6)),
        WhiteNoise(snr_db=(10, 30), p=0.5),
        PinkNoise(snr_db=(10, 30), p=0.2),
    ], seed=1)
    dataset = SequentialKoeMorphDataset(root, augment=augment)

The same description as plain data (e.g. from a YAML config)::

    augment = {"seed": 1, "transforms": [
        {"type": "speed", "factors": [0.9, 1.1], "p": 0.5},
        {"type": "pitch", "semitones": [-2, 2], "p": 0.3},
        {"type": "gain", "db": [-6, 6]},
        {"type": "white_noise", "snr_db": [10, 30], "p": 0.5},
        {"type": "pink_noise", "snr_db": [10, 30], "p": 0.2},
    ]}

A bare list of transforms (objects or dicts) works too; it then uses the dataset's ``seed``,
as does ``Augment(..., seed=None)``.

Rules:

* Every range is ``(low, high)``, drawn uniformly; ``low == high`` gives a constant. ``p`` is
  the probability that the transform is applied to a window (default 1).
* The draw for a window is a pure function of (augment seed, epoch, plan index): each
  transform gets its own generator from ``numpy.random.SeedSequence([seed, epoch, index])``,
  so the same seed and epoch give the same augmented windows with any number of DataLoader
  workers, any rank split and after resuming; a new epoch gives new draws.
* ``SpeedPerturb`` acts first, wherever it is listed, because it decides which part of the
  take a window covers: with factor f the window plays f times its duration of the take,
  starting at its start frame. The audio of that span is resampled with soxr ("HQ") to the
  window length, and the blendshape track is linearly interpolated at the same time points
  (output frame k = take frame start + f * k), so audio and face stay in sync. A speed-up that
  would run past the end of the take is reduced to what the take has left (never below 1), so
  nothing is padded. ``file_indices`` / ``start_frames`` still name the window's first frame.
* The other transforms act on the window's audio in list order; blendshapes are unchanged.
  Noise is scaled so that 10*log10(P_signal / P_noise) equals the drawn SNR, with powers
  measured over the window (a silent window gets no noise). Gain multiplies by
  ``float32(10 ** (dB / 20))`` and does not clip. ``PitchShift`` keeps the length and tempo:
  the audio is time-stretched by a phase vocoder (numpy STFT) and resampled back with soxr.
* Shapes and dtypes do not change: audio float32 [window_samples], blendshapes float32
  [window_frames, 52].
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import soxr

__all__ = [
    "Augment",
    "Gain",
    "PinkNoise",
    "PitchShift",
    "SpeedPerturb",
    "Transform",
    "WhiteNoise",
    "as_augment",
    "pitch_shift",
    "speed_window",
    "time_stretch",
]


def _range(name: str, value: Any, *, positive: bool = False) -> tuple[float, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value, value)
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a number or a (low, high) pair, got {value!r}") from exc
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ValueError(f"{name} must be a finite (low, high) pair with low <= high, got {value!r}")
    if positive and low <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return low, high


def _probability(p: Any) -> float:
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    return p


class Transform:
    """One augmentation step: ``draw`` takes a fixed number of draws from its generator and
    returns its parameter (None when not applied this time)."""

    name = "transform"
    param = "value"

    def __init__(self, value_range: tuple[float, float], p: float) -> None:
        self.range = value_range
        self.p = _probability(p)

    def draw(self, rng: np.random.Generator) -> float | None:
        applied = rng.random() < self.p
        value = float(rng.uniform(self.range[0], self.range[1])) if self.range[0] < self.range[1] else self.range[0]
        return value if applied else None

    def apply_audio(self, audio: np.ndarray, value: float, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.name, self.param: list(self.range), "p": self.p}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.param}={self.range}, p={self.p})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.to_dict() == self.to_dict()


class _Noise(Transform):
    param = "snr_db"

    def __init__(self, snr_db: Any = (10.0, 30.0), p: float = 1.0) -> None:
        super().__init__(_range("snr_db", snr_db), p)

    def _noise(self, n: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def apply_audio(self, audio, value, rng, sample_rate):
        signal_power = float(np.mean(np.square(audio, dtype=np.float64))) if len(audio) else 0.0
        noise = self._noise(len(audio), rng)
        noise_power = float(np.mean(np.square(noise))) if len(noise) else 0.0
        if signal_power <= 0.0 or noise_power <= 0.0:
            return audio
        noise *= math.sqrt(signal_power / (10.0 ** (value / 10.0)) / noise_power)
        return (audio + noise).astype(np.float32)


class WhiteNoise(_Noise):
    """Additive white Gaussian noise at an SNR (dB) drawn from ``snr_db``."""

    name = "white_noise"

    def _noise(self, n, rng):
        return rng.standard_normal(n)


class PinkNoise(_Noise):
    """Additive pink (1/f power) noise at an SNR (dB) drawn from ``snr_db``."""

    name = "pink_noise"

    def _noise(self, n, rng):
        if n < 2:
            return rng.standard_normal(n)
        spectrum = np.fft.rfft(rng.standard_normal(n))
        spectrum[0] = 0.0
        spectrum[1:] /= np.sqrt(np.arange(1, len(spectrum)))
        return np.fft.irfft(spectrum, n=n)


class Gain(Transform):
    """Multiplies the audio by ``10 ** (dB / 20)`` (as float32), dB drawn from ``db``; no clipping."""

    name = "gain"
    param = "db"

    def __init__(self, db: Any = (-6.0, 6.0), p: float = 1.0) -> None:
        super().__init__(_range("db", db), p)

    def apply_audio(self, audio, value, rng, sample_rate):
        return audio * np.float32(10.0 ** (value / 20.0))


class PitchShift(Transform):
    """Shifts the pitch by ``semitones`` (drawn) keeping length and tempo; blendshapes unchanged."""

    name = "pitch"
    param = "semitones"

    def __init__(self, semitones: Any = (-2.0, 2.0), p: float = 1.0) -> None:
        super().__init__(_range("semitones", semitones), p)

    def apply_audio(self, audio, value, rng, sample_rate):
        return pitch_shift(audio, sample_rate, value)


class SpeedPerturb(Transform):
    """Plays the window at ``factor`` times the speed (drawn from ``factors``): audio resampled,
    blendshapes time-interpolated by the same factor (both stay in sync)."""

    name = "speed"
    param = "factors"

    def __init__(self, factors: Any = (0.9, 1.1), p: float = 1.0) -> None:
        super().__init__(_range("factors", factors, positive=True), p)
        if self.range[0] < 0.25 or self.range[1] > 4.0:
            raise ValueError(f"factors must lie within [0.25, 4], got {factors!r}")


_TYPES: dict[str, type[Transform]] = {cls.name: cls for cls in (WhiteNoise, PinkNoise, Gain, PitchShift, SpeedPerturb)}
_TYPES.update({cls.__name__: cls for cls in list(_TYPES.values())})


def _transform(spec: Any) -> Transform:
    if isinstance(spec, Transform):
        return spec
    if isinstance(spec, Mapping):
        kwargs = dict(spec)
        kind = kwargs.pop("type", None)
        cls = _TYPES.get(kind) if isinstance(kind, str) else None
        if cls is None:
            raise ValueError(
                f"unknown augmentation type {kind!r}; expected one of {sorted(k for k in _TYPES if k.islower())}"
            )
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ValueError(f"bad arguments for augmentation {kind!r}: {exc}") from exc
    raise TypeError(f"an augmentation step must be a Transform or a dict with 'type', got {spec!r}")


@dataclass(frozen=True)
class _Draw:
    transform: Transform
    value: float | None
    rng: np.random.Generator


class Augment:
    """A seeded list of transforms (see the module documentation for the rules)."""

    def __init__(self, transforms: Iterable[Any], seed: int | None = 0) -> None:
        self.transforms: list[Transform] = [_transform(t) for t in transforms]
        if sum(isinstance(t, SpeedPerturb) for t in self.transforms) > 1:
            raise ValueError("at most one SpeedPerturb per Augment")
        if seed is not None and (not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
        self.seed = None if seed is None else int(seed)

    @classmethod
    def from_config(cls, config: Any, seed: int | None = None) -> Augment:
        """From ``{"seed": ..., "transforms": [...]}`` or a list of transforms / dicts."""
        if isinstance(config, Mapping):
            unknown = set(config) - {"seed", "transforms"}
            if unknown or "transforms" not in config:
                raise ValueError(f"an augment dict has keys 'transforms' and optionally 'seed', got {sorted(config)}")
            return cls(config["transforms"], seed=config.get("seed", seed))
        if isinstance(config, (str, bytes)) or not isinstance(config, Iterable):
            raise TypeError(f"augment must be an Augment, a list of transforms or a dict, got {config!r}")
        return cls(config, seed=seed)

    def to_config(self) -> dict[str, Any]:
        return {"seed": self.seed, "transforms": [t.to_dict() for t in self.transforms]}

    def __repr__(self) -> str:
        return f"Augment({self.transforms!r}, seed={self.seed})"

    # ------------------------------------------------------------------ draws
    def _draws(self, epoch: int, index: int, default_seed: int) -> list[_Draw]:
        seed = self.seed if self.seed is not None else int(default_seed)
        children = np.random.SeedSequence([seed, int(epoch), int(index)]).spawn(len(self.transforms))
        draws = []
        for transform, child in zip(self.transforms, children):
            rng = np.random.default_rng(child)
            draws.append(_Draw(transform, transform.draw(rng), rng))
        return draws

    def params(self, epoch: int, index: int, default_seed: int = 0) -> list[tuple[str, float | None]]:
        """(transform name, drawn value or None if not applied) for a window, in list order."""
        return [(d.transform.name, d.value) for d in self._draws(epoch, index, default_seed)]

    # ------------------------------------------------------------------ application
    def window(
        self,
        take_audio: np.ndarray,
        take_blendshapes: np.ndarray,
        *,
        start_sample: int,
        start_frame: int,
        window_samples: int,
        window_frames: int,
        sample_rate: int,
        fps: float,
        epoch: int,
        index: int,
        default_seed: int = 0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The augmented window starting at (start_sample, start_frame) of a decoded take:
        (audio float32 [window_samples], blendshapes float32 [window_frames, 52]), new arrays."""
        draws = self._draws(epoch, index, default_seed)
        factor = next((d.value for d in draws if isinstance(d.transform, SpeedPerturb) and d.value is not None), None)
        if factor is None or factor == 1.0:
            audio = take_audio[start_sample : start_sample + window_samples].copy()
            blendshapes = take_blendshapes[start_frame : start_frame + window_frames].copy()
        else:
            audio, blendshapes = speed_window(
                take_audio,
                take_blendshapes,
                start_sample,
                start_frame,
                window_samples,
                window_frames,
                factor,
                sample_rate,
            )
        for d in draws:
            if d.value is None or isinstance(d.transform, SpeedPerturb):
                continue
            audio = d.transform.apply_audio(audio, d.value, d.rng, sample_rate)
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        if audio.shape != (window_samples,):  # defensive: never change the shapes
            raise RuntimeError(f"augmentation produced audio of shape {audio.shape}, expected ({window_samples},)")
        return audio, np.ascontiguousarray(blendshapes, dtype=np.float32)

    def apply(
        self,
        audio: np.ndarray,
        blendshapes: np.ndarray,
        *,
        sample_rate: int,
        epoch: int,
        index: int,
        default_seed: int = 0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Augments an already cut window (a speed-up cannot read past it, so it is reduced to 1)."""
        audio = np.asarray(audio, dtype=np.float32)
        blendshapes = np.asarray(blendshapes, dtype=np.float32)
        return self.window(
            audio,
            blendshapes,
            start_sample=0,
            start_frame=0,
            window_samples=len(audio),
            window_frames=len(blendshapes),
            sample_rate=sample_rate,
            fps=0.0,
            epoch=epoch,
            index=index,
            default_seed=default_seed,
        )


def as_augment(augment: Any) -> Augment | None:
    """Normalises a dataset's ``augment=`` argument (None, an Augment, a Transform, a list or a dict)."""
    if augment is None or isinstance(augment, Augment):
        return augment
    if isinstance(augment, Transform):
        return Augment([augment], seed=None)
    return Augment.from_config(augment)


# ---------------------------------------------------------------------------- signal helpers
def speed_window(
    take_audio: np.ndarray,
    take_blendshapes: np.ndarray,
    start_sample: int,
    start_frame: int,
    window_samples: int,
    window_frames: int,
    factor: float,
    sample_rate: int,
) -> tuple[np.ndarray, np.ndarray]:
    """A window played at ``factor`` times the speed: output sample n is take sample
    ``start_sample + factor * n`` (soxr), output frame k is take frame ``start_frame + factor * k``
    (linear interpolation). A speed-up is reduced so the span stays inside the take."""
    n, w = int(window_samples), int(window_frames)
    frames_left = len(take_blendshapes) - 1 - start_frame
    samples_left = len(take_audio) - start_sample
    if factor > 1.0:
        limit = min(frames_left / (w - 1) if w > 1 else factor, samples_left / n if n else factor)
        factor = max(1.0, min(factor, limit))
    positions = start_frame + factor * np.arange(w, dtype=np.float64)
    low = np.minimum(np.floor(positions).astype(np.int64), len(take_blendshapes) - 1)
    high = np.minimum(low + 1, len(take_blendshapes) - 1)
    alpha = (positions - low)[:, None]
    src = take_blendshapes.astype(np.float64, copy=False)
    blendshapes = (src[low] * (1.0 - alpha) + src[high] * alpha).astype(np.float32)
    if factor == 1.0:
        return take_audio[start_sample : start_sample + n].copy(), blendshapes
    # Context on both sides so the resampling filter has real signal at the window edges.
    margin = 256
    span = int(math.ceil(factor * n)) + 1
    pre = min(margin, start_sample)
    segment = take_audio[start_sample - pre : start_sample + span + margin]
    resampled = soxr.resample(
        np.ascontiguousarray(segment, dtype=np.float32), sample_rate * factor, sample_rate, quality="HQ"
    )
    offset = int(round(pre / factor))
    audio = resampled[offset : offset + n]
    if len(audio) < n:  # the take ended inside the last few samples: pad with silence
        audio = np.concatenate((audio, np.zeros(n - len(audio), dtype=np.float32)))
    return np.ascontiguousarray(audio, dtype=np.float32), blendshapes


def _stft(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    window = np.hanning(n_fft + 1)[:-1]
    padded = np.pad(x.astype(np.float64), n_fft // 2, mode="reflect" if len(x) > n_fft // 2 else "constant")
    count = 1 + (len(padded) - n_fft) // hop
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:count]
    return np.fft.rfft(frames * window, axis=1)


def _istft(spec: np.ndarray, n_fft: int, hop: int, length: int) -> np.ndarray:
    window = np.hanning(n_fft + 1)[:-1]
    frames = np.fft.irfft(spec, n=n_fft, axis=1) * window
    total = n_fft + hop * (len(frames) - 1)
    out = np.zeros(total)
    norm = np.zeros(total)
    for t in range(len(frames)):
        out[t * hop : t * hop + n_fft] += frames[t]
        norm[t * hop : t * hop + n_fft] += window**2
    out /= np.where(norm > 1e-8, norm, 1.0)
    out = out[n_fft // 2 : n_fft // 2 + length]
    return np.pad(out, (0, length - len(out))) if len(out) < length else out


def time_stretch(x: np.ndarray, rate: float, n_fft: int = 1024) -> np.ndarray:
    """Phase-vocoder time stretch: ``rate`` > 1 is faster (shorter), pitch unchanged."""
    n_fft = max(16, min(n_fft, 1 << int(math.floor(math.log2(max(len(x), 16))))))
    hop = n_fft // 4
    spec = _stft(x, n_fft, hop)
    steps = np.arange(0.0, len(spec), rate)
    spec = np.concatenate((spec, np.zeros((2, spec.shape[1]), dtype=spec.dtype)))
    k = steps.astype(np.int64)
    alpha = (steps - k)[:, None]
    magnitude = (1.0 - alpha) * np.abs(spec[k]) + alpha * np.abs(spec[k + 1])
    expected = 2.0 * np.pi * hop * np.arange(spec.shape[1]) / n_fft
    advance = np.angle(spec[k + 1]) - np.angle(spec[k]) - expected
    advance -= 2.0 * np.pi * np.round(advance / (2.0 * np.pi))
    increment = expected + advance
    # Phases accumulate the measured per-hop advance of each bin; loose phase locking
    # (Puckette 1995; neighbours subtracted because adjacent Hann bins of one partial have
    # opposite signs) keeps the bins of a partial coherent, so the level does not drop.
    out = np.empty(magnitude.shape, dtype=np.complex128)
    phase = np.angle(spec[0])
    for j in range(len(steps)):
        z = magnitude[j] * np.exp(1j * phase)
        locked = z.copy()
        locked[1:] -= z[:-1]
        locked[:-1] -= z[1:]
        locked_phase = np.angle(locked)
        out[j] = magnitude[j] * np.exp(1j * locked_phase)
        phase = locked_phase + increment[j]
    return _istft(out, n_fft, hop, int(round(len(x) / rate)))


def pitch_shift(audio: np.ndarray, sample_rate: int, semitones: float) -> np.ndarray:
    """Pitch moved by ``semitones``, same length and tempo (time stretch, then soxr resampling)."""
    n = len(audio)
    if semitones == 0.0 or n == 0:
        return np.asarray(audio, dtype=np.float32).copy()
    rate = 2.0 ** (-semitones / 12.0)
    stretched = time_stretch(np.asarray(audio, dtype=np.float64), rate)
    shifted = soxr.resample(stretched.astype(np.float32), sample_rate / rate, sample_rate, quality="HQ")
    if len(shifted) < n:
        shifted = np.concatenate((shifted, np.zeros(n - len(shifted), dtype=np.float32)))
    return np.ascontiguousarray(shifted[:n], dtype=np.float32)
