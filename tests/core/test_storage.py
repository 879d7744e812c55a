"""storage.py: local and fsspec roots list the same takes; remote requests are bounded."""

from __future__ import annotations

import pickle
import socket
import time
import uuid
from pathlib import Path, PurePosixPath

import pytest
from conftest import request_log_of, s3_options, start_s3_server, upload_dir

from koemorph_data.errors import DataFormatError, StorageError
from koemorph_data.storage import (
    LocalSource,
    ObjectStat,
    RemoteSource,
    find_file_pairs,
    is_remote,
    map_in_order,
    open_root,
)
from koemorph_data.synthetic import make_dataset


@pytest.fixture(scope="module")
def messy_dir(tmp_path_factory) -> Path:
    """Takes in subdirectories plus an orphan of each kind."""
    root = tmp_path_factory.mktemp("messy")
    make_dataset(root, takes=4, seconds=1.0, subdirs=True, seed=3)
    (root / "lonely.wav").write_bytes(b"RIFF")
    (root / "sub-x").mkdir()
    (root / "sub-x" / "alone.jsonl").write_text("{}\n")
    return root


def test_url_detection():
    assert is_remote("s3://b/p") and is_remote("memory://x") and is_remote("gs://b")
    assert not is_remote("/data/takes") and not is_remote("file:///data") and not is_remote(Path("s3:/x"))


def test_local_source_is_find_file_pairs_relative(messy_dir):
    source = open_root(messy_dir)
    assert isinstance(source, LocalSource)
    pairs, orphans = source.list_pairs()
    abs_pairs, abs_orphans = find_file_pairs(messy_dir)
    assert [(source.path(w), source.path(j)) for w, j in pairs] == abs_pairs
    assert [source.path(o) for o in orphans] == abs_orphans
    assert all(isinstance(w, PurePosixPath) and not w.is_absolute() for w, _ in pairs)
    st = source.stat(pairs[0][0])
    assert st.size == (messy_dir / pairs[0][0]).stat().st_size and isinstance(st.version, int)
    assert source.read_bytes(pairs[0][1]) == (messy_dir / pairs[0][1]).read_bytes()
    assert isinstance(open_root(f"file://{messy_dir}"), LocalSource)


def test_memory_source_lists_like_local(messy_dir):
    import fsspec

    fs = fsspec.filesystem("memory")
    prefix = f"/takes-{uuid.uuid4().hex[:8]}"
    for path in messy_dir.rglob("*"):
        if path.is_file():
            fs.pipe_file(f"{prefix}/{path.relative_to(messy_dir).as_posix()}", path.read_bytes())
    source = open_root(f"memory://{prefix}")
    assert isinstance(source, RemoteSource)
    assert source.list_pairs() == open_root(messy_dir).list_pairs()
    rel = source.list_pairs()[0][0][1]
    assert source.read_bytes(rel) == (messy_dir / rel).read_bytes()
    assert source.stat(rel).size == (messy_dir / rel).stat().st_size


def test_s3_source_lists_stats_and_reads(messy_dir, s3_endpoint):
    url = upload_dir(messy_dir, s3_endpoint, f"s3://bucket-{uuid.uuid4().hex[:8]}/team/takes")
    source = open_root(url, s3_options(s3_endpoint), timeout=5, retries=1, backoff=0.01)
    pairs, orphans = source.list_pairs()
    assert (pairs, orphans) == open_root(messy_dir).list_pairs()
    wav = pairs[-1][0]
    assert source.read_bytes(wav) == (messy_dir / wav).read_bytes()
    st = source.stat(wav)
    assert st.size == (messy_dir / wav).stat().st_size
    assert isinstance(st.version, str) and st.version  # the ETag
    assert source.listed[wav] == st  # the listing saw the same size and ETag
    assert source.name(wav) == f"{url}/{wav.as_posix()}"
    clone = pickle.loads(pickle.dumps(source))  # a DataLoader worker opens its own filesystem
    assert clone.read_bytes(wav) == source.read_bytes(wav)
    with pytest.raises(FileNotFoundError):
        source.read_bytes("nope.wav")


def test_stopped_server_fails_fast_naming_the_object(messy_dir):
    server, endpoint = start_s3_server()
    try:
        url = upload_dir(messy_dir, endpoint, "s3://gone/takes")
        source = open_root(url, s3_options(endpoint), timeout=2, retries=2, backoff=0.05)
        rel = source.list_pairs()[0][0][0]
    finally:
        server.stop()
    started = time.monotonic()
    with pytest.raises(StorageError, match=r"s3://gone/takes/.*\.wav: read failed after 3 attempt\(s\)") as info:
        source.read_bytes(rel)
    assert info.value.url == f"{url}/{rel.as_posix()}"
    assert time.monotonic() - started < 10  # 3 attempts, 0.05 + 0.1 s of backoff: no hang
    assert pickle.loads(pickle.dumps(info.value)).url == info.value.url


def test_unanswered_requests_time_out_naming_the_object():
    # A server that takes connections (the kernel's listen backlog) and never answers them.
    deadline_s = 0.5
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        source = open_root("s3://silent/takes", s3_options(endpoint), timeout=deadline_s, retries=1, backoff=0.01)
        started = time.monotonic()
        with pytest.raises(
            StorageError, match=r"s3://silent/takes/a\.wav: read failed after 2 attempt\(s\).*[Tt]imeout"
        ):
            source.read_bytes("a.wav")
        elapsed = time.monotonic() - started
    assert elapsed >= 2 * deadline_s  # both attempts waited for their deadline ...
    assert elapsed < 2 * 2 * deadline_s + 0.01 + 10  # ... and no longer (client set-up aside): no hang


def test_bad_policy_is_a_value_error():
    with pytest.raises(ValueError, match="timeout"):
        open_root("memory://x", timeout=0)


def test_map_in_order_keeps_order_and_stops_early():
    import threading

    started: list[int] = []
    lock = threading.Lock()

    def call(i: int) -> int:
        with lock:
            started.append(i)
        time.sleep(0.001 * ((7 * i) % 5))  # later items often finish first
        return i * i

    assert map_in_order(call, range(200), workers=8) == [i * i for i in range(200)]
    assert sorted(started) == list(range(200))
    assert map_in_order(call, range(5), workers=1) == [0, 1, 4, 9, 16]
    started.clear()
    # Stops after the first accepted result; at most the bounded window (4 per worker) and
    # the running calls were started beyond it.
    assert map_in_order(call, range(1000), workers=4, until=lambda r: r == 100) == [i * i for i in range(11)]
    assert len(started) <= 11 + 4 * 4 + 4


def test_map_in_order_raises_the_first_failure_in_order():
    started: list[int] = []

    def call(i: int) -> int:
        started.append(i)
        if i in (30, 31):
            raise StorageError(f"object {i} failed", url=f"s3://b/{i}")
        return i

    with pytest.raises(StorageError, match="object 30 failed"):
        map_in_order(call, range(10_000), workers=4)
    assert len(started) <= 31 + 4 * 4 + 4  # the rest were never started


# ---------------------------------------------------------------------------- one GET per object
def test_a_remote_take_is_fetched_with_one_get_per_object_and_no_head(tmp_path, s3_endpoint):
    """With the manifest's (or listing's) ETags, a take's objects are checked against the MD5 of
    the bytes received: the server sees one GET per object and no HEAD."""
    from koemorph_data import SequentialKoeMorphDataset
    from koemorph_data.manifest import write_manifest

    local = tmp_path / "local"
    make_dataset(local, takes=3, seconds=3.0, seed=4)
    url = upload_dir(local, s3_endpoint, f"s3://oneget-{uuid.uuid4().hex[:8]}/capture")
    write_manifest(url, storage_options=s3_options(s3_endpoint))
    ds = SequentialKoeMorphDataset(
        url, storage_options=s3_options(s3_endpoint), cache_dir=tmp_path / "cache", prefetch_takes=0, window_frames=32
    )
    with request_log_of(url) as log:
        for take in range(len(ds.file_pairs)):
            ds.store.get(take)
    objects = {"/" + path.as_posix() for pair in ds.file_pairs for path in pair}
    assert sorted(log.methods) == sorted(("GET", path) for path in objects)


def one_take_in_a_bucket(tmp_path, endpoint):
    """(local dir, its bucket URL, the URL's source after listing, (wav, jsonl) relative paths)."""
    local = tmp_path / "local"
    make_dataset(local, takes=1, seconds=1.0, seed=2)
    url = upload_dir(local, endpoint, f"s3://one-{uuid.uuid4().hex[:8]}/capture")
    source = open_root(url, s3_options(endpoint))
    (pair,), _ = source.list_pairs()
    return local, url, source, pair


def test_an_object_replaced_by_one_of_the_same_size_is_named(tmp_path, s3_endpoint):
    local, url, source, (wav, _) = one_take_in_a_bucket(tmp_path, s3_endpoint)
    listed = source.listed_stat(wav)
    original = source.read_checked(wav, listed)
    assert original == (local / wav).read_bytes()
    changed = original[:-2] + bytes([original[-2] ^ 1, original[-1]])  # one bit, same size
    source.fs.pipe_file(source.path(wav).as_posix(), changed)
    with pytest.raises(DataFormatError, match="changed since it was listed.*content MD5") as info:
        source.read_checked(wav, listed)
    assert info.value.path == f"{url}/{wav.as_posix()}"


def test_an_etag_that_is_not_an_md5_falls_back_to_asking_the_store(tmp_path, s3_endpoint):
    """Objects encrypted with SSE-KMS have 32-hex ETags that are not their MD5: an unchanged one
    is served (the store confirms its ETag), and the source stops trusting ETags as MD5s."""
    local, _, source, (_, jsonl) = one_take_in_a_bucket(tmp_path, s3_endpoint)
    real = source.listed_stat(jsonl)
    not_md5 = ObjectStat(real.size, "0" * 32)

    class KmsLikeSource(type(source)):  # the store reports the non-MD5 ETag for the object
        def stat(self, rel):
            return not_md5 if PurePosixPath(rel) == jsonl else super().stat(rel)

    source.__class__ = KmsLikeSource
    assert source.read_checked(jsonl, not_md5) == (local / jsonl).read_bytes()
    assert source.etag_is_md5 is False
    with pytest.raises(DataFormatError, match="changed since"):  # a real change still shows
        source.read_checked(jsonl, ObjectStat(real.size, "1" * 32))
