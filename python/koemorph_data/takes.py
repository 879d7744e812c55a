"""Discovery and validation of takes (a ``.wav`` with its same-stem ``.jsonl``).

Validation runs in the process that builds the epoch plan: the JSONL is parsed by the Rust
core (cheap) and the wav header is read, so every worker and rank agrees on each take's
usable frame count, and ``skipped`` is complete in the training process. With a manifest
nothing is read; in object storage without one, ``REMOTE_VALIDATION_THREADS`` takes are
fetched and validated at a time. Either way the table holds columns (``columns.py``), not an
object per take.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from . import cache as _cache
from .audio import audio_info
from .blendshapes import LabelFormat
from .columns import (
    CountColumns,
    PathPairs,
    SettleRules,
    TakeCounts,
    TakeInfo,
    TakeInfos,
    TakeStamps,
    settle_takes,
    warn_mismatch,
)
from .errors import DataFormatError
from .manifest import Manifest, describe_takes, manifest_for, manifest_header
from .storage import RelPair, open_root
from .storage import find_file_pairs as find_file_pairs  # where inspect and prepare import it
from .timing import Timing

__all__ = ["REMOTE_VALIDATION_THREADS", "TakeCounts", "TakeInfo", "TakeTable", "take_counts", "validate_take"]

logger = logging.getLogger("koemorph_data")

#: Takes in object storage validated at once when there is no manifest (each is a few requests:
#: stats, the JSONL, the wav header).
REMOTE_VALIDATION_THREADS = 16


def take_counts(
    audio_path: Path,
    jsonl_path: Path,
    *,
    sample_rate: int,
    target_fps: int,
    cache_dir: str | Path | None = None,
    labels: LabelFormat | None = None,
) -> TakeCounts:
    """Parses the JSONL and reads the wav header (or, with a prepared cache holding a current
    entry of the take, the counts it recorded when it parsed the same files: same result, no
    parse); raises DataFormatError naming the file.

    :param audio_path: the take's wav.
    :param jsonl_path: the take's JSONL.
    :param sample_rate: the dataset's audio rate.
    :param target_fps: the dataset's frame rate.
    :param cache_dir: a prepared cache to take the counts from when it holds the take.
    :param labels: how the JSONL is read.
    """
    labels = labels if labels is not None else LabelFormat()
    entry = (
        _cache.lookup(cache_dir, audio_path, jsonl_path, sample_rate=sample_rate, target_fps=target_fps, labels=labels)
        if cache_dir is not None
        else None
    )
    if entry is not None:
        return TakeCounts(entry.audio_length, entry.blendshape_frames, entry.source_fps, bool(entry.meta.get("pose")))
    values, source_fps, _rows, pose = labels.load(jsonl_path, target_fps)
    return TakeCounts(audio_info(audio_path, sample_rate).length, len(values), source_fps, pose is not None)


def validate_take(
    audio_path: Path,
    jsonl_path: Path,
    *,
    sample_rate: int,
    target_fps: int,
    alignment: str,
    cache_dir: str | Path | None = None,
    labels: LabelFormat | None = None,
) -> TakeInfo:
    """``take_counts`` and ``take_info`` of one take; raises DataFormatError naming the file."""
    labels = labels if labels is not None else LabelFormat()
    counts = take_counts(
        audio_path, jsonl_path, sample_rate=sample_rate, target_fps=target_fps, cache_dir=cache_dir, labels=labels
    )
    return take_info(audio_path, jsonl_path, counts, Timing(sample_rate, target_fps, alignment), labels)


def take_info(
    audio_path: Path | PurePosixPath,
    jsonl_path: Path | PurePosixPath,
    counts: TakeCounts,
    timing: Timing,
    labels: LabelFormat,
) -> TakeInfo:
    """The TakeInfo of a take's counts: usable frames, with a warning when audio and blendshapes
    disagree by more than a frame; DataFormatError when ``pose`` is required and missing."""
    labels.check_pose(str(jsonl_path), counts.has_pose)
    audio_frames = timing.frames_covered(counts.audio_length)
    usable = min(counts.blendshape_frames, audio_frames)
    warn_mismatch(audio_path, counts.blendshape_frames, audio_frames, usable)
    return TakeInfo(
        audio_path,  # type: ignore[arg-type]
        jsonl_path,  # type: ignore[arg-type]
        counts.blendshape_frames,
        audio_frames,
        counts.source_fps,
        usable,
        counts.has_pose,
    )


class TakeTable:
    """Validated takes of a data directory or URL, indexed by position in ``pairs``.

    ``select`` keeps some of the sorted pairs, given relative to the data directory
    (``splits.pair_selector``); ``short_takes``: takes shorter than one window are usable
    (``tail="pad"`` gives them one padded window). With a manifest (``manifest.manifest_for``)
    no take is opened; ``stamps`` then holds each take's (wav, jsonl) ``ObjectStat`` as the
    manifest (or, remotely, the listing) saw them, which the store checks before reading.
    ``pairs``, ``infos`` and ``stamps`` are sequences whose items are made when read.
    """

    def __init__(
        self,
        data_dir: str | Path,
        *,
        timing: Timing,
        window_frames: int,
        on_error: str,
        cache_dir: Path | None = None,
        labels: LabelFormat | None = None,
        select: Callable[[list[RelPair]], list[RelPair]] | None = None,
        short_takes: bool = False,
        storage_options: Mapping[str, Any] | None = None,
        manifest: str | os.PathLike[str] | bool | None = None,
    ) -> None:
        self.source = open_root(data_dir, storage_options)
        if self.source.remote and cache_dir is None:
            raise ValueError(
                f"data_dir {data_dir} is in object storage: pass cache_dir= (a local directory the takes "
                "are fetched and decoded into on first use)"
            )
        self.data_dir: str | Path = str(data_dir) if self.source.remote else Path(self.source.root)
        self.timing = timing
        self.cache_dir = cache_dir
        self.labels = labels if labels is not None else LabelFormat()
        self.manifest, listing = manifest_for(self.source, manifest, self.labels.timestamp_unit, storage_options)
        if self.manifest is not None:
            all_pairs: list[Any] = self.manifest.pairs()
            rel_orphans: list[PurePosixPath] = []
        else:
            all_pairs, rel_orphans = listing if listing is not None else self.source.list_pairs()
        rel_pairs, index = _selected(all_pairs, select)
        if not rel_pairs:
            raise ValueError(f"no .wav/.jsonl pairs found under {self.data_dir}")
        self.pairs = PathPairs(self.source, rel_pairs)
        self.orphans = [self.source.path(o) for o in rel_orphans]
        rules = SettleRules(timing, self.labels, on_error, int(window_frames), short_takes, self.source.remote)
        described = self.manifest
        if described is None and self.source.remote:  # fetch and validate, in parallel
            described, index = self._describe(rel_pairs, on_error), np.arange(len(rel_pairs))
        if described is not None:
            counts = described.columns.counts(index, timing, self.source)
        else:
            counts = self._read_counts(on_error)
        settled, self.skipped = settle_takes(self.pairs, counts, rules)
        self.infos = TakeInfos(self.pairs, settled)
        stamps = None if described is None else described.columns.stamps
        self.stamps = TakeStamps(settled.valid, stamps, index)
        self.frames = settled.frames
        if not (self.frames >= (1 if short_takes else window_frames)).any():
            raise ValueError(
                f"no take under {self.data_dir} is at least one window ({window_frames} frames) long"
                + (f"; {len(self.skipped)} take(s) skipped as malformed" if self.skipped else "")
            )

    def _describe(self, rel_pairs: list[Any], on_error: str) -> Manifest:
        """An in-memory manifest of the takes, ``REMOTE_VALIDATION_THREADS`` at a time (with
        ``on_error="raise"``, up to the first malformed take: settling raises it)."""
        entries = describe_takes(
            self.source, rel_pairs, self.labels, workers=REMOTE_VALIDATION_THREADS, stop_at_error=on_error == "raise"
        )
        entries += [entries[-1]] * (len(rel_pairs) - len(entries))  # never settled: the error comes first
        return Manifest(manifest_header(len(entries), self.labels), entries)

    def _read_counts(self, on_error: str) -> CountColumns:
        """Each local take's counts, parsed (or from the prepared cache), in order (with
        ``on_error="raise"``, up to the first malformed take: settling raises it)."""
        counts: list[TakeCounts | DataFormatError] = []
        timing = self.timing
        for wav, jsonl in self.pairs:
            try:
                counts.append(
                    take_counts(
                        wav,
                        jsonl,
                        sample_rate=timing.sample_rate,
                        target_fps=timing.target_fps,
                        cache_dir=self.cache_dir,
                        labels=self.labels,
                    )
                )
            except DataFormatError as exc:
                counts.append(exc)
                if on_error == "raise":
                    break
        return CountColumns.of_counts(counts, len(self.pairs))

    @property
    def names(self) -> list[str]:
        """Every take's name (its wav's stem), by position."""
        return self.pairs.names()


def _selected(pairs: list[Any], select: Callable[[list[Any]], list[Any]] | None) -> tuple[list[Any], np.ndarray]:
    """The pairs ``select`` keeps (e.g. max_files and a train/val/test split, ``splits.py``)
    and their positions in ``pairs``."""
    if select is None or not pairs:
        return pairs, np.arange(len(pairs))
    chosen = select(pairs)
    if len(chosen) == len(pairs):  # select keeps pairs in order: all of them
        return chosen, np.arange(len(pairs))
    position = {wav: i for i, (wav, _) in enumerate(pairs)}
    return chosen, np.array([position[wav] for wav, _ in chosen], dtype=np.int64)
