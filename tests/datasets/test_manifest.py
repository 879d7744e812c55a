"""The take manifest: a table built from it equals the validated one without opening any take."""

from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from koemorph_data import SequentialKoeMorphDataset
from koemorph_data import takes as takes_module
from koemorph_data.cli import main
from koemorph_data.errors import DataFormatError
from koemorph_data.manifest import MANIFEST_NAME, read_manifest, write_manifest
from koemorph_data.synthetic import make_take
from koemorph_data.takes import TakeTable
from koemorph_data.timing import Timing

VIEWS = [(16000, 30, "exact"), (24000, 60, "hop"), (44100, 25, "exact"), (16000, 24, "exact"), (8000, 30, "hop")]


def _add_pose(jsonl: Path) -> None:
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    jsonl.write_text("".join(json.dumps({**row, "pose": [0.1 * i] * 9}) + "\n" for i, row in enumerate(rows)))


@pytest.fixture(scope="module")
def varied_dir(tmp_path_factory) -> Path:
    """Takes at several audio rates, channel counts and capture rates, one with pose, one
    whose audio and blendshapes disagree, one malformed JSONL and one 30 fps capture that
    dropped rows (resampled even at 30 fps)."""
    root = tmp_path_factory.mktemp("varied")
    specs = [
        ("a/t48_stereo", dict(seconds=3.3, sample_rate=48000, channels=2, fps=30.0)),
        ("a/t44_60fps", dict(seconds=2.7, sample_rate=44100, fps=60.0)),
        ("b/t16_25fps", dict(seconds=4.1, sample_rate=16000, fps=25.0, timestamp_decimals=3)),
        ("b/t22_2997", dict(seconds=3.0, sample_rate=22050, fps=29.97)),
        ("c/t16_short_bs", dict(seconds=3.0, sample_rate=16000, fps=30.0, blendshape_frames=70)),
        ("c/t16_pose", dict(seconds=2.5, sample_rate=16000, fps=30.0)),
        ("d/broken", dict(seconds=2.0, sample_rate=16000, fps=30.0)),
        ("e/t30_dropped", dict(seconds=3.0, sample_rate=16000, fps=30.0)),
    ]
    for i, (name, spec) in enumerate(specs):
        make_take(root / f"{name}.wav", root / f"{name}.jsonl", seed=i, **spec)
    _add_pose(root / "c/t16_pose.jsonl")
    dropped = root / "e/t30_dropped.jsonl"  # rows 40-45 dropped: a gap, resampled at every rate
    rows = dropped.read_text().splitlines()
    dropped.write_text("\n".join(rows[:40] + rows[46:]) + "\n")
    broken = root / "d/broken.jsonl"
    lines = broken.read_text().splitlines()
    lines[2] = '{"timestamp": 0.0667, "blendshapes": [0.1, oops]}'
    broken.write_text("\n".join(lines) + "\n")
    return root


def _table(root, view, **kwargs) -> TakeTable:
    sr, fps, alignment = view
    return TakeTable(root, timing=Timing(sr, fps, alignment), window_frames=10, on_error="skip", **kwargs)


@pytest.mark.parametrize("view", VIEWS)
def test_manifest_table_equals_validated_table(varied_dir, tmp_path, view):
    out = tmp_path / "m.jsonl.gz"
    write_manifest(varied_dir, out, workers=3)
    validated = _table(varied_dir, view, manifest=False)
    listed = _table(varied_dir, view, manifest=out)
    assert listed.manifest is not None and validated.manifest is None
    assert listed.pairs == validated.pairs
    assert listed.infos == validated.infos
    assert listed.frames.tolist() == validated.frames.tolist()
    assert listed.skipped == validated.skipped  # the same path, line and message
    assert len(validated.skipped) == 1 and ":3: " in validated.skipped[0][1]


def test_manifest_file_layout(varied_dir, tmp_path):
    out = tmp_path / "m.jsonl.gz"
    write_manifest(varied_dir, out)
    lines = [json.loads(line) for line in gzip.decompress(out.read_bytes()).decode().splitlines()]
    assert lines[0] == {"format": "koemorph-manifest", "version": 2, "takes": 8, "timestamp_unit": "s"}
    first = lines[1]
    assert first["wav"] == "a/t44_60fps.wav" and first["rate"] == 44100 and first["rows"] == 162
    assert first["source_fps"] == pytest.approx(60.0, rel=1e-3) and first["pose"] is False
    assert first["wav_size"] == (varied_dir / "a/t44_60fps.wav").stat().st_size
    assert isinstance(first["wav_version"], int)  # local: mtime_ns
    stereo = next(line for line in lines[1:] if line["wav"] == "a/t48_stereo.wav")
    assert stereo["channels"] == 2 and stereo["frames"] == round(3.3 * 48000)
    assert any(line.get("pose") for line in lines[1:])
    broken = next(line for line in lines[1:] if line["wav"] == "d/broken.wav")
    assert broken["error"]["file"] == "jsonl" and broken["error"]["line"] == 3
    assert read_manifest(out).entries[0].wav == "a/t44_60fps.wav"


def test_manifest_errors_raise_naming_file_and_line(varied_dir, tmp_path):
    out = tmp_path / "m.jsonl.gz"
    write_manifest(varied_dir, out)
    with pytest.raises(DataFormatError) as info:
        TakeTable(varied_dir, timing=Timing(16000, 30), window_frames=10, on_error="raise", manifest=out)
    assert info.value.path == str(varied_dir / "d/broken.jsonl") and info.value.line == 3


def test_pose_requirement_is_checked_from_the_manifest(varied_dir, tmp_path):
    out = tmp_path / "m.jsonl.gz"
    write_manifest(varied_dir, out)
    from koemorph_data.blendshapes import LabelFormat

    table = _table(varied_dir, VIEWS[0], manifest=out, labels=LabelFormat(pose=True))
    assert [info is not None for info in table.infos].count(True) == 1  # only the pose take


def test_default_manifest_is_used_only_while_it_matches(varied_dir, tmp_path, monkeypatch):
    root = tmp_path / "copy"
    shutil.copytree(varied_dir, root)
    write_manifest(root)
    assert (root / MANIFEST_NAME).is_file()
    reference = _table(root, VIEWS[0], manifest=False)

    def no_reading(*args, **kwargs):
        raise AssertionError("a take was opened")

    with monkeypatch.context() as m:
        m.setattr(takes_module, "take_counts", no_reading)
        used = _table(root, VIEWS[0])
    assert used.manifest is not None and used.infos == reference.infos
    with open(root / "b/t16_25fps.jsonl", "a") as f:  # a changed size: the manifest is out of date
        f.write("\n")
    assert _table(root, VIEWS[0]).manifest is None
    with pytest.raises(ValueError, match="timestamp_unit='s'"):
        _table(
            root,
            VIEWS[0],
            manifest=root / MANIFEST_NAME,
            labels=__import__("koemorph_data").blendshapes.LabelFormat(timestamp_unit="ms"),
        )


def test_dataset_with_manifest_delivers_the_same_windows(small_dataset, tmp_path):
    out = tmp_path / "m.jsonl.gz"
    write_manifest(small_dataset, out)
    options = dict(window_frames=64, stride_frames=32, loop_dataset=False, seed=3)
    plain = SequentialKoeMorphDataset(small_dataset, manifest=False, **options)
    fast = SequentialKoeMorphDataset(small_dataset, manifest=str(out), **options)
    assert len(plain) == len(fast)
    for a, b in zip(plain, fast, strict=True):
        assert torch.equal(a["audio"], b["audio"]) and torch.equal(a["blendshapes"], b["blendshapes"])


def test_manifest_command(varied_dir, tmp_path, capsys):
    root = tmp_path / "copy"
    shutil.copytree(varied_dir, root)
    assert main(["manifest", str(root), "--workers", "2"]) == 0
    out = capsys.readouterr()
    assert f"8 takes (1 malformed) written to {root / MANIFEST_NAME}" in out.out
    assert "malformed: d/broken.jsonl:3:" in out.err
    assert main(["manifest", str(root), "--out", str(tmp_path / "elsewhere.jsonl.gz")]) == 0
    assert len(read_manifest(tmp_path / "elsewhere.jsonl.gz").entries) == 8


@pytest.mark.parametrize(("fps", "frames"), [(30, 90), (60, 179), (25, 75), (24, 72)])
def test_dropped_rows_count_as_loading_resamples_them(varied_dir, tmp_path, fps, frames):
    # 90 rows at 30 fps (timestamps to 6 decimals) without rows 40-45: span 2.966667 s, so
    # floor(2.966667 * fps + 1e-9) + 1 frames at any rate, 30 fps included (the gap is filled).
    out = tmp_path / "m.jsonl.gz"
    _where, written = write_manifest(varied_dir, out)
    line = next(e for e in written.entries if e.wav == "e/t30_dropped.wav")
    assert line.rows == 84 and line.max_step_s == pytest.approx(7 / 30, abs=2e-6)
    for manifest in (False, out):
        table = _table(varied_dir, (16000, fps, "exact"), manifest=manifest)
        names = [wav.name for wav, _ in table.pairs]
        assert table.infos[names.index("t30_dropped.wav")].blendshape_frames == frames


def test_entries_read_back_equal_those_written(varied_dir, tmp_path):
    out = tmp_path / "m.jsonl.gz"
    _where, written = write_manifest(varied_dir, out)
    read = read_manifest(out)
    assert read.entries == written.entries
    assert read.pairs() == [(e.wav, e.jsonl) for e in written.entries]


def test_a_bad_manifest_line_is_named(varied_dir, tmp_path):
    out = tmp_path / "m.jsonl.gz"
    write_manifest(varied_dir, out)
    lines = gzip.decompress(out.read_bytes()).decode().splitlines()
    assert '"rows":' in lines[3]
    lines[3] = lines[3].replace('"rows":', '"rowz":')
    out.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    with pytest.raises(ValueError, match=rf"^{re.escape(str(out))}:4: .*unknown field `rowz`"):
        read_manifest(out)


def test_an_older_default_manifest_is_validated_around(varied_dir, tmp_path, caplog):
    root = tmp_path / "copy"
    shutil.copytree(varied_dir, root)
    write_manifest(root)
    lines = gzip.decompress((root / MANIFEST_NAME).read_bytes()).decode().splitlines()
    lines[0] = lines[0].replace('"version":2', '"version":1')
    (root / MANIFEST_NAME).write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    with caplog.at_level("WARNING", logger="koemorph_data"):
        table = _table(root, VIEWS[0])
    assert table.manifest is None and len(table.pairs) == 8
    assert "manifest version 1, this package reads 2" in caplog.text
    with pytest.raises(ValueError, match="manifest version 1, this package reads 2"):
        _table(root, VIEWS[0], manifest=root / MANIFEST_NAME)
