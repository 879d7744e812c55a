"""Run by test_distributed.py: 2 real processes with the gloo backend on 127.0.0.1, each
with a DataLoader of 2 (spawned) workers; every rank writes what it received as JSON."""

from __future__ import annotations

import json
import os
import sys

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from koemorph_data import AdaptiveSequentialDataset, SequentialKoeMorphDataset


def run(rank: int, world: int, data_dir: str, out_dir: str, port: int) -> None:
    # Built before init_process_group: rank and world size are resolved when iterating.
    dense = SequentialKoeMorphDataset(data_dir, stride_frames=5, loop_dataset=False, seed=3)
    lanes = AdaptiveSequentialDataset(
        data_dir, stride_mode="sparse", initial_stride=9, loop_dataset=False, lanes=3, seed=3
    )
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    result = {"rank": dist.get_rank(), "num_windows": dense.num_windows(), "len": len(dense)}
    for epoch in (0, 1):
        dense.set_epoch(epoch)
        loader = DataLoader(dense, batch_size=4, num_workers=2, multiprocessing_context="spawn", drop_last=False)
        result[f"windows_{epoch}"] = [
            [int(f), int(s)] for b in loader for f, s in zip(b["file_indices"], b["start_frames"])
        ]
    loader = DataLoader(lanes, batch_size=None, num_workers=2, multiprocessing_context="spawn")
    result["lane_batches"] = [
        {
            "file": b["file_indices"].tolist(),
            "start": b["start_frames"].tolist(),
            "valid": b["valid"].tolist(),
            "reset": b["reset"].tolist(),
        }
        for b in loader
    ]
    result["lanes_len"] = len(lanes)
    # The ranks agree on the step count, so a collective after the loop does not hang.
    counts = torch.tensor([len(result["windows_0"]), len(result["lane_batches"])])
    gathered = [torch.zeros_like(counts) for _ in range(world)]
    dist.all_gather(gathered, counts)
    result["all_counts"] = [g.tolist() for g in gathered]
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as fh:
        json.dump(result, fh)
    dist.destroy_process_group()


if __name__ == "__main__":
    data_dir, out_dir, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    torch.multiprocessing.spawn(run, args=(2, data_dir, out_dir, port), nprocs=2, join=True)
