"""Run by test_multinode.py under ``torchrun --nnodes=2 --nproc-per-node=2``: each of the four
ranks reads one S3 bucket (a moto server on loopback) through its node's own cache directory,
with a DataLoader worker, and writes what it received as JSON.

Arguments: DATA_URL STORAGE_OPTIONS_JSON OUT_DIR; the node's cache directory comes from
KOEMORPH_TEST_CACHE_DIR (set per agent, as each machine would have its own local disk)."""

from __future__ import annotations

import json
import os
import sys

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from koemorph_data import SequentialKoeMorphDataset


def main(data_url: str, storage_options: dict, out_dir: str) -> None:
    dist.init_process_group("gloo")  # rank, world size and master address come from torchrun
    rank, world = dist.get_rank(), dist.get_world_size()
    cache_dir = os.environ["KOEMORPH_TEST_CACHE_DIR"]
    ds = SequentialKoeMorphDataset(
        data_url,
        storage_options=storage_options,
        cache_dir=cache_dir,
        window_frames=64,
        stride_frames=16,
        loop_dataset=False,
        seed=7,
    )
    ds.set_epoch(1)
    windows = []
    for batch in DataLoader(ds, batch_size=4, num_workers=1):
        sums = batch["blendshapes"].to(torch.float64).sum(dim=(1, 2)).tolist()
        windows += [[name, int(start), s] for name, start, s in zip(batch["file_names"], batch["start_frames"], sums)]
    # The ranks agree on the step count, so a collective after the loop does not hang.
    counts = [torch.zeros(1, dtype=torch.int64) for _ in range(world)]
    dist.all_gather(counts, torch.tensor([len(windows)]))
    result = {
        "rank": rank,
        "world_size": world,
        "local_rank": int(os.environ["LOCAL_RANK"]),
        "cache_dir": cache_dir,
        "num_windows": ds.num_windows(),
        "windows": windows,
        "all_counts": [int(c) for c in counts],
    }
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as fh:
        json.dump(result, fh)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], json.loads(sys.argv[2]), sys.argv[3])
