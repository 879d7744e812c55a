"""The prepared cache: contents equal decoding by hand, invalidation, concurrent fills, the
``prepare`` command and take validation through the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from torch.utils.data import DataLoader

from koemorph_data import SequentialKoeMorphDataset
from koemorph_data.cache import FORMAT_VERSION, TakeCache, load_take, lookup
from koemorph_data.cli import main as cli_main
from koemorph_data.synthetic import make_dataset, make_take
from koemorph_data.takes import TakeTable
from koemorph_data.timing import Timing


def _by_hand_audio(wav: Path, rate: int) -> np.ndarray:
    data, sr = sf.read(str(wav), dtype="float32", always_2d=True)
    mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    if sr != rate:
        mono = soxr.resample(mono, sr, rate, quality="HQ")
    return np.asarray(mono, dtype=np.float32)


def _by_hand_blendshapes(jsonl: Path) -> np.ndarray:
    rows = [json.loads(line)["blendshapes"] for line in jsonl.read_text().splitlines() if line.strip()]
    return np.array(rows, dtype=np.float32)


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    make_dataset(root, takes=2, seconds=[10.0, 11.0])
    # A 44.1 kHz stereo take (resampled + down-mixed on decode) with 60 fps blendshapes.
    make_take(root / "stereo.wav", root / "stereo.jsonl", seconds=10.0, sample_rate=44100, fps=60.0, channels=2, seed=7)
    return root


def _entries(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.glob("*.json"))


def test_round_trip_equals_decoding_by_hand(data: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    for stem in ("take_000", "stereo"):
        wav, jsonl = data / f"{stem}.wav", data / f"{stem}.jsonl"
        assert lookup(cache_dir, wav, jsonl, sample_rate=16000, target_fps=30) is None
        audio, blendshapes, _pose = load_take(cache_dir, wav, jsonl, sample_rate=16000, target_fps=30)
        assert audio.dtype == np.float32 and blendshapes.dtype == np.float32
        assert blendshapes.shape[1] == 52 and blendshapes.flags.c_contiguous
        np.testing.assert_array_equal(audio, _by_hand_audio(wav, 16000))
        rows = _by_hand_blendshapes(jsonl)
        if stem == "stereo":  # 60 -> 30 fps: linear interpolation at k / 30 s from the first stamp
            stamps = np.array([json.loads(line)["timestamp"] for line in jsonl.read_text().splitlines()])
            t = stamps - stamps[0]
            grid = np.arange(int(np.floor(t[-1] * 30 + 1e-9)) + 1) / 30
            want = np.stack([np.interp(grid, t, rows[:, c].astype(np.float64)) for c in range(52)], axis=1)
            assert blendshapes.shape == want.shape
            np.testing.assert_allclose(blendshapes, want.astype(np.float32), rtol=0, atol=1e-6)
        else:
            np.testing.assert_array_equal(blendshapes, rows)
        entry = lookup(cache_dir, wav, jsonl, sample_rate=16000, target_fps=30)
        assert entry is not None and entry.meta["version"] == FORMAT_VERSION
        assert entry.blendshape_frames == len(blendshapes)
        assert entry.audio_file.exists() and entry.blendshapes_file.exists()
        # Served memory-mapped, read-only, equal to what was stored.
        again, again_bs, _ = load_take(cache_dir, wav, jsonl, sample_rate=16000, target_fps=30)
        assert isinstance(again.base, np.memmap) or isinstance(again.base.base, np.memmap)
        assert not again.flags.writeable
        np.testing.assert_array_equal(again, audio)
        np.testing.assert_array_equal(again_bs, blendshapes)
    assert len(_entries(cache_dir)) == 2
    assert not list(cache_dir.glob(".*.tmp"))


def test_dataset_windows_and_validation_identical_with_cache(data: Path, tmp_path: Path) -> None:
    kwargs = dict(window_frames=64, stride_frames=7, loop_dataset=False, seed=3)
    plain = SequentialKoeMorphDataset(data, **kwargs)
    cached = SequentialKoeMorphDataset(data, cache_dir=tmp_path / "cache", **kwargs)  # fills on first use
    first = list(DataLoader(plain, batch_size=4, num_workers=0))
    for _ in range(2):  # filling pass, then reading pass
        batches = list(DataLoader(cached, batch_size=4, num_workers=0))
        assert len(batches) == len(first)
        for a, b in zip(first, batches):
            assert torch.equal(a["audio"], b["audio"]) and torch.equal(a["blendshapes"], b["blendshapes"])
            assert a["file_names"] == b["file_names"] and torch.equal(a["start_frames"], b["start_frames"])
    assert len(_entries(tmp_path / "cache")) == 3
    # Validation from the stored counts gives the same TakeInfos as parsing.
    for alignment in ("exact", "hop"):
        table_args = dict(timing=Timing(16000, 30, alignment), window_frames=64, on_error="raise")
        parsed = TakeTable(data, **table_args)
        from_cache = TakeTable(data, cache_dir=tmp_path / "cache", **table_args)
        assert parsed.infos == from_cache.infos
        np.testing.assert_array_equal(parsed.frames, from_cache.frames)


def test_validation_does_not_parse_with_a_current_entry(data: Path, tmp_path: Path, monkeypatch) -> None:
    cache_dir = tmp_path / "cache"
    assert cli_main(["prepare", str(data), "--cache-dir", str(cache_dir), "--workers", "2"]) == 0
    import koemorph_data.takes as takes
    from koemorph_data import _core

    def boom(*args, **kwargs):
        raise AssertionError("parsed although the cache is current")

    monkeypatch.setattr(_core, "load_blendshapes", boom)  # the module object every reader calls
    monkeypatch.setattr(takes, "audio_info", boom)
    ds = SequentialKoeMorphDataset(data, cache_dir=cache_dir, loop_dataset=False)
    assert ds.num_windows() > 0


def test_touched_or_changed_source_is_rebuilt(data: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    wav, jsonl = data / "take_000.wav", data / "take_000.jsonl"
    cache = TakeCache(cache_dir, 16000, 30)
    _arrays, stored = cache.fill(wav, jsonl)
    assert stored
    old_key = cache.key(wav, jsonl)
    # Touch only: new mtime -> another key, the old entry is not found for the new stamps.
    st = os.stat(jsonl)
    os.utime(jsonl, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert cache.key(wav, jsonl) != old_key
    assert cache.lookup(wav, jsonl) is None
    # Changed content (same length, new mtime): the new values are served.
    rows = _by_hand_blendshapes(jsonl)
    text = jsonl.read_text()
    changed = text.replace('"blendshapes": [0.', '"blendshapes": [1.')
    assert changed != text and len(changed) == len(text)
    jsonl.write_text(changed)
    os.utime(jsonl, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    _, blendshapes, _ = cache.load(wav, jsonl)
    expected = rows.copy()
    expected[:, 0] += 1.0
    np.testing.assert_allclose(blendshapes, _by_hand_blendshapes(jsonl), rtol=0, atol=0)
    np.testing.assert_allclose(blendshapes, expected, rtol=0, atol=1e-6)
    # Changed audio: a dataset with the cache reads the new samples.
    data_new, sr = sf.read(str(wav), dtype="float32")
    sf.write(str(wav), data_new * np.float32(0.5), sr, subtype="FLOAT")
    ds = SequentialKoeMorphDataset(data, window_frames=64, loop_dataset=False, shuffle_files=False, cache_dir=cache_dir)
    sample = next(s for s in ds if s["file_names"] == "take_000")
    assert int(sample["start_frames"]) == 0
    np.testing.assert_array_equal(sample["audio"].numpy(), _by_hand_audio(wav, 16000)[: ds.window_samples])
    # Pruning removes the outdated entries of this take only.
    assert cache.prune(ds.file_pairs) == 2
    assert cache.lookup(wav, jsonl) is not None


def test_other_rate_or_fps_has_its_own_entry(data: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    wav, jsonl = data / "take_001.wav", data / "take_001.jsonl"
    a16, b30, _ = load_take(cache_dir, wav, jsonl, sample_rate=16000, target_fps=30)
    a8, b25, _ = load_take(cache_dir, wav, jsonl, sample_rate=8000, target_fps=25)
    assert len(_entries(cache_dir)) == 2
    np.testing.assert_array_equal(a8, _by_hand_audio(wav, 8000))
    np.testing.assert_array_equal(a16, _by_hand_audio(wav, 16000))
    assert len(b25) == int(np.floor((len(b30) - 1) / 30 * 25)) + 1
    assert TakeCache(cache_dir, 16000, 30).key(wav, jsonl) != TakeCache(cache_dir, 16000, 25).key(wav, jsonl)


_FILLER = """
import sys
import numpy as np
from koemorph_data.cache import TakeCache
cache = TakeCache(sys.argv[1], 16000, 30)
pairs = [(w, w[:-4] + ".jsonl") for w in sys.argv[2:]]
for _ in range(4):
    for wav, jsonl in pairs:
        (audio, bs, _), _ = cache.fill(wav, jsonl, force=True)
        a2, b2, _ = cache.load(wav, jsonl)
        assert np.array_equal(audio, a2) and np.array_equal(bs, b2)
print("ok")
"""


def test_concurrent_fill_from_two_processes(data: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    wavs = [str(p) for p in sorted(data.glob("*.wav"))]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _FILLER, str(cache_dir), *wavs],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert out.strip() == "ok"
    assert len(_entries(cache_dir)) == len(wavs)
    assert not list(cache_dir.glob(".*.tmp"))
    for wav in wavs:
        audio, _, _ = load_take(cache_dir, wav, wav[:-4] + ".jsonl", sample_rate=16000, target_fps=30)
        np.testing.assert_array_equal(audio, _by_hand_audio(Path(wav), 16000))


def test_prepare_command(data: Path, tmp_path: Path, capsys) -> None:
    cache_dir = tmp_path / "cache"
    assert cli_main(["prepare", str(data), "--cache-dir", str(cache_dir), "--workers", "2"]) == 0
    out, err = capsys.readouterr()
    assert "3/3 takes" in out and "3 built" in out
    assert "3/3 takes" in err  # the progress bar
    assert len(_entries(cache_dir)) == 3
    assert cli_main(["prepare", str(data), "--cache-dir", str(cache_dir)]) == 0
    assert "0 built, 3 already current" in capsys.readouterr().out
    # A malformed take is reported, the others are prepared, the status is 1.
    (data / "bad.wav").write_bytes((data / "take_000.wav").read_bytes())
    (data / "bad.jsonl").write_text('{"timestamp": 0.0, "blendshapes": [1, 2]}\n')
    assert cli_main(["prepare", str(data), "--cache-dir", str(cache_dir)]) == 1
    out, err = capsys.readouterr()
    assert "3/4 takes" in out and "bad" in err
    assert cli_main(["prepare", str(tmp_path / "missing"), "--cache-dir", str(cache_dir)]) == 1
