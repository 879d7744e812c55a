"""Takes in S3 (a moto server on loopback) stream exactly as the same takes on local disk."""

from __future__ import annotations

import uuid

import pytest
import torch
from conftest import s3_options, upload_dir
from torch.utils.data import DataLoader

from koemorph_data import SequentialKoeMorphDataset
from koemorph_data.errors import DataFormatError
from koemorph_data.manifest import write_manifest

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
