"""Two nodes with torch's own launcher: two ``torchrun --nnodes=2 --nproc-per-node=2`` agents on
127.0.0.1 (c10d rendezvous, gloo), each node with its own cache directory, all four ranks
reading one bucket of a moto S3 server on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from conftest import expected_windows, read_jsonl_by_hand, s3_options, upload_dir, usable_frames

HERE = Path(__file__).parent
WINDOW, STRIDE = 64, 16  # as multinode_script.py builds its dataset
DEADLINE_S = 240  # both agents together; they normally finish in well under a minute


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_agent(node: int, rdzv_port: int, rdzv_id: str, args: list[str], cache_dir: Path, log: Path):
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=2",
        "--nproc-per-node=2",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{rdzv_port}",
        f"--rdzv-id={rdzv_id}",
        # Node 0 hosts the rendezvous store (on one machine both would claim it otherwise).
        f"--rdzv-conf=is_host={int(node == 0)},join_timeout=120",
        "--local-addr=127.0.0.1",
        "--max-restarts=0",
        "--monitor-interval=0.5",
        str(HERE / "multinode_script.py"),
        *args,
    ]
    env = {**os.environ, "KOEMORPH_TEST_CACHE_DIR": str(cache_dir), "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    with open(log, "wb") as out:  # the child keeps its own descriptor
        # A session of its own: the whole process group (agent, ranks, DataLoader workers) is
        # killed if the test gives up.
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_all(agents: list[subprocess.Popen], deadline_s: float) -> list[int | None]:
    end = time.monotonic() + deadline_s
    for agent in agents:
        try:
            agent.wait(timeout=max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            break
    return [agent.poll() for agent in agents]


def _kill_groups(agents: list[subprocess.Popen]) -> None:
    for agent in agents:
        if agent.poll() is None:
            try:
                os.killpg(agent.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            agent.wait(timeout=30)


def _expected_epoch(local: Path) -> dict[tuple[str, int], float]:
    """Every window of the epoch by (take stem, start frame), with the sum of its blendshapes,
    from the local copy read by hand (30 fps JSONL: row k is frame k)."""
    expected = {}
    for wav in sorted(local.rglob("*.wav")):
        jsonl = wav.with_suffix(".jsonl")
        values = read_jsonl_by_hand(jsonl)[0].astype("float64")
        for start in expected_windows(usable_frames(wav, jsonl), STRIDE, WINDOW):
            expected[(wav.stem, start)] = float(values[start : start + WINDOW].sum())
    return expected


def test_two_torchrun_nodes_read_one_bucket(many_dataset, s3_endpoint, tmp_path):
    url = upload_dir(many_dataset, s3_endpoint, f"s3://nodes-{uuid.uuid4().hex[:8]}/capture")
    out = tmp_path / "out"
    out.mkdir()
    args = [url, json.dumps(s3_options(s3_endpoint)), str(out)]
    rdzv_port, rdzv_id = _free_port(), f"koemorph-{uuid.uuid4().hex[:8]}"
    caches = [tmp_path / f"node{node}-cache" for node in (0, 1)]
    logs = [tmp_path / f"node{node}.log" for node in (0, 1)]
    agents = []
    try:
        for node in (0, 1):
            agents.append(_start_agent(node, rdzv_port, rdzv_id, args, caches[node], logs[node]))
        codes = _wait_all(agents, DEADLINE_S)
    finally:
        _kill_groups(agents)
    tails = "\n".join(f"--- node {n} ---\n{log.read_text(errors='replace')[-3000:]}" for n, log in enumerate(logs))
    assert codes == [0, 0], tails

    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(4)]
    assert [r["rank"] for r in ranks] == [0, 1, 2, 3] and {r["world_size"] for r in ranks} == {4}
    # Two ranks per node, each node reading through its own cache directory.
    by_cache = Counter((r["cache_dir"], r["local_rank"]) for r in ranks)
    assert sorted(by_cache) == sorted((str(c), lr) for c in caches for lr in (0, 1))

    expected = _expected_epoch(many_dataset)
    n = len(expected)
    per_rank = -(-n // 4)
    assert n == 103 and per_rank == 26  # 7 takes of 8.9-12 s at stride 16 (see many_dataset)
    assert [len(r["windows"]) for r in ranks] == [per_rank] * 4
    assert all(r["num_windows"] == per_rank and r["all_counts"] == [per_rank] * 4 for r in ranks)

    delivered = Counter((name, start) for r in ranks for name, start, _sum in r["windows"])
    assert set(delivered) == set(expected)
    padding = per_rank * 4 - n
    assert sorted(delivered.values()) == [1] * (n - padding) + [2] * padding
    for r in ranks:
        for name, start, total in r["windows"]:
            assert total == pytest.approx(expected[(name, start)], rel=1e-6, abs=1e-6), (name, start)

    # Every take was fetched into the cache of a node whose ranks read it.
    cached = [{p.name.rsplit("-", 1)[0] for p in c.glob("*.audio.npy")} for c in caches]
    assert cached[0] and cached[1] and cached[0] | cached[1] == {w.stem for w in many_dataset.rglob("*.wav")}
