"""``koemorph-data prepare``: Ctrl-C, and a --cache-dir that cannot be a directory.

The interrupt tests run the real command in a subprocess and send it SIGINT, as a terminal's
Ctrl-C does, then look at what is left in the cache directory.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from koemorph_data import synthetic

TAKES = 40
SECONDS = 120.0
# A small output rate keeps the cache small while every take still decodes and resamples
# 2 minutes of 48 kHz stereo: prepare takes seconds, so Ctrl-C lands with most takes pending.
OUT_RATE = 2000
FPS = 30


@pytest.fixture(scope="module")
def slow_dataset(tmp_path_factory) -> Path:
    """TAKES takes, each a symlink to the same 2-minute 48 kHz stereo float wav and its JSONL."""
    root = tmp_path_factory.mktemp("slow")
    source = tmp_path_factory.mktemp("source")
    noise = np.random.default_rng(5).standard_normal((int(SECONDS * 48000), 2)).astype(np.float32) * 0.1
    sf.write(str(source / "take.wav"), noise, 48000, subtype="FLOAT")
    values = synthetic.blendshapes_from_audio(noise, 48000, fps=FPS)
    synthetic.write_blendshapes_jsonl(source / "take.jsonl", values, fps=FPS)
    for i in range(TAKES):
        (root / f"take_{i:02d}.wav").symlink_to(source / "take.wav")
        (root / f"take_{i:02d}.jsonl").symlink_to(source / "take.jsonl")
    return root


def start_prepare(data: Path, cache_dir: Path, *, python_code: str | None = None) -> subprocess.Popen:
    """``koemorph-data prepare`` in its own session (SIGINT reaches only it)."""
    args = ["prepare", str(data), "--cache-dir", str(cache_dir), "--workers", "2", "--sample-rate", str(OUT_RATE)]
    command = (
        [sys.executable, "-m", "koemorph_data", *args]
        if python_code is None
        else [sys.executable, "-c", python_code, *args]
    )
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_default_sigint,
    )


def _default_sigint() -> None:
    """In the child before exec: a runner that started the tests with SIGINT ignored (a
    background job of a non-interactive shell) must not pass that on, or Python would not
    turn SIGINT into KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for_first_entry(proc: subprocess.Popen, cache_dir: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not (cache_dir.is_dir() and any(cache_dir.glob("*.json"))):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no cache entry appeared"
        time.sleep(0.01)


def interrupt(proc: subprocess.Popen) -> float:
    """Sends SIGINT and returns when it was sent (time.monotonic)."""
    proc.send_signal(signal.SIGINT)
    return time.monotonic()


def complete_entries(cache_dir: Path) -> list[dict]:
    """Every entry's record, after checking the directory holds complete entries only: each
    record's two arrays exist with the shapes it states, and no temporary file is left."""
    names = os.listdir(cache_dir)
    assert [n for n in names if n.endswith(".tmp")] == []
    records = []
    for name in names:
        if not name.endswith(".json"):
            continue
        record = json.loads((cache_dir / name).read_text())
        base = name[: -len(".json")]
        audio = np.load(cache_dir / f"{base}.audio.npy")
        blendshapes = np.load(cache_dir / f"{base}.blendshapes.npy")
        assert audio.shape == (record["audio_samples"],) == (int(SECONDS * OUT_RATE),)
        assert blendshapes.shape == (record["blendshape_frames"], 52) == (int(SECONDS * FPS), 52)
        records.append(record)
    arrays = [n for n in names if n.endswith(".npy")]
    assert len(arrays) == 2 * len(records), sorted(names)  # no array without its record
    return records


def test_ctrl_c_cancels_the_pending_takes(slow_dataset, tmp_path):
    cache_dir = tmp_path / "cache"
    proc = start_prepare(slow_dataset, cache_dir)
    wait_for_first_entry(proc, cache_dir)
    sent = interrupt(proc)
    out, err = proc.communicate(timeout=30)
    elapsed = time.monotonic() - sent
    assert proc.returncode == 130, err
    assert elapsed < 2.0
    assert "Traceback" not in err
    records = complete_entries(cache_dir)
    assert 1 <= len(records) < TAKES  # pending takes were cancelled, not prepared
    assert out.startswith(f"interrupted: prepared {len(records)}/{TAKES} takes in {cache_dir} ")
    # Another run prepares the rest and finds the interrupted run's entries current.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "koemorph_data",
            "prepare",
            str(slow_dataset),
            "--cache-dir",
            str(cache_dir),
            "--workers",
            "2",
            "--sample-rate",
            str(OUT_RATE),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert f"({TAKES - len(records)} built, {len(records)} already current" in done.stdout
    assert len(complete_entries(cache_dir)) == TAKES


# A decode that takes minutes (here take_00's, drawn out by a sleep that, like a decode,
# cannot be interrupted from the main thread); the other takes are decoded as usual.
SLOW_TAKE = """
import sys, time
from koemorph_data import cache
from koemorph_data.cli import main
fill = cache.TakeCache.fill
def fill_slowly(self, wav, jsonl, **kwargs):
    if str(wav).endswith("take_00.wav"):
        time.sleep(300)
    return fill(self, wav, jsonl, **kwargs)
cache.TakeCache.fill = fill_slowly
sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_waits_for_running_takes_and_twice_leaves_at_once(slow_dataset, tmp_path):
    cache_dir = tmp_path / "cache"
    proc = start_prepare(slow_dataset, cache_dir, python_code=SLOW_TAKE)
    wait_for_first_entry(proc, cache_dir)
    interrupt(proc)
    time.sleep(1.0)
    assert proc.poll() is None  # take_00 is still being decoded
    sent = interrupt(proc)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and time.monotonic() - sent < 2.0
    # take_00, and the take the other thread was decoding unless it had just finished one
    assert re.search(
        r"^prepare: interrupted; finishing the (1 take|2 takes) being decoded "
        r"\(Ctrl-C again to leave at once\)$",
        err,
        re.M,
    ), err
    assert "prepare: interrupted again; left 1 take unfinished (not stored)" in err
    records = complete_entries(cache_dir)
    assert 1 <= len(records) < TAKES
    assert not any(r["wav"].endswith("take_00.wav") for r in records)


def run_prepare(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "koemorph_data", "prepare", *map(str, args)], capture_output=True, text=True, timeout=120
    )


def test_cache_dir_that_is_a_file(tmp_path):
    data = tmp_path / "data"
    synthetic.make_dataset(data, takes=1, seconds=1.0)
    a_file = tmp_path / "cache"
    a_file.write_text("not a directory")
    proc = run_prepare(data, "--cache-dir", a_file)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"koemorph-data prepare: error: --cache-dir {a_file} is a file, not a directory"
    ]
    proc = run_prepare(data, "--cache-dir", a_file / "inner")
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"koemorph-data prepare: error: --cache-dir {a_file / 'inner'}: {a_file} is a file, not a directory"
    ]
    assert a_file.read_text() == "not a directory"


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--workers", "0", "argument --workers: must be positive, got 0"),
        ("--fps", "-30", "argument --fps: must be positive, got -30"),
        ("--sample-rate", "16k", "argument --sample-rate: '16k' is not an integer"),
    ],
)
def test_bad_numbers_are_usage_errors(tmp_path, option, value, message):
    proc = run_prepare(tmp_path, "--cache-dir", tmp_path / "cache", option, value)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == f"koemorph-data prepare: error: {message}"
    assert not (tmp_path / "cache").exists()
