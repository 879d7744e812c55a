"""``koemorph-data plot TAKE.wav --out sync.png``: is a take in sync?

Draws the audio's loudness envelope (RMS per blendshape frame) against jawOpen and a few other
mouth shapes over time, and the cross-correlation of envelope and jawOpen over lags; prints
and marks the lag with the highest correlation. A positive lag means the face is late (the
blendshapes move that many frames after the sound). matplotlib is imported only here
(``pip install 'koemorph-data[plot]'``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .. import _core
from ..audio import load_audio

MOUTH_SHAPES = ("jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthLowerDownLeft")


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
    """(lags, Pearson r of envelope[t] with track[t + lag]) for lag in -max_lag..max_lag."""
    n = min(len(envelope), len(track))
    envelope = np.asarray(envelope[:n], dtype=np.float64)
    track = np.asarray(track[:n], dtype=np.float64)
    max_lag = max(0, min(int(max_lag), n - 2))
    lags = np.arange(-max_lag, max_lag + 1)
    corr = np.full(len(lags), np.nan)
    for j, lag in enumerate(lags):
        a = envelope[max(0, -lag): n - max(0, lag)]
        b = track[max(0, lag): n + min(0, lag)]
        if len(a) >= 2 and a.std() > 0 and b.std() > 0:
            corr[j] = float(np.corrcoef(a, b)[0, 1])
    return lags, corr


def best_lag(envelope: np.ndarray, track: np.ndarray, max_lag: int) -> tuple[int, float]:
    """The lag (frames; positive = track late) with the highest correlation, and that r."""
    return _strongest(*lag_correlation(envelope, track, max_lag))


def _strongest(lags: np.ndarray, corr: np.ndarray) -> tuple[int, float]:
    """The lag of the highest correlation in ``lag_correlation``'s result, and that r."""
    if np.all(np.isnan(corr)):
        return 0, float("nan")
    j = int(np.nanargmax(corr))
    return int(lags[j]), float(corr[j])


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("take", type=Path, help="TAKE.wav (its TAKE.jsonl must sit beside it)")
    parser.add_argument("--out", type=Path, required=True, help="image to write (e.g. sync.png)")
    parser.add_argument("--max-lag", type=float, default=0.5, help="largest lag searched, seconds (default 0.5)")
    parser.add_argument("--start", type=float, default=0.0, help="first second drawn (default 0)")
    parser.add_argument("--duration", type=float, default=None, help="seconds drawn (default: all)")
    parser.add_argument("--fps", type=int, default=30, help="frame rate the track is converted to (default 30)")
    parser.add_argument("--sample-rate", type=int, default=16000, help="audio rate used (default 16000)")


def run(args: argparse.Namespace) -> int:
    from ..cli import UserError

    wav = Path(args.take)
    if wav.suffix.lower() == ".jsonl":
        wav = wav.with_suffix(".wav")
    jsonl = wav.with_suffix(".jsonl")
    for path in (wav, jsonl):
        if not path.is_file():
            raise UserError(f"{path} not found (plot needs TAKE.wav and TAKE.jsonl side by side)")
    if args.fps <= 0 or args.sample_rate <= 0 or args.max_lag < 0:
        raise UserError("--fps and --sample-rate must be positive and --max-lag non-negative")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("matplotlib is not installed; install it with: pip install 'koemorph-data[plot]'") from None

    audio = load_audio(wav, args.sample_rate)
    values, _timestamps, source_fps, _rows = _core.load_blendshapes(str(jsonl), float(args.fps))
    frames = min(len(values), int(_core.frames_covered(len(audio), args.sample_rate, args.fps, "exact")))
    if frames < 3:
        raise UserError(f"{wav}: only {frames} frames with both audio and blendshapes; nothing to plot")
    names = tuple(_core.ARKIT_BLENDSHAPES)
    envelope = loudness_envelope(audio, args.sample_rate, args.fps, frames)
    jaw = values[:frames, names.index("jawOpen")]
    max_lag = int(round(args.max_lag * args.fps))
    lags, corr = lag_correlation(envelope, jaw, max_lag)
    lag, r = _strongest(lags, corr)
    if lag > 0:
        verdict = "the face is late"
    elif lag < 0:
        verdict = "the face is early"
    else:
        verdict = "in sync"
    summary = (f"{wav}: best lag {lag:+d} frames ({lag * 1000 / args.fps:+.0f} ms, r = {r:.3f}): {verdict}; "
               f"{frames} frames at {args.fps} fps"
               + (f" (source {source_fps:.2f} fps)" if source_fps else ""))
    print(summary)

    first = max(0, int(args.start * args.fps))
    last = frames if args.duration is None else min(frames, first + max(1, int(args.duration * args.fps)))
    if first >= last:
        raise UserError(f"--start {args.start} s is past the end of the take ({frames / args.fps:.2f} s)")
    t = np.arange(first, last) / args.fps
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 7), gridspec_kw={"height_ratios": [2, 1]})
    scale = float(envelope.max()) or 1.0
    top.plot(t, envelope[first:last] / scale, color="black", lw=1.2, label="audio loudness (RMS, normalised)")
    for name in MOUTH_SHAPES:
        top.plot(t, values[first:last, names.index(name)], lw=0.9, label=name)
    top.set_xlabel("time (s)")
    top.set_ylabel("value")
    top.set_title(f"{wav.name}: loudness vs mouth blendshapes")
    top.legend(loc="upper right", fontsize=8, ncol=3)
    bottom.plot(lags, corr, marker=".", color="tab:blue")
    bottom.axvline(lag, color="tab:red", ls="--", label=f"best lag {lag:+d} frames ({lag * 1000 / args.fps:+.0f} ms), r={r:.3f}")
    bottom.axvline(0, color="grey", lw=0.8)
    bottom.set_xlabel("lag (frames; positive = face late)")
    bottom.set_ylabel("correlation loudness / jawOpen")
    bottom.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    plt.close(fig)
    print(f"wrote {args.out}")
    return 0
