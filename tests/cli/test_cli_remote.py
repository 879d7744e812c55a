"""``inspect``, ``prepare`` and ``plot`` on a URL: the CLI in a subprocess talks to a moto S3
server on loopback (started in this process) and reports what it reports for a local copy."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch
from conftest import s3_options, upload_dir

from koemorph_data import SequentialKoeMorphDataset
from koemorph_data.storage import RemoteSource
from koemorph_data.synthetic import make_take

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "koemorph_data", *map(str, args)], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def takes_dir(tmp_path_factory) -> Path:
    """Three good takes (one at 48 kHz stereo, one at 60 fps), one malformed JSONL (line 5)
    and an orphan wav."""
    root = tmp_path_factory.mktemp("cli-remote")
    specs = {
        "a/t0": dict(seconds=4.0),
        "a/t1": dict(seconds=3.5, sample_rate=48000, channels=2),
        "b/t2": dict(seconds=3.2, fps=60.0),
        "b/broken": dict(seconds=3.0),
    }
    for i, (name, spec) in enumerate(specs.items()):
        make_take(root / f"{name}.wav", root / f"{name}.jsonl", seed=i, **spec)
    lines = (root / "b/broken.jsonl").read_text().splitlines()
    lines[4] = '{"timestamp": 0.13, "blendshapes": [0.5, nope]}'
    (root / "b/broken.jsonl").write_text("\n".join(lines) + "\n")
    make_take(root / "c/lonely.wav", root / "c/lonely.jsonl", seconds=1.0)
    (root / "c/lonely.jsonl").unlink()
    return root


@pytest.fixture(scope="module")
def bucket(takes_dir, s3_endpoint) -> str:
    return upload_dir(takes_dir, s3_endpoint, f"s3://cli-{uuid.uuid4().hex[:8]}/capture")


@pytest.fixture(scope="module")
def storage(s3_endpoint) -> str:
    return json.dumps(s3_options(s3_endpoint))


def _relative(report: dict, root: str) -> dict:
    """The report with every path made relative to the data directory or URL."""

    def rel(path: str) -> str:
        assert path.startswith(root + "/"), path
        return path[len(root) + 1 :]

    for pair in report["pairs"]:
        pair["audio"], pair["blendshapes"] = rel(pair["audio"]), rel(pair["blendshapes"])
    for error in report["errors"]:
        error["path"] = rel(error["path"])
    report["orphans"] = [rel(o) for o in report["orphans"]]
    del report["data_dir"]
    return report


def test_inspect_url_reports_what_the_local_directory_reports(takes_dir, bucket, storage):
    remote = cli("inspect", bucket, "--json", "--window-frames", "64", "--storage-options", storage)
    local = cli("inspect", takes_dir, "--json", "--window-frames", "64")
    assert remote.returncode == local.returncode == 1, remote.stderr  # the malformed take
    remote_report = _relative(json.loads(remote.stdout), bucket)
    local_report = _relative(json.loads(local.stdout), str(takes_dir))
    assert remote_report == local_report
    assert [p["audio"] for p in remote_report["pairs"]] == ["a/t0.wav", "a/t1.wav", "b/t2.wav"]
    assert [(p["sample_rate"], p["channels"], p["usable_frames"]) for p in remote_report["pairs"]] == [
        (16000, 1, 120),
        (48000, 2, 105),
        (16000, 1, 96),
    ]
    assert [(e["path"], e["line"]) for e in remote_report["errors"]] == [("b/broken.jsonl", 5)]
    assert remote_report["orphans"] == ["c/lonely.wav"]
    # The table names takes relative to the directory or URL: the same text.
    remote_table = cli("inspect", bucket, "--window-frames", "64", "--storage-options", storage)
    assert remote_table.stdout == cli("inspect", takes_dir, "--window-frames", "64").stdout
    assert "b/broken.jsonl:5:" in remote_table.stdout


def test_prepare_url_fills_what_a_dataset_on_the_url_reads(
    takes_dir, bucket, storage, s3_endpoint, tmp_path, monkeypatch
):
    cache = tmp_path / "cache"
    first = cli("prepare", bucket, "--cache-dir", cache, "--storage-options", storage, "--workers", "2")
    assert first.returncode == 1  # the malformed take, named by its URL and line
    assert "prepared 3/4 takes" in first.stdout and "(3 built, 0 already current" in first.stdout
    assert f"failed: {bucket}/b/broken.wav: {bucket}/b/broken.jsonl:5:" in first.stderr
    again = cli("prepare", bucket, "--cache-dir", cache, "--storage-options", storage)
    assert "(0 built, 3 already current, 0 outdated removed" in again.stdout
    options = dict(window_frames=64, stride_frames=32, loop_dataset=False, on_error="skip", batch_size=2)
    remote = SequentialKoeMorphDataset(bucket, storage_options=s3_options(s3_endpoint), cache_dir=cache, **options)

    def no_fetching(self, rel):
        raise AssertionError(f"{rel} fetched: prepare should have filled the cache")

    monkeypatch.setattr(RemoteSource, "read_bytes", no_fetching)
    local = SequentialKoeMorphDataset(takes_dir, **options)
    batches = 0
    for a, b in zip(remote.loader(batch_size=2), local.loader(batch_size=2), strict=True):
        assert torch.equal(a["audio"], b["audio"]) and torch.equal(a["blendshapes"], b["blendshapes"])
        batches += 1
    assert batches == 3  # 120, 105 and 96 usable frames: 2 windows of 64 at stride 32 each


def test_prepare_url_needs_a_cache_dir(bucket, storage):
    proc = cli("prepare", bucket, "--storage-options", storage)
    assert proc.returncode == 2 and "the following arguments are required: --cache-dir" in proc.stderr


def test_plot_url_draws_what_the_local_take_gives(takes_dir, bucket, storage, tmp_path):
    remote = cli("plot", f"{bucket}/a/t1.wav", "--out", tmp_path / "remote.png", "--storage-options", storage)
    local = cli("plot", takes_dir / "a/t1.wav", "--out", tmp_path / "local.png")
    assert remote.returncode == local.returncode == 0, remote.stderr
    remote_line, local_line = remote.stdout.splitlines()[0], local.stdout.splitlines()[0]
    assert remote_line.startswith(f"{bucket}/a/t1.wav: best lag ")
    assert remote_line.split(": ", 1)[1] == local_line.split(": ", 1)[1]
    png = (tmp_path / "remote.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and png == (tmp_path / "local.png").read_bytes()
    missing = cli("plot", f"{bucket}/a/nope.wav", "--out", tmp_path / "x.png", "--storage-options", storage)
    assert missing.returncode == 1 and f"{bucket}/a/nope.wav not found" in missing.stderr
