"""Issue 10, section 2: train/val/test splits by a stable hash, and max_files."""

from __future__ import annotations

import hashlib
import shutil

import pytest

from koemorph_data import AdaptiveSequentialDataset, SequentialKoeMorphDataset
from koemorph_data.splits import split_of
from koemorph_data.synthetic import make_dataset

OPTIONS = dict(val_fraction=0.3, test_fraction=0.2)


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    """Twelve takes in six session directories (two per session)."""
    root = tmp_path_factory.mktemp("sessions")
    make_dataset(root, takes=12, seconds=8.6, subdirs=True, seed=3)
    return root


def by_hand(relative: str, seed: int = 0, val: float = 0.3, test: float = 0.2) -> str:
    digest = hashlib.blake2b(f"{seed}:{relative}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2**64
    return "val" if u < val else "test" if u < val + test else "train"


def names(ds, root):
    return sorted(w.relative_to(root).with_suffix("").as_posix() for w, _ in ds.file_pairs)


def splits_of(root, **kw):
    out = {}
    for split in ("train", "val", "test"):
        try:
            ds = SequentialKoeMorphDataset(root, loop_dataset=False, stride_frames=64, split=split, **OPTIONS, **kw)
        except ValueError as exc:  # an empty split says so
            assert "holds none" in str(exc)
            out[split] = []
            continue
        out[split] = names(ds, root)
    return out


def test_splits_are_disjoint_cover_and_match_the_hash(sessions):
    got = splits_of(sessions)
    every = names(SequentialKoeMorphDataset(sessions, loop_dataset=False), sessions)
    assert sorted(got["train"] + got["val"] + got["test"]) == every
    assert all(got[s] for s in got), got  # 12 takes at 50/30/20: each split has some
    for split, takes in got.items():
        for take in takes:
            assert by_hand(take) == split == split_of(take + ".wav", **OPTIONS) == split_of(take, **OPTIONS)


def test_adding_takes_never_moves_existing_ones(sessions, tmp_path):
    before = splits_of(sessions, split_seed=5)
    root = tmp_path / "grown"
    shutil.copytree(sessions, root)
    make_dataset(root / "new", takes=5, seconds=8.6, subdirs=True, seed=9)
    after = splits_of(root, split_seed=5)
    for split, takes in before.items():
        assert set(takes) <= set(after[split])
    assert sum(map(len, after.values())) == 17


def test_speaker_split_keeps_a_directory_together(sessions):
    got = splits_of(sessions, split_by="speaker", split_seed=2)
    home = {}
    for split, takes in got.items():
        for take in takes:
            speaker = take.rsplit("/", 1)[0]
            assert home.setdefault(speaker, split) == split
            assert by_hand(speaker, seed=2) == split
    assert len(home) == 6


def test_max_files_takes_the_first_sorted_pairs(sessions):
    every = SequentialKoeMorphDataset(sessions, loop_dataset=False).file_pairs
    ds = AdaptiveSequentialDataset(sessions, loop_dataset=False, max_files=5)
    assert ds.file_pairs == every[:5]
    assert SequentialKoeMorphDataset(sessions, max_files=0).file_pairs == every


@pytest.mark.parametrize(
    "kw", [dict(split="dev"), dict(val_fraction=0.7, test_fraction=0.5), dict(split_by="session"), dict(max_files=-1)]
)
def test_bad_split_options(sessions, kw):
    with pytest.raises(ValueError):
        SequentialKoeMorphDataset(sessions, **kw)
