"""Which windows, in which order, on which rank and worker: metadata only, no I/O.

Every epoch has a plan (``koemorph_data.plan.EpochPlan``), computed by the Rust core from
(usable frames per take, window, stride, seed, epoch): the takes of the epoch in delivery
order (shuffled per epoch), each take's windows contiguous and in temporal order, held as one
run per take, so its memory grows with takes, not windows; ``shuffle="windows"`` delivers
them through a seeded bijection of the epoch's indices. Sharding is index arithmetic on that
plan, so every process that builds it agrees on it:

* ranks (DDP) take contiguous, equal-length runs of the plan (short ranks padded with
  windows from the start of the epoch, or the remainder dropped with ``drop_uneven``);
* DataLoader workers take whole batches in turn, or contiguous blocks of their rank's run,
  so each window of the epoch is yielded exactly once and a worker decodes only the takes
  its windows touch;
* resuming skips, per worker, exactly the windows that worker had delivered;
* lanes follow takes, each rank's takes queued onto its lanes (one entry per take).

Streams hand out plan indices in chunks of at most ``PLAN_CHUNK`` (lanes: blocks of steps)
and the windows are looked up per chunk, so no array grows with the epoch.

Like lhotse's samplers, nothing here reads audio or blendshapes: the sampler works on the
usable frame count of each take, which take validation computed.
"""

from __future__ import annotations

import ctypes
import itertools
import multiprocessing
import multiprocessing.context
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from . import _core
from .lru import BoundedCache
from .plan import PLAN_CHUNK, EpochPlan, LaneSchedule
from .timing import Timing

STRIDE_MODES = ("dense", "sparse", "progressive", "mixed")
SCHEDULES = ("linear", "step")


# ---------------------------------------------------------------------------- strides


@dataclass(frozen=True)
class FixedStride:
    """The same stride every epoch (``SequentialKoeMorphDataset``)."""

    stride: int

    dense_ratio = None

    def stride_for_epoch(self, epoch: int) -> int:
        return self.stride

    def settled(self, epoch: int) -> bool:
        """True: every epoch from ``epoch`` on has this epoch's stride."""
        return True


@dataclass(frozen=True)
class AdaptiveStride:
    """The stride of ``AdaptiveSequentialDataset``'s modes (see its docstring)."""

    mode: str
    initial: int
    final: int
    max_epochs: int
    schedule: str = "linear"
    mixed_ratio: float = 0.1
    koemorph: bool = False  # linear progress as KoeMorph's code: min(1, epoch / max(1, max_epochs - 1))

    def __post_init__(self) -> None:
        for name in ("initial", "final", "max_epochs"):
            value = getattr(self, name)
            if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
                object.__setattr__(self, name, int(value))  # numpy integers become plain ints
        if self.mode not in STRIDE_MODES:
            raise ValueError(f"stride_mode must be one of {STRIDE_MODES}, got {self.mode!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"progressive_schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        check_positive(initial_stride=self.initial, final_stride=self.final, max_epochs=self.max_epochs)
        if not 0.0 <= float(self.mixed_ratio) <= 1.0:
            raise ValueError(f"dense_sampling_ratio must be in [0, 1], got {self.mixed_ratio}")

    @property
    def dense_ratio(self) -> float | None:
        """Share of stride-1 windows drawn per take in mixed mode (None otherwise)."""
        return self.mixed_ratio if self.mode == "mixed" else None

    def settled(self, epoch: int) -> bool:
        """True: every epoch from ``epoch`` on has this epoch's stride (and window count)."""
        return self.mode != "progressive" or epoch >= self.max_epochs

    def stride_for_epoch(self, epoch: int) -> int:
        if self.mode == "dense":
            return 1
        if self.mode in ("sparse", "mixed"):
            return self.initial
        initial, final = self.initial, self.final
        if self.schedule == "linear":
            progress = min(1.0, epoch / max(1, self.max_epochs - 1)) if self.koemorph else epoch / self.max_epochs
            return max(final, int(initial - progress * (initial - final)))
        # "step": the original design's table, boundaries at 20%, 50% and 80% of max_epochs.
        if epoch * 10 < 2 * self.max_epochs:
            return max(final, initial)
        if epoch * 10 < 5 * self.max_epochs:
            return max(final, initial // 2)
        if epoch * 10 < 8 * self.max_epochs:
            return max(final, initial // 4)
        return final


# ---------------------------------------------------------------------------- epoch and position


class SharedInt:
    """An integer shared with DataLoader workers through shared memory.

    Persistent workers keep the dataset copy they were started with, so a value set in the
    training process (or in a worker) must travel through memory they share (fork, or the
    spawn pickling that passes the shared block along).
    """

    def __init__(self, value: int, raw: Any = None) -> None:
        self._raw = raw if raw is not None else multiprocessing.RawValue(ctypes.c_int64, value)

    @property
    def value(self) -> int:
        return int(self._raw.value)

    @value.setter
    def value(self, epoch: int) -> None:
        self._raw.value = int(epoch)

    def __reduce__(self):
        if multiprocessing.context.get_spawning_popen() is not None:
            return (type(self), (0, self._raw))
        return (type(self), (self.value,))  # plain pickling (e.g. copy): a snapshot


class SharedEpoch(SharedInt):
    """The current epoch, shared with DataLoader workers (a ``set_epoch`` reaches them)."""


@dataclass(frozen=True)
class Resume:
    """Where a resumed stream starts: ``consumed`` items into ``epoch`` (with the batch size
    the DataLoader used, when known)."""

    epoch: int
    consumed: int
    batch_size: int | None = None
    recorded: Mapping[str, Any] | None = None  # the stream configuration state_dict saw (STREAM_KEYS)


class StreamPosition:
    """How far the in-process stream got (for ``state_dict``), and a pending resume.

    ``consumed`` counts items handed to the caller since the stream's first epoch started:
    windows, or batch slots in lanes mode.
    """

    def __init__(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.consumed = 0
        self.pending: Resume | None = None

    def reset(self, epoch: int) -> None:
        self.epoch, self.consumed = int(epoch), 0

    def begin(self, epoch: int, *, count: bool) -> Resume | None:
        """Starts a stream at ``epoch``: returns the pending resume if it is for that epoch (it
        is used up either way); ``count``: this process hands the items over itself."""
        resume = self.pending if self.pending is not None and self.pending.epoch == epoch else None
        self.pending = None
        if count:
            self.epoch, self.consumed = epoch, resume.consumed if resume else 0
        return resume

    def advance(self, items: int) -> None:
        self.consumed += items

    def load(self, state: Mapping[str, Any], lanes: int | None) -> Resume:
        """Checks a ``state_dict`` and makes it the pending resume."""
        try:
            epoch, consumed = int(state["epoch"]), int(state["consumed"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"state must have integer 'epoch' and 'consumed', got {state!r}") from exc
        batch_size = state.get("batch_size")
        if epoch < 0 or consumed < 0 or (batch_size is not None and int(batch_size) <= 0):
            raise ValueError(f"invalid resume state {state!r}")
        if lanes is not None and consumed % lanes:
            raise ValueError(
                f"in lanes mode 'consumed' counts batch slots: a multiple of lanes={lanes}, got {consumed}"
            )
        recorded = {key: state[key] for key in STREAM_KEYS if key in state}
        self.pending = Resume(epoch, consumed, None if batch_size is None else int(batch_size), recorded)
        self.epoch, self.consumed = epoch, consumed
        return self.pending


#: What exact resume depends on besides (epoch, consumed); ``state_dict`` records them.
STREAM_KEYS = ("num_workers", "batch_size", "world_size", "whole_batches", "lanes", "shuffle", "drop_uneven", "tail")


def stream_layout(num_workers: int | None, whole_batches: bool) -> str | None:
    """How windows reach the training loop: ``"in order"`` (in-process, one worker, or workers
    dealing whole batches), ``"blocks of W"`` (W workers with contiguous blocks), None: unknown."""
    if whole_batches or (num_workers is not None and num_workers <= 1):
        return "in order"
    return None if num_workers is None else f"blocks of {num_workers}"


def check_resume(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> None:
    """ValueError when a resume state was saved under a configuration whose window stream this
    one does not reproduce (both values named); keys missing from ``recorded`` are not checked."""
    for key in ("world_size", "lanes", "shuffle", "drop_uneven", "tail"):
        if key in recorded and recorded[key] != current[key]:
            raise ValueError(
                f"cannot resume: the state was saved with {key}={recorded[key]!r} but this stream has "
                f"{key}={current[key]!r}; the same windows would not follow (use {key}={recorded[key]!r})"
            )
    if "num_workers" not in recorded:
        return
    saved = stream_layout(recorded["num_workers"], bool(recorded.get("whole_batches")))
    now = stream_layout(current["num_workers"], bool(current["whole_batches"]))
    if saved is not None and saved != now:
        raise ValueError(
            f"cannot resume: the state was saved with num_workers={recorded['num_workers']} and dataset "
            f"batch_size={recorded.get('batch_size') if recorded.get('whole_batches') else None} "
            f"(windows {saved}) but this stream has num_workers={current['num_workers']} and dataset "
            f"batch_size={current['batch_size']} (windows {now}); give the dataset batch_size= (then any "
            "worker count resumes exactly) or resume with the saved num_workers"
        )


def resume_state(
    sampler: WindowSampler, position: StreamPosition, consumed: int | None, batch_size: int | None
) -> dict[str, Any]:
    """A dataset's ``state_dict``: the position (``consumed`` given, or the in-process count;
    ValueError when workers iterated and it is missing) and the stream configuration."""
    workers = sampler.workers_seen.value
    if consumed is None:
        if workers > 0:
            raise ValueError(
                f"this dataset was iterated by {workers} DataLoader workers, whose counts never reach "
                "this process: pass state_dict(consumed=<windows the training loop received>)"
            )
        epoch, consumed = sampler.normalised_position(position.epoch, position.consumed)
    else:
        epoch = position.epoch
    own = sampler.batch_size
    if batch_size is not None and own is not None and int(batch_size) != own:
        raise ValueError(f"state_dict(batch_size={batch_size}) differs from the dataset's batch_size={own}")
    state: dict[str, Any] = {"epoch": int(epoch), "consumed": int(consumed)}
    state.update(sampler.stream_config(None if workers < 0 else workers))
    state["batch_size"] = int(batch_size) if batch_size is not None else own
    return state


def worker_role_and_skip(worker: int, workers: int, resume: Resume | None) -> tuple[int, int]:
    """Which worker's block this worker plays and how many of its windows were delivered.

    The DataLoader takes batches from workers in turn (worker 0, 1, ..., 0, 1, ...). After q
    batches, worker w has delivered ceil((q - w) / W) of them and the next batch is due from
    worker q % W; the resumed worker 0 therefore plays that worker's role.
    """
    if resume is None:
        return worker, 0
    consumed, batch_size = resume.consumed, resume.batch_size
    if workers == 1:
        return 0, consumed
    if batch_size is not None:
        if consumed % batch_size:
            raise ValueError(f"consumed={consumed} is not a multiple of batch_size={batch_size}")
        batches = consumed // batch_size
        role = (worker + batches) % workers
        delivered = -(-(batches - role) // workers) if batches > role else 0
        return role, delivered * batch_size
    if consumed % workers:
        raise ValueError(
            f"cannot resume after consumed={consumed} windows with {workers} DataLoader workers without "
            "knowing the batch size: pass state_dict(consumed=..., batch_size=...) (or resume at a "
            "multiple of batch_size x num_workers)"
        )
    return worker, consumed // workers


TAILS = ("drop", "pad")
SHUFFLES = ("takes", "windows", "none")


def resolve_shuffle(shuffle: str | None, shuffle_files: bool, lanes: int | None) -> str:
    """The shuffle mode: ``shuffle`` when given, else ``shuffle_files``'s (True: "takes",
    False: "none"); ValueError for an unknown mode and for "windows" with lanes."""
    mode = shuffle if shuffle is not None else ("takes" if shuffle_files else "none")
    if mode not in SHUFFLES:
        raise ValueError(f"shuffle must be one of {SHUFFLES} or None, got {shuffle!r}")
    if mode == "windows" and lanes is not None:
        raise ValueError("shuffle='windows' cannot be combined with lanes (each lane follows one take in order)")
    return mode


def padded_frames(frames: np.ndarray, window_frames: int, stride: int) -> np.ndarray:
    """Frames per take the planner sees with ``tail="pad"``: a take whose grid windows leave
    frames after the last one uncovered gets one more window at the next stride position
    (when that position is still inside the take), zero-padded past its end; a take shorter
    than one window gets one window at frame 0. Skipped takes (0 frames) stay 0."""
    f = np.asarray(frames, dtype=np.int64)
    w, s = int(window_frames), int(stride)
    n = np.where(f >= w, (f - w) // s + 1, 0)
    extra = (f > 0) & ((n == 0) | (((n - 1) * s + w < f) & (n * s < f)))
    return np.where(extra, n * s + w, f).astype(np.uint64)


def check_positive(**values: int) -> None:
    """ValueError unless every value is a positive integer (bools are not integers here)."""
    for name, value in values.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_sampling(*, seed: int, epoch: int, rank: int | None, world_size: int | None, lanes: int | None) -> None:
    """ValueError for sampling arguments no stream can have."""
    if seed < 0 or epoch < 0:
        raise ValueError("seed and epoch must be non-negative")
    if world_size is not None and world_size <= 0:
        raise ValueError(f"world_size must be positive, got {world_size}")
    if rank is not None and world_size is not None and not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
    if lanes is not None:
        check_positive(lanes=lanes)


def resolve_rank_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """Explicit values win; otherwise torch.distributed's when initialised, else (0, 1)."""
    if rank is not None and world_size is not None:
        return rank, world_size
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        r, w = dist.get_rank(), dist.get_world_size()
    else:
        r, w = 0, 1
    return (rank if rank is not None else r), (world_size if world_size is not None else w)


# ---------------------------------------------------------------------------- the sampler


class WindowSampler:
    """Epoch plans and their split over ranks, workers and lanes, for one take table.

    ``frames`` holds the usable frames of every take (0 for skipped takes). The stream is a
    sequence of epochs starting at ``epoch`` (``loop_dataset``: without end).
    """

    def __init__(
        self,
        frames: np.ndarray,
        *,
        window_frames: int,
        stride: FixedStride | AdaptiveStride,
        seed: int,
        shuffle_files: bool,
        loop_dataset: bool,
        timing: Timing,
        epoch: int,
        rank: int | None,
        world_size: int | None,
        drop_uneven: bool,
        lanes: int | None,
        batch_size: int | None = None,
        tail: str = "drop",
        shuffle: str | None = None,
    ) -> None:
        check_sampling(seed=seed, epoch=epoch, rank=rank, world_size=world_size, lanes=lanes)
        self.shuffle = resolve_shuffle(shuffle, shuffle_files, lanes)
        if tail not in TAILS:
            raise ValueError(f"tail must be one of {TAILS}, got {tail!r}")
        self.tail = tail
        if batch_size is not None:
            check_positive(batch_size=batch_size)
        self.frames = frames
        self.window_frames = int(window_frames)
        self.stride = stride
        self.seed = int(seed)
        self.shuffle_files = self.shuffle != "none"
        self.loop_dataset = bool(loop_dataset)
        self.timing = timing
        self.rank, self.world_size = rank, world_size
        self.drop_uneven = bool(drop_uneven)
        self.lanes = lanes
        self.batch_size = None if batch_size is None else int(batch_size)
        self.shared_epoch = SharedEpoch(int(epoch))
        # DataLoader workers of the last iteration (-1: never iterated, 0: in-process), set by
        # the workers themselves: state_dict() knows its own count is not the training loop's.
        self.workers_seen = SharedInt(-1)
        self.warned_blocks = SharedInt(0)
        self.frozen_rank_world: tuple[int, int] | None = None
        self._plans: BoundedCache[int, EpochPlan] = BoundedCache(4)
        self._lane_schedules: BoundedCache[tuple[int, int, int], LaneSchedule] = BoundedCache(4)

    @property
    def epoch(self) -> int:
        return self.shared_epoch.value

    def plan(self, epoch: int | None = None) -> EpochPlan:
        """The epoch's global window plan (before rank/worker sharding)."""
        epoch = self.epoch if epoch is None else int(epoch)
        return self._plans.get_or_make(epoch, self._make_plan)

    def _make_plan(self, epoch: int) -> EpochPlan:
        stride = self.stride.stride_for_epoch(epoch)
        frames = self.frames if self.tail == "drop" else padded_frames(self.frames, self.window_frames, stride)
        return EpochPlan.build(
            frames, window_frames=self.window_frames, stride=stride, seed=self.seed, epoch=epoch,
            shuffle=self.shuffle, dense_ratio=self.stride.dense_ratio, timing=self.timing,
        )  # fmt: skip

    def lane_schedule(self, epoch: int | None = None) -> LaneSchedule:
        """This rank's lanes for the epoch (lanes mode)."""
        assert self.lanes is not None
        epoch = self.epoch if epoch is None else int(epoch)
        rank, world = self.rank_world()
        return self._lane_schedules.get_or_make(
            (epoch, rank, world), lambda key: LaneSchedule.build(self.plan(key[0]), key[1], key[2], self.lanes)
        )

    def rank_world(self) -> tuple[int, int]:
        """(rank, world size) as this process sees them (frozen into spawned workers)."""
        if self.frozen_rank_world is not None:
            return self.frozen_rank_world
        rank, world = resolve_rank_world(self.rank, self.world_size)
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not in 0..{world - 1}")
        return rank, world

    def __getstate__(self) -> dict[str, Any]:
        # Pickled for spawned DataLoader workers, which do not see the process group: freeze
        # rank and world size as the training process sees them now.
        state = self.__dict__.copy()
        state["frozen_rank_world"] = self.rank_world()
        return state

    def epochs(self, first: int) -> Iterator[int]:
        return itertools.count(first) if self.loop_dataset else iter((first,))

    # ------------------------------------------------------------------ counts
    def num_windows(self) -> int:
        """Windows the current epoch delivers to this rank (padding included)."""
        if self.lanes is not None:
            return self.lane_schedule().windows()
        rank, world = self.rank_world()
        return _core.rank_share(len(self.plan()), rank, world, self.drop_uneven)[1]

    def epoch_items(self, epoch: int | None = None) -> int:
        """Items of one epoch for this rank: windows, or lane batches in lanes mode."""
        if self.lanes is not None:
            return self.lane_schedule(epoch).steps
        rank, world = self.rank_world()
        return _core.rank_share(len(self.plan(epoch)), rank, world, self.drop_uneven)[1]

    def normalised_position(self, epoch: int, consumed: int) -> tuple[int, int]:
        """A count from the stream's first epoch -> (epoch, items into it), past finished epochs."""
        if not self.loop_dataset:
            return epoch, consumed
        per_item = self.lanes if self.lanes is not None else 1
        while True:
            per_epoch = self.epoch_items(epoch) * per_item
            if per_epoch == 0 or consumed < per_epoch:
                return epoch, consumed
            consumed -= per_epoch
            epoch += 1

    def start_stream(self, worker: int, num_workers: int, resume: Resume | None) -> None:
        """Records who iterates (0: in-process), warns once (from worker 0) when workers cannot
        deal whole batches, and checks that a pending resume can continue exactly."""
        self.workers_seen.value = num_workers
        if num_workers > 1 and worker == 0 and self.batch_size is None and self.lanes is None:
            if not self.warned_blocks.value:  # shared: once, not once per (re)started worker
                self.warned_blocks.value = 1
                warnings.warn(
                    f"{num_workers} DataLoader workers without the dataset's batch_size: each worker "
                    "delivers its own block, so batches mix takes and each worker drops its own "
                    "partial batch; give the dataset batch_size=<the DataLoader's> for whole batches "
                    "in the in-process order",
                    stacklevel=3,
                )
        if resume is not None and resume.recorded:
            check_resume(resume.recorded, self.stream_config(num_workers))

    def stream_config(self, num_workers: int | None) -> dict[str, Any]:
        """The configuration exact resume depends on (``STREAM_KEYS``), as this process sees it."""
        return {
            "num_workers": num_workers,
            "batch_size": self.batch_size,
            "world_size": self.rank_world()[1],
            "whole_batches": self.batch_size is not None,
            "lanes": self.lanes,
            "shuffle": self.shuffle,
            "drop_uneven": self.drop_uneven,
            "tail": self.tail,
        }

    def _ends_here(self, epoch: int, windows: int) -> bool:
        """A looping stream that got no windows in ``epoch`` gets none in any later one."""
        return windows == 0 and self.stride.settled(epoch)

    # ------------------------------------------------------------------ window mode
    def window_runs(
        self, epoch: int, worker: int, workers: int, resume: Resume | None
    ) -> Iterator[tuple[EpochPlan, np.ndarray]]:
        """(plan, plan indices) runs this worker delivers, epoch after epoch, resume applied.

        With ``batch_size`` (or a single worker) the stream after the resume point is cut into
        batches and worker w delivers batches w, w + W, ...: the DataLoader's round robin then
        hands over the in-process stream, batch for batch. Without it (W > 1) each worker
        delivers one contiguous block of the rank's share per epoch."""
        if self.batch_size is not None or workers == 1:
            return self._dealt_runs(epoch, worker, workers, resume)
        return self._block_runs(epoch, worker, workers, resume)

    def _dealt_runs(
        self, epoch: int, worker: int, workers: int, resume: Resume | None
    ) -> Iterator[tuple[EpochPlan, np.ndarray]]:
        rank, world = self.rank_world()
        size = self.batch_size or 1
        skip = resume.consumed if resume else 0  # windows delivered before the resume point
        done = 0  # windows of the stream between the resume point and this epoch
        for e in self.epochs(epoch):
            plan = self.plan(e)
            start, length = _core.rank_share(len(plan), rank, world, self.drop_uneven)
            if self.loop_dataset and self._ends_here(e, length):
                return
            first = min(skip, length)
            skip -= first
            # Stream positions done .. done + length - first are share offsets first .. length.
            for mine in dealt_positions(done, done + length - first, size, workers, worker):
                yield plan, (start + first - done + mine) % len(plan)
            done += length - first

    def _block_runs(
        self, epoch: int, worker: int, workers: int, resume: Resume | None
    ) -> Iterator[tuple[EpochPlan, np.ndarray]]:
        rank, world = self.rank_world()
        role, skip = worker_role_and_skip(worker, workers, resume)
        for e in self.epochs(epoch):
            plan = self.plan(e)
            start, length = _core.rank_share(len(plan), rank, world, self.drop_uneven)
            offset, count = _core.worker_block(length, role, workers)
            if self.loop_dataset and self._ends_here(e, count):
                return  # idle in every epoch from here on: end instead of spinning
            if skip >= count:
                skip -= count
                continue
            for lo in range(skip, count, PLAN_CHUNK):
                yield plan, (start + offset + np.arange(lo, min(lo + PLAN_CHUNK, count))) % len(plan)
            skip = 0

    # ------------------------------------------------------------------ lanes mode
    def lane_steps(
        self, epoch: int, worker: int, workers: int, resume: Resume | None
    ) -> Iterator[tuple[EpochPlan, np.ndarray, np.ndarray]]:
        """(plan, plan index per slot, reset per slot) of each batch this worker delivers.

        Batch g of the stream (counted from the first epoch) comes from worker g % workers,
        which is the order the DataLoader takes batches from its workers.
        """
        assert self.lanes is not None
        first = (resume.consumed // self.lanes) if resume else 0
        g = 0  # stream steps before this epoch
        for e in self.epochs(epoch):
            plan = self.plan(e)
            schedule = self.lane_schedule(e)
            if self.loop_dataset and self._ends_here(e, schedule.steps):
                return
            lo = max(first - g, 0)
            lo += (worker - (g + lo - first)) % workers  # this worker's first step of the epoch
            block = LANE_BLOCK * workers
            for at in range(lo, schedule.steps, block):
                index, reset = schedule.rows(np.arange(at, min(at + block, schedule.steps), workers))
                for row in range(len(index)):
                    yield plan, index[row], reset[row]
            g += schedule.steps


def dealt_positions(lo: int, hi: int, size: int, workers: int, worker: int) -> Iterator[np.ndarray]:
    """Stream positions p in [lo, hi) of worker ``worker``'s batches (batch p // size goes to
    worker (p // size) % workers), ascending, in arrays of about ``PLAN_CHUNK`` (whole batches)."""
    if workers == 1:
        for at in range(lo, hi, PLAN_CHUNK):
            yield np.arange(at, min(at + PLAN_CHUNK, hi), dtype=np.int64)
        return
    batch = lo // size
    batch += (worker - batch) % workers  # this worker's first batch touching [lo, hi)
    per_chunk = max(1, PLAN_CHUNK // size)
    within = np.arange(size, dtype=np.int64)
    while batch * size < hi:
        batches = batch + workers * np.arange(per_chunk, dtype=np.int64)
        positions = (batches[:, None] * size + within).ravel()
        positions = positions[(positions >= lo) & (positions < hi)]
        if len(positions):
            yield positions
        batch += workers * per_chunk


#: Lane steps looked up at once per worker (a block is LANE_BLOCK x lanes plan indices).
LANE_BLOCK = 1024
