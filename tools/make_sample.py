"""Regenerate the shipped sample dataset in ``python/koemorph_data/sample_data/``.

A developer script kept outside the package (it is not in the wheel). Run once by a
developer from a checkout (needs the ``espeak-ng`` and ``sox`` programs); nothing runs
this at install or test time. Usage::

    python tools/make_sample.py [OUT_DIR]

Each take is real (synthetic-voice) English speech from espeak-ng, converted to
16 kHz mono PCM_16, plus blendshapes synthesised from the audio's loudness
envelope by ``koemorph_data/synthetic.py`` (jawOpen = 0.7 * envelope, blinks
every 2.5-4.5 s, slow brow and gaze movement). It is not a real face capture.
"""

from __future__ import annotations

import importlib.util
import math
import pathlib
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import soundfile as sf

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "python" / "koemorph_data"
DEFAULT_OUT = PACKAGE / "sample_data"
SAMPLE_RATE = 16000
FPS = 30.0

# (relative name, espeak-ng voice, target seconds, text)
TAKES = [
    (
        "take_01",
        "en-us",
        10.0,
        "The quick brown fox jumps over the lazy dog. Every morning I walk to the station, "
        "buy a cup of coffee, and read the news while the train rolls through the valley.",
    ),
    (
        "take_02",
        "en-gb",
        11.0,
        "Please remember to water the plants on Thursday. The tomatoes in the greenhouse need "
        "plenty of light, and the roses by the gate should be pruned before the first frost arrives.",
    ),
    (
        "take_03",
        "en-us+f3",
        12.0,
        "She opened the old wooden box and found a bundle of letters tied with a blue ribbon. "
        "Each one was written in careful handwriting, describing a long journey across the ocean "
        "and the people she met along the way.",
    ),
    (
        "session2/take_04",
        "en-gb-scotland+m3",
        18.0,
        "Good evening, and welcome to the weekly science programme. Tonight we look at how birds "
        "find their way home over thousands of miles, why the sky turns red at sunset, and what "
        "happens inside a volcano before it erupts. Our first guest has spent twenty years "
        "studying migrating geese, and she joins us now from a research station in the far north.",
    ),
]


def load_synthetic():
    """``koemorph_data.synthetic`` as installed: run this script from a checkout after
    ``maturin develop`` (an editable install), so it is the checkout's generator and the
    package's one ARKit name list."""
    return importlib.import_module("koemorph_data.synthetic")


def _speak(voice: str, speed: int, text: str, out_wav: pathlib.Path, tmp: pathlib.Path) -> float:
    """espeak-ng -> sox (16 kHz mono 16-bit, normalised to -1 dBFS); return seconds."""
    raw = tmp / "raw.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text], check=True)
    subprocess.run(
        [
            "sox",
            str(raw),
            "-r",
            str(SAMPLE_RATE),
            "-c",
            "1",
            "-b",
            "16",
            "-e",
            "signed-integer",
            str(out_wav),
            "pad",
            "0.25",
            "0.25",
            "norm",
            "-1",
        ],
        check=True,
    )
    return sf.info(str(out_wav)).duration


def main(argv: list[str]) -> int:
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            print(f"{tool} not found (apt-get install espeak-ng sox)", file=sys.stderr)
            return 1
    out = pathlib.Path(argv[0]) if argv else DEFAULT_OUT
    synthetic = load_synthetic()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = pathlib.Path(tmpdir)
        for i, (name, voice, target, text) in enumerate(TAKES):
            wav = out / f"{name}.wav"
            wav.parent.mkdir(parents=True, exist_ok=True)
            # espeak-ng speed is words per minute; adjust it until the take lasts ~target s.
            speed = 160
            for _ in range(6):
                dur = _speak(voice, speed, text, wav, tmp)
                if abs(dur - target) < 0.25:
                    break
                speed = int(round(min(max(speed * dur / target, 80), 400)))
            audio, sr = sf.read(str(wav), dtype="float32")
            assert sr == SAMPLE_RATE and audio.ndim == 1
            n_frames = int(math.floor(len(audio) * FPS / SAMPLE_RATE))
            values = synthetic.blendshapes_from_audio(audio, SAMPLE_RATE, fps=FPS, n_frames=n_frames, seed=100 + i)
            synthetic.write_blendshapes_jsonl(wav.with_suffix(".jsonl"), values, fps=FPS)
            print(
                f"{wav.relative_to(out)}: voice {voice}, speed {speed} wpm, "
                f"{len(audio) / SAMPLE_RATE:.2f} s, {n_frames} frames, "
                f"jawOpen mean {np.mean(values[:, 17]):.3f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
