"""Capture conventions on the command line (issue 9): ``--blendshape-order`` and
``--timestamp-unit`` of ``inspect`` and ``prepare``, the prepared cache's key and format
version, and the memory a mis-stamped take costs (the commands run in subprocesses).

Expected arrays are built here from the numbers this file writes; peak memory is each
command's own ``ru_maxrss``, read by a small wrapper process whose only child it is.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SR, FPS = 16000, 30

# Live Link Face's blendshape order, spelt out (not taken from the package).
LIVE_LINK = (
    "eyeBlinkLeft eyeLookDownLeft eyeLookInLeft eyeLookOutLeft eyeLookUpLeft eyeSquintLeft eyeWideLeft "
    "eyeBlinkRight eyeLookDownRight eyeLookInRight eyeLookOutRight eyeLookUpRight eyeSquintRight eyeWideRight "
    "jawForward jawRight jawLeft jawOpen mouthClose mouthFunnel mouthPucker mouthRight mouthLeft "
    "mouthSmileLeft mouthSmileRight mouthFrownLeft mouthFrownRight mouthDimpleLeft mouthDimpleRight "
    "mouthStretchLeft mouthStretchRight mouthRollLower mouthRollUpper mouthShrugLower mouthShrugUpper "
    "mouthPressLeft mouthPressRight mouthLowerDownLeft mouthLowerDownRight mouthUpperUpLeft mouthUpperUpRight "
    "browDownLeft browDownRight browInnerUp browOuterUpLeft browOuterUpRight cheekPuff cheekSquintLeft "
    "cheekSquintRight noseSneerLeft noseSneerRight tongueOut"
).split()
KOEMORPH = list(LIVE_LINK)
KOEMORPH[15], KOEMORPH[16] = "jawLeft", "jawRight"
KOEMORPH[21], KOEMORPH[22] = "mouthLeft", "mouthRight"


def cli(*args, check_rc: int | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "koemorph_data", *map(str, args)], capture_output=True, text=True, timeout=300
    )
    if check_rc is not None:
        assert result.returncode == check_rc, result.stdout + result.stderr
    return result


def write_take(
    folder: Path, stem: str, values: np.ndarray, *, columns: list[str] = LIVE_LINK, scale: float = 1.0, decimals=9
) -> None:
    """A take at 30 fps: ``values`` [frames, 52] in Live Link order written positionally in
    ``columns``' order, timestamps k / 30 s times ``scale`` (1000: milliseconds), and noise
    audio covering the frames."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = len(values)
    samples = math.ceil(frames * SR / FPS) + 5
    audio = np.random.default_rng(frames).uniform(-0.5, 0.5, samples).astype(np.float32)
    sf.write(str(folder / f"{stem}.wav"), audio, SR, subtype="PCM_16")
    index = [LIVE_LINK.index(name) for name in columns]
    with open(folder / f"{stem}.jsonl", "w") as f:
        for k in range(frames):
            row = {"timestamp": round(k * scale / FPS, decimals), "blendshapes": values[k, index].tolist()}
            f.write(json.dumps(row) + "\n")


def distinct_values(frames: int) -> np.ndarray:
    r = np.arange(frames, dtype=np.float64)[:, None]
    return ((r * 64 + np.arange(52) + 1) / 65536.0).astype(np.float32)


# ---------------------------------------------------------------------------- --timestamp-unit


def test_inspect_timestamp_unit(tmp_path):
    values = distinct_values(300)
    write_take(tmp_path / "ms", "take", values, scale=1000.0, decimals=3)
    failed = cli("inspect", tmp_path / "ms", "--json", "--window-frames", "64", check_rc=1)
    report = json.loads(failed.stdout)
    assert report["pairs"] == []
    [error] = report["errors"]
    assert Path(error["path"]).name == "take.jsonl"
    assert "milliseconds" in error["reason"] and 'timestamp_unit="ms"' in error["reason"]
    table = cli("inspect", tmp_path / "ms", "--window-frames", "64", check_rc=1)
    assert "take.jsonl" in table.stdout and "milliseconds" in table.stdout

    ok = json.loads(cli("inspect", tmp_path / "ms", "--json", "--timestamp-unit", "ms", "--window-frames", "64",
                        check_rc=0).stdout)  # fmt: skip
    [pair] = ok["pairs"]
    assert ok["errors"] == []
    assert pair["rows"] == 300 and pair["frames"] == 300 and pair["usable_frames"] == 300
    assert pair["fps"] == pytest.approx(30.0, rel=1e-4)
    assert pair["windows"] == 300 - 64 + 1
    # --timestamp-unit only takes the three units.
    assert cli("inspect", tmp_path / "ms", "--timestamp-unit", "ns").returncode == 2


# ---------------------------------------------------------------------------- memory

RSS_WRAPPER = """
import json, resource, subprocess, sys
result = subprocess.run([sys.executable, "-m", "koemorph_data", *sys.argv[1:]], capture_output=True, text=True)
peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # kilobytes on Linux
print(json.dumps({"rc": result.returncode, "peak": peak_kb * 1024, "stdout": result.stdout,
                  "stderr": result.stderr}))
"""


def peak_rss(*args) -> dict:
    """Exit status, output and peak RSS (bytes) of ``koemorph-data ARGS`` run alone in a fresh
    wrapper process (the test process's own children would count otherwise)."""
    done = subprocess.run([sys.executable, "-c", RSS_WRAPPER, *map(str, args)], capture_output=True, text=True,
                          timeout=300, check=True)  # fmt: skip
    return json.loads(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss is in kilobytes on Linux")
def test_a_take_stamped_in_milliseconds_costs_no_memory(tmp_path):
    """5 minutes at 30 fps stamped in ms read as seconds span 300,000 "seconds": converting that
    to 30 fps (the old code) allocated 9,000,000 x 52 float32 = 1.87 GB. Now the rate check
    rejects the take first."""
    frames = 5 * 60 * FPS
    values = np.full((frames, 52), 0.25, dtype=np.float32)
    write_take(tmp_path / "ms", "long", values, scale=1000.0, decimals=3)
    write_take(tmp_path / "s", "long", values)
    take_bytes = frames * SR // FPS * 4 + values.nbytes  # decoded float32 audio + blendshapes: ~21 MB

    baseline = peak_rss("--help")  # the interpreter, torch and the package imported
    assert baseline["rc"] == 0
    mib = 1 << 20

    inspect = peak_rss("inspect", tmp_path / "ms", "--json")
    assert inspect["rc"] == 1
    [error] = json.loads(inspect["stdout"])["errors"]
    assert Path(error["path"]).name == "long.jsonl" and "milliseconds" in error["reason"]
    prepare = peak_rss("prepare", tmp_path / "ms", "--cache-dir", tmp_path / "cache-ms")
    assert prepare["rc"] == 1
    assert "long.jsonl" in prepare["stderr"] and "milliseconds" in prepare["stderr"]
    assert "0/1 takes" in prepare["stdout"]
    for run in (inspect, prepare):
        extra = run["peak"] - baseline["peak"]
        # Measured from the baseline (torch alone is ~650 MB here): the old array was 1.87 GB.
        assert extra < 256 * mib, f"{extra / mib:.0f} MiB over the baseline of {baseline['peak'] / mib:.0f} MiB"

    normal = peak_rss("prepare", tmp_path / "s", "--cache-dir", tmp_path / "cache-s", "--workers", "1")
    assert normal["rc"] == 0, normal["stderr"]
    assert "1 built" in normal["stdout"]
    limit = baseline["peak"] + 6 * take_bytes
    assert normal["peak"] < limit, (
        f"prepare peaked at {normal['peak'] / mib:.0f} MiB; baseline {baseline['peak'] / mib:.0f} MiB, "
        f"take {take_bytes / mib:.0f} MiB"
    )


# ---------------------------------------------------------------------------- the cache key


def entries(cache: Path) -> dict[str, dict]:
    """Entry records by their "labels" field (the order's permutation and the unit)."""
    found = {}
    for meta_file in cache.glob("*.json"):
        meta = json.loads(meta_file.read_text())
        found[json.dumps(meta["labels"])] = meta | {"base": str(meta_file)[: -len(".json")]}
    return found


def test_prepare_keys_entries_by_order(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    values = distinct_values(120)
    write_take(data, "take", values, columns=KOEMORPH)
    as_written = values[:, [LIVE_LINK.index(name) for name in KOEMORPH]]  # read as Live Link

    cli("prepare", data, "--cache-dir", cache, check_rc=0)
    out = cli("prepare", data, "--cache-dir", cache, "--blendshape-order", "koemorph", check_rc=0).stdout
    assert "1 built" in out and "0 outdated removed" in out  # the other order's entry is not outdated
    found = entries(cache)
    assert len(found) == 2
    live_link = found[json.dumps([None, "s"])]
    [koemorph_key] = [key for key in found if key != json.dumps([None, "s"])]
    koemorph = found[koemorph_key]
    assert json.loads(koemorph_key)[0] == [LIVE_LINK.index(name) for name in KOEMORPH]
    np.testing.assert_array_equal(np.load(live_link["base"] + ".blendshapes.npy"), as_written)
    np.testing.assert_array_equal(np.load(koemorph["base"] + ".blendshapes.npy"), values)
    assert live_link["version"] == koemorph["version"] == 3

    # Both stay current; the 52 names spelt out are the same order as "koemorph".
    assert "1 already current" in cli("prepare", data, "--cache-dir", cache, check_rc=0).stdout
    spelt = ",".join(KOEMORPH)
    assert "1 already current" in cli("prepare", data, "--cache-dir", cache, "--blendshape-order", spelt,
                                      check_rc=0).stdout  # fmt: skip
    assert len(entries(cache)) == 2
    # A wrong list is a usage error naming what is wrong.
    wrong = cli("prepare", data, "--cache-dir", cache, "--blendshape-order", ",".join(KOEMORPH[:51]))
    assert wrong.returncode == 2 and "tongueOut" in wrong.stderr


def test_an_old_format_entry_is_ignored_and_rebuilt(tmp_path):
    from koemorph_data import SequentialKoeMorphDataset

    data, cache = tmp_path / "data", tmp_path / "cache"
    values = distinct_values(120)
    write_take(data, "take", values)
    cli("prepare", data, "--cache-dir", cache, check_rc=0)
    [entry] = entries(cache).values()
    base = Path(entry["base"])

    # A format-1 entry of the same take (the swapped mouthLeft/mouthRight era): its own key,
    # no "labels" field. prepare prunes it; nothing reads it.
    old = cache / "take-0123456789abcdef0123456789abcdef"
    stale = values[:, ::-1].copy()
    np.save(str(old) + ".blendshapes.npy", stale)
    np.save(str(old) + ".audio.npy", np.zeros(10, np.float32))
    old_meta = {k: v for k, v in entry.items() if k not in ("labels", "base", "pose")}
    old_meta |= {"version": 1, "key": old.name.split("-")[1]}
    Path(str(old) + ".json").write_text(json.dumps(old_meta))
    # And the current entry's record rewritten as format 1 with stale arrays: not served.
    meta = json.loads(Path(str(base) + ".json").read_text())
    Path(str(base) + ".json").write_text(json.dumps(meta | {"version": 1}))
    np.save(str(base) + ".blendshapes.npy", stale)

    ds = SequentialKoeMorphDataset(data, window_frames=64, stride_frames=64, shuffle_files=False,
                                   loop_dataset=False, cache_dir=cache)  # fmt: skip
    sample = next(iter(ds))
    np.testing.assert_array_equal(sample["blendshapes"].numpy(), values[:64])  # rebuilt on first use
    assert json.loads(Path(str(base) + ".json").read_text())["version"] == 3
    np.testing.assert_array_equal(np.load(str(base) + ".blendshapes.npy"), values)

    out = cli("prepare", data, "--cache-dir", cache, check_rc=0).stdout
    assert "1 already current" in out and "1 outdated removed" in out
    assert not list(cache.glob(old.name + "*"))
    # The same again through prepare itself: a format-1 record is rebuilt, not served.
    Path(str(base) + ".json").write_text(json.dumps(meta | {"version": 1}))
    np.save(str(base) + ".blendshapes.npy", stale)
    assert "1 built" in cli("prepare", data, "--cache-dir", cache, check_rc=0).stdout
    np.testing.assert_array_equal(np.load(str(base) + ".blendshapes.npy"), values)


# ---------------------------------------------------------------------------- inspect names


def test_inspect_names_out_of_range_columns_in_the_files_order(tmp_path):
    values = np.full((100, 52), 0.5, dtype=np.float32)
    values[:, LIVE_LINK.index("mouthLeft")] = 1.5  # KoeMorph column 21
    values[3, LIVE_LINK.index("jawLeft")] = -0.25  # KoeMorph column 15
    write_take(tmp_path, "take", values, columns=KOEMORPH)

    right = json.loads(cli("inspect", tmp_path, "--json", "--window-frames", "32", "--blendshape-order",
                           "koemorph", check_rc=0).stdout)  # fmt: skip
    [pair] = right["pairs"]
    assert pair["out_of_range_names"] == ["jawLeft", "mouthLeft"]  # in ARKIT_BLENDSHAPES order (16, 22)
    assert pair["out_of_range"] == 101
    table = cli("inspect", tmp_path, "--window-frames", "32", "--blendshape-order", "koemorph", check_rc=0).stdout
    assert "101 values outside [0, 1] (jawLeft, mouthLeft)" in table

    # Read as Live Link's order, the same columns are (mis)named by their positions.
    wrong = json.loads(cli("inspect", tmp_path, "--json", "--window-frames", "32", check_rc=0).stdout)
    assert wrong["pairs"][0]["out_of_range_names"] == ["jawRight", "mouthRight"]
