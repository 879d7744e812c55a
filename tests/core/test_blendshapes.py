"""read_blendshapes and the JSONL rules of issue 2, checked against the json module."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import read_jsonl_by_hand

import koemorph_data
from koemorph_data import ARKIT_BLENDSHAPES, DataFormatError, _core, read_blendshapes


def write_rows(path: Path, rows: list[dict], sep: str = "\n") -> Path:
    path.write_text(sep.join(json.dumps(r) for r in rows) + sep)
    return path


def test_arkit_names_and_order():
    assert len(ARKIT_BLENDSHAPES) == 52
    assert ARKIT_BLENDSHAPES[0] == "eyeBlinkLeft"
    assert ARKIT_BLENDSHAPES[17] == "jawOpen"
    assert ARKIT_BLENDSHAPES[14:18] == ("jawForward", "jawRight", "jawLeft", "jawOpen")
    assert ARKIT_BLENDSHAPES[-1] == "tongueOut"
    assert len(set(ARKIT_BLENDSHAPES)) == 52
    assert issubclass(DataFormatError, ValueError)


def test_sample_file_matches_json_module():
    path = koemorph_data.SAMPLE_DATA_DIR / "take_01.jsonl"
    values, stamps = read_blendshapes(path)
    ref_values, ref_stamps = read_jsonl_by_hand(path)
    assert values.dtype == np.float32 and values.shape == (len(ref_stamps), 52)
    assert values.flags["C_CONTIGUOUS"]
    assert stamps.dtype == np.float64
    np.testing.assert_array_equal(values, ref_values)
    np.testing.assert_array_equal(stamps, ref_stamps)
    # Handed over without a copy: numpy does not own the Rust allocation.
    assert not values.flags["OWNDATA"] or values.base is not None


def test_object_form_case_insensitive_missing_names_are_zero(tmp_path):
    rows = [
        {"timestamp": k / 30, "blendshapes": {"JawOpen": 0.5 + k / 100, "eyeBlinkLeft": 0.25, "TONGUEOUT": 1.0}}
        for k in range(3)
    ]
    values, stamps = read_blendshapes(write_rows(tmp_path / "o.jsonl", rows))
    expected = np.zeros((3, 52), dtype=np.float32)
    expected[:, 17] = [0.5, 0.51, 0.52]
    expected[:, 0] = 0.25
    expected[:, 51] = 1.0
    np.testing.assert_array_equal(values, expected)
    np.testing.assert_array_equal(stamps, [0, 1 / 30, 2 / 30])


def test_blank_lines_crlf_and_repeated_timestamps(tmp_path):
    row = lambda t, v: json.dumps({"timestamp": t, "blendshapes": [v] * 52})
    path = tmp_path / "b.jsonl"
    path.write_bytes(("\r\n".join([row(0.0, 0.1), "", "   ", row(0.0, 0.2), row(0.5, 0.3)]) + "\r\n").encode())
    values, stamps = read_blendshapes(path)
    np.testing.assert_array_equal(stamps, [0.0, 0.0, 0.5])
    np.testing.assert_array_equal(values[:, 5], np.float32([0.1, 0.2, 0.3]))


BAD_LINES = [
    ('{"timestamp": 0.1, "blendshapes": [0.0, 1.0', 3, "truncated"),
    ('{"timestamp": 0.1, "blendshapes": [' + ", ".join(["0.5"] * 51) + "]}", 3, "51"),
    ('{"timestamp": 0.1, "blendshapes": [' + ", ".join(['"x"'] + ["0.5"] * 51) + "]}", 3, None),
    ('{"timestamp": 0.1, "blendshapes": [' + ", ".join(["NaN"] + ["0.5"] * 51) + "]}", 3, None),
    ('{"timestamp": 0.1, "blendshapes": [' + ", ".join(["Infinity"] + ["0.5"] * 51) + "]}", 3, None),
    ('{"timestamp": 0.1, "blendshapes": [' + ", ".join(["1e999"] + ["0.5"] * 51) + "]}", 3, None),
    ('{"timestamp": 0.0, "blendshapes": [' + ", ".join(["0.5"] * 52) + "]}", 3, "backwards"),
    ('{"timestamp": 0.1, "blendshapes": {"jawOpen": 0.2, "notAShape": 0.1}}', 3, "notAShape"),
    ("[1, 2, 3]", 3, None),
]


@pytest.mark.parametrize("bad,line,word", BAD_LINES)
def test_bad_lines_name_file_and_line(tmp_path, bad, line, word):
    good = lambda t: json.dumps({"timestamp": t, "blendshapes": [0.5] * 52})
    path = tmp_path / "bad take.jsonl"
    path.write_text("\n".join([good(0.0), good(0.05), bad, good(0.2)]) + "\n")
    with pytest.raises(DataFormatError) as info:
        read_blendshapes(path)
    err = info.value
    assert err.path == str(path)
    assert err.line == line
    assert str(path) in str(err) and f":{line}:" in str(err)
    if word == "backwards":
        assert "backward" in str(err).lower() or "decreas" in str(err).lower()
    elif word == "truncated":
        pass
    elif word:
        assert word in str(err)


def test_empty_file_is_an_error(tmp_path):
    for content in ("", "\n\n  \n"):
        path = tmp_path / "empty.jsonl"
        path.write_text(content)
        with pytest.raises(DataFormatError) as info:
            read_blendshapes(path)
        assert info.value.path == str(path)


def test_missing_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(DataFormatError, match="nope.jsonl"):
        read_blendshapes(tmp_path / "nope.jsonl")


def test_sixty_fps_converts_to_every_other_row(tmp_path):
    rng = np.random.default_rng(0)
    vals = rng.random((121, 52))
    rows = [{"timestamp": k / 60, "blendshapes": vals[k].tolist()} for k in range(121)]
    path = write_rows(tmp_path / "sixty.jsonl", rows)
    values, stamps, source_fps, source_rows, _pose = _core.load_blendshapes(str(path), 30.0)
    span = 120 / 60
    assert len(values) == math.floor(span * 30) + 1 == 61
    assert source_rows == 121 and abs(source_fps - 60) < 1e-6
    np.testing.assert_allclose(values, vals[::2].astype(np.float32), rtol=0, atol=1e-6)


def test_twenty_four_fps_interpolates_linearly_in_time(tmp_path):
    vals = np.arange(25 * 52, dtype=np.float64).reshape(25, 52) / 1000.0
    rows = [{"timestamp": 10.0 + k / 24, "blendshapes": vals[k].tolist()} for k in range(25)]
    path = write_rows(tmp_path / "film.jsonl", rows)
    values, stamps, _, _, _ = _core.load_blendshapes(str(path), 30.0)
    assert len(values) == 31  # span 1 s -> frames 0..30
    for k in (0, 1, 7, 30):
        t = k / 30  # seconds from the first timestamp
        pos = t * 24
        i = min(int(math.floor(pos + 1e-12)), 24)
        w = pos - i
        expected = vals[i] if i == 24 else (1 - w) * vals[i] + w * vals[i + 1]
        np.testing.assert_allclose(values[k], expected.astype(np.float32), atol=1e-6)


def test_near_target_rate_is_left_alone(tmp_path):
    # 30.2 fps is within 1% of 30: rows are used as they are.
    rows = [{"timestamp": k / 30.2, "blendshapes": [k / 100] * 52} for k in range(50)]
    values, _, _, _, _ = _core.load_blendshapes(str(write_rows(tmp_path / "near.jsonl", rows)), 30.0)
    assert len(values) == 50
    np.testing.assert_array_equal(values[:, 0], np.float32([k / 100 for k in range(50)]))


def test_rust_panic_reaches_python_as_exception():
    with pytest.raises(RuntimeError, match="deliberate test panic"):
        _core._panic_for_test()
    # The interpreter is still fine afterwards.
    assert _core.resampled_length(10, 16000, 16000) == 10
