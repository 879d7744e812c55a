"""Per-take facts as columns: a table of 100,000 takes without 100,000 Python objects.

A ``TakeTable`` keeps each take's relative paths as they were listed (strings from a manifest)
and its counts as numpy arrays; a take's ``Path`` objects, ``TakeInfo`` and stamps are made
when that take is asked for (``PathPairs``, ``TakeInfos``, ``TakeStamps``). ``settle_takes``
decides every take's usable frames with array operations and visits one by one only the takes
that need a word: failures (raised or skipped), warnings, missing pose.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar, overload

import numpy as np

from .blendshapes import LabelFormat
from .errors import DataFormatError
from .storage import ObjectStat, TakeSource
from .timing import Timing

logger = logging.getLogger("koemorph_data")

T = TypeVar("T")
RelPath = PurePosixPath | str


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


@dataclass(frozen=True)
class TakeCounts:
    """What a take's files say, however it was learned (parse, prepared cache or manifest)."""

    audio_length: int  # samples after resampling to the dataset's rate
    blendshape_frames: int  # frames at target_fps after any fps conversion
    source_fps: float | None
    has_pose: bool


@dataclass
class CountColumns:
    """``TakeCounts`` of every take as arrays (``source_fps`` NaN: not detected), and the
    DataFormatError of each take that failed validation, by position (its counts are 0)."""

    audio_length: np.ndarray
    blendshape_frames: np.ndarray
    source_fps: np.ndarray
    has_pose: np.ndarray
    failures: dict[int, DataFormatError]

    @classmethod
    def of_counts(cls, counts: Sequence[TakeCounts | DataFormatError], takes: int) -> CountColumns:
        """Columns of ``takes`` takes from per-take results (positions past ``counts`` are 0)."""
        ok = [(i, c) for i, c in enumerate(counts) if isinstance(c, TakeCounts)]
        columns = cls(
            np.zeros(takes, dtype=np.uint64),
            np.zeros(takes, dtype=np.uint64),
            np.full(takes, np.nan),
            np.zeros(takes, dtype=bool),
            {i: c for i, c in enumerate(counts) if isinstance(c, DataFormatError)},
        )
        for i, c in ok:
            columns.audio_length[i], columns.blendshape_frames[i] = c.audio_length, c.blendshape_frames
            columns.source_fps[i] = np.nan if c.source_fps is None else c.source_fps
            columns.has_pose[i] = c.has_pose
        return columns


class _LazySequence(Sequence[T]):
    """A sequence whose items are made on access; equal to any sequence of equal items."""

    def __len__(self) -> int:
        raise NotImplementedError

    def item(self, i: int) -> T:
        raise NotImplementedError

    @overload
    def __getitem__(self, i: int) -> T: ...
    @overload
    def __getitem__(self, i: slice) -> list[T]: ...
    def __getitem__(self, i: int | slice) -> T | list[T]:
        if isinstance(i, slice):
            return [self.item(k) for k in range(*i.indices(len(self)))]
        n = len(self)
        k = int(i) + n if int(i) < 0 else int(i)
        if not 0 <= k < n:
            raise IndexError(f"take {i} out of range ({n} takes)")
        return self.item(k)

    def __iter__(self) -> Iterator[T]:
        return (self.item(k) for k in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"[{', '.join(repr(x) for x in self[:3])}{', ...' if len(self) > 3 else ''}] ({len(self)} takes)"


def _stem(rel: RelPath) -> str:
    """``PurePosixPath(rel).stem`` without making the path (pathlib's rule: the name up to its
    last dot, unless that dot starts or ends the name)."""
    name = rel.rpartition("/")[2] if isinstance(rel, str) else rel.name
    dot = name.rfind(".")
    return name[:dot] if 0 < dot < len(name) - 1 else name


class PathPairs(_LazySequence[tuple[Any, Any]]):
    """The (wav, jsonl) paths of the takes (``source.path`` of each relative path), made on access."""

    def __init__(self, source: TakeSource, relative: Sequence[tuple[RelPath, RelPath]]) -> None:
        self.source = source
        self.relative = relative  # as listed: PurePosixPaths, or a manifest's strings

    def __len__(self) -> int:
        return len(self.relative)

    def item(self, i: int) -> tuple[Any, Any]:
        wav, jsonl = self.relative[i]
        return self.source.path(wav), self.source.path(jsonl)

    def names(self) -> list[str]:
        """Every take's name (its wav's stem)."""
        names = [str(wav)[str(wav).rfind("/") + 1 :] for wav, _ in self.relative]
        # Listed wavs end in ".wav": the stem drops it unless the name is only ".wav" (_stem's rule).
        return [name[:-4] if len(name) > 4 and name.endswith(".wav") else _stem(name) for name in names]


@dataclass
class Settled:
    """Every take's counts after ``settle_takes``; ``valid`` is False for skipped takes."""

    blendshape_frames: np.ndarray
    audio_frames: np.ndarray
    usable: np.ndarray
    counts: CountColumns
    valid: np.ndarray

    @property
    def frames(self) -> np.ndarray:
        """uint64 usable frames of every take, 0 for skipped ones."""
        return np.where(self.valid, self.usable, 0).astype(np.uint64)


class TakeInfos(_LazySequence["TakeInfo | None"]):
    """Each take's TakeInfo (None for a skipped take), made on access."""

    def __init__(self, pairs: PathPairs, settled: Settled) -> None:
        self.pairs, self.settled = pairs, settled

    def __len__(self) -> int:
        return len(self.pairs)

    def item(self, i: int) -> TakeInfo | None:
        s = self.settled
        if not s.valid[i]:
            return None
        fps = float(s.counts.source_fps[i])
        wav, jsonl = self.pairs[i]
        return TakeInfo(
            wav,
            jsonl,
            int(s.blendshape_frames[i]),
            int(s.audio_frames[i]),
            None if np.isnan(fps) else fps,
            int(s.usable[i]),
            bool(s.counts.has_pose[i]),
        )


class TakeStamps(_LazySequence["tuple[ObjectStat, ObjectStat] | None"]):
    """Each take's (wav, jsonl) ``ObjectStat`` as recorded by a manifest (``stamps(position)``,
    ``positions``: each take's position in the manifest), None for a skipped take or when
    nothing was recorded (``stamps`` None)."""

    def __init__(
        self,
        valid: np.ndarray,
        stamps: Callable[[int], tuple[ObjectStat, ObjectStat]] | None = None,
        positions: np.ndarray | None = None,
    ) -> None:
        self.valid, self.stamps, self.positions = valid, stamps, positions

    def __len__(self) -> int:
        return len(self.valid)

    def item(self, i: int) -> tuple[ObjectStat, ObjectStat] | None:
        if self.stamps is None or not self.valid[i]:
            return None
        return self.stamps(int(self.positions[i]) if self.positions is not None else i)


def warn_mismatch(audio_path: Any, blendshape_frames: int, audio_frames: int, usable: int) -> None:
    """The warning for a take whose audio and blendshapes disagree by more than a frame."""
    if abs(blendshape_frames - audio_frames) > 1:
        logger.warning(
            "%s: %d blendshape frames but the audio covers %d frames; using %d",
            audio_path.with_suffix(""),
            blendshape_frames,
            audio_frames,
            usable,
        )


@dataclass(frozen=True)
class SettleRules:
    """How ``settle_takes`` treats takes: the dataset's timing and labels, ``on_error``, the
    window length and whether short takes are usable (``tail="pad"``)."""

    timing: Timing
    labels: LabelFormat
    on_error: str
    window_frames: int
    short_takes: bool
    remote: bool


def settle_takes(pairs: PathPairs, counts: CountColumns, rules: SettleRules) -> tuple[Settled, list[Any]]:
    """Usable frames of every take (``min`` of its blendshape frames and the frames its audio
    covers, ``Timing.frames_covered``) and the skipped takes ``(path, reason)``. Takes are
    visited in order where something happens: a failure (or missing pose when pose is
    required) raises with ``on_error="raise"``, else is logged and skipped; audio and
    blendshapes that disagree by more than a frame, and takes shorter than a window, are logged."""
    n = len(counts.audio_length)
    audio_frames = rules.timing.frames_covered_each(counts.audio_length)
    blendshape_frames = counts.blendshape_frames.astype(np.uint64)
    usable = np.minimum(blendshape_frames, audio_frames)
    settled = Settled(blendshape_frames, audio_frames, usable, counts, np.ones(n, dtype=bool))
    notable = np.abs(blendshape_frames.astype(np.int64) - audio_frames.astype(np.int64)) > 1
    if rules.labels.pose:
        notable |= ~counts.has_pose
    if not rules.short_takes:
        notable |= usable < rules.window_frames
    notable[list(counts.failures)] = True
    skipped: list[Any] = []
    for i in np.flatnonzero(notable).tolist():
        _settle_one(pairs, settled, i, rules, skipped)
    return settled, skipped


def _settle_one(pairs: PathPairs, settled: Settled, i: int, rules: SettleRules, skipped: list[Any]) -> None:
    """The failure or warnings of take ``i`` (see ``settle_takes``)."""
    wav, jsonl = pairs[i]
    failure = settled.counts.failures.get(i)
    try:
        if failure is not None:
            raise failure
        rules.labels.check_pose(jsonl, bool(settled.counts.has_pose[i]))
    except DataFormatError as exc:
        if rules.on_error == "raise":
            raise
        bad = Path(exc.path) if exc.path and not rules.remote else (exc.path or wav)
        logger.warning("skipping take %s: %s", wav.with_suffix(""), exc)
        skipped.append((bad, str(exc)))
        settled.valid[i] = False
        return
    usable = int(settled.usable[i])
    warn_mismatch(wav, int(settled.blendshape_frames[i]), int(settled.audio_frames[i]), usable)
    if usable < rules.window_frames and not rules.short_takes:
        logger.warning(
            "%s has %d usable frames, shorter than one window of %d: no windows",
            wav.with_suffix(""),
            usable,
            rules.window_frames,
        )
