"""Takes in S3 (a moto server on loopback) stream exactly as the same takes on local disk."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch
from conftest import s3_options, start_s3_server, upload_dir
from torch.utils.data import DataLoader

from koemorph_data import SequentialKoeMorphDataset
from koemorph_data.errors import DataFormatError, StorageError
from koemorph_data.manifest import write_manifest
from koemorph_data.storage import DEFAULT_BACKOFF_S, DEFAULT_RETRIES
from koemorph_data.synthetic import make_dataset

OPTIONS = dict(window_frames=64, stride_frames=16, loop_dataset=False, seed=5, batch_size=4)


@pytest.fixture(scope="module")
def bucket(many_dataset, s3_endpoint):
    return upload_dir(many_dataset, s3_endpoint, f"s3://takes-{uuid.uuid4().hex[:8]}/capture")


def _equal_streams(a, b) -> int:
    n = 0
    for x, y in zip(a, b, strict=True):
        assert x["file_names"] == y["file_names"]
        for key in ("audio", "blendshapes", "file_indices", "start_frames"):
            assert torch.equal(x[key], y[key]), key
        n += 1
    return n


def test_remote_needs_a_cache_dir(bucket, s3_endpoint):
    with pytest.raises(ValueError, match="pass cache_dir="):
        SequentialKoeMorphDataset(bucket, storage_options=s3_options(s3_endpoint), **OPTIONS)


@pytest.mark.parametrize("with_manifest", [False, True])
def test_bucket_stream_equals_local_stream(many_dataset, bucket, s3_endpoint, tmp_path, with_manifest):
    storage = s3_options(s3_endpoint)
    manifest = None
    if with_manifest:
        manifest = f"{bucket}/custom-manifest.jsonl.gz"
        write_manifest(bucket, manifest, storage_options=storage)
    remote = SequentialKoeMorphDataset(
        bucket, storage_options=storage, manifest=manifest, cache_dir=tmp_path / "cache", **OPTIONS
    )
    local = SequentialKoeMorphDataset(many_dataset, **OPTIONS)
    assert remote.takes.names == local.takes.names
    assert remote.usable_frames.tolist() == local.usable_frames.tolist()
    loaders = [DataLoader(ds, batch_size=4, num_workers=2) for ds in (remote, local)]
    assert _equal_streams(*loaders) > 5
    assert _equal_streams(remote.loader(), local.loader()) > 5
    assert any((tmp_path / "cache").glob("*.audio.npy"))  # fetched into the prepared cache


def test_changed_object_is_an_error_naming_it(many_dataset, s3_endpoint, tmp_path):
    url = upload_dir(many_dataset, s3_endpoint, f"s3://takes-{uuid.uuid4().hex[:8]}/capture")
    storage = s3_options(s3_endpoint)
    write_manifest(url, storage_options=storage)  # the default name: used while it matches
    ds = SequentialKoeMorphDataset(url, storage_options=storage, cache_dir=tmp_path / "c", **OPTIONS)
    assert ds.takes.manifest is not None
    import s3fs

    fs = s3fs.S3FileSystem(**storage, skip_instance_cache=True)
    for _wav, jsonl in ds.file_pairs:  # rewritten after the manifest: whichever take comes first
        fs.pipe_file(f"s3://{jsonl.as_posix()}", b'{"timestamp": 0, "blendshapes": {}}\n')
    with pytest.raises(DataFormatError, match=r"s3://.*\.jsonl: changed since it was listed"):
        next(iter(ds.loader()))


# ---------------------------------------------------------------- faults in the middle of an epoch
FAULT_OPTIONS = dict(window_frames=64, stride_frames=16, loop_dataset=False, seed=2)
READERS = ["dataloader-workers", "loader"]  # DataLoader(num_workers=...) or dataset.loader()


@pytest.fixture(scope="module")
def twelve_takes(tmp_path_factory):
    """Twelve 3.2 s takes (3 windows each): after a first batch most are not fetched yet."""
    root = tmp_path_factory.mktemp("twelve")
    make_dataset(root, takes=12, seconds=3.2, seed=21)
    return root


def batches_of(ds, reader: str, workers: int = 2):
    if reader == "loader":
        return ds.loader(batch_size=2, num_threads=2)
    return DataLoader(ds, batch_size=2, num_workers=workers)


@pytest.mark.parametrize("reader", READERS)
def test_server_stopped_mid_epoch_is_a_storage_error_naming_the_object(twelve_takes, tmp_path, reader):
    # Short request deadlines through storage_options (botocore's, which the caller's win):
    # a connection the stopped server leaves open then fails in seconds, not minutes.
    deadline_s = 1.0
    server, endpoint = start_s3_server()
    try:
        url = upload_dir(twelve_takes, endpoint, "s3://stopped/capture")
        storage = {**s3_options(endpoint), "config_kwargs": {"connect_timeout": deadline_s, "read_timeout": deadline_s}}
        ds = SequentialKoeMorphDataset(url, storage_options=storage, cache_dir=tmp_path / "cache", **FAULT_OPTIONS)
        # One worker: a worker still waiting on a dead connection when the error arrives holds
        # up the DataLoader's shutdown (up to 5 s each), which only lengthens the test.
        batches = iter(batches_of(ds, reader, workers=1))
        next(batches)
    finally:
        server.stop()
    assert 1 <= len(list((tmp_path / "cache").glob("*.audio.npy"))) < 12  # takes remain to be fetched
    # One request's budget: every attempt up to both deadlines, and the backoff between them.
    # A take whose background fetch failed is requested again by its reader: twice that at most.
    attempts = DEFAULT_RETRIES + 1
    request_budget = attempts * 2 * deadline_s + DEFAULT_BACKOFF_S * (2 ** (attempts - 1) - 1)
    started = time.monotonic()
    with pytest.raises(
        StorageError, match=rf"s3://stopped/capture/take_0\d\d\.(wav|jsonl): \w+ failed after {attempts}"
    ):
        for _ in batches:
            pass
    elapsed = time.monotonic() - started
    assert elapsed < 2 * request_budget  # no hang (a bound, not a speed test)


@pytest.mark.parametrize("reader", READERS)
def test_object_replaced_mid_epoch_is_an_error_naming_it(twelve_takes, s3_endpoint, tmp_path, reader):
    url = upload_dir(twelve_takes, s3_endpoint, f"s3://takes-{uuid.uuid4().hex[:8]}/capture")
    storage = s3_options(s3_endpoint)
    write_manifest(url, storage_options=storage)
    ds = SequentialKoeMorphDataset(url, storage_options=storage, cache_dir=tmp_path / "cache", **FAULT_OPTIONS)
    assert ds.takes.manifest is not None
    last = Path(ds.file_pairs[int(ds.plan().file[-1])][0].name)  # the take this epoch reads last
    batches = iter(batches_of(ds, reader))
    next(batches)
    import s3fs

    fs = s3fs.S3FileSystem(**storage, skip_instance_cache=True)
    wav_url = f"{url}/{last.name}"
    fs.pipe_file(wav_url, (twelve_takes / last.name).read_bytes() + b"\0\0")  # two bytes longer
    with pytest.raises(DataFormatError, match=rf"{re.escape(wav_url)}: changed since it was listed"):
        for _ in batches:
            pass


def test_bench_remote_smoke(tmp_path):
    """The object-storage benchmark's smoke run on tiny data: it runs and prints its table."""
    pytest.importorskip("moto.server")
    out_json = tmp_path / "bench.json"
    command = [sys.executable, str(Path(__file__).parents[2] / "benches" / "bench_remote.py")]
    command += ["--takes", "2", "--seconds", "12", "--repeat", "1", "--strides", "64", "--json", str(out_json)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for needle in ("plain s3fs download", "cold epoch", "warm epoch", "local directory", "target >= 0.8"):
        assert needle in proc.stdout, needle
    results = json.loads(out_json.read_text())
    assert results["objects"] == 4 and results["rounds"][0]["download_each_s"] > 0
    # 12 s takes are 360 frames: 2 windows of 256 at stride 64 (starts 0 and 64) per take.
    assert results["rounds"][0]["64"]["windows"] == 4
