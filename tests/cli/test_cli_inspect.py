"""``koemorph-data inspect``: the audio-to-face lag of every take (the computation ``plot`` uses)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from koemorph_data import ARKIT_BLENDSHAPES, read_blendshapes, synthetic
from koemorph_data.synthetic import write_blendshapes_jsonl

JAW = ARKIT_BLENDSHAPES.index("jawOpen")


def inspect(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "koemorph_data", "inspect", *map(str, args)], capture_output=True, text=True, timeout=120
    )


def shifted_take(root: Path, name: str, face_late_by: int, seed: int) -> None:
    """A synthetic take (jawOpen = 0.7 * the audio's loudness) whose blendshapes are moved
    ``face_late_by`` frames later (negative: earlier), the frame count kept."""
    synthetic.make_take(root / f"{name}.wav", root / f"{name}.jsonl", seconds=12.0, seed=seed)
    values, _ = read_blendshapes(root / f"{name}.jsonl")
    moved = np.roll(values, face_late_by, axis=0)
    if face_late_by > 0:
        moved[:face_late_by] = values[0]
    elif face_late_by < 0:
        moved[face_late_by:] = values[-1]
    write_blendshapes_jsonl(root / f"{name}.jsonl", moved)


@pytest.fixture(scope="module")
def lagged(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lagged")
    shifted_take(root, "in_sync", 0, seed=21)
    shifted_take(root, "late3", 3, seed=22)
    shifted_take(root, "early2", -2, seed=23)
    shifted_take(root, "late1", 1, seed=24)
    # jawOpen unrelated to the sound: some lag wins, with a weak r, and is not a warning
    synthetic.make_take(root / "unrelated.wav", root / "unrelated.jsonl", seconds=12.0, seed=25)
    values, _ = read_blendshapes(root / "unrelated.jsonl")
    values[:, JAW] = np.random.default_rng(0).random(len(values))
    write_blendshapes_jsonl(root / "unrelated.jsonl", values)
    # silence: no correlation at any lag
    sf.write(str(root / "silent.wav"), np.zeros(16000 * 12), 16000)
    write_blendshapes_jsonl(root / "silent.jsonl", np.zeros((360, 52)))
    return root


def test_json_reports_each_takes_lag(lagged):
    proc = inspect(lagged, "--json", "--window-frames", "64")
    assert proc.returncode == 0, proc.stderr
    pairs = {Path(p["audio"]).stem: p for p in json.loads(proc.stdout)["pairs"]}
    expected = {"in_sync": 0, "late3": 3, "early2": -2, "late1": 1}
    for name, lag in expected.items():
        assert pairs[name]["lag_frames"] == lag, name
        assert pairs[name]["lag_r"] > 0.9, name
    assert pairs["unrelated"]["lag_r"] < 0.5
    assert pairs["silent"]["lag_frames"] is None and pairs["silent"]["lag_r"] is None
    # A warning from 2 frames on, at r >= 0.5, and only then.
    lag_warnings = {name: [w for w in p["warnings"] if "against the audio" in w] for name, p in pairs.items()}
    assert lag_warnings["late3"] == [
        f"the face is 3 frames late against the audio (+100 ms, r = {pairs['late3']['lag_r']:.2f})"
    ]
    assert lag_warnings["early2"] == [
        f"the face is 2 frames early against the audio (-67 ms, r = {pairs['early2']['lag_r']:.2f})"
    ]
    for name in ("in_sync", "late1", "unrelated", "silent"):
        assert lag_warnings[name] == [], name


def test_table_shows_lag_and_warns(lagged):
    proc = inspect(lagged, "--window-frames", "64")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    header = lines[0].split()
    rows = {line.split()[0]: dict(zip(header[-3:], line.split()[-3:])) for line in lines[2:8]}
    assert rows["late3"]["lag"] == "+3" and rows["early2"]["lag"] == "-2" and rows["in_sync"]["lag"] == "+0"
    assert rows["silent"]["lag"] == "-" and rows["silent"]["r"] == "-"
    assert any(
        line.startswith("  late3.wav: the face is 3 frames late against the audio (+100 ms, r = ") for line in lines
    )
    assert not any(line.startswith("  late1.wav: the face is") for line in lines)


def test_max_lag_bounds_the_search(lagged):
    proc = inspect(lagged, "--json", "--max-lag", "0.0667")  # 2 frames at 30 fps: lags -2..2
    pairs = {Path(p["audio"]).stem: p for p in json.loads(proc.stdout)["pairs"]}
    assert pairs["late3"]["lag_frames"] == 2  # the edge of the search, nearest the true 3
    assert pairs["early2"]["lag_frames"] == -2


def test_bad_numbers_are_usage_errors(lagged):
    proc = inspect(lagged, "--max-lag", "-1")
    assert proc.returncode == 2
    assert (
        proc.stderr.splitlines()[-1] == "koemorph-data inspect: error: argument --max-lag: must not be negative, got -1"
    )
