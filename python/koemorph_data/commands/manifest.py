"""``koemorph-data manifest``: list and validate every take once and write the manifest
(``koemorph_data.manifest``) that lets datasets start without opening any take."""

from __future__ import annotations

import argparse
import sys
import time

from ..errors import UserError
from ..manifest import write_manifest
from .common import add_dataset_options, add_storage_options, label_format, positive_int


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_dir", help="dataset directory or fsspec URL (s3://bucket/prefix, gs://..., memory://...)")
    parser.add_argument(
        "--out", default=None, help="where to write it, path or URL (default: DATA_DIR/koemorph-manifest.jsonl.gz)"
    )
    add_storage_options(parser)
    parser.add_argument(
        "--workers", type=positive_int, default=8, help="parallel threads stating and parsing takes (default 8)"
    )
    add_dataset_options(parser)  # only --timestamp-unit changes what is recorded


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    where, manifest = write_manifest(
        args.data_dir, args.out, storage_options=args.storage_options, labels=label_format(args), workers=args.workers
    )
    if not manifest.entries:
        raise UserError(f"no .wav/.jsonl pairs found under {args.data_dir} (an empty manifest was written to {where})")
    failed = [e for e in manifest.entries if e.error is not None]
    print(
        f"manifest: {len(manifest.entries)} takes ({len(failed)} malformed) written to {where} "
        f"in {time.perf_counter() - started:.1f} s"
    )
    for entry in failed:
        error = entry.error or {}
        line = f":{error['line']}" if error.get("line") is not None else ""
        name = entry.jsonl if error.get("file") == "jsonl" else entry.wav
        print(f"malformed: {name}{line}: {error.get('reason')}", file=sys.stderr)
    return 0
