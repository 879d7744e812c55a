"""The dataset tools: ``koemorph-data inspect``, ``plot`` and ``import-livelink``."""

from __future__ import annotations

import contextlib
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import LIVE_LINK_HEADER

from koemorph_data import ARKIT_BLENDSHAPES, SequentialKoeMorphDataset, read_blendshapes, synthetic
from koemorph_data.cli import main
from koemorph_data.livelink import parse_timecode

SR, FPS = 16000, 30
JAW = ARKIT_BLENDSHAPES.index("jawOpen")


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m koemorph_data ARGS`` in a subprocess (the real entry point, with a timeout)."""
    return subprocess.run(
        [sys.executable, "-m", "koemorph_data", *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


def run(*args: str) -> subprocess.CompletedProcess:
    """The same command in-process (faster): returncode, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def write_rows(path: Path, timestamps, values) -> None:
    with open(path, "w") as f:
        for t, v in zip(timestamps, values):
            f.write(json.dumps({"timestamp": float(t), "blendshapes": [float(x) for x in v]}) + "\n")


# ---------------------------------------------------------------------------- inspect
@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    """good (6 s), at60 (60 fps rows), dropped (3 rows missing), range (values out of [0, 1]),
    long_face (blendshapes 2 s longer than the audio), short (2 s), an orphan of each kind and a
    broken take (line 4 has 51 values)."""
    root = tmp_path_factory.mktemp("messy")
    synthetic.make_take(root / "good.wav", root / "good.jsonl", seconds=6.0, seed=1)
    # 60 fps: 360 rows, span 359/60 s -> floor(179.5) + 1 = 180 frames at 30 fps.
    synthetic.make_take(root / "at60.wav", root / "at60.jsonl", seconds=6.0, seed=2)
    values60 = np.repeat(read_blendshapes(root / "at60.jsonl")[0], 2, axis=0)
    write_rows(root / "at60.jsonl", np.arange(360) / 60.0, values60)
    synthetic.make_take(root / "dropped.wav", root / "dropped.jsonl", seconds=6.0, seed=3)
    values, ts = read_blendshapes(root / "dropped.jsonl")
    keep = np.ones(len(ts), bool)
    keep[[50, 51, 52]] = False
    write_rows(root / "dropped.jsonl", ts[keep], values[keep])
    synthetic.make_take(root / "range.wav", root / "range.jsonl", seconds=6.0, seed=4)
    values, ts = read_blendshapes(root / "range.jsonl")
    values[5, JAW], values[6, 0], values[7, 51] = 1.5, -0.25, 2.0
    write_rows(root / "range.jsonl", ts, values)
    synthetic.make_take(root / "long_face.wav", root / "long_face.jsonl", seconds=6.0, seed=5, blendshape_frames=240)
    synthetic.make_take(root / "short.wav", root / "short.jsonl", seconds=2.0, seed=6)
    synthetic.make_take(root / "lonely.wav", root / "other.jsonl", seconds=1.0, seed=7)
    synthetic.make_take(root / "broken.wav", root / "broken.jsonl", seconds=6.0, seed=8)
    lines = (root / "broken.jsonl").read_text().splitlines()
    row = json.loads(lines[3])
    lines[3] = json.dumps({"timestamp": row["timestamp"], "blendshapes": row["blendshapes"][:51]})
    (root / "broken.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_inspect_json_reports_every_take_exactly(messy):
    proc = cli("inspect", messy, "--json", "--window-frames", "64", "--stride", "8")
    assert proc.returncode == 1, proc.stderr  # broken.jsonl is an error
    report = json.loads(proc.stdout)
    assert set(report) >= {"pairs", "orphans", "errors"}
    pairs = {Path(p["audio"]).stem: p for p in report["pairs"]}
    assert sorted(pairs) == ["at60", "dropped", "good", "long_face", "range", "short"]
    for p in pairs.values():
        for key in (
            "audio",
            "blendshapes",
            "sample_rate",
            "channels",
            "duration_s",
            "fps",
            "frames",
            "audio_frames",
            "windows",
            "lag_frames",
            "lag_r",
        ):
            assert key in p
    for name, p in pairs.items():
        # Rows 50..52 of `dropped` are missing: the gap is filled by interpolation in time, so
        # its frames after the gap stay in sync (taken row by row they were 3 frames early).
        assert p["lag_frames"] == 0 and p["lag_r"] > 0.8, name
        assert p["sample_rate"] == SR and p["channels"] == 1
        assert p["blendshapes"] == str(Path(p["audio"]).with_suffix(".jsonl"))
    windows = lambda usable: 0 if usable < 64 else (usable - 64) // 8 + 1  # noqa: E731
    good = pairs["good"]
    assert good["duration_s"] == 6.0 and good["frames"] == 180 and good["audio_frames"] == 180
    assert good["fps"] == pytest.approx(30.0, rel=1e-4) and good["windows"] == windows(180) == 15
    assert good["dropped_frames"] == 0 and good["out_of_range"] == 0 and good["warnings"] == []
    at60 = pairs["at60"]
    assert at60["fps"] == pytest.approx(60.0, rel=1e-6) and at60["rows"] == 360
    assert at60["frames"] == 180 and at60["audio_frames"] == 180 and at60["windows"] == windows(180)
    assert pairs["dropped"]["dropped_frames"] == 3 and pairs["dropped"]["gaps"] == 1
    # 177 rows spanning 179/30 s: 180 frames, the gap's 3 included, as many as the audio covers.
    dropped = pairs["dropped"]
    assert dropped["rows"] == 177 and dropped["frames"] == 180 and dropped["audio_frames"] == 180
    assert dropped["mismatch"] == 0 and dropped["windows"] == windows(180)
    assert dropped["warnings"] == ["3 dropped frames in 1 timestamp gaps"]
    assert pairs["range"]["out_of_range"] == 3
    assert pairs["range"]["out_of_range_names"] == ["eyeBlinkLeft", "jawOpen", "tongueOut"]
    long_face = pairs["long_face"]
    assert long_face["frames"] == 240 and long_face["audio_frames"] == 180 and long_face["mismatch"] == 60
    assert long_face["windows"] == windows(180) and long_face["warnings"]
    assert pairs["short"]["frames"] == 60 and pairs["short"]["windows"] == 0
    assert sorted(Path(o).name for o in report["orphans"]) == ["lonely.wav", "other.jsonl"]
    assert report["errors"] == [
        {"path": str(messy / "broken.jsonl"), "line": 4, "reason": "expected 52 blendshape values, got 51"}
    ]


def test_inspect_table_and_exit_status(messy, tmp_path, capsys):
    assert main(["inspect", str(messy), "--window-frames", "64", "--stride", "8"]) == 1
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header == [
        "take",
        "rate",
        "ch",
        "dur",
        "s",
        "fps",
        "frames",
        "audio",
        "fr",
        "diff",
        "dropped",
        "out[0,1]",
        "lag",
        "r",
        "windows",
    ]
    assert any(line.split()[:2] == ["good", "16000"] and line.split()[-1] == "15" for line in out.splitlines())
    assert "broken.jsonl:4: expected 52 blendshape values, got 51" in out
    assert "6 takes ok, 1 errors, 2 orphans" in out
    clean = tmp_path / "clean"
    synthetic.make_dataset(clean, takes=2, seconds=3.0)
    assert main(["inspect", str(clean), "--window-frames", "32"]) == 0
    assert main(["inspect", str(tmp_path / "missing")]) == 1
    assert "is not a directory" in capsys.readouterr().err


# ---------------------------------------------------------------------------- plot
def test_plot_reports_the_lag(tmp_path):
    synthetic.make_take(tmp_path / "late.wav", tmp_path / "late.jsonl", seconds=8.0, seed=9)
    values, ts = read_blendshapes(tmp_path / "late.jsonl")
    shifted = values.copy()
    shifted[3:] = values[:-3]  # the face moves 3 frames after the sound
    write_rows(tmp_path / "late.jsonl", ts, shifted)
    proc = cli("plot", tmp_path / "late.wav", "--out", tmp_path / "sync.png")
    assert proc.returncode == 0, proc.stderr
    assert "best lag +3 frames (+100 ms" in proc.stdout and "the face is late" in proc.stdout
    assert (tmp_path / "sync.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    synthetic.make_take(tmp_path / "ok.wav", tmp_path / "ok.jsonl", seconds=8.0, seed=9)
    assert "best lag +0 frames" in run("plot", tmp_path / "ok.wav", "--out", tmp_path / "ok.png").stdout


def test_plot_without_matplotlib_is_one_clear_line(tmp_path):
    synthetic.make_take(tmp_path / "a.wav", tmp_path / "a.jsonl", seconds=2.0)
    code = (
        "import sys; sys.modules['matplotlib'] = None; from koemorph_data.cli import main; "
        f"sys.exit(main(['plot', {str(tmp_path / 'a.wav')!r}, '--out', {str(tmp_path / 'a.png')!r}]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "koemorph-data plot: error: matplotlib is not installed; install it with: pip install 'koemorph-data[plot]'"
    ]
    proc = cli("plot", tmp_path / "nothing.wav", "--out", tmp_path / "x.png")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "nothing.wav not found" in proc.stderr


# ---------------------------------------------------------------------------- import-livelink
LIVELINK_NAMES = [n[0].upper() + n[1:] for n in ARKIT_BLENDSHAPES]
HEAD = LIVE_LINK_HEADER[52:]  # HeadYaw ... RightEyeRoll, as the app writes them


def timecode(seconds: float, fps: int = 60) -> str:
    frames_total = seconds * fps
    whole = int(math.floor(frames_total + 1e-9))
    s, ff = divmod(whole, fps)
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h % 24:02d}:{m:02d}:{sec:02d}:{ff:02d}.{round((frames_total - whole) * 1000):03d}"


def write_livelink(path: Path, rows: int, *, start_s: float = 36000.0, fps: int = 60) -> np.ndarray:
    """Rows at `fps` from `start_s`; value of blendshape j in row r = (r + j) % 97 / 96, jawOpen a ramp."""
    values = np.array([[((r + j) % 97) / 96 for j in range(52)] for r in range(rows)])
    values[:, JAW] = np.arange(rows) / (rows - 1)
    with open(path, "w", newline="") as f:
        f.write(",".join(["Timecode", "BlendshapeCount", *LIVELINK_NAMES, *HEAD]) + "\r\n")
        for r in range(rows):
            cells = [timecode(start_s + r / fps, fps), "61", *(repr(float(v)) for v in values[r]), *["0.1"] * 9]
            f.write(",".join(cells) + "\r\n")
    return values


def test_parse_timecode():
    assert parse_timecode("01:02:03:30.500", 60) == 3723 + 30.5 / 60
    assert parse_timecode("00:00:10:12", 30) == 10.4
    with pytest.raises(ValueError, match="not below the timecode rate 30"):
        parse_timecode("00:00:10:45.000", 30)
    with pytest.raises(ValueError, match="HH:MM:SS:FF.fff"):
        parse_timecode("10:00:00.5", 60)


def test_import_livelink_converts_and_trims(tmp_path):
    csv = tmp_path / "My Take.csv"
    values = write_livelink(csv, 241)  # 4 s at 60 fps
    audio48 = np.stack([np.sin(np.arange(144000) / 48000 * 2 * np.pi * 220) * 0.5] * 2, axis=1)
    sf.write(str(tmp_path / "audio.wav"), audio48, 48000, subtype="FLOAT")  # 3 s stereo at 48 kHz
    out = tmp_path / "out"
    proc = run("import-livelink", csv, "--audio", tmp_path / "audio.wav", "--out", out, "--timecode-fps", "60")
    assert proc.returncode == 0, proc.stderr
    assert "import-livelink:" in proc.stderr  # progress on stderr
    info = sf.info(str(out / "My Take.wav"))
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (16000, 1, "PCM_16", 48000)
    got, ts = read_blendshapes(out / "My Take.jsonl")
    assert got.shape == (90, 52)  # the audio's 3 s; the CSV's last second is trimmed
    np.testing.assert_allclose(ts, np.arange(90) / 30, atol=1e-9)
    # 60 -> 30 fps takes every other row exactly (the Rust rule), in ARKit order.
    np.testing.assert_array_equal(got, values[0:180:2].astype(np.float32))
    ds = SequentialKoeMorphDataset(out, window_frames=32, loop_dataset=False)
    assert ds.usable_frames.tolist() == [90]
    # Existing outputs are kept unless --force.
    again = run("import-livelink", csv, "--audio", tmp_path / "audio.wav", "--out", out)
    assert again.returncode == 1 and "exists; pass --force" in again.stderr
    assert run("import-livelink", csv, "--audio", tmp_path / "audio.wav", "--out", out, "--force").returncode == 0


def test_import_livelink_24fps_interpolates_and_wraps_midnight(tmp_path):
    csv = tmp_path / "night.csv"
    write_livelink(csv, 49, start_s=86400 - 1.0, fps=24)  # 2 s crossing midnight
    sf.write(str(tmp_path / "a.flac"), np.zeros(16000 * 3), 16000)
    proc = run("import-livelink", csv, "--audio", tmp_path / "a.flac", "--out", tmp_path, "--timecode-fps", "24")
    assert proc.returncode == 0, proc.stderr
    got, _ = read_blendshapes(tmp_path / "night.jsonl")
    assert len(got) == 61  # floor(2 s * 30) + 1
    ramp = np.arange(49) / 48  # jawOpen is linear in time, so interpolation is exact
    np.testing.assert_allclose(got[:, JAW], np.interp(np.arange(61) / 30, np.arange(49) / 24, ramp), atol=1e-6)


def test_import_livelink_errors_are_one_line_with_the_line(tmp_path):
    csv = tmp_path / "bad.csv"
    write_livelink(csv, 20)
    sf.write(str(tmp_path / "a.wav"), np.zeros(16000), 16000)
    lines = csv.read_text().splitlines()
    cells = lines[4].split(",")
    cells[2 + JAW] = "abc"
    lines[4] = ",".join(cells)
    csv.write_text("\n".join(lines) + "\n")
    proc = run("import-livelink", csv, "--audio", tmp_path / "a.wav", "--out", tmp_path / "o")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"koemorph-data import-livelink: error: {csv}:5: JawOpen is 'abc', not a number".replace("JawOpen", "jawOpen")
    )
    lines[4] = lines[3]
    lines[6] = lines[2]  # goes back in time
    csv.write_text("\n".join(lines) + "\n")
    proc = run("import-livelink", csv, "--audio", tmp_path / "a.wav", "--out", tmp_path / "o")
    assert proc.returncode == 1 and f"{csv}:7: timecode" in proc.stderr and "earlier" in proc.stderr
    (tmp_path / "nohead.csv").write_text("Timecode,EyeBlinkLeft\n00:00:00:00.000,0.5\n")
    proc = run("import-livelink", tmp_path / "nohead.csv", "--audio", tmp_path / "a.wav", "--out", tmp_path / "o")
    assert proc.returncode == 1 and "missing blendshape columns: eyeLookDownLeft" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "how, frames_dropped, samples_dropped",
    [
        (["--audio-offset", "0.51"], 16, 373),  # ceil(0.51 * 30) = 16 frames; (16/30 - 0.51) s = 373.3 samples
        (["--audio-offset", "-0.2"], 0, 3200),  # audio starts 0.2 s early: its first 3200 samples go
        (["--audio-start", "10:00:00:30.600"], 16, 373),  # 30.6 frames at 60 fps after 10:00:00:00 = +0.51 s
        (["--audio-offset", "0.5"], 15, 0),  # on the frame grid: no sample dropped
    ],
)
def test_import_livelink_audio_offset_starts_both_together(tmp_path, how, frames_dropped, samples_dropped):
    csv = tmp_path / "off.csv"
    values = write_livelink(csv, 241)  # 4 s at 60 fps from 10:00:00:00
    rng = np.random.default_rng(3)
    pcm = rng.integers(-20000, 20000, size=16000 * 3, dtype=np.int16)  # 3 s, exact through PCM_16
    sf.write(str(tmp_path / "a.wav"), pcm, 16000, subtype="PCM_16")
    out = tmp_path / "out"
    proc = run("import-livelink", csv, "--audio", tmp_path / "a.wav", "--out", out, *how)
    assert proc.returncode == 0, proc.stderr
    got, ts = read_blendshapes(out / "off.jsonl")
    wav, rate = sf.read(str(out / "off.wav"), dtype="int16")
    face_frames = 121 - frames_dropped  # 4 s at 30 fps = 121 frames, minus the dropped
    audio_frames = (48000 - samples_dropped) * 30 // 16000
    count = min(face_frames, audio_frames)
    assert len(got) == count and rate == 16000
    np.testing.assert_allclose(ts, np.arange(count) / 30, atol=1e-9)
    # Output frame k is CSV row 2 * (frames_dropped + k) (60 -> 30 fps takes every other row).
    np.testing.assert_array_equal(got, values[2 * frames_dropped : 2 * (frames_dropped + count) : 2].astype(np.float32))
    samples = -(-count * 16000 // 30)
    np.testing.assert_array_equal(wav, pcm[samples_dropped : samples_dropped + samples])


def test_import_livelink_audio_start_errors(tmp_path):
    csv = tmp_path / "off.csv"
    write_livelink(csv, 20)
    sf.write(str(tmp_path / "a.wav"), np.zeros(16000), 16000)
    proc = run(
        "import-livelink", csv, "--audio", tmp_path / "a.wav", "--out", tmp_path / "o", "--audio-start", "10:00:00"
    )
    assert proc.returncode == 1 and "--audio-start: timecode '10:00:00' is not HH:MM:SS:FF.fff" in proc.stderr
    proc = cli(
        "import-livelink",
        csv,
        "--audio",
        tmp_path / "a.wav",
        "--out",
        tmp_path / "o",
        "--audio-start",
        "10:00:00:00",
        "--audio-offset",
        "1",
    )
    assert proc.returncode == 2 and "not allowed with argument" in proc.stderr
    proc = run(
        "import-livelink", csv, "--audio", tmp_path / "a.wav", "--out", tmp_path / "o", "--audio-offset", "60"
    )  # the audio starts after the face ends
    assert proc.returncode == 1 and "no common span" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--duration", "-1"], "argument --duration: must be positive, got -1"),
        (["--duration", "0"], "argument --duration: must be positive, got 0"),
        (["--start", "-2"], "argument --start: must not be negative, got -2"),
        (["--max-lag", "nan"], "argument --max-lag: must be a finite number, got nan"),
    ],
)
def test_plot_bad_numbers_are_usage_errors(tmp_path, args, message):
    proc = cli("plot", tmp_path / "a.wav", "--out", tmp_path / "a.png", *args)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == f"koemorph-data plot: error: {message}"
    assert not (tmp_path / "a.png").exists()


def test_plot_start_past_the_end(tmp_path):
    synthetic.make_take(tmp_path / "a.wav", tmp_path / "a.jsonl", seconds=8.0)
    proc = run("plot", tmp_path / "a.wav", "--out", tmp_path / "a.png", "--start", "100")
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == ["koemorph-data plot: error: --start 100 s is past the end of the take (8.00 s)"]
    assert not (tmp_path / "a.png").exists()
    assert run("plot", tmp_path / "a.wav", "--out", tmp_path / "a.png", "--start", "7.9").returncode == 0


def test_plot_layout_keeps_legends_off_the_curves_and_labels_inside(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from koemorph_data.commands.plot import draw
    from koemorph_data.sync import audio_face_lag

    frames = 30 * 1200  # a 20-minute take
    rate = 1000
    rng = np.random.default_rng(1)
    audio = rng.standard_normal(frames * rate // 30).astype(np.float32)
    values = rng.random((frames, 52)).astype(np.float32)
    fig = draw("long_take.wav", audio_face_lag(audio, rate, values, 30, 15), values, 30, 0, frames)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    page = fig.bbox
    for ax in fig.axes:
        plotting_area = ax.get_window_extent(renderer)
        legend = ax.get_legend().get_window_extent(renderer)
        assert legend.y0 >= plotting_area.y1 - 1  # above the axes, not over the curves
        # Everything drawn for the axes (tick labels, axis labels, legend) lies on the page.
        drawn = ax.get_tightbbox(renderer)
        assert page.x0 <= drawn.x0 and drawn.x1 <= page.x1 and page.y0 <= drawn.y0 and drawn.y1 <= page.y1
    top, bottom = fig.axes
    # The lower panel's legend sits between the panels without covering the upper time axis.
    assert bottom.get_legend().get_window_extent(renderer).y1 <= top.xaxis.label.get_window_extent(renderer).y0 + 1
    assert bottom.xaxis.label.get_window_extent(renderer).y0 >= page.y0
    import matplotlib.pyplot as plt

    plt.close(fig)


# ---------------------------------------------------------------------------- tools/
REPO = Path(__file__).resolve().parents[2]


def test_make_sample_is_a_developer_script_outside_the_package(tmp_path):
    import importlib.util
    import os

    assert importlib.util.find_spec("koemorph_data.tools") is None
    script = REPO / "tools" / "make_sample.py"
    spec = importlib.util.spec_from_file_location("make_sample", script)
    make_sample = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_sample)
    assert make_sample.DEFAULT_OUT == REPO / "python" / "koemorph_data" / "sample_data"
    assert (make_sample.DEFAULT_OUT / "take_01.wav").is_file()
    # It uses the checkout's synthetic.py: the same blendshapes as the package's.
    audio = np.sin(np.arange(16000) / 16000 * 2 * np.pi * 3).astype(np.float32)
    np.testing.assert_array_equal(
        make_sample.load_synthetic().blendshapes_from_audio(audio, 16000, seed=4),
        synthetic.blendshapes_from_audio(audio, 16000, seed=4),
    )
    # Without espeak-ng on PATH it says what is missing and writes nothing.
    env = {**os.environ, "PATH": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "out")], capture_output=True, text=True, timeout=60, env=env
    )
    assert proc.returncode == 1 and proc.stderr == "espeak-ng not found (apt-get install espeak-ng sox)\n"
    assert not (tmp_path / "out").exists()
