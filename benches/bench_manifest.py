"""Building a dataset with and without the take manifest, side by side.

What is timed is the whole construction a training script pays before iterating:
``SequentialKoeMorphDataset(data_dir, manifest=..., cache_dir=...)`` up to a ready object
(listing or reading the manifest, validation, the take table, sampler, store and schema; the
epoch plan is made on first iteration and is not included). Each number is the best of
``--repeat`` fresh constructions in this process (the manifest file is in the page cache).

- without a manifest: N real takes of ``--seconds`` s (synthetic, ``make_dataset``) in a
  directory: every JSONL is parsed and every wav header read (the cache directory is empty);
  the 100,000-take figure is that per-take cost times 100,000 (extrapolated, not measured).
- with a manifest: the manifest of those N takes, and a simulated manifest of ``--simulated``
  takes (the real entries repeated under distinct names): nothing is opened but the manifest.

    python benches/bench_manifest.py                  # 200 one-minute takes, 100,000 simulated
    python benches/bench_manifest.py --smoke          # seconds: what CI runs
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from koemorph_data import SequentialKoeMorphDataset
from koemorph_data.manifest import encode_manifest, write_manifest
from koemorph_data.synthetic import make_dataset

TARGET_S = 1.0  # the target for 100,000 takes with a manifest


def build_seconds(root: Path, manifest: Path | bool, cache_dir: Path, repeat: int) -> float:
    """Best of ``repeat`` constructions of the dataset (seconds)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        dataset = SequentialKoeMorphDataset(root, manifest=manifest, cache_dir=cache_dir)
        best = min(best, time.perf_counter() - started)
        del dataset
    return best


def simulated_manifest(real, takes: int, out: Path) -> float:
    """Writes a manifest of ``takes`` takes copied from ``real``'s entries; returns its MB."""
    entries = [
        dataclasses.replace(e, wav=f"s{i // 1000}/t{i}.wav", jsonl=f"s{i // 1000}/t{i}.jsonl")
        for i, e in zip(range(takes), real.entries * (takes // len(real.entries) + 1))
    ]
    out.write_bytes(encode_manifest({**real.header, "takes": len(entries)}, entries))
    return out.stat().st_size / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--takes", type=int, default=200, help="real takes to validate (default 200)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each real take (default 60)")
    parser.add_argument("--simulated", type=int, default=100_000, help="takes in the simulated manifest")
    parser.add_argument("--repeat", type=int, default=3, help="constructions timed per figure (best is shown)")
    parser.add_argument("--smoke", action="store_true", help="8 takes of 10 s, 2,000 simulated, 1 repeat")
    args = parser.parse_args()
    if args.smoke:
        args.takes, args.seconds, args.simulated, args.repeat = 8, 10.0, 2000, 1
    with tempfile.TemporaryDirectory() as tmp:
        root, cache = Path(tmp) / "takes", Path(tmp) / "cache"
        make_dataset(root, takes=args.takes, seconds=args.seconds, subdirs=True)
        without = build_seconds(root, False, cache, args.repeat)
        _where, real = write_manifest(root, Path(tmp) / "real.jsonl.gz")
        with_real = build_seconds(root, Path(tmp) / "real.jsonl.gz", cache, args.repeat)
        big_mb = simulated_manifest(real, args.simulated, Path(tmp) / "big.jsonl.gz")
        with_big = build_seconds(root, Path(tmp) / "big.jsonl.gz", cache, args.repeat)
    per_take = without / args.takes
    print(f"dataset construction, {args.seconds:g} s takes (best of {args.repeat}):")
    print(f"{'takes':>8}  {'without manifest':>26}  {'with manifest':>26}")
    print(f"{args.takes:>8}  {without:>22.3f} s    {with_real:>22.3f} s")
    extrapolated = f"~{per_take * args.simulated:.3g} s (extrapolated)"
    simulated = f"{with_big:.3f} s ({big_mb:.2f} MB file)"
    print(f"{args.simulated:>8}  {extrapolated:>26}  {simulated:>26}")
    if args.simulated == 100_000:
        verdict = "meets" if with_big <= TARGET_S else "misses"
        print(f"with a manifest, 100,000 takes: {with_big:.3f} s ({verdict} the {TARGET_S:g} s target)")


if __name__ == "__main__":
    main()
