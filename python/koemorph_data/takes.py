"""Discovery and validation of takes (a ``.wav`` with its same-stem ``.jsonl``).

Validation runs in the process that builds the epoch plan: the JSONL is parsed by the Rust
core (cheap) and the wav header is read, so every worker and rank agrees on each take's
usable frame count, and ``skipped`` is complete in the training process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import _core
from . import cache as _cache
from .audio import audio_info
from .blendshapes import LabelFormat
from .errors import DataFormatError
from .storage import find_file_pairs
from .timing import Timing

logger = logging.getLogger("koemorph_data")


@dataclass(frozen=True)
class TakeInfo:
    """What validation learned about one take."""

    audio_path: Path
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
    labels.check_pose(jsonl_path, has_pose)
    audio_frames = _core.frames_covered(length, sample_rate, target_fps, alignment)
    usable = min(blendshape_frames, audio_frames)
    if abs(blendshape_frames - audio_frames) > 1:
        logger.warning(
            "%s: %d blendshape frames but the audio covers %d frames; using %d",
            audio_path.with_suffix(""),
            blendshape_frames,
            audio_frames,
            usable,
        )
    return TakeInfo(audio_path, jsonl_path, blendshape_frames, audio_frames, source_fps, usable, has_pose)


class TakeTable:
    """Validated takes of a data directory, indexed by position in ``pairs``.

    ``select`` keeps some of the sorted pairs (``splits.pair_selector``); ``short_takes``:
    takes shorter than one window are usable (``tail="pad"`` gives them one padded window).
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
        select: Callable[[list[tuple[Path, Path]]], list[tuple[Path, Path]]] | None = None,
        short_takes: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.timing = timing
        self.cache_dir = cache_dir
        self.labels = labels if labels is not None else LabelFormat()
        self.pairs, self.orphans = find_file_pairs(self.data_dir)
        if select is not None and self.pairs:  # e.g. max_files and a train/val/test split (splits.py)
            self.pairs = select(self.pairs)
        if not self.pairs:
            raise ValueError(f"no .wav/.jsonl pairs found under {self.data_dir}")
        self.skipped: list[tuple[Path, str]] = []
        self.infos: list[TakeInfo | None] = []
        frames = np.zeros(len(self.pairs), dtype=np.uint64)
        for i, (wav, jsonl) in enumerate(self.pairs):
            try:
                info = validate_take(
                    wav,
                    jsonl,
                    sample_rate=timing.sample_rate,
                    target_fps=timing.target_fps,
                    alignment=timing.alignment,
                    cache_dir=cache_dir,
                    labels=self.labels,
                )
            except DataFormatError as exc:
                if on_error == "raise":
                    raise
                bad = Path(exc.path) if exc.path else wav
                logger.warning("skipping take %s: %s", wav.with_suffix(""), exc)
                self.skipped.append((bad, str(exc)))
                self.infos.append(None)
                continue
            self.infos.append(info)
            frames[i] = info.usable_frames
            if info.usable_frames < window_frames and not short_takes:
                logger.warning(
                    "%s has %d usable frames, shorter than one window of %d: no windows",
                    wav.with_suffix(""),
                    info.usable_frames,
                    window_frames,
                )
        self.frames = frames
        if not (frames >= (1 if short_takes else window_frames)).any():
            raise ValueError(
                f"no take under {self.data_dir} is at least one window ({window_frames} frames) long"
                + (f"; {len(self.skipped)} take(s) skipped as malformed" if self.skipped else "")
            )

    @property
    def names(self) -> list[str]:
        return [wav.stem for wav, _ in self.pairs]
