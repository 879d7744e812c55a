"""An epoch from S3 with and without ``prefetch_takes``, side by side in the same run.

A moto S3 server on 127.0.0.1 holds N one-minute takes (and their manifest); ``loader()``
reads them into a fresh cache while a simulated training step sleeps after every batch. With
``prefetch_takes=0`` each take is fetched when the stream first needs it, so the loop waits for
it; with ``prefetch_takes=2`` the next takes are fetched during the steps. Reported: epoch time
and the time the loop spent waiting for batches (best of ``--repeat``).

    python benches/bench_prefetch.py [--takes 8] [--step-ms 30] [--repeat 2]

Needs the test extra (moto[server], s3fs).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from koemorph_data import SequentialKoeMorphDataset
from koemorph_data.manifest import write_manifest
from koemorph_data.synthetic import make_dataset


def _epoch(url: str, options: dict, prefetch_takes: int, step_s: float) -> tuple[float, float, int]:
    """(epoch seconds, seconds waiting for batches, windows) of one epoch into a fresh cache."""
    with tempfile.TemporaryDirectory() as cache:
        ds = SequentialKoeMorphDataset(
            url,
            storage_options=options,
            cache_dir=cache,
            stride_frames=128,
            loop_dataset=False,
            prefetch_takes=prefetch_takes,
        )
        started = time.perf_counter()
        waiting, windows = 0.0, 0
        batches = iter(ds.loader(batch_size=4))
        while True:
            asked = time.perf_counter()
            batch = next(batches, None)
            waiting += time.perf_counter() - asked
            if batch is None:
                return time.perf_counter() - started, waiting, windows
            windows += len(batch["file_names"])
            time.sleep(step_s)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--takes", type=int, default=8, help="one-minute takes in the bucket")
    parser.add_argument("--step-ms", type=float, default=30.0, help="simulated training step per batch")
    parser.add_argument("--repeat", type=int, default=2, help="epochs per setting (the best is reported)")
    args = parser.parse_args()
    import s3fs
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    options = {
        "key": "bench",
        "secret": "bench",
        "client_kwargs": {"endpoint_url": f"http://{host}:{port}", "region_name": "eu-west-1"},
    }
    try:
        with tempfile.TemporaryDirectory() as tmp:
            make_dataset(Path(tmp), takes=args.takes, seconds=60.0, seed=3)
            fs = s3fs.S3FileSystem(**options, skip_instance_cache=True)
            fs.mkdir("bench")
            for path in sorted(Path(tmp).iterdir()):
                fs.pipe_file(f"s3://bench/takes/{path.name}", path.read_bytes())
        url = "s3://bench/takes"
        write_manifest(url, storage_options=options)
        print(f"{args.takes} one-minute takes from moto on 127.0.0.1, loader(batch_size=4), {args.step_ms:g} ms step")
        for prefetch_takes in (0, 2):
            runs = [_epoch(url, options, prefetch_takes, args.step_ms / 1000) for _ in range(args.repeat)]
            epoch, waiting, windows = min(runs)
            print(
                f"prefetch_takes={prefetch_takes}: epoch {epoch:.2f} s, waiting for batches {waiting:.2f} s "
                f"({windows} windows)"
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
