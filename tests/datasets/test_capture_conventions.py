"""Capture conventions through the Python layer (issue 9): positional column orders, the
head/eye pose, timestamp units and the prepared cache's key, through ``read_blendshapes``,
samples, DataLoader batches, ``dataset.loader()`` and lanes.

Every expected array is built here from the numbers this file writes (JSON rows written with
the json module, wavs read back with soundfile and sliced by hand, fps conversion by
``np.interp``), never with the package's own readers or tables.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import LIVE_LINK_HEADER
from torch.utils.data import DataLoader

from koemorph_data import ARKIT_BLENDSHAPES, AdaptiveSequentialDataset, SequentialKoeMorphDataset
from koemorph_data.blendshapes import POSE_NAMES, read_blendshapes
from koemorph_data.errors import DataFormatError

SR, FPS = 16000, 30
WINDOW, STRIDE = 32, 8

LIVE_LINK = [n[0].lower() + n[1:] for n in LIVE_LINK_HEADER[:52]]
POSE_KEYS = LIVE_LINK_HEADER[52:]  # HeadYaw, ... as Live Link spells them


def koemorph_columns() -> list[str]:
    """KoeMorph's positional order: Live Link's with jawLeft/jawRight and mouthLeft/mouthRight swapped."""
    names = list(LIVE_LINK)
    names[15], names[16] = names[16], names[15]
    names[21], names[22] = names[22], names[21]
    return names


def distinct_values(rows: int, offset: int = 0) -> np.ndarray:
    """[rows, 52] in Live Link order, every (row, column) different and exact in float32."""
    r = np.arange(rows, dtype=np.float64)[:, None]
    c = np.arange(52, dtype=np.float64)[None, :]
    return ((r * 64 + c + 1 + offset) / 65536.0).astype(np.float32)


def distinct_pose(rows: int, offset: int = 0) -> np.ndarray:
    """[rows, 9] head/eye rotations, distinct and exact in float32 (some negative, like radians)."""
    r = np.arange(rows, dtype=np.float64)[:, None]
    c = np.arange(9, dtype=np.float64)[None, :]
    return ((r * 16 + c + offset) / 4096.0 - 0.25).astype(np.float32)


def write_jsonl(
    path: Path,
    values: np.ndarray,
    stamps: np.ndarray,
    *,
    columns: list[str] | None = None,
    keyed: bool = False,
    pose: np.ndarray | None = None,
    pose_keyed: bool = False,
) -> None:
    """Rows of ``values`` (Live Link order) as JSON: positional in ``columns``' order, or keyed
    by Live Link's capitalised names; pose as ``"pose": [9]`` or as HeadYaw... keys."""
    columns = LIVE_LINK if columns is None else columns
    lines = []
    for r in range(len(stamps)):
        row = values[r].astype(np.float64)
        if keyed:
            bs: object = {name[0].upper() + name[1:]: float(row[LIVE_LINK.index(name)]) for name in LIVE_LINK}
        else:
            bs = [float(row[LIVE_LINK.index(name)]) for name in columns]
        obj: dict = {"timestamp": float(stamps[r]), "blendshapes": bs}
        if pose is not None:
            if pose_keyed:
                assert isinstance(bs, dict)
                bs.update({key: float(v) for key, v in zip(POSE_KEYS, pose[r].astype(np.float64))})
            else:
                obj["pose"] = [float(v) for v in pose[r].astype(np.float64)]
        lines.append(json.dumps(obj))
    path.write_text("\n".join(lines) + "\n")


def write_wav(path: Path, frames: int, seed: int) -> np.ndarray:
    """Float wav covering exactly ``frames`` frames at 30 fps; returns the samples read back."""
    samples = math.ceil(frames * SR / FPS) + 5  # floor(samples * 30 / 16000) == frames
    assert samples * FPS // SR == frames
    audio = np.random.default_rng(seed).uniform(-0.5, 0.5, samples).astype(np.float32)
    sf.write(str(path), audio, SR, subtype="FLOAT")
    back, rate = sf.read(str(path), dtype="float32")
    assert rate == SR
    return back


def by_hand_at_30(stamps: np.ndarray, track: np.ndarray) -> np.ndarray:
    """Linear interpolation at frame k = k / 30 s from the first timestamp, k = 0 ..
    floor(span * 30), between neighbouring source rows (float64, then float32)."""
    t = stamps - stamps[0]
    frames = int(math.floor(t[-1] * FPS + 1e-9)) + 1
    grid = np.arange(frames, dtype=np.float64) / FPS
    cols = [np.interp(grid, t, track[:, j].astype(np.float64)) for j in range(track.shape[1])]
    return np.stack(cols, axis=1).astype(np.float32)


class Expected:
    """What a dataset over takes written here must deliver, by file index."""

    def __init__(self) -> None:
        self.audio: list[np.ndarray] = []
        self.blendshapes: list[np.ndarray] = []
        self.pose: list[np.ndarray | None] = []

    def add(self, audio: np.ndarray, blendshapes: np.ndarray, pose: np.ndarray | None = None) -> None:
        self.audio.append(audio)
        self.blendshapes.append(blendshapes)
        self.pose.append(pose)

    def windows(self) -> set[tuple[int, int]]:
        """(file index, start frame) of every window at WINDOW / STRIDE."""
        return {(f, s) for f, bs in enumerate(self.blendshapes) for s in range(0, len(bs) - WINDOW + 1, STRIDE)}

    def check(self, item: dict, *, pose: bool, atol: float = 0.0) -> list[tuple[int, int]]:
        """Compares a sample or a batch with the expected windows; returns its (file, start)
        pairs (invalid lanes slots left out)."""
        files = np.atleast_1d(item["file_indices"].numpy())
        starts = np.atleast_1d(item["start_frames"].numpy())
        batched = item["blendshapes"].ndim == 3
        valid = item["valid"].numpy() if "valid" in item else np.ones(len(files), dtype=bool)
        assert ("pose" in item) == pose
        seen = []
        for row, (f, s) in enumerate(zip(files.tolist(), starts.tolist())):
            if not valid[row]:
                continue

            def pick(key: str, row: int = row) -> np.ndarray:
                return (item[key][row] if batched else item[key]).numpy()

            a0 = s * SR // FPS  # alignment="exact": frame s starts at floor(s * 16000 / 30)
            np.testing.assert_array_equal(pick("audio"), self.audio[f][a0 : a0 + WINDOW * (SR // FPS)])
            bs = pick("blendshapes")
            assert bs.dtype == np.float32 and bs.shape == (WINDOW, 52)
            np.testing.assert_allclose(bs, self.blendshapes[f][s : s + WINDOW], rtol=0, atol=atol)
            if pose:
                p = pick("pose")
                assert p.dtype == np.float32 and p.shape == (WINDOW, 9)
                np.testing.assert_allclose(p, self.pose[f][s : s + WINDOW], rtol=0, atol=atol)
            seen.append((f, s))
        return seen


def dataset(root: Path, **kwargs) -> SequentialKoeMorphDataset:
    options = dict(window_frames=WINDOW, stride_frames=STRIDE, shuffle_files=False, loop_dataset=False)
    return SequentialKoeMorphDataset(root, **(options | kwargs))


def every_window(ds, expected: Expected, *, pose: bool, atol: float = 0.0) -> None:
    """Samples of in-process iteration: each expected window exactly once, each correct."""
    seen = [w for sample in ds for w in expected.check(sample, pose=pose, atol=atol)]
    assert sorted(seen) == sorted(expected.windows())


# ---------------------------------------------------------------------------- 1, 2: orders


def test_live_link_names_are_the_apps_header():
    assert list(ARKIT_BLENDSHAPES) == LIVE_LINK
    assert list(POSE_NAMES) == [n[0].lower() + n[1:] for n in POSE_KEYS]


@pytest.fixture(scope="module")
def ordered_takes(tmp_path_factory) -> dict:
    """The same take (60 rows of distinct values at 30 fps, plus a second take) written
    name-keyed, in KoeMorph's positional order and in a random permutation of the 52 names."""
    root = tmp_path_factory.mktemp("orders")
    permuted = list(LIVE_LINK)
    random.Random(9).shuffle(permuted)
    layouts = {"keyed": dict(keyed=True), "koemorph": dict(columns=koemorph_columns()),
               "permuted": dict(columns=permuted)}  # fmt: skip
    expected = Expected()
    for i, frames in enumerate((70, 50)):
        values = distinct_values(frames, offset=i * 7)
        stamps = np.arange(frames) / FPS
        audio = None
        for layout, how in layouts.items():
            folder = root / layout
            folder.mkdir(exist_ok=True)
            audio = write_wav(folder / f"take{i}.wav", frames, seed=i)
            write_jsonl(folder / f"take{i}.jsonl", values, stamps, **how)
        expected.add(audio, values)
    return {"root": root, "expected": expected, "permuted": permuted}


@pytest.mark.parametrize("layout", ["koemorph", "permuted"])
def test_positional_order_reads_like_the_name_keyed_take(ordered_takes, layout):
    root, expected = ordered_takes["root"], ordered_takes["expected"]
    order = "koemorph" if layout == "koemorph" else ordered_takes["permuted"]
    keyed_values, keyed_stamps = read_blendshapes(root / "keyed" / "take0.jsonl")
    np.testing.assert_array_equal(keyed_values, expected.blendshapes[0])
    values, stamps = read_blendshapes(root / layout / "take0.jsonl", blendshape_order=order)
    assert values.dtype == np.float32 and values.shape == (70, 52)
    np.testing.assert_array_equal(values, keyed_values)
    np.testing.assert_array_equal(stamps, keyed_stamps)
    # Read in the default order, the file's columns come out where the file put them.
    as_is, _ = read_blendshapes(root / layout / "take0.jsonl")
    columns = koemorph_columns() if layout == "koemorph" else ordered_takes["permuted"]
    for j, name in enumerate(columns):
        np.testing.assert_array_equal(as_is[:, j], expected.blendshapes[0][:, LIVE_LINK.index(name)])

    every_window(dataset(root / layout, blendshape_order=order), expected, pose=False)
    every_window(dataset(root / "keyed", blendshape_order=order), expected, pose=False)  # keyed rows ignore it
    # A tuple works as well as a list, and AdaptiveSequentialDataset takes the option too.
    adaptive = AdaptiveSequentialDataset(
        root / layout,
        window_frames=WINDOW,
        stride_mode="sparse",
        initial_stride=STRIDE,
        shuffle_files=False,
        loop_dataset=False,
        blendshape_order=tuple(order) if layout == "permuted" else order,
    )
    every_window(adaptive, expected, pose=False)


def test_koemorph_file_read_as_live_link_swaps_the_two_pairs(ordered_takes):
    root, expected = ordered_takes["root"], ordered_takes["expected"]
    sample = next(iter(dataset(root / "koemorph")))  # default order: the file is misread
    got, want = sample["blendshapes"].numpy(), expected.blendshapes[0][:WINDOW]
    for a, b in (("jawLeft", "jawRight"), ("mouthLeft", "mouthRight")):
        np.testing.assert_array_equal(got[:, LIVE_LINK.index(a)], want[:, LIVE_LINK.index(b)])


def bad_orders() -> list[tuple[list[str], list[str]]]:
    missing = LIVE_LINK[:51]
    repeated = list(LIVE_LINK)
    repeated[17] = "eyeBlinkLeft"
    unknown = list(LIVE_LINK)
    unknown[3] = "smirk"
    return [
        (missing, ["missing", "tongueOut"]),
        (repeated, ["missing", "jawOpen", "repeated", "eyeBlinkLeft"]),
        (unknown, ["unknown", "smirk", "missing", "eyeLookOutLeft"]),
    ]


@pytest.mark.parametrize(("order", "words"), bad_orders())
def test_a_wrong_order_is_refused_before_any_take_is_read(tmp_path, order, words):
    # A take that would fail to parse: reading it first would raise DataFormatError instead.
    write_wav(tmp_path / "broken.wav", 40, seed=1)
    (tmp_path / "broken.jsonl").write_text('{"timestamp": 0, "blendshapes": [1, 2\n')
    for make in (dataset, AdaptiveSequentialDataset):
        for root in (tmp_path, tmp_path / "does-not-exist"):
            with pytest.raises(ValueError) as info:
                make(root, blendshape_order=order)
            assert not isinstance(info.value, DataFormatError)
            for word in words:
                assert word in str(info.value)
    with pytest.raises(ValueError) as info:
        read_blendshapes(tmp_path / "broken.jsonl", blendshape_order=order)
    assert not isinstance(info.value, DataFormatError)
    # The broken take itself is what a good order runs into.
    with pytest.raises(DataFormatError, match="broken.jsonl"):
        dataset(tmp_path, blendshape_order="koemorph")


def test_default_order_column_21_is_mouth_right(tmp_path):
    """The label-bug regression: Live Link writes mouthRight in column 21, mouthLeft in 22."""
    assert ARKIT_BLENDSHAPES[21] == "mouthRight" and ARKIT_BLENDSHAPES[22] == "mouthLeft"
    frames = 40
    rows = np.zeros((frames, 52))
    rows[:, 21] = 0.25 + np.arange(frames) / 1024  # distinct values in column 21 only
    rows[:, 22] = 0.75
    lines = [json.dumps({"timestamp": k / FPS, "blendshapes": rows[k].tolist()}) for k in range(frames)]
    (tmp_path / "t.jsonl").write_text("\n".join(lines) + "\n")
    audio = write_wav(tmp_path / "t.wav", frames, seed=3)
    values, _ = read_blendshapes(tmp_path / "t.jsonl")
    np.testing.assert_array_equal(values[:, ARKIT_BLENDSHAPES.index("mouthRight")], rows[:, 21].astype(np.float32))
    np.testing.assert_array_equal(values[:, ARKIT_BLENDSHAPES.index("mouthLeft")], np.float32(0.75))
    sample = next(iter(dataset(tmp_path)))
    np.testing.assert_array_equal(
        sample["blendshapes"][:, ARKIT_BLENDSHAPES.index("mouthRight")].numpy(), rows[:WINDOW, 21].astype(np.float32)
    )
    np.testing.assert_array_equal(sample["audio"].numpy(), audio[: WINDOW * 533])


# ---------------------------------------------------------------------------- 3: pose


@pytest.fixture(scope="module")
def pose_takes(tmp_path_factory) -> dict:
    """Two takes with pose, captured above 30 fps so the fps conversion runs: take 0 at 60 fps
    (positional, ``"pose": [9]``), take 1 at 48 fps (frames fall between rows; name-keyed with
    HeadYaw... keys); and a third take without pose in another directory."""
    root = tmp_path_factory.mktemp("pose")
    expected = Expected()
    for i, (rate, rows, keyed) in enumerate(((60, 200, False), (48, 150, True))):
        stamps = 0.5 + np.arange(rows) / rate  # the grid starts at the first timestamp
        values, pose = distinct_values(rows, offset=i * 11), distinct_pose(rows, offset=i * 5)
        write_jsonl(root / f"take{i}.jsonl", values, stamps, keyed=keyed, pose=pose, pose_keyed=keyed)
        at30, pose30 = by_hand_at_30(stamps, values), by_hand_at_30(stamps, pose)
        assert len(at30) == math.floor((rows - 1) / rate * FPS + 1e-9) + 1
        expected.add(write_wav(root / f"take{i}.wav", len(at30), seed=10 + i), at30, pose30)
    mixed = tmp_path_factory.mktemp("mixed")
    for name in ("take0.wav", "take0.jsonl", "take1.wav", "take1.jsonl"):
        (mixed / name).write_bytes((root / name).read_bytes())
    write_wav(mixed / "nopose.wav", 60, seed=5)
    write_jsonl(mixed / "nopose.jsonl", distinct_values(60), np.arange(60) / FPS)
    return {"root": root, "expected": expected, "mixed": mixed}


ATOL = 1e-6  # float32 rounding of the interpolation (neighbouring rows differ by ~1e-3)


def test_read_blendshapes_pose_as_written(pose_takes):
    root = pose_takes["root"]
    for i, rate, rows in ((0, 60, 200), (1, 48, 150)):
        values, stamps, pose = read_blendshapes(root / f"take{i}.jsonl", pose=True)
        np.testing.assert_array_equal(values, distinct_values(rows, offset=i * 11))
        np.testing.assert_array_equal(pose, distinct_pose(rows, offset=i * 5))
        np.testing.assert_allclose(stamps, 0.5 + np.arange(rows) / rate, rtol=0, atol=1e-12)
        assert len(read_blendshapes(root / f"take{i}.jsonl")) == 2  # pose=False: (values, stamps)


def test_pose_samples_follow_the_fps_conversion(pose_takes):
    every_window(dataset(pose_takes["root"], pose=True), pose_takes["expected"], pose=True, atol=ATOL)


def test_pose_false_has_no_pose_key(pose_takes):
    ds = dataset(pose_takes["root"])
    every_window(ds, pose_takes["expected"], pose=False, atol=ATOL)
    assert all("pose" not in batch for batch in ds.loader(batch_size=4, drop_last=False))


def test_pose_through_dataloader_workers(pose_takes):
    expected = pose_takes["expected"]
    ds = dataset(pose_takes["root"], pose=True, batch_size=4)
    loader = DataLoader(ds, batch_size=4, num_workers=2, drop_last=False)
    seen = [w for batch in loader for w in expected.check(batch, pose=True, atol=ATOL)]
    assert sorted(seen) == sorted(expected.windows())


@pytest.mark.parametrize("cached", [False, True])
def test_pose_through_loader(pose_takes, tmp_path, cached):
    expected = pose_takes["expected"]
    ds = dataset(pose_takes["root"], pose=True, cache_dir=tmp_path if cached else None)
    seen = [
        w for batch in ds.loader(batch_size=3, drop_last=False) for w in expected.check(batch, pose=True, atol=ATOL)
    ]
    assert sorted(seen) == sorted(expected.windows())


@pytest.mark.parametrize("use_loader", [False, True])
def test_pose_in_lanes(pose_takes, use_loader):
    expected = pose_takes["expected"]
    ds = dataset(pose_takes["root"], pose=True, lanes=2)
    batches = list(ds.loader() if use_loader else ds)
    assert all(batch["pose"].shape == (2, WINDOW, 9) for batch in batches)
    for batch in batches:  # an invalid slot is zeros
        assert not batch["pose"][~batch["valid"]].any()
    seen = [w for batch in batches for w in expected.check(batch, pose=True, atol=ATOL)]
    assert sorted(seen) == sorted(expected.windows())


def test_pose_from_the_prepared_cache(pose_takes, tmp_path):
    root, expected = pose_takes["root"], pose_takes["expected"]
    # Filled by a pose=False dataset: the cache stores the pose anyway (it is not in the key).
    every_window(dataset(root, cache_dir=tmp_path), expected, pose=False, atol=ATOL)
    entries = sorted(tmp_path.glob("*.pose.npy"))
    assert len(entries) == 2
    files_before = sorted(p.name for p in tmp_path.iterdir())
    every_window(dataset(root, pose=True, cache_dir=tmp_path), expected, pose=True, atol=ATOL)
    assert sorted(p.name for p in tmp_path.iterdir()) == files_before  # served, not rebuilt


def test_speed_perturbation_moves_the_pose_with_the_face(pose_takes):
    """A constant 0.8x speed: output frame k is take frame start + 0.8 k for both tracks."""
    expected = pose_takes["expected"]
    ds = dataset(pose_takes["root"], pose=True, augment=[{"type": "speed", "factors": [0.8, 0.8]}])
    count = 0
    for sample in ds:
        f, s = int(sample["file_indices"]), int(sample["start_frames"])
        positions = s + 0.8 * np.arange(WINDOW)
        for key, track in (("blendshapes", expected.blendshapes[f]), ("pose", expected.pose[f])):
            frames = np.arange(len(track))
            want = np.stack([np.interp(positions, frames, track[:, j].astype(np.float64))
                             for j in range(track.shape[1])], axis=1)  # fmt: skip
            np.testing.assert_allclose(sample[key].numpy(), want, rtol=0, atol=1e-5)
        count += 1
    assert count == len(expected.windows())


def test_a_take_without_pose(pose_takes):
    mixed = pose_takes["mixed"]
    with pytest.raises(DataFormatError) as info:
        dataset(mixed, pose=True)
    assert "nopose.jsonl" in str(info.value) and "pose" in str(info.value)
    assert info.value.path.endswith("nopose.jsonl")
    with pytest.raises(DataFormatError, match="nopose.jsonl"):
        read_blendshapes(mixed / "nopose.jsonl", pose=True)

    ds = dataset(mixed, pose=True, on_error="skip")
    assert [(p.name, "pose" in reason) for p, reason in ds.skipped] == [("nopose.jsonl", True)]
    assert [w.name for w, _ in ds.file_pairs] == ["nopose.wav", "take0.wav", "take1.wav"]
    expected = pose_takes["expected"]
    # File indices follow file_pairs (nopose is 0): shift the expected takes by one.
    shifted = Expected()
    shifted.add(np.zeros(0, np.float32), np.zeros((0, 52), np.float32), np.zeros((0, 9), np.float32))
    for f in range(2):
        shifted.add(expected.audio[f], expected.blendshapes[f], expected.pose[f])
    every_window(ds, shifted, pose=True, atol=ATOL)
    # Without pose=True the take is used as usual.
    assert dataset(mixed).usable_frames[0] == 60


# ---------------------------------------------------------------------------- 4: timestamp units


@pytest.fixture(scope="module")
def unit_takes(tmp_path_factory) -> dict:
    """One take (90 rows at 30 fps) stamped in seconds, milliseconds and microseconds."""
    root = tmp_path_factory.mktemp("units")
    frames = 90
    values = distinct_values(frames)
    expected = Expected()
    for unit, scale, decimals in (("s", 1.0, 9), ("ms", 1e3, 3), ("us", 1e6, 0)):
        folder = root / unit
        folder.mkdir()
        audio = write_wav(folder / "take.wav", frames, seed=4)
        stamps = np.round(np.arange(frames) * scale / FPS, decimals)  # microsecond precision, as loggers print
        write_jsonl(folder / "take.jsonl", values, stamps)
    expected.add(audio, values)
    return {"root": root, "expected": expected}


@pytest.mark.parametrize(("unit", "word"), [("ms", "milliseconds"), ("us", "microseconds")])
def test_timestamp_units(unit_takes, unit, word):
    root, expected = unit_takes["root"], unit_takes["expected"]
    with pytest.raises(DataFormatError) as info:
        dataset(root / unit)  # read as seconds
    message = str(info.value)
    assert word in message and f'timestamp_unit="{unit}"' in message and "take.jsonl" in message
    with pytest.raises(DataFormatError, match=word):
        AdaptiveSequentialDataset(root / unit, window_frames=WINDOW)

    seconds = dataset(root / "s")
    every_window(seconds, expected, pose=False)
    every_window(dataset(root / unit, timestamp_unit=unit), expected, pose=False)
    stamped = [b for b in dataset(root / unit, timestamp_unit=unit).loader(batch_size=4, drop_last=False)]
    plain = [b for b in seconds.loader(batch_size=4, drop_last=False)]
    assert len(stamped) == len(plain)
    for a, b in zip(stamped, plain):
        for key in ("audio", "blendshapes", "file_indices", "start_frames"):
            assert a[key].equal(b[key])
    values, stamps = read_blendshapes(root / unit / "take.jsonl", timestamp_unit=unit)
    np.testing.assert_array_equal(values, expected.blendshapes[0])
    np.testing.assert_allclose(stamps, np.arange(90) / FPS, rtol=0, atol=1e-6)


def test_a_bad_timestamp_unit_is_a_value_error(unit_takes):
    with pytest.raises(ValueError, match="timestamp_unit") as info:
        dataset(unit_takes["root"] / "s", timestamp_unit="ns")
    assert not isinstance(info.value, DataFormatError)


def test_timestamp_unit_is_part_of_the_cache_key(unit_takes, tmp_path):
    root, expected = unit_takes["root"], unit_takes["expected"]
    every_window(dataset(root / "ms", timestamp_unit="ms", cache_dir=tmp_path), expected, pose=False)
    assert len(list(tmp_path.glob("*.json"))) == 1
    # The same files read as seconds are not served from the ms entry: the error still comes.
    with pytest.raises(DataFormatError, match="milliseconds"):
        dataset(root / "ms", cache_dir=tmp_path)
