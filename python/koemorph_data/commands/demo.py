"""``koemorph-data demo``: the Quick start's DataLoader configuration over the bundled sample."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from .. import ARKIT_BLENDSHAPES, SAMPLE_DATA_DIR, AdaptiveSequentialDataset, SequentialKoeMorphDataset


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "data_dir",
        nargs="?",
        type=Path,
        default=SAMPLE_DATA_DIR,
        help="a dataset directory (default: the sample shipped with the package)",
    )
    parser.add_argument("--stride", type=int, default=1, help="stride_frames (default 1: every transition)")
    parser.add_argument("--batch-size", type=int, default=4, help="batch size (default 4; also the dataset's)")
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader worker processes (default 2)")
    parser.add_argument("--max-batches", type=int, default=None, help="stop after this many batches")


def _describe(batch: dict) -> str:
    parts = []
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            parts.append(f"{key} {tuple(value.shape)} {str(value.dtype).removeprefix('torch.')}")
        else:
            parts.append(f"{key} {value!r}")
    return ", ".join(parts)


_DID_NOT_FILL = " did not fill a batch of {} (drop_last=True)"


def shortfall(epoch_windows: int, delivered: int, batch_size: int) -> str:
    """Why a full epoch delivered fewer than ``epoch_windows`` with ``drop_last=True`` ("" if it did not).

    The dataset is given the DataLoader's batch size, so the workers deal whole batches of the
    epoch in order and only the epoch's last, partial batch is dropped, with any ``num_workers``.
    """
    if delivered >= epoch_windows:
        return ""
    rest = epoch_windows % batch_size
    if rest != epoch_windows - delivered:  # not a complete pass; nothing to explain
        return f"; the epoch has {epoch_windows} windows"
    return f"; the epoch has {epoch_windows} windows: the last {rest}{_DID_NOT_FILL.format(batch_size)}"


def run(args: argparse.Namespace) -> int:
    # batch_size: the workers deal whole batches, in the same order as num_workers=0.
    dataset = SequentialKoeMorphDataset(
        args.data_dir, stride_frames=args.stride, loop_dataset=False, batch_size=args.batch_size
    )
    print(
        f"dataset {args.data_dir}: {len(dataset.file_pairs)} takes, "
        f"{int(dataset.usable_frames.sum())} usable frames at {dataset.target_fps} fps, "
        f"window {dataset.window_frames} frames = {dataset.window_samples} samples, "
        f"stride {args.stride}: {dataset.num_windows()} windows in epoch {dataset.epoch}"
    )
    loader = DataLoader(
        dataset,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=args.num_workers > 0,
        drop_last=True,
    )
    jaw = ARKIT_BLENDSHAPES.index("jawOpen")
    started = time.perf_counter()
    windows = batches = 0
    stopped = False
    seen: dict[str, int] = {}
    for batch in loader:
        if batches == 0:
            print(f"first batch after {time.perf_counter() - started:.2f} s: {_describe(batch)}")
        batches += 1
        windows += len(batch["file_names"])
        for name in batch["file_names"]:
            seen[name] = seen.get(name, 0) + 1
        if batches <= 3:
            rows = ", ".join(f"{n}@{int(f)}" for n, f in zip(batch["file_names"], batch["start_frames"]))
            print(
                f"batch {batches}: windows {rows}; mean jawOpen {batch['blendshapes'][..., jaw].mean():.3f}, "
                f"audio RMS {batch['audio'].pow(2).mean().sqrt():.3f}"
            )
        if stopped := args.max_batches is not None and batches >= args.max_batches:
            break
    elapsed = time.perf_counter() - started
    print(
        f"delivered {batches} batches = {windows} windows in {elapsed:.2f} s "
        f"({windows / max(elapsed, 1e-9):.0f} windows/s)"
        + (
            f"; stopped by --max-batches {args.max_batches}"
            if stopped
            else shortfall(dataset.num_windows(), windows, args.batch_size)
        )
    )
    print("per take: " + ", ".join(f"{k} {v}" for k, v in sorted(seen.items())))
    # The adaptive dataset's schedule, to show the stride modes.
    adaptive = AdaptiveSequentialDataset(args.data_dir, stride_mode="progressive", loop_dataset=False)
    schedule = []
    for epoch in (0, 25, 50, 75, 99):
        adaptive.set_epoch(epoch)
        schedule.append(f"epoch {epoch}: stride {adaptive.current_stride}, {adaptive.num_windows()} windows")
    print("progressive schedule (linear, 32 -> 1 over 100 epochs): " + "; ".join(schedule))
    return 0
