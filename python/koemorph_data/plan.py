"""One epoch's windows, held as per-take runs: memory grows with takes, not windows.

A plan is the takes that have windows, in epoch order, with their window counts (``run_file``
and the cumulative ``run_end``): 16 bytes per take, so 100,000 takes are 1.6 MB however many
windows they hold. A window is computed when it is asked for, from its plan index, by the
Rust core: the run holding it (bisection on ``run_end``), then its start frame (the index in
the run times the stride, or for a mixed-mode take the grid united with its dense draws,
regenerated from (seed, epoch, take)). With ``shuffle="windows"`` plan index i delivers the
window at base index ``order(i)`` of the unshuffled epoch, ``order`` being a seeded bijection
of [0, N) computed per index (a keyed Feistel network with cycle walking): no N-element array.

``plan.file[idx]``, ``plan.start_frame[idx]``, ``plan.start_sample[idx]`` and ``plan.dense[idx]``
index like the numpy arrays they stand for; ``np.asarray(plan.file)`` (or ``.tolist()``)
materialises a whole column, which costs 8 bytes per window: the streams never do that, they
look windows up in chunks of at most ``PLAN_CHUNK``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from . import _core
from .timing import Timing

#: The most plan indices the streams look up at once (bounds their index arrays).
PLAN_CHUNK = 65536
#: Windows ``EpochPlan.window`` looks up at once for the per-sample path.
READ_AHEAD = 64


class PlanWindows(NamedTuple):
    """Windows looked up by plan index (arrays of the same length)."""

    file: np.ndarray  # int64 position in file_pairs
    start_frame: np.ndarray  # int64
    start_sample: np.ndarray  # int64, from the dataset's alignment
    dense: np.ndarray  # bool


COLUMNS = PlanWindows._fields


@dataclass(frozen=True, eq=False)
class EpochPlan:
    """One epoch's windows in delivery order, as per-take runs (see the module docstring)."""

    epoch: int
    stride: int
    window_frames: int
    seed: int
    dense_ratio: float | None
    timing: Timing
    frames: np.ndarray = field(repr=False)  # uint64 frames per take, as the planner saw them
    run_file: np.ndarray = field(repr=False)  # int64 take of each run, in epoch order
    run_end: np.ndarray = field(repr=False)  # int64 cumulative window counts of the runs
    shuffle_windows: bool = False
    _ahead: list = field(default_factory=lambda: [None], init=False, repr=False)

    @classmethod
    def build(
        cls,
        frames: np.ndarray,
        *,
        window_frames: int,
        stride: int,
        seed: int,
        epoch: int,
        shuffle: str,
        dense_ratio: float | None,
        timing: Timing,
    ) -> EpochPlan:
        """The epoch's plan for ``frames`` per take; ``shuffle``: "takes", "windows" or "none"."""
        frames = np.ascontiguousarray(frames, dtype=np.uint64)
        run_file, counts = _core.plan_runs(
            frames, int(window_frames), int(stride), int(seed), int(epoch), shuffle == "takes", dense_ratio
        )
        return cls(
            int(epoch), int(stride), int(window_frames), int(seed), dense_ratio, timing, frames, run_file,
            np.cumsum(counts, dtype=np.int64), shuffle == "windows",
        )  # fmt: skip

    def __len__(self) -> int:
        return int(self.run_end[-1]) if len(self.run_end) else 0

    @property
    def run_count(self) -> np.ndarray:
        """int64 window count of each run."""
        return np.diff(self.run_end, prepend=np.int64(0))

    @property
    def run_start(self) -> np.ndarray:
        """int64 plan index of each run's first window."""
        return self.run_end - self.run_count

    def file_segments(self) -> list[tuple[int, int]]:
        """(first plan index, window count) of each take's run, in plan order; ValueError with
        ``shuffle="windows"``, whose plan does not keep a take's windows together."""
        if self.shuffle_windows:
            raise ValueError("a shuffle='windows' plan interleaves takes: it has no per-take segments")
        return list(zip(self.run_start.tolist(), self.run_count.tolist()))

    def lookup(self, index: np.ndarray) -> PlanWindows:
        """The windows at plan indices ``index`` (1-D ints in [0, len); ValueError otherwise)."""
        index = np.ascontiguousarray(index, dtype=np.int64)
        file, start, dense = _core.plan_windows(
            self.frames, self.run_file, self.run_end, index, self.window_frames, self.stride, self.seed,
            self.epoch, self.dense_ratio, self.shuffle_windows,
        )  # fmt: skip
        return PlanWindows(file, start, self.timing.frames_to_samples(start), dense)

    def window(self, i: int) -> tuple[int, int, int, bool]:
        """(file, start frame, start sample, dense) of plan window ``i`` (the per-sample path).

        Streams read windows in ascending runs: a miss looks up the next ``READ_AHEAD`` windows
        at once and the following calls are served from them."""
        i = int(i)
        ahead = self._ahead[0]
        if ahead is not None and ahead[0] <= i < ahead[1]:
            return ahead[2][i - ahead[0]]
        end = min(i + READ_AHEAD, len(self))
        if not 0 <= i < end:
            raise IndexError(f"plan index {i} is out of bounds for a plan of {len(self)} windows")
        found = self.lookup(np.arange(i, end, dtype=np.int64))
        rows = list(zip(*(column.tolist() for column in found)))
        self._ahead[0] = (i, end, rows)  # replaced whole: threads may share the plan
        return rows[0]

    @property
    def file(self) -> PlanColumn:
        return PlanColumn(self, "file")

    @property
    def start_frame(self) -> PlanColumn:
        return PlanColumn(self, "start_frame")

    @property
    def start_sample(self) -> PlanColumn:
        return PlanColumn(self, "start_sample")

    @property
    def dense(self) -> PlanColumn:
        return PlanColumn(self, "dense")


def _index_array(key: Any, n: int) -> np.ndarray:
    """A column key (slice, int array or boolean mask) as int64 plan indices."""
    if isinstance(key, slice):
        return np.arange(*key.indices(n), dtype=np.int64)
    array = np.asarray(key)
    if array.dtype == bool:
        if array.shape != (n,):
            raise IndexError(f"boolean index of shape {array.shape} for a plan of {n} windows")
        return np.flatnonzero(array)
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise IndexError(f"plan indices must be integers, got {array.dtype}")
    return array.astype(np.int64, copy=False)


class PlanColumn:
    """One column of a plan (``file``, ``start_frame``, ``start_sample`` or ``dense``), indexed
    like the numpy array it stands for and computed for the indices asked for."""

    def __init__(self, plan: EpochPlan, name: str) -> None:
        if name not in COLUMNS:
            raise ValueError(f"a plan has the columns {COLUMNS}, not {name!r}")
        self.plan, self.name = plan, name

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, key: Any) -> Any:
        n = len(self.plan)
        scalar = isinstance(key, (int, np.integer))
        index = np.array([int(key)], dtype=np.int64) if scalar else _index_array(key, n)
        bad = (index < -n) | (index >= n)
        if bad.any():
            raise IndexError(f"index {int(index[bad].flat[0])} is out of bounds for a plan of {n} windows")
        flat = np.where(index < 0, index + n, index).ravel()
        values = getattr(self.plan.lookup(flat), self.name)
        return values[0] if scalar else values.reshape(index.shape)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """The whole column (8 bytes per window, or 1 for ``dense``)."""
        whole = self[:]
        return whole if dtype is None else whole.astype(dtype)

    def __iter__(self) -> Iterator[Any]:
        for lo in range(0, len(self.plan), PLAN_CHUNK):
            yield from self[lo : lo + PLAN_CHUNK]

    def tolist(self) -> list[Any]:
        return self[:].tolist()

    def __repr__(self) -> str:
        return f"PlanColumn({self.name!r}, {len(self.plan)} windows)"


@dataclass(frozen=True)
class LaneSchedule:
    """One rank's lanes for an epoch, O(takes): run k of the rank's share (``first`` plan index,
    ``count`` windows) plays in lane ``lane[k]`` from step ``start[k]``; ``steps`` is the longest
    rank's step count (a shorter rank ends with invalid steps)."""

    lanes: int
    steps: int
    first: np.ndarray
    count: np.ndarray
    lane: np.ndarray
    start: np.ndarray
    bounds: np.ndarray  # runs of lane l: [bounds[l], bounds[l + 1]) (arrays sorted by lane)

    @classmethod
    def build(cls, plan: EpochPlan, rank: int, world: int, lanes: int) -> LaneSchedule:
        """Takes balanced across ranks by window count (``assign_files_to_ranks``), then each
        rank's takes queued onto its lanes (``lane_schedule``), exactly as the Rust core plans them."""
        counts, firsts = plan.run_count, plan.run_start
        mine: tuple[np.ndarray, ...] = ()
        steps = 0
        for r, runs in enumerate(_core.assign_files_to_ranks(counts.tolist(), world)):
            runs = np.asarray(runs, dtype=np.int64)
            lane, start = _core.lane_schedule(counts[runs], lanes)
            if len(runs):
                steps = max(steps, int((start + counts[runs]).max()))
            if r == rank:
                mine = (firsts[runs], counts[runs], lane, start)
        order = np.argsort(mine[2], kind="stable")  # a lane's runs come in start order
        first, count, lane, start = (a[order] for a in mine)
        bounds = np.searchsorted(lane, np.arange(lanes + 1))
        return cls(lanes, steps, first, count, lane, start, bounds)

    def windows(self) -> int:
        """Windows of the rank (valid slots over all steps)."""
        return int(self.count.sum())

    def rows(self, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Plan index per slot (int64 [len(steps), lanes], -1: invalid) and reset flags of ``steps``."""
        steps = np.asarray(steps, dtype=np.int64)
        index = np.full((len(steps), self.lanes), -1, dtype=np.int64)
        reset = np.zeros((len(steps), self.lanes), dtype=bool)
        for lane in range(self.lanes):
            lo, hi = int(self.bounds[lane]), int(self.bounds[lane + 1])
            if lo == hi:
                continue
            run = lo + np.maximum(np.searchsorted(self.start[lo:hi], steps, side="right") - 1, 0)
            offset = steps - self.start[run]
            ok = (offset >= 0) & (offset < self.count[run])
            index[:, lane] = np.where(ok, self.first[run] + offset, -1)
            reset[:, lane] = ok & (offset == 0)
        return index, reset
