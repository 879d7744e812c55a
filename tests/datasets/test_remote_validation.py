"""Takes in object storage without a manifest: validated REMOTE_VALIDATION_THREADS at a time,
with the table, the skips and the errors of one-by-one validation (a moto server on loopback)."""

from __future__ import annotations

import logging
import threading
import uuid
from pathlib import Path

import pytest
from conftest import s3_options, upload_dir

from koemorph_data import takes as takes_module
from koemorph_data.errors import DataFormatError
from koemorph_data.storage import RemoteSource
from koemorph_data.synthetic import make_take
from koemorph_data.takes import TakeTable
from koemorph_data.timing import Timing


@pytest.fixture(scope="module")
def flawed_dir(tmp_path_factory) -> Path:
    """Nine takes: six good (one whose blendshapes stop 40 frames early, one shorter than a
    window of 64 frames), a malformed JSONL (line 4), an unreadable wav and a 60 fps take."""
    root = tmp_path_factory.mktemp("flawed")
    specs = {
        "a/t0": dict(seconds=4.0),
        "a/t1": dict(seconds=5.0, sample_rate=48000, channels=2),
        "a/t2_short_bs": dict(seconds=4.0, blendshape_frames=80),
        "b/t3": dict(seconds=4.5, fps=60.0),
        "b/t4_tiny": dict(seconds=1.0),
        "c/t5_bad_jsonl": dict(seconds=3.0),
        "c/t6_bad_wav": dict(seconds=3.0),
        "d/t7": dict(seconds=3.3, sample_rate=22050),
        "d/t8": dict(seconds=3.1),
    }
    for i, (name, spec) in enumerate(specs.items()):
        make_take(root / f"{name}.wav", root / f"{name}.jsonl", seed=i, **spec)
    lines = (root / "c/t5_bad_jsonl.jsonl").read_text().splitlines()
    lines[3] = '{"timestamp": 0.1, "blendshapes": [0.5, nope]}'
    (root / "c/t5_bad_jsonl.jsonl").write_text("\n".join(lines) + "\n")
    (root / "c/t6_bad_wav.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really a wav file")
    return root


@pytest.fixture(scope="module")
def flawed_bucket(flawed_dir, s3_endpoint) -> str:
    return upload_dir(flawed_dir, s3_endpoint, f"s3://flawed-{uuid.uuid4().hex[:8]}/takes")


def _table(where, s3_endpoint, tmp_path, on_error="skip") -> TakeTable:
    return TakeTable(
        where,
        timing=Timing(16000, 30),
        window_frames=64,
        on_error=on_error,
        cache_dir=tmp_path / "cache",
        storage_options=s3_options(s3_endpoint),
        manifest=False,
    )


def _records(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "koemorph_data"]


def test_parallel_validation_equals_one_by_one(flawed_dir, flawed_bucket, s3_endpoint, tmp_path, caplog, monkeypatch):
    with caplog.at_level(logging.WARNING, logger="koemorph_data"):
        parallel = _table(flawed_bucket, s3_endpoint, tmp_path)
    parallel_log = _records(caplog)
    caplog.clear()
    monkeypatch.setattr(takes_module, "REMOTE_VALIDATION_THREADS", 1)
    with caplog.at_level(logging.WARNING, logger="koemorph_data"):
        one_by_one = _table(flawed_bucket, s3_endpoint, tmp_path)
    assert list(parallel.pairs) == list(one_by_one.pairs)
    assert list(parallel.infos) == list(one_by_one.infos)
    assert list(parallel.stamps) == list(one_by_one.stamps)
    assert parallel.frames.tolist() == one_by_one.frames.tolist()
    assert parallel.skipped == one_by_one.skipped
    assert parallel_log == _records(caplog)  # the same warnings, in the same order
    # Skips name the objects (and the line); the good takes count as the local copy's do.
    bucket = flawed_bucket
    assert [(str(path), reason.split(": ")[0]) for path, reason in parallel.skipped] == [
        (f"{bucket}/c/t5_bad_jsonl.jsonl", f"{bucket}/c/t5_bad_jsonl.jsonl:4"),
        (f"{bucket}/c/t6_bad_wav.wav", f"{bucket}/c/t6_bad_wav.wav"),
    ]
    local = TakeTable(flawed_dir, timing=Timing(16000, 30), window_frames=64, on_error="skip", manifest=False)
    assert parallel.frames.tolist() == local.frames.tolist()
    assert parallel.names == local.names
    # Frames by hand: min(blendshape rows, floor(samples * 30 / 16000)) after resampling.
    expected = {"t0": 120, "t1": 150, "t2_short_bs": 80, "t3": 135, "t4_tiny": 30, "t7": 99, "t8": 93}
    got = dict(zip(parallel.names, parallel.frames.tolist()))
    assert {k: got[k] for k in expected} == expected and got["t5_bad_jsonl"] == got["t6_bad_wav"] == 0
    assert "skipping take" in " ".join(parallel_log) and "shorter than one window of 64" in " ".join(parallel_log)
    assert any("80 blendshape frames but the audio covers 120 frames" in m for m in parallel_log)


def test_on_error_raise_names_the_first_bad_object(flawed_bucket, s3_endpoint, tmp_path):
    with pytest.raises(DataFormatError) as info:
        _table(flawed_bucket, s3_endpoint, tmp_path, on_error="raise")
    assert info.value.path == f"{flawed_bucket}/c/t5_bad_jsonl.jsonl" and info.value.line == 4


def test_takes_are_fetched_concurrently(flawed_bucket, s3_endpoint, tmp_path, monkeypatch):
    # Two JSONL reads must be in flight at once to pass the barrier (one-by-one validation
    # would wait on it and fail after its timeout).
    barrier = threading.Barrier(2, timeout=60)
    read_bytes = RemoteSource.read_bytes
    waited: list[bool] = []
    lock = threading.Lock()

    def read_together(self, rel):
        with lock:
            first_two = str(rel).endswith(".jsonl") and len(waited) < 2
            if first_two:
                waited.append(True)
        if first_two:
            barrier.wait()
        return read_bytes(self, rel)

    monkeypatch.setattr(RemoteSource, "read_bytes", read_together)
    table = _table(flawed_bucket, s3_endpoint, tmp_path)
    assert len(waited) == 2 and len(table.skipped) == 2
