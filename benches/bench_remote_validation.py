"""Validating takes in object storage without a manifest: one by one against
``REMOTE_VALIDATION_THREADS`` at a time, side by side, against a moto S3 server on loopback
(``python -m moto.server`` in its own process).

Each take costs a GET of its JSONL and a HEAD plus a ranged GET of its wav header (the stats
come from the listing). Loopback has no latency; ``--latency-ms`` adds a simulated wait to
every request (in the client, before the request) to see what the overlap gives against a
real bucket, where each request waits tens of milliseconds.

    python benches/bench_remote_validation.py [--takes 64] [--seconds 30] [--repeat 3] [--latency-ms 20]

Needs the test extra (moto[server], s3fs).
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from koemorph_data import takes as takes_module
from koemorph_data.storage import RemoteSource
from koemorph_data.synthetic import make_dataset
from koemorph_data.takes import TakeTable
from koemorph_data.timing import Timing

KEYS = {"key": "testing", "secret": "testing"}


def upload(local: Path, endpoint: str) -> str:
    import s3fs

    fs = s3fs.S3FileSystem(**KEYS, client_kwargs={"endpoint_url": endpoint, "region_name": "eu-west-1"})
    url = f"s3://bench-{uuid.uuid4().hex[:8]}/takes"
    fs.mkdir(url.split("/")[2])
    for path in sorted(local.rglob("*")):
        if path.is_file():
            fs.pipe_file(f"{url}/{path.relative_to(local).as_posix()}", path.read_bytes())
    return url


def validation_seconds(url: str, endpoint: str, cache: Path, threads: int, repeat: int) -> float:
    takes_module.REMOTE_VALIDATION_THREADS = threads
    options = {**KEYS, "client_kwargs": {"endpoint_url": endpoint, "region_name": "eu-west-1"}}
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        TakeTable(
            url,
            timing=Timing(16000, 30),
            window_frames=256,
            on_error="raise",
            cache_dir=cache,
            storage_options=options,
            manifest=False,
        )
        best = min(best, time.perf_counter() - started)
    return best


def start_moto() -> tuple[subprocess.Popen, str]:
    """``python -m moto.server`` on a free loopback port, once it answers."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return server, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    server.kill()
    raise RuntimeError("moto.server did not start")


def add_latency(seconds: float) -> None:
    """Every request of a RemoteSource waits ``seconds`` first (a simulated round trip)."""
    call = RemoteSource._call

    def slow(self, what, rel, request):
        time.sleep(seconds)
        return call(self, what, rel, request)

    RemoteSource._call = slow  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--takes", type=int, default=64, help="takes in the bucket (default 64)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each take (default 30)")
    parser.add_argument("--repeat", type=int, default=3, help="validations timed per figure (best is shown)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="simulated wait per request (default 0)")
    args = parser.parse_args()
    server, endpoint = start_moto()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            make_dataset(Path(tmp) / "takes", takes=args.takes, seconds=args.seconds, subdirs=True)
            url = upload(Path(tmp) / "takes", endpoint)
            if args.latency_ms:
                add_latency(args.latency_ms / 1000)
            threads = takes_module.REMOTE_VALIDATION_THREADS
            one = validation_seconds(url, endpoint, Path(tmp) / "cache", 1, args.repeat)
            many = validation_seconds(url, endpoint, Path(tmp) / "cache", threads, args.repeat)
    finally:
        server.terminate()
        server.wait(timeout=30)
    latency = f", {args.latency_ms:g} ms simulated per request" if args.latency_ms else ""
    print(
        f"validating {args.takes} takes of {args.seconds:g} s from moto on loopback{latency} (best of {args.repeat}):"
    )
    print(f"  one by one:       {one:.3f} s  ({args.takes / one:.0f} takes/s)")
    print(f"  {threads:>2} at a time:    {many:.3f} s  ({args.takes / many:.0f} takes/s, {one / many:.2f}x)")


if __name__ == "__main__":
    main()
