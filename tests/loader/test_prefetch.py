"""``prefetch_takes``: while a reader is in take k, the next takes of its own stream are already
requested from the store (read from the S3 server's own request log), ``prefetch_takes=0``
requests nothing ahead, and a prefetched take that fails raises its error when the stream
reaches it, after every window before it."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import uuid

import pytest
from conftest import request_log_of, s3_options, upload_dir
from torch.utils.data import DataLoader

from koemorph_data import SequentialKoeMorphDataset
from koemorph_data.errors import DataFormatError
from koemorph_data.manifest import write_manifest

OPTIONS = dict(window_frames=64, stride_frames=16, loop_dataset=False, seed=5)


@pytest.fixture()
def bucket(many_dataset, s3_endpoint):
    url = upload_dir(many_dataset, s3_endpoint, f"s3://ahead-{uuid.uuid4().hex[:8]}/capture")
    write_manifest(url, storage_options=s3_options(s3_endpoint))  # the dataset then reads no take to start
    return url


@pytest.fixture()
def request_log(bucket):
    with request_log_of(bucket) as log:
        yield log


def remote(bucket, s3_endpoint, tmp_path, **kwargs):
    return SequentialKoeMorphDataset(
        bucket, storage_options=s3_options(s3_endpoint), cache_dir=tmp_path / "cache", **{**OPTIONS, **kwargs}
    )


def stream_order(many_dataset, **kwargs) -> list[int]:
    """The take of every window of the stream, in order (from the same takes on local disk)."""
    local = SequentialKoeMorphDataset(many_dataset, **{**OPTIONS, **kwargs})
    return [int(sample["file_indices"]) for sample in local]


def take_order(windows: list[int]) -> list[int]:
    return [take for i, take in enumerate(windows) if i == 0 or windows[i - 1] != take]


def test_the_next_two_takes_are_requested_while_a_take_is_read(
    many_dataset, bucket, s3_endpoint, tmp_path, request_log
):
    ds = remote(bucket, s3_endpoint, tmp_path)
    assert ds.prefetch_takes == 2 and ds.max_cached_takes == 3  # room for the takes ahead
    windows = stream_order(many_dataset)
    takes = take_order(windows)
    assert len(takes) == 7 and min(windows.count(t) for t in takes) >= 3
    request_log.clear()
    for i, sample in enumerate(ds):
        take = windows[i]
        assert int(sample["file_indices"]) == take
        if i + 1 < len(windows) and windows[i + 1] == take:
            continue
        # The last window of this take is in hand: the next two takes were requested before
        # the stream asked for anything of them, and none further ahead.
        k = takes.index(take)
        for nxt in takes[k + 1 : k + 3]:
            request_log.wait_for(ds, nxt)
        assert not any(request_log.requested(ds, later) for later in takes[k + 3 :])


def test_prefetch_takes_zero_requests_nothing_ahead(many_dataset, bucket, s3_endpoint, tmp_path, request_log):
    ds = remote(bucket, s3_endpoint, tmp_path, prefetch_takes=0)
    assert ds.max_cached_takes == 2
    windows = stream_order(many_dataset)
    takes = take_order(windows)
    request_log.clear()
    for i, sample in enumerate(ds):
        take = windows[i]
        assert int(sample["file_indices"]) == take
        k = takes.index(take)
        assert request_log.requested(ds, take)
        assert not any(request_log.requested(ds, later) for later in takes[k + 1 :])


def test_a_dataloader_worker_requests_its_next_takes_ahead(many_dataset, bucket, s3_endpoint, tmp_path, request_log):
    """The main process holds the last window of take k while the worker is at most two
    batches (windows) ahead: only a prefetch can have requested take k + 2 by then."""
    windows = stream_order(many_dataset)
    takes = take_order(windows)
    for prefetch_takes in (2, 0):
        ds = remote(bucket, s3_endpoint, tmp_path / str(prefetch_takes), prefetch_takes=prefetch_takes)
        request_log.clear()
        loader = DataLoader(ds, batch_size=1, num_workers=1, prefetch_factor=2)
        for i, batch in enumerate(loader):
            take = windows[i]
            assert int(batch["file_indices"]) == take
            k = takes.index(take)
            if (i + 1 < len(windows) and windows[i + 1] == take) or k + 2 >= len(takes):
                continue
            if prefetch_takes:
                request_log.wait_for(ds, takes[k + 2])
            else:
                assert not request_log.requested(ds, takes[k + 2])


@pytest.mark.parametrize("prefetch", [2, 0])
def test_loader_requests_the_takes_after_its_chunks_ahead(
    many_dataset, bucket, s3_endpoint, tmp_path, request_log, prefetch
):
    """``loader()`` plans chunks of batches ahead: the takes after the planned chunk are
    requested with ``prefetch_takes=2``, and with ``prefetch_takes=0`` (and ``prefetch=0``:
    one batch per chunk, gathered when it is handed over) nothing beyond the batch in hand."""
    windows = stream_order(many_dataset)
    takes = take_order(windows)
    ds = remote(bucket, s3_endpoint, tmp_path, prefetch_takes=2 if prefetch else 0)
    request_log.clear()
    seen = 0
    for batch in ds.loader(batch_size=8, prefetch=prefetch):
        seen += len(batch["file_indices"])
        assert batch["file_indices"].tolist() == windows[seen - 8 : seen]
        k = takes.index(windows[seen - 1])
        if prefetch and seen > 8:  # the first batch is handed out before any peeking (as early as ever)
            for nxt in takes[k + 1 : k + 3]:
                request_log.wait_for(ds, nxt)
        else:
            assert not any(request_log.requested(ds, later) for later in takes[k + 1 :])
    assert seen == len(windows) // 8 * 8


# ---------------------------------------------------------------------------- failures
def _break_third_take(ds, s3_endpoint, takes: list[int]) -> str:
    """Rewrites the JSONL of the stream's third take after the manifest: reading it is a
    DataFormatError naming it. Returns its URL."""
    import s3fs

    fs = s3fs.S3FileSystem(**s3_options(s3_endpoint), skip_instance_cache=True)
    jsonl = ds.file_pairs[takes[2]][1].as_posix()
    fs.pipe_file(f"s3://{jsonl}", b'{"timestamp": 0, "blendshapes": {}}\n')
    return f"s3://{jsonl}"


@pytest.mark.parametrize("reader", ["in-process", "workers", "loader", "loader-sync"])
def test_a_failed_prefetch_raises_when_its_take_is_reached(
    many_dataset, bucket, s3_endpoint, tmp_path, request_log, reader
):
    windows = stream_order(many_dataset)
    takes = take_order(windows)
    ds = remote(bucket, s3_endpoint, tmp_path, batch_size=4)
    url = _break_third_take(ds, s3_endpoint, takes)
    before = windows.index(takes[2])  # windows of the first two takes
    request_log.clear()
    delivered = 0
    if reader == "in-process":
        stream = iter(ds)
    elif reader == "workers":
        stream = iter(DataLoader(ds, batch_size=4, num_workers=2))
    else:
        stream = iter(ds.loader(batch_size=4, prefetch=2 if reader == "loader" else 0))
    with pytest.raises(DataFormatError, match=re.escape(url) + ": changed since it was listed"):
        for item in stream:
            n = len(item["file_names"]) if isinstance(item["file_names"], list) else 1
            assert item["file_indices"].reshape(-1).tolist() == windows[delivered : delivered + n]
            delivered += n
            if delivered == windows.index(takes[1]) and reader == "in-process":
                # Still in the first take: the broken one was already requested, in the background.
                request_log.wait_for(ds, takes[2])
    # Everything before the broken take was delivered (whole batches of it), nothing after.
    per = 1 if reader == "in-process" else 4
    assert delivered == before // per * per
    if reader != "workers":  # (each worker reads the broken take of its own stream)
        assert request_log.count(url) == 1  # the prefetch's error was raised, not fetched again


_THREADS_AFTER_STREAMS = textwrap.dedent("""
    import sys, threading, time
    from koemorph_data import SequentialKoeMorphDataset

    def ahead_threads():
        return [t.name for t in threading.enumerate() if t.name.startswith("koemorph-take-ahead")]

    ds = SequentialKoeMorphDataset(sys.argv[1], cache_dir=sys.argv[2], window_frames=64, stride_frames=16,
                                   loop_dataset=False, seed=5)
    for name, stream in (("iter", iter(ds)), ("loader", iter(ds.loader()))):
        next(stream), next(stream)  # (loader(): its first batch comes before any take is loaded ahead)
        during = ahead_threads()
        rest = sum(1 for _ in stream)
        deadline = time.monotonic() + 60
        while ahead_threads() and time.monotonic() < deadline:
            time.sleep(0.01)
        print(name, len(during) > 0, rest > 0, ahead_threads())
""")


def test_no_background_thread_outlives_the_stream(many_dataset, tmp_path):
    """The threads loading takes ahead end with the stream (none is left for a later fork)."""
    script = [sys.executable, "-c", _THREADS_AFTER_STREAMS, str(many_dataset), str(tmp_path)]
    proc = subprocess.run(script, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines() == ["iter True True []", "loader True True []"]
