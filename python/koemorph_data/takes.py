"""Discovery and validation of takes (a ``.wav`` with its same-stem ``.jsonl``).

Validation runs in the process that builds the epoch plan: the JSONL is parsed by the Rust
core (cheap) and the wav header is read, so every worker and rank agrees on each take's
usable frame count, and ``skipped`` is complete in the training process.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from . import cache as _cache
from .audio import audio_info
from .blendshapes import LabelFormat
from .errors import DataFormatError
from .manifest import ManifestEntry, describe_take, manifest_for
from .storage import ObjectStat, RelPair, open_root
from .storage import find_file_pairs as find_file_pairs  # where inspect and prepare import it
from .timing import Timing

logger = logging.getLogger("koemorph_data")


@dataclass(frozen=True)
class TakeInfo:
    """What validation learned about one take."""

    audio_path: Path  # a PurePosixPath ("bucket/prefix/take.wav") for data in object storage
    jsonl_path: Path
    blendshape_frames: int  # frames at target_fps after any fps conversion
    audio_frames: int  # frames the (resampled) audio covers
    source_fps: float | None
    usable_frames: int  # min of the two: what windows are cut from
    has_pose: bool = False  # rows carry the head/eye pose


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
    """Parses the JSONL and reads the wav header; raises DataFormatError naming the file.

    With a prepared cache holding a current entry of the take, the counts it recorded when
    it parsed the same files are used instead (same result, no parse)."""
    labels = labels if labels is not None else LabelFormat()
    entry = (
        _cache.lookup(cache_dir, audio_path, jsonl_path, sample_rate=sample_rate, target_fps=target_fps, labels=labels)
        if cache_dir is not None
        else None
    )
    if entry is not None:
        length, blendshape_frames, source_fps = entry.audio_length, entry.blendshape_frames, entry.source_fps
        has_pose = bool(entry.meta.get("pose"))
    else:
        values, source_fps, _rows, pose = labels.load(jsonl_path, target_fps)
        length, blendshape_frames, has_pose = audio_info(audio_path, sample_rate).length, len(values), pose is not None
        del values, pose
    counts = TakeCounts(length, blendshape_frames, source_fps, has_pose)
    return take_info(audio_path, jsonl_path, counts, Timing(sample_rate, target_fps, alignment), labels)


@dataclass(frozen=True)
class TakeCounts:
    """What a take's files say, however it was learned (parse, prepared cache or manifest)."""

    audio_length: int  # samples after resampling to the dataset's rate
    blendshape_frames: int  # frames at target_fps after any fps conversion
    source_fps: float | None
    has_pose: bool

    @classmethod
    def of_entry(cls, entry: ManifestEntry, timing: Timing) -> TakeCounts:
        return cls(
            entry.audio_length(timing.sample_rate),
            entry.blendshape_frames(timing.target_fps),
            entry.source_fps,
            entry.pose,
        )


def take_info(
    audio_path: Path | PurePosixPath,
    jsonl_path: Path | PurePosixPath,
    counts: TakeCounts,
    timing: Timing,
    labels: LabelFormat,
) -> TakeInfo:
    """The TakeInfo of a take's counts: usable frames, with a warning when audio and blendshapes
    disagree by more than a frame; DataFormatError when ``pose`` is required and missing."""
    labels.check_pose(jsonl_path, counts.has_pose)
    audio_frames = timing.frames_covered(counts.audio_length)
    blendshape_frames = counts.blendshape_frames
    usable = min(blendshape_frames, audio_frames)
    if abs(blendshape_frames - audio_frames) > 1:
        logger.warning(
            "%s: %d blendshape frames but the audio covers %d frames; using %d",
            audio_path.with_suffix(""),
            blendshape_frames,
            audio_frames,
            usable,
        )
    return TakeInfo(
        audio_path,
        jsonl_path,
        blendshape_frames,
        audio_frames,
        counts.source_fps,
        usable,
        counts.has_pose,  # type: ignore[arg-type]
    )


class TakeTable:
    """Validated takes of a data directory or URL, indexed by position in ``pairs``.

    ``select`` keeps some of the sorted pairs, given relative to the data directory
    (``splits.pair_selector``); ``short_takes``: takes shorter than one window are usable
    (``tail="pad"`` gives them one padded window). With a manifest (``manifest.manifest_for``)
    no take is opened; ``stamps`` then holds each take's (wav, jsonl) ``ObjectStat`` as the
    manifest (or, remotely, the listing) saw them, which the store checks before reading.
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
            rel_pairs, rel_orphans = self.manifest.pairs(), []
        else:
            rel_pairs, rel_orphans = listing if listing is not None else self.source.list_pairs()
        if select is not None and rel_pairs:  # e.g. max_files and a train/val/test split (splits.py)
            rel_pairs = select(rel_pairs)
        if not rel_pairs:
            raise ValueError(f"no .wav/.jsonl pairs found under {self.data_dir}")
        path = self.source.path
        self.pairs = [(path(w), path(j)) for w, j in rel_pairs]
        self.orphans = [path(o) for o in rel_orphans]
        self.skipped: list[tuple[Path | PurePosixPath, str]] = []
        self.infos: list[TakeInfo | None] = []
        self.stamps: list[tuple[ObjectStat, ObjectStat] | None] = []
        self.frames = self._validate(rel_pairs, on_error, window_frames, short_takes)
        if not (self.frames >= (1 if short_takes else window_frames)).any():
            raise ValueError(
                f"no take under {self.data_dir} is at least one window ({window_frames} frames) long"
                + (f"; {len(self.skipped)} take(s) skipped as malformed" if self.skipped else "")
            )

    def _validate(self, rel_pairs: list[RelPair], on_error: str, window_frames: int, short_takes: bool) -> np.ndarray:
        """Fills infos, stamps and skipped; returns the usable frames of every take."""
        frames = np.zeros(len(rel_pairs), dtype=np.uint64)
        entries = {e.wav: e for e in self.manifest.entries} if self.manifest is not None else None
        for i, (rel_wav, rel_jsonl) in enumerate(rel_pairs):
            wav, jsonl = self.pairs[i]
            try:
                info, stamps = self._take(wav, jsonl, rel_wav, rel_jsonl, entries)
            except DataFormatError as exc:
                if on_error == "raise":
                    raise
                bad = Path(exc.path) if exc.path and not self.source.remote else (exc.path or wav)
                logger.warning("skipping take %s: %s", wav.with_suffix(""), exc)
                self.skipped.append((bad, str(exc)))  # type: ignore[arg-type]
                self.infos.append(None)
                self.stamps.append(None)
                continue
            self.infos.append(info)
            self.stamps.append(stamps)
            frames[i] = info.usable_frames
            if info.usable_frames < window_frames and not short_takes:
                logger.warning(
                    "%s has %d usable frames, shorter than one window of %d: no windows",
                    wav.with_suffix(""),
                    info.usable_frames,
                    window_frames,
                )
        return frames

    def _take(
        self,
        wav: Any,
        jsonl: Any,
        rel_wav: PurePosixPath,
        rel_jsonl: PurePosixPath,
        entries: dict[str, ManifestEntry] | None,
    ) -> tuple[TakeInfo, tuple[ObjectStat, ObjectStat] | None]:
        """A take's info from the manifest, or by reading it (remote: its JSONL and wav header)."""
        timing = self.timing
        if entries is not None:
            entry = entries[rel_wav if isinstance(rel_wav, str) else rel_wav.as_posix()]
        elif self.source.remote:
            entry = describe_take(self.source, rel_wav, rel_jsonl, self.labels)
        else:
            info = validate_take(
                wav,
                jsonl,
                sample_rate=timing.sample_rate,
                target_fps=timing.target_fps,
                alignment=timing.alignment,
                cache_dir=self.cache_dir,
                labels=self.labels,
            )
            return info, None
        failure = entry.failure(self.source)
        if failure is not None:
            raise failure
        return take_info(wav, jsonl, TakeCounts.of_entry(entry, timing), timing, self.labels), entry.stamps

    @property
    def names(self) -> list[str]:
        return [wav.stem for wav, _ in self.pairs]
