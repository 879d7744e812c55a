"""Issue 10, section 7: every Python block of the README runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_the_recipes():
    text = README.read_text(encoding="utf-8")
    for needle in ("loop_dataset=False", 'split="val"', "koemorph_data.compat", "download.pytorch.org/whl/cpu"):
        assert needle in text
    for stale in ("design document", "issue-4", "file_indices[0]"):
        assert stale not in text
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index, tmp_path):
    code = BLOCKS[index]
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"README block {index}:\n{code}\n{result.stderr[-3000:]}"
