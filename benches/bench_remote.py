"""Epochs from S3 (a moto server on loopback) against a plain s3fs download and a local directory.

    python benches/bench_remote.py                      # 12 takes x 60 s, stride 1, ~1-2 min
    python benches/bench_remote.py --takes 2 --seconds 12 --repeat 1   # smoke run

A moto S3 server runs in its own process on 127.0.0.1 (as a real endpoint would: its CPU is
not the client's), holding N synthetic takes (``koemorph_data.synthetic``) and their manifest.
Measured side by side, best of ``--repeat``:

- **download**: a plain s3fs client reading every take's objects (wav + jsonl), the same bytes
  the cold epoch fetches: one object after another (``cat_file``), and all at once
  (``fs.cat(paths)``, s3fs's asyncio gather).
- **cold epoch**: ``SequentialKoeMorphDataset(s3://..., cache_dir=<empty>)`` and one epoch of
  ``loader()``: every take fetched, decoded into the cache and every window gathered.
- **warm epoch**: the same epoch again with that cache filled (no request made) against the
  same epoch from the local directory with its own prepared cache.

Ratios are throughput ratios, ours over the reference (time of the reference / ours): cold
epoch vs download (target >= 0.8), warm epoch from the bucket vs the local directory (target
>= 0.9). The bucket's dataset is built from its manifest (the recommended way for remote
data: no take is read at start-up), the local one over its prepared cache; build times are
listed separately and not in the epoch times.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from koemorph_data import SequentialKoeMorphDataset
from koemorph_data.manifest import write_manifest
from koemorph_data.synthetic import make_dataset

KEYS = {"key": "bench", "secret": "bench"}
WORKERS_MIN_STRIDE = 64  # the DataLoader's cold epoch is measured at strides from here on


class Usage:
    """CPU seconds the moto server and this process (all its threads) used in a ``with`` block
    (Linux; None elsewhere): what each side of a comparison costs on a shared machine."""

    server_pid = 0

    def __enter__(self) -> Usage:
        self._start = (server_cpu(self.server_pid), time.process_time())
        return self

    def __exit__(self, *exc: object) -> None:
        server = server_cpu(self.server_pid)
        self.server = None if server is None or self._start[0] is None else server - self._start[0]
        self.client = time.process_time() - self._start[1]


def server_cpu(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def start_moto() -> tuple[subprocess.Popen, str]:
    """``python -m moto.server`` on a free loopback port, once it accepts connections."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, f"http://127.0.0.1:{port}"
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise RuntimeError("moto server did not start") from None
            time.sleep(0.05)


def s3(endpoint: str) -> Any:
    import s3fs

    options = {**KEYS, "client_kwargs": {"endpoint_url": endpoint, "region_name": "eu-west-1"}}
    return options, s3fs.S3FileSystem(**options, skip_instance_cache=True)


def upload(local: Path, fs: Any, url: str) -> list[str]:
    fs.mkdir(url[len("s3://") :].split("/", 1)[0])
    paths = []
    for path in sorted(local.rglob("*")):
        if path.suffix in (".wav", ".jsonl"):
            paths.append(f"{url}/{path.relative_to(local).as_posix()}")
            fs.pipe_file(paths[-1], path.read_bytes())
    return paths


def epoch(ds: SequentialKoeMorphDataset, batch_size: int, threads: int) -> int:
    batches = ds.loader(batch_size=batch_size, num_threads=threads, drop_last=False)
    return sum(len(batch["file_names"]) for batch in batches)


def dataloader_epoch(ds: SequentialKoeMorphDataset, batch_size: int, workers: int) -> int:
    batches = DataLoader(ds, batch_size=batch_size, num_workers=workers)
    return sum(len(batch["file_names"]) for batch in batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--takes", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each take")
    parser.add_argument("--strides", default="256,1", help="stride_frames of the epochs measured")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="loader(num_threads=...)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader(num_workers=...) of its cold epoch")
    parser.add_argument(
        "--prefetch-takes", type=int, help="the datasets' prefetch_takes= (default: theirs; needs a version with it)"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, help="keep the generated takes here for later runs")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-remote-"))
    local = work / f"takes-{args.takes}x{args.seconds:g}s"
    if not local.is_dir():
        make_dataset(local, takes=args.takes, seconds=args.seconds, subdirs=True, seed=1)
    server, endpoint = start_moto()
    Usage.server_pid = server.pid
    try:
        results = run(args, work, local, endpoint)
    finally:
        server.kill()
        server.wait(timeout=30)
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def run(args: argparse.Namespace, work: Path, local: Path, endpoint: str) -> dict[str, Any]:
    """``repeat`` rounds, each measuring every configuration once (a load change on a shared
    machine then hits both sides of a ratio alike)."""
    options, fs = s3(endpoint)
    url = "s3://bench/takes"
    objects = upload(local, fs, url)
    write_manifest(url, storage_options=options)
    total_bytes = sum((local / p[len(url) + 1 :]).stat().st_size for p in objects)
    strides = [int(s) for s in args.strides.split(",")]
    local_cache = work / "cache-local"  # prepared once: entries do not depend on the stride
    epoch(SequentialKoeMorphDataset(local, cache_dir=local_cache, loop_dataset=False), args.batch_size, args.threads)
    rounds = []
    for r in range(args.repeat):
        # A new client each time, connected before the clock starts (the dataset's connects at
        # build, when it reads the manifest).
        clients = connected(endpoint, url), connected(endpoint, url)
        with Usage() as each:
            t_each, got = timed(download_each, clients[0], objects)
        with Usage() as every:
            t_all, got_all = timed(download_all, clients[1], objects)
        assert got == got_all == total_bytes, (got, got_all, total_bytes)
        measured = {"download_each_s": t_each, "download_all_s": t_all, "download_each_cpu": [each.server, each.client]}
        measured["download_all_cpu"] = [every.server, every.client]
        for stride in strides:
            cache = work / f"cache-remote-{stride}-{r}"
            shutil.rmtree(cache, ignore_errors=True)
            measured[stride] = epochs(args, local, local_cache, url, options, cache, stride)
            shutil.rmtree(cache, ignore_errors=True)
        rounds.append(measured)
    return {
        **{k: getattr(args, k) for k in ("takes", "seconds", "batch_size", "threads", "workers", "repeat")},
        "prefetch_takes": args.prefetch_takes,
        **{"objects": len(objects), "bytes": total_bytes, "cpus": os.cpu_count(), "strides": strides},
        "rounds": rounds,
    }


def timed(run, *args) -> tuple[float, Any]:
    started = time.perf_counter()
    result = run(*args)
    return time.perf_counter() - started, result


def connected(endpoint: str, url: str) -> Any:
    client = s3(endpoint)[1]
    client.ls(url)  # session, credentials and a first connection
    return client


def per_epoch(ds: SequentialKoeMorphDataset, args: argparse.Namespace, least_s: float = 0.5) -> tuple[float, int]:
    """Seconds per epoch over as many epochs as take ``least_s`` (a short epoch measured once is
    mostly noise), and the windows of one epoch."""
    epochs, started = 0, time.perf_counter()
    while True:
        windows = epoch(ds, args.batch_size, args.threads)
        epochs += 1
        elapsed = time.perf_counter() - started
        if elapsed >= least_s:
            return elapsed / epochs, windows


def download_each(client: Any, objects: list[str]) -> int:
    return sum(len(client.cat_file(p)) for p in objects)


def download_all(client: Any, objects: list[str]) -> int:
    return sum(len(b) for b in client.cat(objects).values())


def epochs(args, local: Path, local_cache: Path, url: str, options: dict, cache: Path, stride: int) -> dict:
    """One stride's cold and warm epochs from the bucket and epoch from the local directory."""
    dataset: dict[str, Any] = dict(stride_frames=stride, loop_dataset=False, batch_size=args.batch_size)
    if args.prefetch_takes is not None:
        dataset["prefetch_takes"] = args.prefetch_takes
    cold_workers = None
    if stride >= WORKERS_MIN_STRIDE:  # denser epochs measure the DataLoader's transfer limit, not storage
        workers_cache = cache.with_name(cache.name + "-workers")
        workers_ds = SequentialKoeMorphDataset(url, storage_options=options, cache_dir=workers_cache, **dataset)
        cold_workers, workers_windows = timed(lambda: dataloader_epoch(workers_ds, args.batch_size, args.workers))
        shutil.rmtree(workers_cache, ignore_errors=True)
        assert workers_windows == workers_ds.num_windows()
    remote_build, remote = timed(
        lambda: SequentialKoeMorphDataset(url, storage_options=options, cache_dir=cache, **dataset)
    )
    with Usage() as usage:
        cold, windows = timed(lambda: epoch(remote, args.batch_size, args.threads))
    warm, warm_windows = per_epoch(remote, args)
    local_build, local_ds = timed(lambda: SequentialKoeMorphDataset(local, cache_dir=local_cache, **dataset))
    local_epoch, local_windows = per_epoch(local_ds, args)
    assert windows == warm_windows == local_windows == remote.num_windows()
    return {
        **{"windows": windows, "cold_epoch_s": cold, "warm_epoch_s": warm, "local_epoch_s": local_epoch},
        "cold_workers_epoch_s": cold_workers,
        "cold_epoch_cpu": [usage.server, usage.client],
        **{"remote_build_s": remote_build, "local_build_s": local_build},
    }


def report(r: dict[str, Any]) -> None:
    """Best time of each configuration, the median over rounds of each round's ratio, and the
    median CPU seconds of the moto server and of this process where they were recorded."""
    rounds, mb = r["rounds"], r["bytes"] / 1e6

    def pick(m: dict, key: str, stride: int | None) -> Any:
        return m[key] if stride is None else m[stride].get(key)

    def row(name: str, key: str, stride: int | None = None, windows: int | None = None) -> None:
        t = min(pick(m, key, stride) for m in rounds)
        rate = "" if windows is None else f"{windows / t:10.0f}"
        cpu = [pick(m, key[: -len("_s")] + "_cpu", stride) for m in rounds]
        used = ""
        if cpu[0] is not None and cpu[0][0] is not None:
            used = f"{statistics.median(c[0] for c in cpu):8.2f} {statistics.median(c[1] for c in cpu):8.2f}"
        print(f"{name:52} {t:8.3f} {mb / t:8.1f} {rate:>10} {used}")

    def ratio(reference: str, ours: str, stride: int) -> float:
        return statistics.median(
            (m[reference] if reference.startswith("download") else m[stride][reference]) / m[stride][ours]
            for m in rounds
        )

    print(
        f"{r['takes']} takes x {r['seconds']:g} s ({r['objects']} objects, {mb:.1f} MB); "
        f"loader(batch_size={r['batch_size']}, num_threads={r['threads']}); {r['repeat']} rounds"
        + ("" if r["prefetch_takes"] is None else f"; prefetch_takes={r['prefetch_takes']}")
    )
    print(f"{'best of the rounds':52} {'seconds':>8} {'MB/s':>8} {'windows/s':>10} {'CPU s: moto':>8} {'client':>8}")
    row("plain s3fs download, one object at a time", "download_each_s")
    row("plain s3fs download, all at once (fs.cat)", "download_all_s")
    for stride in r["strides"]:
        windows = rounds[0][stride]["windows"]
        print(f"stride {stride}: {windows} windows per epoch")
        row("  cold epoch from the bucket (empty cache)", "cold_epoch_s", stride, windows)
        with_workers = rounds[0][stride]["cold_workers_epoch_s"] is not None
        if with_workers:
            row(f"    same, DataLoader(num_workers={r['workers']})", "cold_workers_epoch_s", stride, windows)
        row("  warm epoch from the bucket (cache filled)", "warm_epoch_s", stride, windows)
        row("  epoch from the local directory (prepared cache)", "local_epoch_s", stride, windows)
        print(
            f"  dataset built in {min(m[stride]['remote_build_s'] for m in rounds):.3f} s from the bucket's "
            f"manifest, {min(m[stride]['local_build_s'] for m in rounds):.3f} s over the local prepared cache"
        )
        cold = [ratio(ref, "cold_epoch_s", stride) for ref in ("download_each_s", "download_all_s")]
        line = f"  median ratios, cold epoch / download: {cold[0]:.2f} (one at a time), {cold[1]:.2f} (all at once)"
        if with_workers:
            workers = [ratio(ref, "cold_workers_epoch_s", stride) for ref in ("download_each_s", "download_all_s")]
            line += f"; with workers {workers[0]:.2f}, {workers[1]:.2f}"
        print(line + "; target >= 0.8")
        print(
            f"  median ratio, warm epoch / local directory: {ratio('local_epoch_s', 'warm_epoch_s', stride):.2f}; "
            "target >= 0.9"
        )


if __name__ == "__main__":
    main()
