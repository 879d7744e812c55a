"""Deterministic synthetic takes for tests and benchmarks.

A *take* is ``NAME.wav`` (speech audio) plus ``NAME.jsonl`` beside it, one JSON
object per video frame::

    {"timestamp": 0.033333, "blendshapes": [52 numbers in 0..1]}

in ARKit order (see :data:`ARKIT_NAMES`), frame ``k`` at ``k / fps`` seconds.

The audio here is *pseudo-speech*: syllable-rate amplitude-modulated harmonics
with a gliding pitch, some noise bursts and pauses, all drawn from a seeded
generator, so the same arguments always give the same files. The blendshapes
follow the loudness of that audio (``jawOpen`` = 0.7 * normalised RMS envelope),
with blinks and slow brow / gaze movement, like the shipped sample dataset.

Only numpy, soundfile and the standard library are used; nothing here needs
espeak or the compiled extension.
"""

from __future__ import annotations

import math
import os
import pathlib
from collections.abc import Sequence
from typing import Union

import numpy as np
import soundfile as sf

from . import _core

__all__ = [
    "ARKIT_NAMES",
    "blendshapes_from_audio",
    "frame_bounds",
    "make_dataset",
    "make_take",
    "write_blendshapes_jsonl",
]

# The package's one ARKit list (Live Link Face order): the generator writes by name.
_ARKIT_NAMES: tuple[str, ...] = tuple(_core.ARKIT_BLENDSHAPES)
ARKIT_NAMES = _ARKIT_NAMES
_IDX = {name: i for i, name in enumerate(_ARKIT_NAMES)}
assert len(_ARKIT_NAMES) == 52 and _IDX["jawOpen"] == 17

PathLike = Union[str, "os.PathLike[str]"]


# --------------------------------------------------------------------------- audio


def _pseudo_speech(n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Mono float32 pseudo-speech of ``n`` samples, peak about 0.6."""
    if n <= 0:
        return np.zeros(0, dtype=np.float32)
    sr = float(sample_rate)
    # Syllables of 0.10-0.28 s, with a pause (0.15-0.6 s) after ~15 % of them.
    est = int(n / sr / 0.12) + 16
    syl_len = rng.uniform(0.10, 0.28, est)
    pause = np.where(rng.random(est) < 0.15, rng.uniform(0.15, 0.6, est), 0.0)
    seg_sec = np.stack([syl_len, pause], axis=1).ravel()  # syllable, pause, syllable, ...
    seg_amp = np.stack([rng.uniform(0.3, 1.0, est), np.zeros(est)], axis=1).ravel()
    seg_noise = np.stack([(rng.random(est) < 0.3) * rng.uniform(0.2, 0.6, est), np.zeros(est)], axis=1).ravel()
    seg_f0 = np.repeat(rng.uniform(0.85, 1.15, est), 2)
    seg_len = np.maximum(np.round(seg_sec * sr).astype(np.int64), 0)
    starts = np.concatenate(([0], np.cumsum(seg_len)))
    while starts[-1] < n:  # cannot really happen with the estimate above; be safe
        seg_len = np.concatenate((seg_len, seg_len))
        seg_amp = np.concatenate((seg_amp, seg_amp))
        seg_noise = np.concatenate((seg_noise, seg_noise))
        seg_f0 = np.concatenate((seg_f0, seg_f0))
        starts = np.concatenate(([0], np.cumsum(seg_len)))
    seg_idx = np.repeat(np.arange(seg_len.size), seg_len)[:n]
    pos = (np.arange(n, dtype=np.float64) - starts[seg_idx]) / np.maximum(seg_len[seg_idx], 1)
    shape = np.sqrt(np.sin(np.pi * pos)).astype(np.float32)  # rise and fall inside each syllable

    # Pitch: a per-speaker base, per-syllable jitter interpolated between syllable
    # centres, and a slow declination/drift.
    base_f0 = rng.uniform(100.0, 220.0)
    centres = starts[:-1] + seg_len / 2.0
    t = np.arange(n, dtype=np.float64)
    f0 = base_f0 * np.interp(t, centres, seg_f0) * (1.0 + 0.05 * np.sin(2 * np.pi * t / sr / 3.1))
    phase = np.mod(2.0 * np.pi * np.cumsum(f0) / sr, 2.0 * np.pi).astype(np.float32)
    # Harmonics 1..6 by the recurrence sin(hx) = 2cos(x) sin((h-1)x) - sin((h-2)x).
    s1 = np.sin(phase)
    c2 = np.float32(2.0) * np.cos(phase)
    voiced = s1.copy()
    prev, cur = np.zeros_like(s1), s1
    for w in (0.7, 0.5, 0.35, 0.25, 0.15):
        prev, cur = cur, c2 * cur - prev
        voiced += np.float32(w) * cur

    amp = seg_amp[seg_idx].astype(np.float32) * shape
    noise_amp = seg_noise[seg_idx].astype(np.float32) * shape
    noise = rng.standard_normal(n, dtype=np.float32)
    audio = amp * voiced * np.float32(0.3) + noise_amp * noise * np.float32(0.15)
    audio += np.float32(0.002) * rng.standard_normal(n, dtype=np.float32)  # room noise
    peak = float(np.max(np.abs(audio)))
    if peak > 0:
        audio *= np.float32(0.6 / peak)
    return audio


# --------------------------------------------------------------------------- blendshapes


def frame_bounds(n_samples: int, n_frames: int, sample_rate: int, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Sample range ``[start, end)`` of each frame: ``floor(k*sr/fps)`` .. ``floor((k+1)*sr/fps)``,
    clipped to the audio length."""
    k = np.arange(n_frames + 1, dtype=np.float64)
    edges = np.minimum(np.floor(k * float(sample_rate) / float(fps)), n_samples).astype(np.int64)
    return edges[:-1], edges[1:]


def _slow_noise(n: int, fps: float, rng: np.random.Generator, period_s: float = 1.5) -> np.ndarray:
    """Smooth random curve in about [-1, 1], one random knot every ``period_s`` seconds."""
    if n == 0:
        return np.zeros(0)
    step = max(period_s * fps, 1.0)
    knots = rng.uniform(-1.0, 1.0, int(n / step) + 3)
    x = np.arange(n) / step
    return np.interp(x, np.arange(knots.size), knots)


def blendshapes_from_audio(
    audio: np.ndarray, sample_rate: int, *, fps: float = 30.0, n_frames: int | None = None, seed: int = 0
) -> np.ndarray:
    """``(n_frames, 52)`` float32 ARKit blendshapes in [0, 1] that follow the loudness of ``audio``.

    ``audio`` is ``(samples,)`` or ``(samples, channels)`` (channels are averaged).
    ``n_frames`` defaults to the frames the audio covers, ``floor(samples * fps / sample_rate)``;
    frames past the end of the audio get a silent (closed mouth) envelope.
    """
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if n_frames is None:
        n_frames = int(math.floor(x.shape[0] * float(fps) / float(sample_rate)))
    rng = np.random.default_rng(seed)
    env = _loudness_envelope(x, sample_rate, fps, n_frames)
    F = n_frames
    v1 = _slow_noise(F, fps, rng, 0.4)  # vowel colour (rounded vs spread)
    v2 = _slow_noise(F, fps, rng, 0.6)
    mood = _slow_noise(F, fps, rng, 4.0)
    brow = _slow_noise(F, fps, rng, 2.5)
    gaze_x = _slow_noise(F, fps, rng, 2.0)
    gaze_y = _slow_noise(F, fps, rng, 3.0)
    jitter = rng.standard_normal((F, 52)) * 0.01
    blink = _blinks(F, fps, rng)
    # Emphasis: brows rise a little on loud onsets.
    onset = np.clip(np.diff(env, prepend=env[:1] if F else env), 0.0, None)
    if F >= 5:
        onset = np.convolve(onset, np.ones(5) / 5.0, mode="same")

    smile = 0.12 + 0.08 * mood
    out = np.zeros((F, 52))
    _mouth(out, env, rounded=0.5 + 0.5 * v1, smile=smile, mood=mood, v2=v2, gaze_x=gaze_x)
    _eyes_and_brows(out, env, blink=blink, onset=onset, smile=smile, brow=brow, gaze_x=gaze_x, gaze_y=gaze_y)
    out += jitter
    # Keep jawOpen an exact function of loudness (tests correlate it with the audio).
    out[:, _IDX["jawOpen"]] = 0.7 * env
    np.clip(out, 0.0, 1.0, out=out)
    out += 0.0  # turn any -0.0 into 0.0 so it never prints as "-0.000000"
    return out.astype(np.float32)


def _loudness_envelope(x: np.ndarray, sample_rate: int, fps: float, n_frames: int) -> np.ndarray:
    """RMS per frame (smoothed), normalised to the 95th percentile of voiced frames, in [0, 1]."""
    starts, ends = frame_bounds(x.shape[0], n_frames, sample_rate, fps)
    cs = np.concatenate(([0.0], np.cumsum(x * x)))
    count = ends - starts
    rms = np.sqrt((cs[ends] - cs[starts]) / np.maximum(count, 1))
    rms[count == 0] = 0.0
    if n_frames >= 3:
        rms = np.convolve(np.pad(rms, 1, mode="edge"), [0.25, 0.5, 0.25], mode="valid")
    voiced = rms[rms > 1e-4]
    ref = float(np.percentile(voiced, 95)) if voiced.size else 1.0
    return np.clip(rms / max(ref, 1e-9), 0.0, 1.0) ** 0.8


def _blinks(n_frames: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """Blinks: ~5 frames (about 4 near 1) every 2.5-4.5 s."""
    blink = np.zeros(n_frames)
    profile = np.array([0.55, 0.92, 1.0, 0.97, 0.9, 0.45])
    t = rng.uniform(0.5, 2.5) * fps
    while t < n_frames:
        k = int(t)
        m = min(profile.size, n_frames - k)
        blink[k : k + m] = np.maximum(blink[k : k + m], profile[:m])
        t += rng.uniform(2.5, 4.5) * fps
    return blink


def _mouth(out, env, *, rounded, smile, mood, v2, gaze_x) -> None:
    spread = 1.0 - rounded
    B = _IDX
    out[:, B["jawOpen"]] = 0.7 * env
    out[:, B["mouthClose"]] = 0.12 * (1.0 - env) ** 2
    out[:, B["mouthFunnel"]] = 0.35 * env * rounded
    out[:, B["mouthPucker"]] = 0.3 * env * rounded**2 + 0.03
    out[:, B["mouthLowerDownLeft"]] = 0.4 * env * (1.0 + 0.05 * v2)
    out[:, B["mouthLowerDownRight"]] = 0.4 * env * (1.0 - 0.05 * v2)
    out[:, B["mouthUpperUpLeft"]] = 0.2 * env * (0.8 + 0.2 * spread)
    out[:, B["mouthUpperUpRight"]] = 0.2 * env * (0.8 + 0.2 * spread)
    out[:, B["mouthStretchLeft"]] = 0.25 * env * spread + 0.02
    out[:, B["mouthStretchRight"]] = 0.25 * env * spread + 0.02
    out[:, B["mouthSmileLeft"]] = smile + 0.05 * env * spread
    out[:, B["mouthSmileRight"]] = smile + 0.05 * env * spread
    out[:, B["mouthDimpleLeft"]] = 0.5 * smile
    out[:, B["mouthDimpleRight"]] = 0.5 * smile
    out[:, B["mouthFrownLeft"]] = 0.04 * (1.0 - mood)
    out[:, B["mouthFrownRight"]] = 0.04 * (1.0 - mood)
    out[:, B["mouthRollLower"]] = 0.15 * (1.0 - env) ** 3
    out[:, B["mouthRollUpper"]] = 0.08 * (1.0 - env) ** 3
    out[:, B["mouthShrugLower"]] = 0.1 * (1.0 - env) + 0.05 * v2
    out[:, B["mouthShrugUpper"]] = 0.06 * (1.0 - env)
    out[:, B["mouthPressLeft"]] = 0.1 * (1.0 - env) ** 2
    out[:, B["mouthPressRight"]] = 0.1 * (1.0 - env) ** 2
    out[:, B["mouthLeft"]] = 0.03 * np.clip(v2, 0, None)
    out[:, B["mouthRight"]] = 0.03 * np.clip(-v2, 0, None)
    out[:, B["jawForward"]] = 0.03 * env
    out[:, B["jawLeft"]] = 0.02 * np.clip(gaze_x, 0, None)
    out[:, B["jawRight"]] = 0.02 * np.clip(-gaze_x, 0, None)


def _eyes_and_brows(out, env, *, blink, onset, smile, brow, gaze_x, gaze_y) -> None:
    B = _IDX
    out[:, B["cheekSquintLeft"]] = 0.6 * smile
    out[:, B["cheekSquintRight"]] = 0.6 * smile
    out[:, B["cheekPuff"]] = 0.02
    out[:, B["noseSneerLeft"]] = 0.04 + 0.03 * env
    out[:, B["noseSneerRight"]] = 0.04 + 0.03 * env
    out[:, B["tongueOut"]] = 0.0
    out[:, B["eyeBlinkLeft"]] = 0.05 + 0.95 * blink
    out[:, B["eyeBlinkRight"]] = 0.05 + 0.93 * blink
    out[:, B["eyeSquintLeft"]] = 0.1 + 0.3 * blink + 0.2 * smile
    out[:, B["eyeSquintRight"]] = 0.1 + 0.3 * blink + 0.2 * smile
    out[:, B["eyeWideLeft"]] = 0.05 + 0.1 * onset
    out[:, B["eyeWideRight"]] = 0.05 + 0.1 * onset
    out[:, B["eyeLookInLeft"]] = 0.15 * np.clip(gaze_x, 0, None)
    out[:, B["eyeLookOutRight"]] = 0.15 * np.clip(gaze_x, 0, None)
    out[:, B["eyeLookOutLeft"]] = 0.15 * np.clip(-gaze_x, 0, None)
    out[:, B["eyeLookInRight"]] = 0.15 * np.clip(-gaze_x, 0, None)
    out[:, B["eyeLookUpLeft"]] = 0.12 * np.clip(gaze_y, 0, None)
    out[:, B["eyeLookUpRight"]] = 0.12 * np.clip(gaze_y, 0, None)
    out[:, B["eyeLookDownLeft"]] = 0.12 * np.clip(-gaze_y, 0, None) + 0.2 * blink
    out[:, B["eyeLookDownRight"]] = 0.12 * np.clip(-gaze_y, 0, None) + 0.2 * blink
    out[:, B["browInnerUp"]] = 0.1 + 0.08 * brow + 1.5 * onset
    out[:, B["browOuterUpLeft"]] = 0.06 + 0.05 * brow + 1.0 * onset
    out[:, B["browOuterUpRight"]] = 0.06 + 0.05 * brow + 1.0 * onset
    out[:, B["browDownLeft"]] = 0.04 * np.clip(-brow, 0, None)
    out[:, B["browDownRight"]] = 0.04 * np.clip(-brow, 0, None)


def write_blendshapes_jsonl(
    path: PathLike,
    values: np.ndarray,
    *,
    fps: float = 30.0,
    object_form: bool = False,
    timestamp_decimals: int = 6,
    value_decimals: int = 6,
) -> None:
    """Write ``values`` ``(frames, 52)`` as JSONL, frame ``k`` stamped ``k / fps``."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != 52:
        raise ValueError(f"expected (frames, 52) blendshapes, got {values.shape}")
    vf = f"%.{int(value_decimals)}f"
    if object_form:
        body = ", ".join(f'"{name}": {vf}' for name in _ARKIT_NAMES)
        fmt = f'{{"timestamp": %.{int(timestamp_decimals)}f, "blendshapes": {{{body}}}}}'
    else:
        body = ",".join([vf] * 52)
        fmt = f'{{"timestamp": %.{int(timestamp_decimals)}f, "blendshapes": [{body}]}}'
    ts = np.arange(values.shape[0], dtype=np.float64) / float(fps)
    rows = np.column_stack((ts, values)).tolist()
    text = "\n".join([fmt % tuple(r) for r in rows])
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
        if rows:
            f.write("\n")


# --------------------------------------------------------------------------- takes


def make_take(
    wav_path: PathLike,
    jsonl_path: PathLike,
    *,
    seconds: float,
    sample_rate: int = 16000,
    fps: float = 30.0,
    channels: int = 1,
    seed: int = 0,
    blendshape_frames: int | None = None,
    subtype: str = "PCM_16",
    object_form: bool = False,
    timestamp_decimals: int = 6,
) -> None:
    """Write one deterministic take: pseudo-speech ``wav_path`` and its blendshapes ``jsonl_path``.

    The audio has ``round(seconds * sample_rate)`` samples and ``channels`` channels
    (extra channels are attenuated, slightly delayed copies), written with soundfile
    ``subtype`` (e.g. ``"PCM_16"`` or ``"FLOAT"`` for exact float samples).
    ``blendshape_frames`` defaults to ``floor(samples * fps / sample_rate)``, the frames
    the audio covers; more or fewer can be asked for to make mismatched takes.
    """
    if channels < 1:
        raise ValueError("channels must be >= 1")
    n = int(round(float(seconds) * sample_rate))
    rng = np.random.default_rng(seed)
    mono = _pseudo_speech(n, sample_rate, rng)
    if channels == 1:
        audio = mono
    else:
        cols = [mono]
        for c in range(1, channels):
            d = min(3 * c, n)
            shifted = np.concatenate((np.zeros(d, dtype=np.float32), mono[: n - d]))
            cols.append(shifted * np.float32(0.8**c))
        audio = np.stack(cols, axis=1)
    wav_path = pathlib.Path(wav_path)
    jsonl_path = pathlib.Path(jsonl_path)
    wav_path.parent.mkdir(parents=True, exist_ok=True)
    jsonl_path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(wav_path), audio, sample_rate, subtype=subtype)
    values = blendshapes_from_audio(audio, sample_rate, fps=fps, n_frames=blendshape_frames, seed=seed + 1)
    write_blendshapes_jsonl(jsonl_path, values, fps=fps, object_form=object_form, timestamp_decimals=timestamp_decimals)


def make_dataset(
    root: PathLike,
    *,
    takes: int = 3,
    seconds: float | Sequence[float] = 12.0,
    sample_rate: int = 16000,
    fps: float = 30.0,
    seed: int = 0,
    subdirs: bool = False,
    subtype: str = "PCM_16",
) -> list[pathlib.Path]:
    """Write ``takes`` takes ``take_000.wav``/``.jsonl`` ... under ``root``; return the wav paths, sorted.

    With ``subdirs`` take ``i`` goes to ``root/session_{i // 2}/`` (two takes per session).
    ``seconds`` is one length for all takes or a sequence giving each take's length
    (its length must equal ``takes``). Take ``i`` uses seed ``seed * 1000 + i``.
    """
    root = pathlib.Path(root)
    if isinstance(seconds, (int, float)):
        lengths = [float(seconds)] * takes
    else:
        lengths = [float(s) for s in seconds]
        if len(lengths) != takes:
            raise ValueError(f"seconds has {len(lengths)} entries but takes={takes}")
    paths = []
    for i, secs in enumerate(lengths):
        folder = root / f"session_{i // 2}" if subdirs else root
        wav = folder / f"take_{i:03d}.wav"
        make_take(
            wav,
            wav.with_suffix(".jsonl"),
            seconds=secs,
            sample_rate=sample_rate,
            fps=fps,
            seed=seed * 1000 + i,
            subtype=subtype,
        )
        paths.append(wav)
    return sorted(paths)
