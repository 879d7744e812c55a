"""Augmentation (koemorph_data.augment): seeded per (seed, epoch, plan index), same shapes,
exact noise SNR and gain, speed perturbation that keeps audio and face in sync, pitch shift
that keeps tempo and blendshapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from koemorph_data import AdaptiveSequentialDataset, SequentialKoeMorphDataset, read_blendshapes, synthetic
from koemorph_data.augment import (
    Augment,
    Gain,
    PinkNoise,
    PitchShift,
    SpeedPerturb,
    WhiteNoise,
    as_augment,
    pitch_shift,
)
from koemorph_data.sync import best_lag, loudness_envelope

SR, FPS, HOP = 16000, 30, 533
W = 64  # window frames
JAW = 17


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("aug")
    synthetic.make_dataset(root, takes=3, seconds=[8.0, 6.0, 7.0], seed=7)
    return root


def make(data, augment, cls=SequentialKoeMorphDataset, **kw):
    kw.setdefault("loop_dataset", False)
    if cls is SequentialKoeMorphDataset:
        kw.setdefault("stride_frames", 16)
    return cls(data, window_frames=W, seed=5, augment=augment, **kw)


def by_key(samples):
    return {(int(s["file_indices"]), int(s["start_frames"])): s for s in samples}


ALL = [
    SpeedPerturb(factors=(0.9, 1.1), p=0.7),
    PitchShift(semitones=(-2, 2), p=0.5),
    Gain(db=(-6, 6)),
    WhiteNoise(snr_db=(10, 30), p=0.5),
    PinkNoise(snr_db=(10, 30), p=0.5),
]


def test_shapes_and_dtypes_unchanged(data):
    for cls in (SequentialKoeMorphDataset, AdaptiveSequentialDataset):
        ds = make(data, Augment(ALL, seed=1), cls)
        n = 0
        for sample in ds:
            assert sample["audio"].shape == (W * HOP,) and sample["audio"].dtype == torch.float32
            assert sample["blendshapes"].shape == (W, 52) and sample["blendshapes"].dtype == torch.float32
            assert torch.isfinite(sample["audio"]).all() and torch.isfinite(sample["blendshapes"]).all()
            n += 1
        assert n == ds.num_windows() > 0
    lanes = make(data, Augment(ALL, seed=1), lanes=2)
    for batch in lanes:
        assert batch["audio"].shape == (2, W * HOP) and batch["blendshapes"].shape == (2, W, 52)


def test_same_seed_and_epoch_same_augmentation_under_any_workers(data):
    aug = Augment(ALL, seed=3)
    single = by_key(make(data, aug))
    loader = DataLoader(make(data, aug), batch_size=None, num_workers=2)
    multi = by_key(loader)
    assert single.keys() == multi.keys() and len(single) > 4
    for key in single:
        assert torch.equal(single[key]["audio"], multi[key]["audio"]), key
        assert torch.equal(single[key]["blendshapes"], multi[key]["blendshapes"]), key
    # The augmentation really changed something, and another epoch / seed draws differently.
    plain = by_key(make(data, None))
    assert any(not torch.equal(plain[k]["audio"], single[k]["audio"]) for k in plain)
    other_epoch = make(data, aug)
    other_epoch.set_epoch(1)
    plan0, plan1 = make(data, aug).plan(0), other_epoch.plan(1)
    assert aug.params(0, 0) != aug.params(1, 0) or aug.params(0, 1) != aug.params(1, 1)
    assert aug.params(0, 2) == Augment(ALL, seed=3).params(0, 2)
    assert aug.params(0, 2) != Augment(ALL, seed=4).params(0, 2)
    assert len(plan0) == len(plan1)


def test_dict_and_list_forms_equal_object_form(data):
    config = {"seed": 3, "transforms": [t.to_dict() for t in ALL]}
    a = by_key(make(data, Augment(ALL, seed=3)))
    b = by_key(make(data, config))
    for key in a:
        assert torch.equal(a[key]["audio"], b[key]["audio"])
    # A bare list takes the dataset's seed (5 here).
    c = by_key(make(data, [t.to_dict() for t in ALL]))
    d = by_key(make(data, Augment(ALL, seed=5)))
    for key in c:
        assert torch.equal(c[key]["audio"], d[key]["audio"])
    assert as_augment(Gain(db=1)).transforms == [Gain(db=1)]
    with pytest.raises(ValueError, match="unknown augmentation type 'reverb'"):
        make(data, [{"type": "reverb"}])
    with pytest.raises(ValueError, match="low <= high"):
        Gain(db=(3, -3))
    with pytest.raises(ValueError, match="p must be in"):
        WhiteNoise(p=1.5)
    with pytest.raises(ValueError, match="factors must be positive"):
        SpeedPerturb(factors=(0, 1))


@pytest.mark.parametrize("kind", [WhiteNoise, PinkNoise])
def test_noise_snr_within_range_and_equal_to_the_draw(data, kind):
    aug = Augment([kind(snr_db=(10, 30))], seed=11)
    plain = make(data, None)
    noisy = make(data, aug)
    plan = plain.plan()
    snrs = []
    for i, (p, q) in enumerate(zip(plain, noisy)):
        clean = p["audio"].double().numpy()
        noise = q["audio"].double().numpy() - clean
        snr = 10 * np.log10(np.mean(clean**2) / np.mean(noise**2))
        drawn = aug.params(plan.epoch, i, default_seed=5)[0][1]
        assert 10 <= snr <= 30
        assert snr == pytest.approx(drawn, abs=0.01)
        snrs.append(snr)
    assert max(snrs) - min(snrs) > 2  # really drawn from the range
    if kind is PinkNoise:  # pink: more power below 500 Hz than above 4 kHz (white would be ~1:7)
        n = np.fft.rfft(noise)
        f = np.fft.rfftfreq(len(noise), 1 / SR)
        assert np.sum(np.abs(n[(f > 20) & (f < 500)]) ** 2) > np.sum(np.abs(n[f > 4000]) ** 2)


def test_gain_is_exact(data):
    aug = Augment([Gain(db=(-6, 6))], seed=2)
    plain, gained = make(data, None), make(data, aug)
    plan = plain.plan()
    for i, (p, q) in enumerate(zip(plain, gained)):
        db = aug.params(plan.epoch, i, default_seed=5)[0][1]
        assert -6 <= db <= 6
        assert torch.equal(q["audio"], p["audio"] * np.float32(10 ** (db / 20)))
        assert torch.equal(q["blendshapes"], p["blendshapes"])
    fixed = make(data, Augment([Gain(db=6.0)], seed=0))
    first_plain, first = next(iter(plain)), next(iter(fixed))
    assert torch.equal(first["audio"], first_plain["audio"] * np.float32(10**0.3))


@pytest.mark.parametrize("factor", [0.9, 1.1, 0.8, 1.25])
def test_speed_perturbation_keeps_audio_and_face_in_sync(data, factor):
    aug = Augment([SpeedPerturb(factors=(factor, factor))], seed=0)
    sped, plain = make(data, aug, stride_frames=8), make(data, None, stride_frames=8)
    lags, control = [], []
    for s, p in zip(sped, plain):
        env = loudness_envelope(s["audio"].numpy(), SR, FPS, W)
        lag, r = best_lag(env, s["blendshapes"][:, JAW].numpy(), 8)
        lags.append(lag)
        assert r > 0.9
        # Control: the same perturbed audio against the unperturbed face is out of sync.
        control.append(best_lag(env, p["blendshapes"][:, JAW].numpy(), 8)[0])
    assert lags and all(lag == 0 for lag in lags), lags
    assert np.mean(np.abs(control)) >= 2, control


def test_speed_factor_maps_frames_exactly(data):
    """factor 0.5: output frame k = take frame start + k/2 (even k exact, odd k the mean)."""
    ds = make(data, Augment([SpeedPerturb(factors=(0.5, 0.5))], seed=0), shuffle_files=False)
    sample = next(iter(ds))
    wav, jsonl = ds.file_pairs[int(sample["file_indices"])]
    values, _ = read_blendshapes(jsonl)
    f0 = int(sample["start_frames"])
    out = sample["blendshapes"].numpy()
    for k in range(W):
        a = values[f0 + k // 2].astype(np.float64)
        expect = a if k % 2 == 0 else (a * 0.5 + values[f0 + k // 2 + 1].astype(np.float64) * 0.5)
        np.testing.assert_array_equal(out[k], expect.astype(np.float32))


def test_speed_up_at_take_end_is_clamped_not_padded(data):
    ds = make(data, Augment([SpeedPerturb(factors=(1.25, 1.25))], seed=0), stride_frames=1)
    plan = ds.plan()
    last = [i for i in range(len(plan)) if plan.start_frame[i] == ds.usable_frames[plan.file[i]] - W]
    assert last
    for i in last:
        _, _, audio, blendshapes, _ = ds.reader.read(plan, i)
        assert audio.shape == (W * HOP,) and blendshapes.shape == (W, 52)
        assert np.abs(audio[-HOP:]).max() > 0  # real signal up to the end, no silence padding
        # The last window already ends at the take end: clamped to factor 1 = the plain window.
        _, _, plain_audio, plain_bs, _ = make(data, None, stride_frames=1).reader.read(plan, i)
        np.testing.assert_array_equal(blendshapes, plain_bs)
        np.testing.assert_array_equal(audio, plain_audio)


def test_pitch_shift_keeps_length_tempo_and_blendshapes(data):
    aug = Augment([PitchShift(semitones=(-2, 2))], seed=4)
    shifted, plain = make(data, aug), make(data, None)
    for s, p in zip(shifted, plain):
        assert s["audio"].shape == p["audio"].shape
        assert torch.equal(s["blendshapes"], p["blendshapes"])
        assert not torch.equal(s["audio"], p["audio"])
        env = loudness_envelope(s["audio"].numpy(), SR, FPS, W)
        assert best_lag(env, s["blendshapes"][:, JAW].numpy(), 8)[0] == 0
    # A 440 Hz tone moves to 440 * 2**(s/12) Hz at the same length and level.
    t = np.arange(W * HOP) / SR
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    for semitones in (2.0, -2.0, 0.5):
        out = pitch_shift(tone, SR, semitones)
        assert out.shape == tone.shape and out.dtype == np.float32
        freqs = np.fft.rfftfreq(len(out), 1 / SR)
        peak = freqs[np.argmax(np.abs(np.fft.rfft(out)))]
        assert peak == pytest.approx(440 * 2 ** (semitones / 12), abs=0.5)
        assert np.sqrt(np.mean(out[4000:-4000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


def test_not_applied_with_p_zero_is_the_plain_window(data):
    aug = Augment([SpeedPerturb(p=0), PitchShift(p=0), Gain(p=0), WhiteNoise(p=0)], seed=1)
    for s, p in zip(make(data, aug), make(data, None)):
        assert torch.equal(s["audio"], p["audio"]) and torch.equal(s["blendshapes"], p["blendshapes"])
