"""Forked DataLoader workers must not hang on the core's threads, nor inherit any.

The training process parses every JSONL while validating takes (large files on several
threads) and may gather batches with ``loader()`` (the core's persistent pool); then torch
forks workers, which inherit none of those threads. Each check runs in a subprocess with a
timeout so that a hang fails instead of blocking.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import os, sys
    import torch
    from torch.utils.data import DataLoader
    from koemorph_data import SequentialKoeMorphDataset, read_blendshapes
    from koemorph_data.synthetic import make_take

    root = sys.argv[1]
    # 75 s at 30 fps: a JSONL of more than 1 MB, which the core parses on several threads.
    make_take(os.path.join(root, "long.wav"), os.path.join(root, "long.jsonl"), seconds=75.0)
    assert os.path.getsize(os.path.join(root, "long.jsonl")) > 1_100_000
    ds = SequentialKoeMorphDataset(root, stride_frames=500, loop_dataset=False)  # parses in this process
    batch = next(iter(ds.loader(batch_size=2, num_threads=2)))                  # gathers on the pool here
    loader = DataLoader(ds, batch_size=2, num_workers=2, multiprocessing_context="fork")
    got = sum(len(b["file_names"]) for b in loader)                              # workers parse again
    assert got == ds.num_windows(), (got, ds.num_windows())
    pid = os.fork()
    if pid == 0:
        values, _ = read_blendshapes(os.path.join(root, "long.jsonl"))
        child = next(iter(ds.loader(batch_size=2, num_threads=2)))
        os._exit(0 if torch.equal(child["audio"], batch["audio"]) and len(values) > 2000 else 3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    print("ok")
""")


def test_forked_workers_use_the_pool_without_hanging(tmp_path):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ok")


NO_THREADS_SCRIPT = textwrap.dedent("""
    import os, sys, warnings
    import torch
    from torch.utils.data import DataLoader
    from koemorph_data import SequentialKoeMorphDataset
    from koemorph_data.synthetic import make_take

    def threads():
        return [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]

    root = sys.argv[1]
    make_take(os.path.join(root, "long.wav"), os.path.join(root, "long.jsonl"), seconds=75.0)
    before = threads()
    ds = SequentialKoeMorphDataset(root, stride_frames=500, loop_dataset=False)  # parses > 1 MB in parallel
    after = threads()
    assert not [t for t in after if t.startswith("koemorph")], after
    assert len(after) <= len(before), (before, after)
    # Python 3.12+ warns when forking a process with threads: there must be none of ours.
    warnings.simplefilter("error", DeprecationWarning)
    got = sum(len(b["file_names"]) for b in DataLoader(ds, batch_size=2, num_workers=2,
                                                        multiprocessing_context="fork"))
    assert got == ds.num_windows(), (got, ds.num_windows())
    print("ok", before, after)
""")


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads the thread list from /proc")
def test_validation_leaves_no_thread_behind_before_the_fork(tmp_path):
    """Building a dataset parses large JSONL files in parallel on threads joined before the
    parse returns, so the training process has no thread of ours when torch forks workers."""
    proc = subprocess.run(
        [sys.executable, "-c", NO_THREADS_SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("ok")
