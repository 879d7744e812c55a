"""Capture conventions of the Rust extension, called directly: name tables, column orders,
pose, timestamp units and the capture-rate check. Expected values are built here by name,
independently of the extension's tables."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import LIVE_LINK_HEADER

from koemorph_data import _core
from koemorph_data.errors import DataFormatError

LIVE_LINK = [n[0].lower() + n[1:] for n in LIVE_LINK_HEADER[:52]]
POSE = [n[0].lower() + n[1:] for n in LIVE_LINK_HEADER[52:]]


def koemorph_names() -> list[str]:
    names = list(LIVE_LINK)
    names[15], names[16] = "jawLeft", "jawRight"
    names[21], names[22] = "mouthLeft", "mouthRight"
    return names


def value_of(name: str, row: int) -> float:
    """A distinct value per (blendshape, row), exact in float32."""
    return (row * 64 + sorted(LIVE_LINK).index(name) + 1) / 256.0


def positional_document(columns: list[str], rows: int, step: float = 1 / 30, extra=None) -> bytes:
    lines = []
    for r in range(rows):
        row = {"timestamp": r * step, "blendshapes": [value_of(n, r) for n in columns]}
        if extra is not None:
            row.update(extra(r))
        lines.append(json.dumps(row))
    return ("\n".join(lines) + "\n").encode()


def expected_by_name(rows: int) -> np.ndarray:
    return np.array([[value_of(n, r) for n in LIVE_LINK] for r in range(rows)], dtype=np.float32)


def test_name_tables():
    assert _core.ARKIT_BLENDSHAPES == tuple(LIVE_LINK)
    assert _core.ARKIT_BLENDSHAPES[21:23] == ("mouthRight", "mouthLeft")
    assert _core.NUM_BLENDSHAPES == 52
    assert _core.POSE_NAMES == tuple(POSE)
    assert _core.NUM_POSE == 9
    assert _core.KOEMORPH_BLENDSHAPES == tuple(koemorph_names())
    assert isinstance(_core.__version__, str) and _core.__version__.count(".") == 2


def test_resolve_blendshape_order():
    assert _core.resolve_blendshape_order("live_link") == list(range(52))
    expected = list(range(52))
    expected[15], expected[16], expected[21], expected[22] = 16, 15, 22, 21
    assert _core.resolve_blendshape_order("koemorph") == expected
    reversed_upper = [n.upper() for n in reversed(LIVE_LINK)]
    assert _core.resolve_blendshape_order(reversed_upper) == list(range(51, -1, -1))
    assert _core.resolve_blendshape_order(tuple(LIVE_LINK)) == list(range(52))


def test_order_errors_name_the_names():
    with pytest.raises(ValueError, match='"live_link", "koemorph"') as info:
        _core.resolve_blendshape_order("foo")
    assert '"foo"' in str(info.value)
    names = list(LIVE_LINK)
    names[17] = "eyeBlinkLeft"  # jawOpen missing, eyeBlinkLeft twice
    names.append("smile")
    with pytest.raises(ValueError) as info:
        _core.resolve_blendshape_order(names)
    message = str(info.value)
    assert "missing: jawOpen" in message
    assert "repeated: eyeBlinkLeft" in message
    assert 'unknown: "smile"' in message


def test_koemorph_order_is_read_back_by_name():
    doc = positional_document(koemorph_names(), rows=3)
    values, stamps, pose = _core.parse_blendshapes_bytes(doc, order="koemorph")
    assert values.dtype == np.float32 and values.shape == (3, 52)
    np.testing.assert_array_equal(values, expected_by_name(3))
    np.testing.assert_array_equal(stamps, np.array([0, 1 / 30, 2 / 30]))
    assert pose is None
    # The same file in Live Link order: the two pairs come out swapped.
    wrong, _, _ = _core.parse_blendshapes_bytes(doc)
    assert wrong[0, LIVE_LINK.index("mouthLeft")] == value_of("mouthRight", 0)


def test_custom_order_and_name_keyed_rows(tmp_path):
    columns = list(reversed(LIVE_LINK))
    path = tmp_path / "reversed.jsonl"
    path.write_bytes(positional_document(columns, rows=2))
    values, _, _ = _core.read_blendshapes(str(path), order=columns)
    np.testing.assert_array_equal(values, expected_by_name(2))
    # Name-keyed rows ignore the order.
    keyed = tmp_path / "keyed.jsonl"
    keyed.write_text(json.dumps({"timestamp": 0, "blendshapes": {"MouthLeft": 0.25, "jawRight": 0.5}}) + "\n")
    for order in (None, "koemorph", columns):
        values, _, _ = _core.read_blendshapes(str(keyed), order=order)
        expected = np.zeros((1, 52), dtype=np.float32)
        expected[0, LIVE_LINK.index("mouthLeft")] = 0.25
        expected[0, LIVE_LINK.index("jawRight")] = 0.5
        np.testing.assert_array_equal(values, expected)


def test_bad_order_or_unit_fails_before_io(tmp_path):
    missing = str(tmp_path / "does-not-exist.jsonl")
    with pytest.raises(ValueError, match="unknown blendshape order") as info:
        _core.read_blendshapes(missing, order="bogus")
    assert not isinstance(info.value, DataFormatError)
    with pytest.raises(ValueError, match='timestamp_unit must be "s", "ms" or "us"'):
        _core.load_blendshapes(missing, 30.0, timestamp_unit="ns")
    with pytest.raises(ValueError, match="exactly once"):
        _core.load_blendshapes_bytes(b"", "x", 30.0, order=LIVE_LINK[:51])


def pose_of(row: int) -> list[float]:
    return [(row * 16 + k + 1) / 32.0 for k in range(9)]


def test_pose_as_array_and_as_live_link_names():
    by_array = positional_document(LIVE_LINK, rows=2, extra=lambda r: {"pose": pose_of(r)})
    rows = []
    for r in range(2):
        keyed = {n: value_of(n, r) for n in LIVE_LINK}
        keyed.update({name: v for name, v in zip(LIVE_LINK_HEADER[52:], pose_of(r))})  # HeadYaw, ...
        rows.append(json.dumps({"timestamp": r / 30, "blendshapes": keyed}))
    by_names = ("\n".join(rows) + "\n").encode()
    expected_pose = np.array([pose_of(0), pose_of(1)], dtype=np.float32)
    for doc in (by_array, by_names):
        values, _, pose = _core.parse_blendshapes_bytes(doc)
        np.testing.assert_array_equal(values, expected_by_name(2))
        assert pose is not None and pose.dtype == np.float32
        np.testing.assert_array_equal(pose, expected_pose)


def test_pose_on_some_rows_only_names_the_line():
    doc = positional_document(LIVE_LINK, rows=4, extra=lambda r: {"pose": pose_of(r)} if r != 2 else {})
    with pytest.raises(DataFormatError) as info:
        _core.parse_blendshapes_bytes(doc, name="mixed.jsonl")
    assert info.value.path == "mixed.jsonl"
    assert info.value.line == 3
    assert "no pose but earlier rows do" in info.value.reason


def test_pose_is_converted_like_the_blendshapes():
    # 60 -> 30 fps takes every other row, for pose as for the blendshapes.
    doc = positional_document(LIVE_LINK, rows=7, step=1 / 60, extra=lambda r: {"pose": pose_of(r)})
    values, stamps, source_fps, rows, pose = _core.load_blendshapes_bytes(doc, "t.jsonl", 30.0)
    assert rows == 7 and source_fps == pytest.approx(60.0)
    np.testing.assert_array_equal(values, expected_by_name(7)[::2])
    np.testing.assert_array_equal(pose, np.array([pose_of(r) for r in (0, 2, 4, 6)], dtype=np.float32))
    np.testing.assert_allclose(stamps, [0, 1 / 30, 2 / 30, 3 / 30], rtol=0, atol=1e-12)
    # 30 -> 60 fps: the in-between frames are midpoints (dyadic values: exact).
    doc = positional_document(LIVE_LINK, rows=2, step=1 / 30, extra=lambda r: {"pose": pose_of(r)})
    _, _, _, _, pose = _core.load_blendshapes_bytes(doc, "t.jsonl", 60.0)
    midpoint = [(a + b) / 2 for a, b in zip(pose_of(0), pose_of(1))]
    np.testing.assert_array_equal(pose, np.array([pose_of(0), midpoint, pose_of(1)], dtype=np.float32))


def test_timestamp_units(tmp_path):
    path = tmp_path / "ms.jsonl"
    path.write_bytes(positional_document(LIVE_LINK, rows=100, step=33.0))  # milliseconds
    _, stamps, _ = _core.read_blendshapes(str(path), timestamp_unit="ms")
    np.testing.assert_array_equal(stamps, np.arange(100) * 33.0 / 1e3)
    _, stamps, _ = _core.read_blendshapes(str(path))  # the raw read path does not judge the rate
    assert stamps[1] == 33.0
    with pytest.raises(DataFormatError) as info:
        _core.load_blendshapes(str(path), 30.0)
    assert info.value.path == str(path) and info.value.line is None
    assert info.value.reason == (
        'detected 0.0303 fps (median timestamp step 33 s): timestamps look like milliseconds; pass timestamp_unit="ms"'
    )
    values, stamps, source_fps, rows, pose = _core.load_blendshapes(str(path), 30.0, timestamp_unit="ms")
    assert rows == 100 and source_fps == pytest.approx(1000 / 33)
    assert len(values) == int(99 * 0.033 * 30 + 1e-9) + 1 == len(stamps)
    assert pose is None
    us = positional_document(LIVE_LINK, rows=10, step=33_333.0)
    with pytest.raises(DataFormatError, match='timestamps look like microseconds; pass timestamp_unit="us"'):
        _core.load_blendshapes_bytes(us, "us.jsonl", 30.0)
    _, stamps, *_ = _core.load_blendshapes_bytes(us, "us.jsonl", 30.0, timestamp_unit="us")
    assert stamps[0] == 0.0


def test_rate_outside_capture_range():
    doc = positional_document(LIVE_LINK, rows=10, step=0.2)
    with pytest.raises(DataFormatError, match="detected 5 fps .*outside the 10-240 fps"):
        _core.load_blendshapes_bytes(doc, "slow.jsonl", 30.0)


def test_arrays_are_owned_by_numpy_without_copy():
    doc = positional_document(LIVE_LINK, rows=3, extra=lambda r: {"pose": pose_of(r)})
    values, stamps, pose = _core.parse_blendshapes_bytes(doc)
    for array in (values, stamps, pose):
        assert array.flags.c_contiguous and array.flags.writeable and array.flags.owndata is False
