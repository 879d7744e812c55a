"""``koemorph-data plot TAKE.wav --out sync.png``: is a take in sync?

``TAKE.wav`` may be a URL (``s3://bucket/prefix/take.wav``, with ``--storage-options``): the
take's two objects are fetched into memory.

Draws the audio's loudness envelope (RMS per blendshape frame) against jawOpen and a few other
mouth shapes over time, and the cross-correlation of envelope and jawOpen over lags
(:mod:`koemorph_data.sync`); prints and marks the lag with the highest correlation. A positive
lag means the face is late. matplotlib is imported only here
(``pip install 'koemorph-data[plot]'``).
"""

from __future__ import annotations

import argparse
from pathlib import Path, PurePosixPath

import numpy as np

from .. import _core
from ..audio import load_audio
from ..errors import UserError
from ..storage import TakeSource, is_remote, open_root
from ..sync import SyncEstimate, audio_face_lag
from .common import add_dataset_options, add_storage_options, label_format, non_negative_float, positive_float

MOUTH_SHAPES = ("jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthLowerDownLeft")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "take", help="TAKE.wav (its TAKE.jsonl must sit beside it), a path or an fsspec URL (s3://bucket/take.wav)"
    )
    parser.add_argument("--out", type=Path, required=True, help="image to write (e.g. sync.png)")
    parser.add_argument(
        "--max-lag", type=non_negative_float, default=0.5, help="largest lag searched, seconds (default 0.5)"
    )
    parser.add_argument("--start", type=non_negative_float, default=0.0, help="first second drawn (default 0)")
    parser.add_argument("--duration", type=positive_float, default=None, help="seconds drawn (default: all)")
    add_dataset_options(parser)
    add_storage_options(parser)


def _verdict(lag: int) -> str:
    return "the face is late" if lag > 0 else "the face is early" if lag < 0 else "in sync"


def draw(name: str, estimate: SyncEstimate, values: np.ndarray, fps: int, first: int, last: int):
    """The figure: loudness and mouth shapes over frames first..last (top), correlation over
    lags (bottom). Legends sit above their axes, never over the curves."""
    import matplotlib.pyplot as plt

    names = tuple(_core.ARKIT_BLENDSHAPES)
    lag, r = estimate.lag_frames, estimate.r
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(12, 7), layout="constrained", gridspec_kw={"height_ratios": [2, 1]}
    )
    fig.suptitle(f"{name}: loudness vs mouth blendshapes")
    t = np.arange(first, last) / fps
    scale = float(estimate.envelope.max()) or 1.0
    top.plot(t, estimate.envelope[first:last] / scale, color="black", lw=1.2, label="audio loudness (RMS, normalised)")
    for shape in MOUTH_SHAPES:
        top.plot(t, values[first:last, names.index(shape)], lw=0.9, label=shape)
    top.set_xlabel("time (s)")
    top.set_ylabel("value")
    top.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=6, fontsize=8, frameon=False)
    bottom.plot(estimate.lags, estimate.correlation, marker=".", color="tab:blue")
    bottom.axvline(
        lag, color="tab:red", ls="--", label=f"best lag {lag:+d} frames ({lag * 1000 / fps:+.0f} ms), r={r:.3f}"
    )
    bottom.axvline(0, color="grey", lw=0.8)
    bottom.set_xlabel("lag (frames; positive = face late)")
    bottom.set_ylabel("correlation loudness / jawOpen")
    bottom.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), fontsize=8, frameon=False)
    return fig


def _take_objects(take: str, args: argparse.Namespace) -> tuple[TakeSource, str, str]:
    """The source holding the take and the take's wav and jsonl names in it (UserError when one
    is missing)."""
    if is_remote(take):
        parent, _, name = take.rpartition("/")
    else:
        local = Path(take[len("file://") :] if take.startswith("file://") else take)
        parent, name = str(local.parent), local.name
    named = PurePosixPath(name)
    wav = named.with_suffix(".wav").name if named.suffix.lower() == ".jsonl" else name
    jsonl = PurePosixPath(wav).with_suffix(".jsonl").name
    source = open_root(parent, args.storage_options)
    for rel in (wav, jsonl):
        try:
            source.stat(rel)
        except FileNotFoundError:
            raise UserError(f"{source.name(rel)} not found (plot needs TAKE.wav and TAKE.jsonl side by side)") from None
    return source, wav, jsonl


def run(args: argparse.Namespace) -> int:
    source, wav_rel, jsonl_rel = _take_objects(args.take, args)
    wav, jsonl = source.name(wav_rel), source.name(jsonl_rel)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("matplotlib is not installed; install it with: pip install 'koemorph-data[plot]'") from None

    audio = load_audio(wav, args.sample_rate, data=source.read_bytes(wav_rel))
    values, source_fps, _rows, _pose = label_format(args).load_bytes(source.read_bytes(jsonl_rel), jsonl, args.fps)
    estimate = audio_face_lag(audio, args.sample_rate, values, args.fps, int(round(args.max_lag * args.fps)))
    frames = estimate.frames
    if frames < 3:
        raise UserError(f"{wav}: only {frames} frames with both audio and blendshapes; nothing to plot")
    first = int(args.start * args.fps)
    if first >= frames:
        raise UserError(f"--start {args.start:g} s is past the end of the take ({frames / args.fps:.2f} s)")
    last = frames if args.duration is None else min(frames, first + max(1, int(args.duration * args.fps)))
    lag, r = estimate.lag_frames, estimate.r
    print(
        f"{wav}: best lag {lag:+d} frames ({lag * 1000 / args.fps:+.0f} ms, r = {r:.3f}): {_verdict(lag)}; "
        f"{frames} frames at {args.fps} fps" + (f" (source {source_fps:.2f} fps)" if source_fps else "")
    )
    fig = draw(wav_rel, estimate, values, args.fps, first, last)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    plt.close(fig)
    print(f"wrote {args.out}")
    return 0
