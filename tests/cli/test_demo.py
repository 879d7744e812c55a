"""The README's main job: `koemorph-data demo` on the sample shipped inside the package."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import soundfile as sf
from conftest import read_jsonl_by_hand

import koemorph_data
from koemorph_data import SequentialKoeMorphDataset


def test_sample_dataset_ships_with_the_package():
    ds = SequentialKoeMorphDataset(koemorph_data.SAMPLE_DATA_DIR, loop_dataset=False)
    names = [w.relative_to(koemorph_data.SAMPLE_DATA_DIR).as_posix() for w, _ in ds.file_pairs]
    assert names == ["session2/take_04.wav", "take_01.wav", "take_02.wav", "take_03.wav"]
    for wav, jsonl in ds.file_pairs:
        info = sf.info(str(wav))
        assert info.samplerate == 16000 and info.channels == 1 and info.duration > 256 / 30
        assert len(read_jsonl_by_hand(jsonl)[1]) == math.floor(info.frames * 30 / 16000)
    assert ds.skipped == []


def _demo_command() -> list[str]:
    """The installed console script when it sits beside this interpreter, else the module."""
    script = Path(sys.executable).parent / "koemorph-data"
    return [str(script)] if script.exists() else [sys.executable, "-m", "koemorph_data"]


def test_demo_streams_the_documents_dataloader_configuration():
    cmd = _demo_command() + ["demo"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "audio (4, 136448) float32" in out
    assert "blendshapes (4, 256, 52) float32" in out
    assert "file_indices (4,) int64" in out and "start_frames (4,) int64" in out
    ds = SequentialKoeMorphDataset(koemorph_data.SAMPLE_DATA_DIR, loop_dataset=False)
    assert f"{ds.num_windows()} windows in epoch 0" in out
    assert "delivered" in out


def _delivered_line(args: list[str]) -> str:
    proc = subprocess.run(_demo_command() + ["demo", *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return next(line for line in proc.stdout.splitlines() if line.startswith("delivered "))


def test_demo_says_why_drop_last_delivered_fewer_windows_than_the_epoch():
    epoch = SequentialKoeMorphDataset(koemorph_data.SAMPLE_DATA_DIR, loop_dataset=False).num_windows()
    batch = 4
    assert epoch % batch, "the sample must leave a partial batch for this test to mean anything"

    line = _delivered_line(["--num-workers", "0", "--batch-size", str(batch)])
    full = epoch // batch
    assert line.startswith(f"delivered {full} batches = {full * batch} windows in ")
    assert line.endswith(
        f"; the epoch has {epoch} windows: the last {epoch % batch} did not fill a batch of {batch} (drop_last=True)"
    )

    # Two workers: the dataset has the DataLoader's batch size, so the workers deal whole
    # batches and, as in-process, only the epoch's last partial batch is dropped.
    line = _delivered_line(["--num-workers", "2", "--batch-size", str(batch)])
    assert line.startswith(f"delivered {full} batches = {full * batch} windows in ")
    assert line.endswith(
        f"; the epoch has {epoch} windows: the last {epoch % batch} did not fill a batch of {batch} (drop_last=True)"
    )


def test_demo_batches_are_whole_and_warning_free():
    """The first command of the README shows the recommended configuration: no library warning,
    and with workers the batches come in the in-process order (one take per batch at the start)."""
    proc = subprocess.run(_demo_command() + ["demo"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr
    ordered = subprocess.run(
        _demo_command() + ["demo", "--num-workers", "0"], capture_output=True, text=True, timeout=300
    )
    rows = [line.split(";")[0] for line in proc.stdout.splitlines() if line.startswith("batch ")]
    assert rows == [line.split(";")[0] for line in ordered.stdout.splitlines() if line.startswith("batch ")]


def test_demo_says_nothing_is_missing_when_every_window_fills_a_batch():
    epoch = SequentialKoeMorphDataset(koemorph_data.SAMPLE_DATA_DIR, loop_dataset=False).num_windows()
    line = _delivered_line(["--num-workers", "0", "--batch-size", "1"])
    assert line.startswith(f"delivered {epoch} batches = {epoch} windows in ")
    assert line.endswith("windows/s)")
    line = _delivered_line(["--num-workers", "0", "--max-batches", "3"])
    assert line.startswith("delivered 3 batches = 12 windows in ") and line.endswith("; stopped by --max-batches 3")
