"""The two datasets of issue 2: windows checked against audio and JSONL read by hand."""

from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from conftest import SR, WINDOW, WINDOW_SAMPLES, expected_windows, read_jsonl_by_hand, read_wav_by_hand, usable_frames
from torch.utils.data import DataLoader

from koemorph_data import AdaptiveSequentialDataset, DataFormatError, SequentialKoeMorphDataset
from koemorph_data.synthetic import make_take


def collect(ds, limit=None):
    out = []
    for sample in ds:
        out.append(sample)
        if limit is not None and len(out) >= limit:
            break
    return out


def keyset(samples):
    return [(int(s["file_indices"]), int(s["start_frames"])) for s in samples]


def test_pairs_sorted_as_paths_and_orphans_logged(tmp_path, caplog):
    make_take(tmp_path / "b" / "z.wav", tmp_path / "b" / "z.jsonl", seconds=9.0)
    make_take(tmp_path / "a.wav", tmp_path / "a.jsonl", seconds=9.0)
    make_take(tmp_path / "b.wav", tmp_path / "b.jsonl", seconds=9.0)
    (tmp_path / "lonely.wav").write_bytes((tmp_path / "a.wav").read_bytes())
    (tmp_path / "b" / "alone.jsonl").write_text((tmp_path / "a.jsonl").read_text())
    with caplog.at_level(logging.WARNING, logger="koemorph_data"):
        ds = SequentialKoeMorphDataset(tmp_path)
    wavs = [w for w, _ in ds.file_pairs]
    assert wavs == sorted([tmp_path / "b" / "z.wav", tmp_path / "a.wav", tmp_path / "b.wav"])
    assert all(j == w.with_suffix(".jsonl") for w, j in ds.file_pairs)
    assert "lonely.wav" in caplog.text and "alone.jsonl" in caplog.text
    assert sorted(ds.orphans) == sorted([tmp_path / "lonely.wav", tmp_path / "b" / "alone.jsonl"])


def test_no_pairs_is_a_value_error_naming_the_directory(tmp_path):
    (tmp_path / "x.wav").write_bytes(b"")
    with pytest.raises(ValueError, match=str(tmp_path)):
        SequentialKoeMorphDataset(tmp_path)


def test_dense_windows_match_audio_and_blendshapes_sliced_by_hand(small_dataset):
    ds = SequentialKoeMorphDataset(small_dataset, loop_dataset=False, shuffle_files=False)
    samples = collect(ds)
    expected = []
    for fi, (wav, jsonl) in enumerate(ds.file_pairs):
        expected += [(fi, f) for f in expected_windows(usable_frames(wav, jsonl), 1)]
    assert keyset(samples) == expected
    audio = {fi: read_wav_by_hand(w) for fi, (w, _) in enumerate(ds.file_pairs)}
    shapes = {fi: read_jsonl_by_hand(j)[0] for fi, (_, j) in enumerate(ds.file_pairs)}
    for s in samples[::37] + samples[-3:]:
        fi, f = int(s["file_indices"]), int(s["start_frames"])
        start = f * SR // 30  # exact alignment: floor(f * 16000 / 30)
        assert s["audio"].dtype == torch.float32 and s["audio"].shape == (WINDOW_SAMPLES,)
        assert torch.equal(s["audio"], torch.from_numpy(audio[fi][start : start + WINDOW_SAMPLES]))
        assert s["blendshapes"].shape == (WINDOW, 52)
        assert torch.equal(s["blendshapes"], torch.from_numpy(shapes[fi][f : f + WINDOW]))
        assert s["file_indices"].dtype == torch.int64 and s["file_indices"].dim() == 0
        assert s["start_frames"].dtype == torch.int64 and s["start_frames"].dim() == 0
        assert s["file_names"] == ds.file_pairs[fi][0].stem


def test_hop_alignment_reproduces_the_document(small_dataset):
    ds = SequentialKoeMorphDataset(
        small_dataset, loop_dataset=False, shuffle_files=False, alignment="hop", stride_frames=20
    )
    wav = ds.file_pairs[0][0]
    audio = read_wav_by_hand(wav)
    for s in collect(ds):
        if int(s["file_indices"]) == 0:
            f = int(s["start_frames"])
            assert torch.equal(s["audio"], torch.from_numpy(audio[f * 533 : f * 533 + WINDOW_SAMPLES]))


def test_last_full_window_is_included_and_strides(small_dataset):
    for stride in (1, 7, 32):
        ds = SequentialKoeMorphDataset(small_dataset, stride_frames=stride, loop_dataset=False, shuffle_files=False)
        frames0 = usable_frames(*ds.file_pairs[0])
        starts = [f for fi, f in keyset(collect(ds)) if fi == 0]
        assert starts == list(range(0, frames0 - WINDOW + 1, stride))
        if stride == 1:
            assert starts[-1] == frames0 - WINDOW


def test_frame_count_mismatch_uses_minimum_and_warns(tmp_path, caplog):
    make_take(tmp_path / "long_face.wav", tmp_path / "long_face.jsonl", seconds=10.0, blendshape_frames=330)
    make_take(tmp_path / "short_face.wav", tmp_path / "short_face.jsonl", seconds=10.0, blendshape_frames=290)
    make_take(tmp_path / "off_by_one.wav", tmp_path / "off_by_one.jsonl", seconds=10.0, blendshape_frames=301)
    with caplog.at_level(logging.WARNING, logger="koemorph_data"):
        ds = SequentialKoeMorphDataset(tmp_path, shuffle_files=False)
    names = [w.stem for w, _ in ds.file_pairs]
    frames = dict(zip(names, ds.usable_frames.tolist()))
    assert frames == {"long_face": 300, "short_face": 290, "off_by_one": 300}
    assert "long_face" in caplog.text and "330" in caplog.text and "300" in caplog.text
    assert "short_face" in caplog.text and "290" in caplog.text
    assert "off_by_one" not in caplog.text


def test_short_take_yields_nothing_and_is_logged_once(tmp_path, caplog):
    make_take(tmp_path / "tiny.wav", tmp_path / "tiny.jsonl", seconds=3.0)
    make_take(tmp_path / "ok.wav", tmp_path / "ok.jsonl", seconds=9.0)
    with caplog.at_level(logging.WARNING, logger="koemorph_data"):
        ds = SequentialKoeMorphDataset(tmp_path, loop_dataset=False)
        samples = collect(ds)
    assert caplog.text.count("tiny") == 1
    assert {s["file_names"] for s in samples} == {"ok"}


def test_stereo_is_averaged_and_other_rates_resampled_with_soxr(tmp_path):
    make_take(tmp_path / "stereo.wav", tmp_path / "stereo.jsonl", seconds=9.0, channels=2, subtype="FLOAT")
    make_take(tmp_path / "cd.wav", tmp_path / "cd.jsonl", seconds=9.0, sample_rate=44100, subtype="FLOAT")
    ds = SequentialKoeMorphDataset(tmp_path, loop_dataset=False, shuffle_files=False, stride_frames=13)
    by_name = {w.stem: w for w, _ in ds.file_pairs}
    data, _ = sf.read(str(by_name["stereo"]), dtype="float32")
    stereo = data.mean(axis=1, dtype=np.float32)
    raw, rate = sf.read(str(by_name["cd"]), dtype="float32")
    assert rate == 44100
    cd = soxr.resample(raw, 44100, SR, quality="HQ")
    for s in collect(ds):
        f = int(s["start_frames"])
        ref = stereo if s["file_names"] == "stereo" else cd
        np.testing.assert_allclose(
            s["audio"].numpy(), ref[f * SR // 30 : f * SR // 30 + WINDOW_SAMPLES], rtol=0, atol=1e-7
        )


def test_file_order_shuffled_per_epoch_reproducibly(many_dataset):
    def order(epoch, seed=0):
        ds = SequentialKoeMorphDataset(many_dataset, stride_frames=64, loop_dataset=False, seed=seed)
        ds.set_epoch(epoch)
        files = []
        for fi, _ in keyset(collect(ds)):
            if not files or files[-1] != fi:
                files.append(fi)
        return files

    assert order(0) == order(0)
    assert sorted(order(0)) == list(range(7))
    assert len({tuple(order(e)) for e in range(5)}) > 1
    assert order(0, seed=1) != order(0, seed=0) or order(1, seed=1) != order(1, seed=0)
    ds = SequentialKoeMorphDataset(many_dataset, stride_frames=64, loop_dataset=False, shuffle_files=False)
    files = [fi for fi, _ in keyset(collect(ds))]
    assert files == sorted(files)


def test_loop_dataset_moves_on_to_the_next_epoch(many_dataset):
    ds = SequentialKoeMorphDataset(many_dataset, stride_frames=32, loop_dataset=True)
    n0 = ds.num_windows()
    stream = keyset(collect(ds, limit=2 * n0 + 5))
    once = SequentialKoeMorphDataset(many_dataset, stride_frames=32, loop_dataset=False)
    e0 = keyset(collect(once))
    once.set_epoch(1)
    e1 = keyset(collect(once))
    assert stream[:n0] == e0 and stream[n0 : 2 * n0] == e1
    assert e0 != e1 and sorted(e0) == sorted(e1)


def test_stride_modes_of_the_adaptive_dataset(many_dataset):
    def starts(**kw):
        ds = AdaptiveSequentialDataset(many_dataset, loop_dataset=False, shuffle_files=False, **kw)
        return ds, collect(ds)

    frames = SequentialKoeMorphDataset(many_dataset).usable_frames.tolist()
    ds, samples = starts(stride_mode="dense")
    assert ds.current_stride == 1 and len(samples) == sum(len(expected_windows(n, 1)) for n in frames)
    assert all(bool(s["is_dense"]) for s in samples)
    ds, samples = starts(stride_mode="sparse", initial_stride=16)
    assert ds.current_stride == 16
    assert keyset(samples) == [(fi, f) for fi, n in enumerate(frames) for f in expected_windows(n, 16)]
    assert not any(bool(s["is_dense"]) for s in samples)
    assert samples[0]["is_dense"].dtype == torch.bool and samples[0]["is_dense"].dim() == 0


@pytest.mark.parametrize("epoch,expected", [(0, 32), (10, 28), (25, 24), (50, 16), (75, 8), (97, 1), (99, 1), (120, 1)])
def test_progressive_linear_is_the_documents_formula(many_dataset, epoch, expected):
    ds = AdaptiveSequentialDataset(many_dataset, stride_mode="progressive", epoch=epoch, max_epochs=100)
    assert ds.current_stride == max(1, int(32 - epoch / 100 * 31)) == expected


@pytest.mark.parametrize("epoch,expected", [(0, 32), (19, 32), (20, 16), (49, 16), (50, 8), (79, 8), (80, 1), (99, 1)])
def test_progressive_step_is_the_documents_table(many_dataset, epoch, expected):
    ds = AdaptiveSequentialDataset(many_dataset, stride_mode="progressive", progressive_schedule="step", max_epochs=100)
    ds.set_epoch(epoch)
    assert ds.current_stride == expected


def test_progressive_windows_follow_the_epoch(many_dataset):
    ds = AdaptiveSequentialDataset(
        many_dataset, stride_mode="progressive", loop_dataset=False, shuffle_files=False, max_epochs=10
    )
    frames = ds.usable_frames.tolist()
    for epoch in (0, 5, 9):
        ds.set_epoch(epoch)
        stride = max(1, int(32 - epoch / 10 * 31))
        assert keyset(collect(ds)) == [(fi, f) for fi, n in enumerate(frames) for f in expected_windows(n, stride)]


def test_mixed_mode_draws_dense_share_plus_sparse_grid(many_dataset):
    ds = AdaptiveSequentialDataset(
        many_dataset, stride_mode="mixed", initial_stride=16, dense_sampling_ratio=0.1, loop_dataset=False, seed=5
    )
    frames = ds.usable_frames.tolist()

    def epoch_windows(epoch):
        ds.set_epoch(epoch)
        per_file = defaultdict(list)
        for s in collect(ds):
            per_file[int(s["file_indices"])].append((int(s["start_frames"]), bool(s["is_dense"])))
        return per_file

    e0 = epoch_windows(0)
    for fi, windows in e0.items():
        starts = [f for f, _ in windows]
        positions = frames[fi] - WINDOW + 1
        grid = set(range(0, positions, 16))
        assert starts == sorted(set(starts)), "temporal order, no window twice"
        assert grid <= set(starts)
        dense = [f for f, d in windows if d]
        off_grid = [f for f in starts if f not in grid]
        assert set(off_grid) <= set(dense)
        # int(0.1 * positions) draws; those on the grid appear once, flagged dense.
        assert len(dense) == int(0.1 * positions)
        assert len(starts) == len(grid) + len(off_grid)
        assert all(0 <= f < positions for f in starts)
    assert e0 == epoch_windows(0)
    assert e0 != epoch_windows(1)


def test_dataloader_workers_yield_every_window_once_in_temporal_order(many_dataset):
    ds = SequentialKoeMorphDataset(many_dataset, stride_frames=3, loop_dataset=False)
    plan = ds.plan()
    loader = DataLoader(ds, batch_size=4, num_workers=2, drop_last=False)
    seen = []
    per_file_last = {}
    for batch in loader:
        for fi, f in zip(batch["file_indices"].tolist(), batch["start_frames"].tolist()):
            seen.append((fi, f))
    assert sorted(seen) == sorted(zip(plan.file.tolist(), plan.start_frame.tolist()))
    assert len(seen) == len(set(seen)) == ds.num_windows()
    # Each worker's block is a contiguous run of the plan: within it, a file's windows ascend.
    block = ds.num_windows() // 2 + ds.num_windows() % 2
    for part in (list(zip(plan.file.tolist(), plan.start_frame.tolist()))[:block],):
        for fi, f in part:
            assert per_file_last.get(fi, -1) < f
            per_file_last[fi] = f


def test_the_documents_dataloader_configuration(small_dataset):
    ds = SequentialKoeMorphDataset(small_dataset, loop_dataset=True)
    loader = DataLoader(ds, batch_size=4, num_workers=2, pin_memory=True, persistent_workers=True, drop_last=True)
    it = iter(loader)
    for _ in range(3):
        batch = next(it)
        assert batch["audio"].shape == (4, 136448) and batch["audio"].dtype == torch.float32
        assert batch["blendshapes"].shape == (4, 256, 52)
        assert batch["file_indices"].shape == (4,) and batch["file_indices"].dtype == torch.int64
        assert batch["start_frames"].shape == (4,)
        assert isinstance(batch["file_names"], list) and len(batch["file_names"]) == 4
        assert all(isinstance(n, str) for n in batch["file_names"])
    del it


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_set_epoch_reaches_persistent_workers(many_dataset, context):
    ds = SequentialKoeMorphDataset(many_dataset, stride_frames=16, loop_dataset=False)
    loader = DataLoader(ds, batch_size=2, num_workers=2, persistent_workers=True, multiprocessing_context=context)
    for epoch in (0, 1, 2):
        ds.set_epoch(epoch)
        got = sorted((fi, f) for b in loader for fi, f in zip(b["file_indices"].tolist(), b["start_frames"].tolist()))
        plan = ds.plan(epoch)
        assert got == sorted(zip(plan.file.tolist(), plan.start_frame.tolist()))
        order = [fi for b in loader for fi in b["file_indices"].tolist()]
        firsts = list(dict.fromkeys(plan.file.tolist()))
        assert order[0] == firsts[0], f"epoch {epoch} did not reach the workers"


def test_bad_take_raises_or_is_skipped_and_recorded(tmp_path, caplog):
    make_take(tmp_path / "good.wav", tmp_path / "good.jsonl", seconds=9.0)
    make_take(tmp_path / "bad.wav", tmp_path / "bad.jsonl", seconds=9.0)
    lines = (tmp_path / "bad.jsonl").read_text().splitlines()
    lines[4] = lines[4].replace("[", '["oops", ', 1)
    (tmp_path / "bad.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    (tmp_path / "broken.jsonl").write_text((tmp_path / "good.jsonl").read_text())
    with pytest.raises(DataFormatError) as info:
        SequentialKoeMorphDataset(tmp_path)
    assert info.value.path is not None
    with caplog.at_level(logging.WARNING, logger="koemorph_data"):
        ds = SequentialKoeMorphDataset(tmp_path, on_error="skip", loop_dataset=False)
    skipped = dict((p.name, reason) for p, reason in ds.skipped)
    assert set(skipped) == {"bad.jsonl", "broken.wav"}
    assert ":5:" in skipped["bad.jsonl"]
    assert "bad" in caplog.text and "broken" in caplog.text
    assert {s["file_names"] for s in collect(ds)} == {"good"}


def test_invalid_arguments_are_rejected(small_dataset):
    with pytest.raises(ValueError):
        SequentialKoeMorphDataset(small_dataset, stride_frames=0)
    with pytest.raises(ValueError):
        SequentialKoeMorphDataset(small_dataset, alignment="nearest")
    with pytest.raises(ValueError):
        SequentialKoeMorphDataset(small_dataset, on_error="ignore")
    with pytest.raises(ValueError):
        AdaptiveSequentialDataset(small_dataset, stride_mode="random")
    with pytest.raises(ValueError):
        AdaptiveSequentialDataset(small_dataset, progressive_schedule="cosine")
    with pytest.raises(ValueError, match="window"):
        SequentialKoeMorphDataset(small_dataset, window_frames=100000)


def _collate_noting_strategy(samples):
    from torch.utils.data import default_collate

    batch = default_collate(samples)
    batch["strategy"] = torch.multiprocessing.get_sharing_strategy()
    return batch


@pytest.mark.parametrize("strategy", ["file_system", "file_descriptor", None])
def test_worker_sharing_strategy_is_set_in_workers_only(many_dataset, strategy):
    before = torch.multiprocessing.get_sharing_strategy()
    ds = SequentialKoeMorphDataset(many_dataset, stride_frames=40, loop_dataset=False, worker_sharing_strategy=strategy)
    batches = list(DataLoader(ds, batch_size=2, num_workers=2, collate_fn=_collate_noting_strategy))
    assert {b["strategy"] for b in batches} == {strategy or before}
    assert torch.multiprocessing.get_sharing_strategy() == before, "the training process is untouched"
    plain = list(
        DataLoader(
            SequentialKoeMorphDataset(many_dataset, stride_frames=40, loop_dataset=False), batch_size=2, num_workers=2
        )
    )
    for a, b in zip(batches, plain, strict=True):
        assert torch.equal(a["audio"], b["audio"]) and torch.equal(a["start_frames"], b["start_frames"])
    with pytest.raises(ValueError, match="worker_sharing_strategy"):
        SequentialKoeMorphDataset(many_dataset, worker_sharing_strategy="carrier_pigeon")


def test_repr_names_the_dataset_and_its_epoch(small_dataset):
    frames = [usable_frames(w, w.with_suffix(".jsonl")) for w in sorted(small_dataset.glob("*.wav"))]
    dense = sum(len(expected_windows(f, 1)) for f in frames)
    ds = SequentialKoeMorphDataset(small_dataset)
    assert repr(ds) == (
        f"SequentialKoeMorphDataset({str(small_dataset)!r}, takes=3, window_frames=256, "
        f"stride_frames=1, epoch=0, windows_in_epoch={dense})"
    )
    sparse = sum(len(expected_windows(f, 16)) for f in frames)
    ds = AdaptiveSequentialDataset(
        small_dataset,
        stride_mode="progressive",
        initial_stride=32,
        epoch=50,
        max_epochs=100,
        rank=1,
        world_size=2,
        loop_dataset=False,
    )
    assert repr(ds) == (
        f"AdaptiveSequentialDataset({str(small_dataset)!r}, takes=3, window_frames=256, "
        f"stride_mode='progressive', stride=16, epoch=50, windows_in_epoch={sparse}, rank=1, "
        "world_size=2, loop_dataset=False)"
    )
