"""The manifest start-up benchmark runs (a smoke run: seconds, not a measurement)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benches" / "bench_manifest.py"


def test_manifest_bench_smoke_run_prints_both_columns(tmp_path):
    result = subprocess.run(
        [sys.executable, str(BENCH), "--smoke"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"\s*takes\s+without manifest\s+with manifest", lines[1]), result.stdout
    # One row of 8 real takes, one of 2,000 simulated ones, each with both columns filled.
    assert re.fullmatch(r"\s*8\s+\d+\.\d{3} s\s+\d+\.\d{3} s", lines[2]), result.stdout
    assert re.fullmatch(r"\s*2000\s+~\S+ s \(extrapolated\)\s+\d+\.\d{3} s \(\d+\.\d{2} MB file\)", lines[3]), (
        result.stdout
    )
