"""Hostile input: a corpus of broken (and odd but valid) takes built in tmp_path.

Every case is checked three ways: ``on_error="raise"`` raises DataFormatError with the exact
path and line, ``on_error="skip"`` records ``(path, reason)`` in ``dataset.skipped`` and still
delivers the good take, and ``koemorph-data inspect --json`` lists the error. A watchdog
(faulthandler) kills the run with a traceback instead of hanging, and inspect runs in a
subprocess with a timeout.
"""

from __future__ import annotations

import faulthandler
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from koemorph_data import DataFormatError, SequentialKoeMorphDataset, _core, read_blendshapes, synthetic

W = 16  # window frames: small takes are enough
SECONDS = 2.0  # 60 frames


@pytest.fixture(autouse=True)
def watchdog():
    """A hang anywhere (Python or Rust, GIL held or not) ends the run with a traceback."""
    faulthandler.dump_traceback_later(120, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def row(t, values) -> str:
    return json.dumps({"timestamp": t, "blendshapes": [float(v) for v in values]})


def take(folder: Path, stem: str, seconds: float = SECONDS, seed: int = 1) -> tuple[Path, Path, list[str]]:
    wav, jsonl = folder / f"{stem}.wav", folder / f"{stem}.jsonl"
    synthetic.make_take(wav, jsonl, seconds=seconds, seed=seed)
    return wav, jsonl, jsonl.read_text().splitlines()


@dataclass
class Case:
    bad: Path | None  # the file an error must name (None: valid input)
    line: int | None = None  # the 1-based JSONL line the error must name
    reason: str = ""  # a substring of the error's reason


# Each builder writes one take "bad" (or odd) into the folder and says what must happen.
def _jsonl_line(lineno: int, text: str, reason: str) -> Callable[[Path], Case]:
    def build(folder: Path) -> Case:
        _, jsonl, lines = take(folder, "bad")
        lines[lineno - 1] = text
        jsonl.write_text("\n".join(lines) + "\n")
        return Case(jsonl, lineno, reason)

    return build


def truncated_last_line(folder):
    _, jsonl, lines = take(folder, "bad")
    jsonl.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])
    return Case(jsonl, len(lines), "invalid JSON (truncated line?)")


def ten_mb_line(folder):
    _, jsonl, lines = take(folder, "bad")
    huge = '{"timestamp": 0.04, "blendshapes": [' + ",".join(["0.5"] * 2_500_000) + "]}"
    assert len(huge) > 7_500_000
    lines[1] = huge + " " * (10_000_000 - len(huge))
    jsonl.write_text("\n".join(lines) + "\n")
    return Case(jsonl, 2, "expected 52 blendshape values, got 2500000")


def deep_nesting(folder):
    _, jsonl, lines = take(folder, "bad")
    lines[1] = '{"timestamp": 0.04, "blendshapes": ' + "[" * 200_000 + "]" * 200_000 + "}"
    jsonl.write_text("\n".join(lines) + "\n")
    return Case(jsonl, 2, "expected a number")


def bom(folder):
    _, jsonl, lines = take(folder, "bad")
    (folder / "reference.txt").write_text("\n".join(lines) + "\n")  # plain LF text, not a take
    jsonl.write_bytes(b"\xef\xbb\xbf" + ("\n".join(lines) + "\n").encode())
    return Case(None)


def crlf(folder):
    _, jsonl, lines = take(folder, "bad")
    (folder / "reference.txt").write_text("\n".join(lines) + "\n")
    jsonl.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    return Case(None)


def empty_file(folder):
    _, jsonl, _ = take(folder, "bad")
    jsonl.write_text("")
    return Case(jsonl, None, "no frames")


def blank_lines_only(folder):
    _, jsonl, _ = take(folder, "bad")
    jsonl.write_text("\n   \n\t\n\r\n\n")
    return Case(jsonl, None, "no frames")


def backwards(folder):
    _, jsonl, lines = take(folder, "bad")
    lines[2], lines[3] = lines[3], lines[2]
    jsonl.write_text("\n".join(lines) + "\n")
    return Case(jsonl, 4, "less than the previous timestamp")  # line 4 now holds t(2) < t(3)


def huge_gap(folder):
    _, jsonl, lines = take(folder, "bad")
    lines.insert(2, "")  # a blank line: the error must name the line, not the row
    lines.append(row(1e12, [0.5] * 52))
    jsonl.write_text("\n".join(lines) + "\n")
    return Case(jsonl, len(lines), "gaps over 60 s are rejected")


def invalid_utf8(folder):
    _, jsonl, lines = take(folder, "bad")
    data = ("\n".join(lines) + "\n").encode().split(b"\n")
    data[4] = data[4].replace(b"0.", b"\xff\xfe", 1)
    jsonl.write_bytes(b"\n".join(data))
    return Case(jsonl, 5, "invalid JSON")


def zero_length_wav(folder):
    wav, _, _ = take(folder, "bad")
    wav.write_bytes(b"")
    return Case(wav, None, "unreadable audio")


def corrupt_wav_header(folder):
    wav, _, _ = take(folder, "bad")
    data = wav.read_bytes()
    wav.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunk" + data[44:])
    return Case(wav, None, "unreadable audio")


def header_only_wav(folder):
    wav, _, _ = take(folder, "bad")
    wav.write_bytes(wav.read_bytes()[:44])
    return Case(wav, None, "audio has no samples")


def wav_much_longer(folder):
    synthetic.make_take(folder / "bad.wav", folder / "bad.jsonl", seconds=30.0, blendshape_frames=40)
    return Case(None)


def jsonl_much_longer(folder):
    synthetic.make_take(folder / "bad.wav", folder / "bad.jsonl", seconds=1.0, blendshape_frames=900)
    return Case(None)


def unicode_and_spaces(folder):
    sub = folder / "sub dir ü"
    sub.mkdir()
    take(sub, "テイク 1 ñ")
    return Case(None)


def unicode_and_spaces_broken(folder):
    sub = folder / "sub dir ü"
    sub.mkdir()
    _, jsonl, lines = take(sub, "テイク 2 ñ")
    lines[6] = lines[6].replace("[", "[[", 1)
    jsonl.write_text("\n".join(lines) + "\n")
    return Case(jsonl, 7, "invalid")


def symlink_loop(folder):
    (folder / "nest").mkdir()
    os.symlink(folder, folder / "nest" / "loop")
    os.symlink(folder / "nest", folder / "nest" / "self")
    os.symlink(folder / "dangling-target", folder / "dangling.wav")
    return Case(None)


CASES: dict[str, Callable[[Path], Case]] = {
    "truncated_last_line": truncated_last_line,
    "wrong_count": _jsonl_line(3, row(0.0667, [0.5] * 51), "expected 52 blendshape values, got 51"),
    "too_many_values": _jsonl_line(3, row(0.0667, [0.5] * 53), "expected 52 blendshape values, got 53"),
    "string_value": _jsonl_line(
        2, row(0.0333, [0.5] * 51)[:-2] + ', "abc"]}', 'invalid type: string "abc", expected a number'
    ),
    "string_timestamp": _jsonl_line(
        2, '{"timestamp": "0.03", "blendshapes": [' + ",".join(["0.5"] * 52) + "]}", "expected a number for timestamp"
    ),
    "nan": _jsonl_line(4, row(0.1, [0.5] * 52).replace("0.5", "NaN", 1), "NaN/Infinity are not allowed"),
    "infinity": _jsonl_line(4, row(0.1, [0.5] * 52).replace("0.5", "Infinity", 1), "NaN/Infinity are not allowed"),
    "overflow_to_infinity": _jsonl_line(4, row(0.1, [0.5] * 52).replace("0.5", "1e999", 1), "not finite"),
    "nested_garbage": _jsonl_line(
        5, '{"timestamp": 0.13, "blendshapes": [[1, {"a": [null]}], {}, "x"]}', "expected a number"
    ),
    "not_an_object": _jsonl_line(2, "[1, 2, 3]", "expected a JSON object"),
    "missing_key": _jsonl_line(2, '{"timestamp": 0.03}', "blendshapes"),
    "nul_bytes": _jsonl_line(3, "\x00\x00\x00", "invalid JSON"),
    "two_objects_one_line": _jsonl_line(2, row(0.0333, [0.5] * 52) + row(0.04, [0.5] * 52), "trailing characters"),
    "deep_nesting": deep_nesting,
    "ten_mb_line": ten_mb_line,
    "bom": bom,
    "crlf": crlf,
    "empty_file": empty_file,
    "blank_lines_only": blank_lines_only,
    "timestamps_backwards": backwards,
    "huge_timestamp_gap": huge_gap,
    "invalid_utf8": invalid_utf8,
    "zero_length_wav": zero_length_wav,
    "corrupt_wav_header": corrupt_wav_header,
    "header_only_wav": header_only_wav,
    "wav_much_longer": wav_much_longer,
    "jsonl_much_longer": jsonl_much_longer,
    "unicode_and_spaces": unicode_and_spaces,
    "unicode_and_spaces_broken": unicode_and_spaces_broken,
    "symlink_loop": symlink_loop,
}


@pytest.fixture(scope="module")
def good_take(tmp_path_factory):
    folder = tmp_path_factory.mktemp("good")
    take(folder, "good", seconds=3.0, seed=42)
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, good_take):
    """One folder per case: the good take plus the case's files."""
    root = tmp_path_factory.mktemp("corpus")
    cases = {}
    for name, build in CASES.items():
        folder = root / name
        folder.mkdir()
        for f in good_take.iterdir():
            shutil.copy(f, folder / f.name)
        cases[name] = (folder, build(folder))
    return cases


def make(folder: Path, on_error: str) -> SequentialKoeMorphDataset:
    return SequentialKoeMorphDataset(
        folder, window_frames=W, stride_frames=4, loop_dataset=False, shuffle_files=False, on_error=on_error
    )


@pytest.mark.parametrize("name", list(CASES))
def test_raise_names_the_file_and_line(corpus, name):
    folder, case = corpus[name]
    if case.bad is None:
        ds = make(folder, "raise")
        assert ds.skipped == []
        return
    with pytest.raises(DataFormatError) as info:
        make(folder, "raise")
    err = info.value
    assert err.path == str(case.bad)
    assert err.line == case.line
    assert case.reason in err.reason
    prefix = f"{case.bad}:{case.line}: " if case.line is not None else f"{case.bad}: "
    assert str(err).startswith(prefix)
    assert isinstance(err, ValueError)


@pytest.mark.parametrize("name", list(CASES))
def test_skip_records_the_take_and_keeps_the_good_one(corpus, name, caplog):
    folder, case = corpus[name]
    ds = make(folder, "skip")
    if case.bad is None:
        assert ds.skipped == []
    else:
        assert len(ds.skipped) == 1
        path, reason = ds.skipped[0]
        assert path == case.bad and case.reason in reason and str(case.bad) in reason
        assert any(str(case.bad.with_suffix("")) in r.getMessage() for r in caplog.records)
    names = {s["file_names"] for s in ds}  # decoding every window does not fail either
    assert "good" in names
    if case.bad is None and name not in ("unicode_and_spaces", "symlink_loop"):
        assert "bad" in names


def test_valid_odd_files_parse_to_the_same_values(corpus):
    for name in ("bom", "crlf"):
        folder = corpus[name][0]
        values, ts = read_blendshapes(folder / "bad.jsonl")
        assert (folder / "bad.jsonl").read_bytes() != (folder / "reference.txt").read_bytes()
        ref_values, ref_ts, _ = _core.parse_blendshapes_bytes((folder / "reference.txt").read_bytes())
        np.testing.assert_array_equal(values, ref_values)
        np.testing.assert_array_equal(ts, ref_ts)
        assert len(ts) == 60
        # And independently of the parser: the first row's numbers as Python's json reads them.
        first = json.loads((folder / "reference.txt").read_text().splitlines()[0])
        np.testing.assert_array_equal(values[0], np.asarray(first["blendshapes"], dtype=np.float32))


def test_mismatched_lengths_use_the_minimum_and_warn(corpus, caplog):
    for name, expect in (("wav_much_longer", (40, 900)), ("jsonl_much_longer", (900, 30))):
        ds = make(corpus[name][0], "raise")
        bad = [i for i, (wav, _) in enumerate(ds.file_pairs) if wav.stem == "bad"][0]
        assert ds.usable_frames[bad] == min(expect)
        assert any(
            f"{expect[0]} blendshape frames but the audio covers {expect[1]} frames" in r.getMessage()
            for r in caplog.records
        )


def test_unicode_paths_and_symlink_loops(corpus):
    ds = make(corpus["unicode_and_spaces"][0], "raise")
    assert sorted(w.name for w, _ in ds.file_pairs) == ["good.wav", "テイク 1 ñ.wav"]
    assert {s["file_names"] for s in ds} == {"good", "テイク 1 ñ"}
    ds = make(corpus["symlink_loop"][0], "raise")
    assert [w.name for w, _ in ds.file_pairs] == ["good.wav"]  # found once, the loop not followed again
    assert [o.name for o in ds.orphans] == ["dangling.wav"]


def test_inspect_json_reports_every_case(corpus):
    root = next(iter(corpus.values()))[0].parent
    proc = subprocess.run(
        [sys.executable, "-m", "koemorph_data", "inspect", str(root), "--json", "--window-frames", str(W)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    errors = {e["path"]: e for e in report["errors"]}
    pairs = {p["audio"] for p in report["pairs"]}
    for name, (folder, case) in corpus.items():
        assert str(folder / "good.wav") in pairs, name
        if case.bad is None:
            assert not any(p.startswith(str(folder) + os.sep) for p in errors), name
            continue
        error = errors[str(case.bad)]
        assert error["line"] == case.line and case.reason in error["reason"], name
    assert len(errors) == sum(case.bad is not None for _, case in corpus.values())
    mismatch = [p for p in report["pairs"] if p["audio"] == str(corpus["wav_much_longer"][0] / "bad.wav")][0]
    assert (mismatch["frames"], mismatch["audio_frames"], mismatch["mismatch"]) == (40, 900, -860)


def test_rust_panic_is_a_python_exception_and_the_process_survives():
    with pytest.raises(
        RuntimeError, match="internal error in koemorph_data while testing panic handling: deliberate test panic"
    ):
        _core._panic_for_test()
    # Again, and the extension still works afterwards.
    with pytest.raises(RuntimeError):
        _core._panic_for_test()
    values, _, _ = _core.parse_blendshapes_bytes(b'{"timestamp": 0, "blendshapes": [' + b",".join([b"1"] * 52) + b"]}")
    assert values.shape == (1, 52)
    code = (
        "import koemorph_data._core as c\n"
        "try:\n    c._panic_for_test()\nexcept RuntimeError as e:\n    print('caught', type(e).__name__)\n"
        "print('alive')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.split() == ["caught", "RuntimeError", "alive"]
