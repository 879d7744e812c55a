"""Train / validation / test splits that stay put when takes are added.

A take (or, with ``split_by="speaker"``, its speaker: the take's parent directory relative to
``data_dir``) is hashed with the split seed to a number u in [0, 1): ``u < val_fraction`` is
validation, ``u < val_fraction + test_fraction`` test, anything else training. The hash
depends on nothing but the seed and the relative path, so adding or removing other takes never
moves a take to another split, and the three splits are disjoint and cover every take.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path, PurePath, PurePosixPath

SPLITS = ("train", "val", "test")
SPLIT_BY = ("take", "speaker")

Pair = tuple[PurePath, PurePath]  # a take (wav, jsonl) relative to the data directory


def split_key(relative_path: str | PurePath, split_by: str = "take") -> str:
    """What is hashed for a take: its relative posix path without the ``.wav`` / ``.jsonl``
    suffix (``split_by="take"``), or its parent directory (``"speaker"``; ``"."`` at the top)."""
    if split_by not in SPLIT_BY:
        raise ValueError(f"split_by must be one of {SPLIT_BY}, got {split_by!r}")
    path = PurePosixPath(PurePath(relative_path).as_posix())
    if path.suffix in (".wav", ".jsonl"):
        path = path.with_suffix("")
    return path.as_posix() if split_by == "take" else path.parent.as_posix()


def unit_hash(text: str) -> float:
    """A stable number in [0, 1) from ``text`` (BLAKE2b, the same on every machine and run)."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def check_split_options(
    *, split: str | None, val_fraction: float, test_fraction: float, split_by: str, max_files: int | None = None
) -> None:
    """ValueError for split options no dataset can have."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be None or one of {SPLITS}, got {split!r}")
    if split_by not in SPLIT_BY:
        raise ValueError(f"split_by must be one of {SPLIT_BY}, got {split_by!r}")
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    if float(val_fraction) + float(test_fraction) > 1.0:
        raise ValueError(f"val_fraction + test_fraction must be at most 1, got {val_fraction} + {test_fraction}")
    if max_files is not None and (isinstance(max_files, bool) or int(max_files) < 0):
        raise ValueError(f"max_files must be None or a non-negative integer, got {max_files!r}")


def split_of(
    relative_path: str | PurePath,
    *,
    val_fraction: float = 0.0,
    test_fraction: float = 0.0,
    split_by: str = "take",
    split_seed: int = 0,
) -> str:
    """``"train"``, ``"val"`` or ``"test"``: the split of the take at ``relative_path`` (relative
    to the data directory; the wav's or the jsonl's path, or the take's without a suffix), as
    the datasets' ``split=`` options assign it."""
    check_split_options(split=None, val_fraction=val_fraction, test_fraction=test_fraction, split_by=split_by)
    u = unit_hash(f"{int(split_seed)}:{split_key(relative_path, split_by)}")
    if u < val_fraction:
        return "val"
    if u < val_fraction + test_fraction:
        return "test"
    return "train"


def pair_selector(
    data_dir: str | Path,
    *,
    split: str | None,
    val_fraction: float,
    test_fraction: float,
    split_by: str,
    split_seed: int,
    max_files: int | None,
) -> Callable[[Sequence[Pair]], list[Pair]]:
    """The takes a dataset keeps of the sorted pairs it found (relative to ``data_dir``): the
    first ``max_files`` (all when None or 0, as KoeMorph's datasets do), then those of
    ``split`` (all when None)."""
    check_split_options(
        split=split, val_fraction=val_fraction, test_fraction=test_fraction, split_by=split_by, max_files=max_files
    )
    root = data_dir

    def select(pairs: Sequence[Pair]) -> list[Pair]:
        kept = list(pairs[: int(max_files)] if max_files else pairs)
        if split is None:
            return kept
        options = dict(val_fraction=val_fraction, test_fraction=test_fraction, split_by=split_by)
        chosen = [p for p in kept if split_of(p[0], split_seed=split_seed, **options) == split]
        if not chosen:
            raise ValueError(
                f"split={split!r} holds none of the {len(kept)} takes under {root} "
                f"(val_fraction={val_fraction}, test_fraction={test_fraction}, split_by={split_by!r})"
            )
        return chosen

    return select
