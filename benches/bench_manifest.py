"""Building a TakeTable with and without the manifest.

Without: every take's JSONL is parsed and its wav header read (measured on a real directory
of N short takes, per take). With: a simulated 100,000-take manifest (entries copied from a
real one with distinct names) is read and the table built without opening any take.

    python benches/bench_manifest.py [--takes 200] [--simulated 100000]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from koemorph_data.manifest import encode_manifest, write_manifest
from koemorph_data.synthetic import make_dataset
from koemorph_data.takes import TakeTable
from koemorph_data.timing import Timing


def _build(root: Path, manifest) -> float:
    started = time.perf_counter()
    TakeTable(root, timing=Timing(16000, 30), window_frames=256, on_error="raise", manifest=manifest)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--takes", type=int, default=200, help="real takes (60 s each) to validate")
    parser.add_argument("--simulated", type=int, default=100_000, help="takes in the simulated manifest")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "takes"
        make_dataset(root, takes=args.takes, seconds=60.0, subdirs=True)
        without = min(_build(root, False) for _ in range(3))
        _where, real = write_manifest(root, Path(tmp) / "real.jsonl.gz")
        with_real = min(_build(root, Path(tmp) / "real.jsonl.gz") for _ in range(3))
        entries = [
            dataclasses.replace(e, wav=f"s{i // 1000}/t{i}.wav", jsonl=f"s{i // 1000}/t{i}.jsonl")
            for i, e in zip(range(args.simulated), (real.entries * (args.simulated // len(real.entries) + 1)))
        ]
        big = Path(tmp) / "big.jsonl.gz"
        big.write_bytes(encode_manifest({**real.header, "takes": len(entries)}, entries))
        with_big = min(_build(root, big) for _ in range(3))
        big_mb = big.stat().st_size / 1e6
    per_take = without / args.takes
    print(
        f"without manifest: {args.takes} takes in {without:.3f} s ({per_take * 1e3:.2f} ms/take; "
        f"{per_take * args.simulated:.0f} s extrapolated to {args.simulated})"
    )
    print(f"with manifest:    {args.takes} takes in {with_real:.3f} s")
    print(f"with manifest:    {args.simulated} takes in {with_big:.3f} s ({big_mb:.1f} MB file)")


if __name__ == "__main__":
    main()
