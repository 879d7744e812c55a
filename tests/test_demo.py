"""The README's main job: `koemorph-data demo` on the sample shipped inside the package."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import soundfile as sf

import koemorph_data
from koemorph_data import SequentialKoeMorphDataset

from conftest import read_jsonl_by_hand


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
