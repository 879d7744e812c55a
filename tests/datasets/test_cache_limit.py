"""``cache_limit=``: the prepared cache stays within its limit while an epoch larger than it
runs (DataLoader workers and ``loader()``, local and S3 takes), the stream is unchanged, an
entry another process has mapped stays readable when it is evicted, and a killed writer's
leftovers are never served."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import read_jsonl_by_hand, read_wav_by_hand, s3_options, upload_dir
from torch.utils.data import DataLoader

from koemorph_data import SequentialKoeMorphDataset
from koemorph_data.budget import LOCK_NAME, parse_size
from koemorph_data.cache import TakeCache, load_take, lookup
from koemorph_data.cli import main as cli_main
from koemorph_data.manifest import write_manifest
from koemorph_data.synthetic import make_dataset

TAKES = 12
SECONDS = 3.0
OPTIONS = dict(window_frames=32, stride_frames=16, loop_dataset=False, seed=4, batch_size=4)


@pytest.fixture(scope="module")
def takes(tmp_path_factory) -> Path:
    """Twelve 3-second takes (float wavs: the audio compares exactly)."""
    root = tmp_path_factory.mktemp("limit")
    make_dataset(root, takes=TAKES, seconds=SECONDS, subtype="FLOAT", seed=21)
    return root


@pytest.fixture(scope="module")
def take_bytes(takes, tmp_path_factory) -> int:
    """The largest entry, in bytes: what one take takes in the cache."""
    cache_dir = tmp_path_factory.mktemp("full")
    assert cli_main(["prepare", str(takes), "--cache-dir", str(cache_dir), "--workers", "2"]) == 0
    sizes: dict[str, int] = {}
    for path in cache_dir.iterdir():
        if path.name != LOCK_NAME:
            base = path.name.split(".")[0]
            sizes[base] = sizes.get(base, 0) + path.stat().st_size
    assert len(sizes) == TAKES
    # 3 s of float32 audio at 16 kHz and 90 frames of 52 float32 blendshapes, .npy headers,
    # and the JSON record.
    assert max(sizes.values()) > 48000 * 4 + 90 * 52 * 4
    return max(sizes.values())


def held_bytes(cache_dir: Path) -> int:
    """Bytes of every file in the cache directory, read under the cache's lock (shared), so the
    reading is a state between two writers' changes."""
    if not cache_dir.is_dir():
        return 0
    fd = os.open(cache_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        total = 0
        for path in cache_dir.iterdir():
            if path.name != LOCK_NAME:
                try:
                    total += path.stat().st_size
                except FileNotFoundError:
                    pass
        return total
    finally:
        os.close(fd)


class Monitor:
    """Samples the cache directory's size on a thread while an epoch runs."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir, self.sizes = cache_dir, [0]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sizes.append(held_bytes(self.cache_dir))
            self._stop.wait(0.002)

    def __enter__(self) -> Monitor:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def equal_streams(a, b, after_each=None) -> int:
    n = 0
    for x, y in zip(a, b, strict=True):
        assert x["file_names"] == y["file_names"]
        for key in ("audio", "blendshapes", "file_indices", "start_frames"):
            assert torch.equal(x[key], y[key]), key
        if after_each is not None:
            after_each()
        n += 1
    return n


# ---------------------------------------------------------------------------- sizes
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20GB", 20 * 10**9),
        ("20 gb", 20 * 10**9),
        ("500MB", 500 * 10**6),
        ("1.5GiB", 3 * 2**29),
        ("64KiB", 65536),
        ("10kB", 10_000),
        ("1TB", 10**12),
        ("2TiB", 2 * 2**40),
        ("123", 123),
        ("123B", 123),
        (" 7 MiB ", 7 * 2**20),
        (4096, 4096),
        (np.int64(10), 10),
        (2e9, 2 * 10**9),
    ],
)
def test_sizes_are_read_in_bytes(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "bad", ["", "GB", "20 G", "20GBs", "1,5GB", "-1GB", "0", "0.4B", 0, -5, 1.5, True, None, "1e3"]
)
def test_bad_sizes_are_value_errors(bad):
    with pytest.raises(ValueError, match="size"):
        parse_size(bad)


def test_cache_limit_is_checked_and_needs_cache_dir(takes, tmp_path):
    with pytest.raises(ValueError, match="pass cache_dir="):
        SequentialKoeMorphDataset(takes, cache_limit="1GB", **OPTIONS)
    with pytest.raises(ValueError, match="cannot read '20 parsecs' as a size"):
        SequentialKoeMorphDataset(takes, cache_dir=tmp_path, cache_limit="20 parsecs", **OPTIONS)
    ds = SequentialKoeMorphDataset(takes, cache_dir=tmp_path, cache_limit="1.5MiB", **OPTIONS)
    assert ds.cache_limit == 1572864
    assert "cache_limit=1572864" in repr(ds)


def test_prepare_rejects_a_bad_limit(takes, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["prepare", str(takes), "--cache-dir", str(tmp_path), "--cache-limit", "lots"])
    assert exit_info.value.code == 2
    assert "--cache-limit: cannot read 'lots' as a size" in capsys.readouterr().err


# ---------------------------------------------------------------------------- an epoch over the limit
def _bucket(takes: Path, endpoint: str) -> str:
    url = upload_dir(takes, endpoint, f"s3://limit-{uuid.uuid4().hex[:8]}/capture")
    write_manifest(url, storage_options=s3_options(endpoint))
    return url


@pytest.mark.parametrize("source", ["local", "s3"])
@pytest.mark.parametrize("reader", ["workers", "loader"])
def test_an_epoch_larger_than_the_limit_stays_within_it(takes, take_bytes, tmp_path, source, reader, request):
    limit = 3 * take_bytes
    cache_dir = tmp_path / "cache"
    data_dir, storage = str(takes), None
    if source == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        data_dir, storage = _bucket(takes, endpoint), s3_options(endpoint)
    limited = SequentialKoeMorphDataset(
        data_dir, storage_options=storage, cache_dir=cache_dir, cache_limit=limit, **OPTIONS
    )
    unlimited = SequentialKoeMorphDataset(takes, **OPTIONS)  # decoded from the files, no cache
    after_batch: list[int] = []
    with Monitor(cache_dir) as monitor:
        if reader == "workers":
            streams = [DataLoader(ds, batch_size=4, num_workers=2) for ds in (limited, unlimited)]
        else:
            streams = [ds.loader() for ds in (limited, unlimited)]
        batches = equal_streams(*streams, after_each=lambda: after_batch.append(held_bytes(cache_dir)))
    assert batches == len(limited) // 4
    sizes = monitor.sizes + after_batch
    print(
        f"{source}/{reader}: limit {limit} B ({limit / take_bytes:.0f} takes), {len(sizes)} readings, "
        f"largest {max(sizes)} B ({max(sizes) / take_bytes:.2f} takes)"
    )
    assert max(sizes) <= limit + take_bytes
    assert max(sizes) <= limit  # room is made before an entry is written
    assert max(sizes) >= take_bytes  # the cache was used
    # Every take was stored at some point; most were evicted again.
    held = [p for p in cache_dir.glob("*.json")]
    assert 1 <= len(held) <= 3 < TAKES
    # The ledger in the lock file counts exactly what is there.
    assert int((cache_dir / LOCK_NAME).read_text()) == held_bytes(cache_dir)


def test_least_recently_used_takes_are_evicted_first(takes, take_bytes, tmp_path):
    wavs = sorted(takes.glob("*.wav"))[:4]
    cache = TakeCache(tmp_path, 16000, 30, limit=2 * take_bytes + 2048)
    for wav in wavs[:2]:
        cache.load(wav, wav.with_suffix(".jsonl"))
    cache.load(wavs[0], wavs[0].with_suffix(".jsonl"))  # used again: now take 1 is the oldest
    cache.load(wavs[2], wavs[2].with_suffix(".jsonl"))
    held = [lookup(tmp_path, w, w.with_suffix(".jsonl"), sample_rate=16000, target_fps=30) is not None for w in wavs]
    assert held == [True, False, True, False]
    # Evicted and needed again: decoded again, equal to decoding by hand.
    audio, blendshapes, _ = cache.load(wavs[1], wavs[1].with_suffix(".jsonl"))
    np.testing.assert_array_equal(audio, read_wav_by_hand(wavs[1]))
    np.testing.assert_array_equal(blendshapes, read_jsonl_by_hand(wavs[1].with_suffix(".jsonl"))[0])
    held = [lookup(tmp_path, w, w.with_suffix(".jsonl"), sample_rate=16000, target_fps=30) is not None for w in wavs]
    assert held == [False, True, True, False]


def test_a_take_larger_than_the_limit_is_used_without_being_cached(takes, take_bytes, tmp_path, caplog):
    wav = sorted(takes.glob("*.wav"))[0]
    cache = TakeCache(tmp_path, 16000, 30, limit=take_bytes // 2)
    for _ in range(2):
        audio, _bs, _ = cache.load(wav, wav.with_suffix(".jsonl"))
        np.testing.assert_array_equal(audio, read_wav_by_hand(wav))
    assert not list(tmp_path.glob("*.npy"))
    warnings = [r for r in caplog.records if "larger than cache_limit" in r.getMessage()]
    assert len(warnings) == 1  # once per take and process


# ---------------------------------------------------------------------------- across processes
_HOLDER = textwrap.dedent("""
    import hashlib, sys
    from koemorph_data.cache import load_take
    cache_dir, wav, jsonl = sys.argv[1:4]
    audio, blendshapes, _ = load_take(cache_dir, wav, jsonl, sample_rate=16000, target_fps=30)
    print("mapped", flush=True)
    assert sys.stdin.readline().strip() == "read now"
    # The arrays are still the memory maps of the files the other process has unlinked.
    print(hashlib.sha256(audio.tobytes()).hexdigest(), hashlib.sha256(blendshapes.tobytes()).hexdigest(), flush=True)
""")


def test_an_evicted_entry_stays_readable_for_a_process_that_has_it_mapped(takes, take_bytes, tmp_path):
    wavs = sorted(takes.glob("*.wav"))
    first = wavs[0]
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path), str(first), str(first.with_suffix(".jsonl"))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "mapped", holder.stderr.read()
        entry = lookup(tmp_path, first, first.with_suffix(".jsonl"), sample_rate=16000, target_fps=30)
        assert entry is not None
        files = [entry.audio_file, entry.blendshapes_file, entry.record_file]
        # This process stores two other takes under a limit of about one: the first is evicted.
        cache = TakeCache(tmp_path, 16000, 30, limit=take_bytes + 2048)
        for wav in wavs[1:3]:
            cache.load(wav, wav.with_suffix(".jsonl"))
        assert not any(f.exists() for f in files)
        out, err = holder.communicate("read now\n", timeout=60)
        assert holder.returncode == 0, err
    finally:
        if holder.poll() is None:
            holder.kill()
    audio_sha, blendshapes_sha = out.split()
    assert audio_sha == hashlib.sha256(read_wav_by_hand(first).tobytes()).hexdigest()
    blendshapes = read_jsonl_by_hand(first.with_suffix(".jsonl"))[0]
    assert blendshapes_sha == hashlib.sha256(blendshapes.tobytes()).hexdigest()


_KILLED = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    import koemorph_data.cache as cache
    cache_dir, wav, jsonl, victim = sys.argv[1:5]
    real_save = np.save

    def dying_save(f, array, allow_pickle=False):
        if victim in f.name:  # the temporary file of this array
            f.write(b"\\x93NUMPY half a file")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        real_save(f, array, allow_pickle=allow_pickle)

    cache.np.save = dying_save
    cache.load_take(cache_dir, wav, jsonl, sample_rate=16000, target_fps=30)
""")


@pytest.mark.parametrize("victim", [".audio.npy", ".blendshapes.npy"])
def test_a_writer_killed_mid_entry_leaves_nothing_that_is_served(takes, tmp_path, victim):
    wav = sorted(takes.glob("*.wav"))[1]
    jsonl = wav.with_suffix(".jsonl")
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED, str(tmp_path), str(wav), str(jsonl), victim], capture_output=True, timeout=120
    )
    assert killed.returncode == -9, killed.stderr
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name != LOCK_NAME)
    assert any(name.endswith(".tmp") for name in leftovers), leftovers  # the half-written file
    assert not any(name.endswith(".json") for name in leftovers)  # no record: no entry
    assert (tmp_path / LOCK_NAME).read_text().startswith("dirty")  # the ledger says so too
    assert lookup(tmp_path, wav, jsonl, sample_rate=16000, target_fps=30) is None
    # A reader decodes the take again and stores it whole; the next writer's recount removes
    # the leftovers and counts exactly what is there.
    audio, blendshapes, _ = load_take(tmp_path, wav, jsonl, sample_rate=16000, target_fps=30)
    np.testing.assert_array_equal(audio, read_wav_by_hand(wav))
    np.testing.assert_array_equal(blendshapes, read_jsonl_by_hand(jsonl)[0])
    names = sorted(p.name for p in tmp_path.iterdir() if p.name != LOCK_NAME)
    assert not any(name.endswith(".tmp") for name in names), names
    assert len(names) == 3  # record, audio, blendshapes of one entry
    assert int((tmp_path / LOCK_NAME).read_text()) == held_bytes(tmp_path)


def test_a_damaged_entry_is_rebuilt_not_served(takes, tmp_path):
    wav = sorted(takes.glob("*.wav"))[2]
    jsonl = wav.with_suffix(".jsonl")
    cache = TakeCache(tmp_path, 16000, 30, limit=10**9)
    cache.load(wav, jsonl)
    entry = cache.lookup(wav, jsonl)
    assert entry is not None
    with open(entry.audio_file, "r+b") as f:  # cut short, as a crash outside our control might
        f.truncate(1000)
    audio, _, _ = cache.load(wav, jsonl)
    np.testing.assert_array_equal(audio, read_wav_by_hand(wav))
    assert entry.audio_file.stat().st_size > 48000 * 4


# ---------------------------------------------------------------------------- prepare
def test_prepare_fills_up_to_the_limit_and_says_how_many_fit(takes, take_bytes, tmp_path, capsys):
    cache_dir = tmp_path / "cache"
    limit = str(3 * take_bytes + 4096)
    args = ["prepare", str(takes), "--cache-dir", str(cache_dir), "--workers", "1", "--cache-limit", limit]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "3 of the 12 takes fit" in out and "decode the other 9 on first use" in out
    wavs = sorted(takes.glob("*.wav"))
    fit = [lookup(cache_dir, w, w.with_suffix(".jsonl"), sample_rate=16000, target_fps=30) is not None for w in wavs]
    assert fit == [True] * 3 + [False] * 9  # the first takes in sorted order
    assert held_bytes(cache_dir) <= int(limit)
    # A dataset that used other takes since: prepare again keeps the first three, evicting the others.
    ds = SequentialKoeMorphDataset(
        takes, cache_dir=cache_dir, cache_limit=int(limit), shuffle_files=False, **{**OPTIONS, "seed": 0}
    )
    assert sum(1 for _ in ds.loader()) > 0
    assert cli_main(args) == 0
    assert "3 of the 12 takes fit" in capsys.readouterr().out
    fit = [lookup(cache_dir, w, w.with_suffix(".jsonl"), sample_rate=16000, target_fps=30) is not None for w in wavs]
    assert fit == [True] * 3 + [False] * 9
    # A lower limit trims the cache to the takes that fit in it, the first ones kept.
    assert cli_main([*args[:-1], str(take_bytes + 4096)]) == 0
    assert "1 of the 12 takes fit" in capsys.readouterr().out
    fit = [lookup(cache_dir, w, w.with_suffix(".jsonl"), sample_rate=16000, target_fps=30) is not None for w in wavs]
    assert fit == [True] + [False] * 11


def test_prepare_on_a_url_with_a_limit(takes, take_bytes, tmp_path, s3_endpoint, capsys):
    """``prepare s3://... --cache-limit``: the first takes that fit, as a dataset on the URL reads them."""
    url = _bucket(takes, s3_endpoint)
    storage = json.dumps(s3_options(s3_endpoint))
    cache_dir = tmp_path / "cache"
    limit = 3 * take_bytes + 4096  # (an S3 entry's record names URLs: a few bytes longer)
    args = ["prepare", url, "--cache-dir", str(cache_dir), "--storage-options", storage, "--workers", "1"]
    assert cli_main([*args, "--cache-limit", str(limit)]) == 0
    assert "3 of the 12 takes fit" in capsys.readouterr().out
    assert held_bytes(cache_dir) <= limit
    # A dataset on the URL with the same limit streams what the local takes give, fetching the others.
    ds = SequentialKoeMorphDataset(
        url, storage_options=s3_options(s3_endpoint), cache_dir=cache_dir, cache_limit=limit, **OPTIONS
    )
    assert equal_streams(ds.loader(), SequentialKoeMorphDataset(takes, **OPTIONS).loader()) > 0
    assert held_bytes(cache_dir) <= limit


def _sleep_in_child(started, seconds: float) -> None:
    started.set()  # after the fork hooks ran
    time.sleep(seconds)


def test_a_fork_while_a_thread_holds_the_cache_lock_does_not_keep_it():
    """flock belongs to the open file, which a forked child shares: a DataLoader worker forked
    while a thread of the training process held the cache lock must not keep holding it (this
    hung two workers forever, each waiting for the lock the other's sibling kept)."""
    import multiprocessing
    import tempfile

    from koemorph_data.budget import LOCK_NAME, budget_for

    with tempfile.TemporaryDirectory() as root:
        budget = budget_for(root)
        holding, release = threading.Event(), threading.Event()

        def hold() -> None:
            with budget.locked():
                holding.set()
                release.wait(30)

        holder = threading.Thread(target=hold)
        holder.start()
        assert holding.wait(30)
        fork = multiprocessing.get_context("fork")
        started = fork.Event()
        child = fork.Process(target=_sleep_in_child, args=(started, 20.0))
        child.start()  # forked while the lock is held
        try:
            assert started.wait(30)
            release.set()
            holder.join(30)
            fd = os.open(os.path.join(root, LOCK_NAME), os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError if the child kept it
            finally:
                os.close(fd)
            assert child.is_alive()  # the lock is free while the forked child still lives
        finally:
            child.kill()
            child.join(10)
