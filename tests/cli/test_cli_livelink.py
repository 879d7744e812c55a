"""``koemorph-data import-livelink`` and ``koemorph_data.livelink``: the timecode rate check,
the float32 text of the output and the head / eye rotation (pose) columns."""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import LIVE_LINK_HEADER

from koemorph_data import ARKIT_BLENDSHAPES, _core, read_blendshapes
from koemorph_data.cli import main
from koemorph_data.livelink import format_float32, read_livelink_csv, write_take_jsonl

JAW = ARKIT_BLENDSHAPES.index("jawOpen")
POSE = LIVE_LINK_HEADER[52:]  # HeadYaw ... RightEyeRoll, as the app writes them


def run(*args) -> subprocess.CompletedProcess:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def timecode(frame_count: float, rate: int, start_s: int = 36000) -> str:
    """``HH:MM:SS:FF.fff`` of a clock at ``rate`` frames per second, ``frame_count`` frames after
    ``start_s`` (10:00:00 by default)."""
    whole_s, ff = divmod(frame_count, rate)
    h, rest = divmod(start_s + int(whole_s), 3600)
    m, s = divmod(rest, 60)
    return f"{h:02d}:{m:02d}:{s:02d}:{int(ff):02d}.{round((ff - int(ff)) * 1000):03d}"


def write_capture(
    path: Path, rows: int, *, rate: int, step: float = 1.0, pose: bool = True, value_text=repr
) -> tuple[np.ndarray, np.ndarray]:
    """A Live Link Face CSV: row r at timecode frame r * step of a ``rate`` fps clock.
    Returns (blendshapes [rows, 52], pose [rows, 9]) as written."""
    rng = np.random.default_rng(rows)
    values = np.round(rng.random((rows, 52)), 6)
    rotations = np.round(rng.uniform(-0.6, 0.6, (rows, 9)), 6)
    header = ["Timecode", "BlendshapeCount", *(n[0].upper() + n[1:] for n in ARKIT_BLENDSHAPES)]
    with open(path, "w", newline="") as f:
        f.write(",".join(header + (POSE if pose else [])) + "\r\n")
        for r in range(rows):
            cells = [timecode(r * step, rate), "61", *map(value_text, values[r].tolist())]
            if pose:
                cells += map(repr, rotations[r].tolist())
            f.write(",".join(cells) + "\r\n")
    return values, rotations


@pytest.fixture
def audio(tmp_path) -> Path:
    path = tmp_path / "audio.wav"
    sf.write(str(path), np.zeros(16000 * 4), 16000)
    return path


def test_timecode_helper_is_what_it_says():
    assert timecode(0, 60) == "10:00:00:00.000"
    assert timecode(59, 60) == "10:00:00:59.000"
    assert timecode(61.5, 30) == "10:00:02:01.500"


# ---------------------------------------------------------------------------- timecode rate
def test_30fps_timecode_read_as_60_names_30(tmp_path, audio):
    csv = tmp_path / "take.csv"
    write_capture(csv, 90, rate=30)  # frames 0..29 each second; row r is on line r + 2
    proc = run("import-livelink", csv, "--audio", audio, "--out", tmp_path / "out", "--timecode-fps", "60")
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == (
        f"koemorph-data import-livelink: error: {csv}:32: timecode frame numbers wrap to 0 after 29 "
        "(10:00:00:29.000 -> 10:00:01:00.000): the timecode looks like 30 fps, not 60 (read at 60 fps the clock "
        "would jump 31 frames at every second); pass --timecode-fps 30"
    )
    assert not (tmp_path / "out").exists()


def test_60fps_timecode_read_as_30_names_60(tmp_path, audio):
    csv = tmp_path / "take.csv"
    write_capture(csv, 150, rate=60)  # row 30 is the first with frame 30, on line 32
    proc = run("import-livelink", csv, "--audio", audio, "--out", tmp_path / "out", "--timecode-fps", "30")
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == (
        f"koemorph-data import-livelink: error: {csv}:32: timecode 10:00:00:30.000 has frame 30, not below the "
        "timecode rate 30: frame numbers run up to 59, so the timecode looks like 60 fps; pass --timecode-fps 60"
    )


@pytest.mark.parametrize(
    "rate, step, given, ending",
    [
        # wraps after 23: read at 25 fps the clock jumps 25 - 23 = 2 frames every second
        (24, 1.0, 25, "looks like 24 fps, not 25 (read at 25 fps the clock would jump 2 frames at every second)"),
        # a 60 fps capture on a 30 fps timecode (FF 0.0, 0.5, ..., 29.5): 60 - 29.5 = 30.5
        (30, 0.5, 60, "looks like 30 fps, not 60 (read at 60 fps the clock would jump 30.5 frames at every second)"),
        (25, 1.0, 30, "looks like 25 fps, not 30 (read at 30 fps the clock would jump 6 frames at every second)"),
        (50, 1.0, 60, "looks like 50 fps, not 60 (read at 60 fps the clock would jump 11 frames at every second)"),
        # a 30 fps capture on a 60 fps timecode (FF 0, 2, ..., 58) read as 30
        (60, 2.0, 30, "frame numbers run up to 58, so the timecode looks like 60 fps"),
    ],
)
def test_other_wrong_rates_name_the_rate(tmp_path, audio, rate, step, given, ending):
    csv = tmp_path / "take.csv"
    write_capture(csv, int(3 * rate / step), rate=rate, step=step)
    proc = run("import-livelink", csv, "--audio", audio, "--out", tmp_path / "out", "--timecode-fps", given)
    assert proc.returncode == 1
    looks_like = re.search(r"looks like (\d+) fps", ending)[1]
    assert proc.stderr.splitlines()[-1].endswith(f"{ending}; pass --timecode-fps {looks_like}")


@pytest.mark.parametrize(
    "rate, step",
    [
        (60, 1.0),  # 60 fps capture, 60 fps timecode
        (30, 1.0),  # 30 fps capture, 30 fps timecode
        (60, 2.0),  # 30 fps capture on a 60 fps timecode: FF 0, 2, ..., 58 is a lower capture rate
        (30, 0.5),  # 60 fps capture on a 30 fps timecode
    ],
)
def test_the_right_rate_passes(tmp_path, audio, rate, step):
    csv = tmp_path / "take.csv"
    rows = int(3 * rate / step) + 1  # 3 s
    values, _ = write_capture(csv, rows, rate=rate, step=step)
    proc = run("import-livelink", csv, "--audio", audio, "--out", tmp_path, "--timecode-fps", rate)
    assert proc.returncode == 0, proc.stderr
    got, stamps = read_blendshapes(tmp_path / "take.jsonl")
    assert len(got) == 91 and stamps[-1] == pytest.approx(3.0)
    capture_fps = rate / step
    np.testing.assert_array_equal(got[:, JAW], values[:: int(capture_fps // 30), JAW].astype(np.float32))


def test_rate_check_sees_through_a_dropped_row_at_a_second_boundary(tmp_path):
    csv = tmp_path / "take.csv"
    write_capture(csv, 240, rate=60)
    lines = csv.read_text().splitlines(keepends=True)
    del lines[1 + 60]  # the row at 10:00:01:00 is missing
    csv.write_text("".join(lines))
    assert len(read_livelink_csv(csv, 60).times) == 239


# ---------------------------------------------------------------------------- float32 text
def test_float32_text_reads_back_to_the_same_bits(tmp_path):
    rng = np.random.default_rng(11)
    bits = rng.integers(0, 2**32, size=40000, dtype=np.uint64).astype(np.uint32)
    wide = bits.view(np.float32)
    wide = wide[np.isfinite(wide)]  # every exponent, subnormals too
    unit = rng.random(20000, dtype=np.float32)  # typical blendshape values
    edges = np.array([0.0, -0.0, 1.0, 0.1, 1e-45, 1.1754944e-38, 3.4028235e38, 0.002054], dtype=np.float32)
    numbers = np.concatenate([wide, unit, edges])
    numbers = numbers[: len(numbers) // 52 * 52].reshape(-1, 52)
    path = tmp_path / "values.jsonl"
    write_take_jsonl(path, np.arange(len(numbers)) / 30, numbers)
    texts = [re.search(r'"blendshapes": \[([^\]]*)\]', line)[1].split(",") for line in path.read_text().splitlines()]
    back = np.array([[np.float32(float(t)) for t in row] for row in texts], dtype=np.float32)
    np.testing.assert_array_equal(back.view(np.uint32), numbers.view(np.uint32))
    # The Rust reader agrees, bit for bit.
    np.testing.assert_array_equal(read_blendshapes(path)[0].view(np.uint32), numbers.view(np.uint32))


@pytest.mark.parametrize(
    "value, text",
    [(0.002054, "0.002054"), (0.1, "0.1"), (1.0, "1"), (0.0, "0"), (0.33333334, "0.33333334"), (0.5, "0.5")],
)
def test_float32_text_is_the_shortest(value, text):
    assert format_float32(value) == text


def test_import_writes_no_float32_noise(tmp_path, audio):
    csv = tmp_path / "take.csv"
    write_capture(csv, 181, rate=60, value_text=lambda v: "0.002054")
    assert run("import-livelink", csv, "--audio", audio, "--out", tmp_path).returncode == 0
    first = json.loads((tmp_path / "take.jsonl").read_text().splitlines()[0])
    assert first["blendshapes"] == [0.002054] * 52
    assert "0.00205400004" not in (tmp_path / "take.jsonl").read_text()


# ---------------------------------------------------------------------------- pose
def test_pose_columns_are_read_in_livelink_order(tmp_path):
    csv = tmp_path / "take.csv"
    values, rotations = write_capture(csv, 120, rate=60)
    capture = read_livelink_csv(csv, 60)
    np.testing.assert_array_equal(capture.values, values)
    assert capture.pose.shape == (120, 9) and capture.pose.dtype == np.float64
    np.testing.assert_array_equal(capture.pose, rotations)
    np.testing.assert_array_equal(capture.times, np.arange(120) / 60)


def test_pose_columns_are_matched_by_name(tmp_path):
    csv = tmp_path / "take.csv"
    _, rotations = write_capture(csv, 30, rate=60)
    lines = [line.split(",") for line in csv.read_text().splitlines()]
    order = [*range(54), *range(63 - 1, 54 - 1, -1)]  # the nine pose columns reversed
    csv.write_text("\n".join(",".join(cells[j] for j in order) for cells in lines) + "\n")
    np.testing.assert_array_equal(read_livelink_csv(csv, 60).pose, rotations)


def test_no_pose_columns_gives_none(tmp_path, audio):
    csv = tmp_path / "take.csv"
    values, _ = write_capture(csv, 121, rate=60, pose=False)
    capture = read_livelink_csv(csv, 60)
    assert capture.pose is None
    np.testing.assert_array_equal(capture.values, values)
    proc = run("import-livelink", csv, "--audio", audio, "--out", tmp_path)
    assert proc.returncode == 0 and "(no head/eye rotation columns)" in proc.stderr
    assert "pose" not in json.loads((tmp_path / "take.jsonl").read_text().splitlines()[0])


def test_a_bad_pose_value_names_the_line(tmp_path, audio):
    csv = tmp_path / "take.csv"
    write_capture(csv, 30, rate=60)
    lines = csv.read_text().splitlines()
    lines[5] = lines[5].rsplit(",", 1)[0] + ",x"
    csv.write_text("\n".join(lines) + "\n")
    proc = run("import-livelink", csv, "--audio", audio, "--out", tmp_path / "out")
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == (
        f"koemorph-data import-livelink: error: {csv}:6: RightEyeRoll is 'x', not a number"
    )


@pytest.mark.skipif(not hasattr(_core, "POSE_NAMES"), reason="needs the pose-aware core")
def test_pose_is_written_at_30_fps(tmp_path, audio):
    csv = tmp_path / "take.csv"
    _, rotations = write_capture(csv, 181, rate=60)  # 3 s at 60 fps -> every other row at 30 fps
    assert run("import-livelink", csv, "--audio", audio, "--out", tmp_path).returncode == 0
    rows = [json.loads(line) for line in (tmp_path / "take.jsonl").read_text().splitlines()]
    assert len(rows) == 91
    np.testing.assert_allclose([row["pose"] for row in rows], rotations[::2], rtol=0, atol=1e-6)
