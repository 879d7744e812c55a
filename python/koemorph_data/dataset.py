"""The sequential window datasets of the KoeMorph design, as torch IterableDatasets.

Every epoch has a plan, computed by the Rust core from (usable frames per take, window,
stride, seed, epoch): the windows of the epoch in delivery order, files shuffled per epoch,
each file's windows contiguous and in temporal order. Sharding is index arithmetic on that
plan, so every process that builds it agrees on it:

* ranks (DDP) take contiguous, equal-length runs of the plan (short ranks padded with
  windows from the start of the epoch, or the remainder dropped with ``drop_uneven``);
* DataLoader workers take contiguous blocks of their rank's run, so each window of the epoch
  is yielded exactly once and a worker decodes only the takes its block touches;
* resuming skips, per worker, exactly the windows that worker had delivered.
"""
from __future__ import annotations

import ctypes
import itertools
import logging
import multiprocessing
import multiprocessing.context
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from . import _core
from .audio import load_audio
from .augment import as_augment
from .errors import DataFormatError
from .takes import TakeTable

logger = logging.getLogger("koemorph_data")

STRIDE_MODES = ("dense", "sparse", "progressive", "mixed")
SCHEDULES = ("linear", "step")


@dataclass(frozen=True)
class EpochPlan:
    """One epoch's windows in delivery order (all arrays have the same length)."""

    epoch: int
    stride: int
    file: np.ndarray          # int64 position in file_pairs
    start_frame: np.ndarray   # int64
    start_sample: np.ndarray  # int64, from the dataset's alignment
    dense: np.ndarray         # bool

    def __len__(self) -> int:
        return len(self.file)

    def file_segments(self) -> list[tuple[int, int]]:
        """(first plan index, window count) of each file's run, in plan order."""
        if len(self.file) == 0:
            return []
        bounds = np.flatnonzero(np.diff(self.file)) + 1
        starts = np.concatenate(([0], bounds))
        ends = np.concatenate((bounds, [len(self.file)]))
        return [(int(s), int(e - s)) for s, e in zip(starts, ends)]


class _SharedEpoch:
    """The current epoch, shared with DataLoader workers through shared memory.

    Persistent workers keep the dataset copy they were started with, so a ``set_epoch`` in
    the training process must reach them through memory they share (fork, or the spawn
    pickling that passes the shared block along).
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
            return (_SharedEpoch, (0, self._raw))
        return (_SharedEpoch, (self.value,))  # plain pickling (e.g. copy): a snapshot


def _resolve_rank_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is not None and world_size is not None:
        return rank, world_size
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        r, w = dist.get_rank(), dist.get_world_size()
    else:
        r, w = 0, 1
    return (rank if rank is not None else r), (world_size if world_size is not None else w)


class _WindowDataset(IterableDataset):
    """Shared machinery of both datasets; subclasses define the stride of an epoch."""

    def __init__(self, data_dir: str | Path, *, window_frames: int, sample_rate: int, target_fps: int,
                 shuffle_files: bool, loop_dataset: bool, seed: int, epoch: int, alignment: str,
                 on_error: str, rank: int | None, world_size: int | None, drop_uneven: bool,
                 lanes: int | None, cache_dir: str | Path | None, augment: Any,
                 max_cached_takes: int = 2, worker_sharing_strategy: str | None = "file_system") -> None:
        super().__init__()
        _check_positive(window_frames=window_frames, sample_rate=sample_rate, target_fps=target_fps,
                        max_cached_takes=max_cached_takes)
        if alignment not in ("exact", "hop"):
            raise ValueError(f"alignment must be 'exact' or 'hop', got {alignment!r}")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if lanes is not None:
            _check_positive(lanes=lanes)
        if seed < 0 or epoch < 0:
            raise ValueError("seed and epoch must be non-negative")
        if world_size is not None and world_size <= 0:
            raise ValueError(f"world_size must be positive, got {world_size}")
        if rank is not None and world_size is not None and not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")

        self.data_dir = Path(data_dir)
        self.window_frames = int(window_frames)
        self.sample_rate = int(sample_rate)
        self.target_fps = int(target_fps)
        self.hop_length = self.sample_rate // self.target_fps
        self.window_samples = self.window_frames * self.hop_length
        self.shuffle_files = bool(shuffle_files)
        self.loop_dataset = bool(loop_dataset)
        self.seed = int(seed)
        self.alignment = alignment
        self.on_error = on_error
        self.rank = rank
        self.world_size = world_size
        self.drop_uneven = bool(drop_uneven)
        self.lanes = lanes
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.augment = as_augment(augment)  # None, or an augment.Augment (see augment.py)
        self.max_cached_takes = int(max_cached_takes)
        strategies = torch.multiprocessing.get_all_sharing_strategies()
        if worker_sharing_strategy is not None and worker_sharing_strategy not in strategies:
            raise ValueError(f"worker_sharing_strategy must be one of {sorted(strategies)} or None, "
                             f"got {worker_sharing_strategy!r}")
        self.worker_sharing_strategy = worker_sharing_strategy

        self._table = TakeTable(self.data_dir, sample_rate=self.sample_rate, target_fps=self.target_fps,
                                alignment=alignment, window_frames=self.window_frames, on_error=on_error,
                                cache_dir=self.cache_dir)
        self._epoch = _SharedEpoch(int(epoch))
        self._frozen_rank_world: tuple[int, int] | None = None
        self._plans: OrderedDict[int, EpochPlan] = OrderedDict()
        self._takes: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._resume: tuple[int, int, int | None] | None = None
        # In-process iteration keeps its own count for state_dict().
        self._stream_epoch = int(epoch)
        self._consumed = 0

    # ------------------------------------------------------------------ public API
    @property
    def file_pairs(self) -> list[tuple[Path, Path]]:
        """(wav, jsonl) of every take, sorted; a sample's ``file_indices`` indexes this list."""
        return list(self._table.pairs)

    @property
    def skipped(self) -> list[tuple[Path, str]]:
        """(path, reason) of every take skipped with ``on_error="skip"``."""
        return list(self._table.skipped)

    @property
    def orphans(self) -> list[Path]:
        """Wavs without a jsonl and jsonls without a wav (logged, not used)."""
        return list(self._table.orphans)

    @property
    def usable_frames(self) -> np.ndarray:
        """Usable frames per take (0 for skipped takes), in file_pairs order."""
        return self._table.frames.astype(np.int64)

    @property
    def epoch(self) -> int:
        return self._epoch.value

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch the next ``iter()`` plays (DistributedSampler's convention)."""
        if epoch < 0:
            raise ValueError("epoch must be non-negative")
        self._epoch.value = epoch
        self._stream_epoch, self._consumed = int(epoch), 0

    def stride_for_epoch(self, epoch: int) -> int:
        raise NotImplementedError

    def _dense_ratio(self) -> float | None:
        return None

    def plan(self, epoch: int | None = None) -> EpochPlan:
        """The epoch's global window plan (before rank/worker sharding)."""
        epoch = self.epoch if epoch is None else int(epoch)
        cached = self._plans.get(epoch)
        if cached is not None:
            self._plans.move_to_end(epoch)
            return cached
        stride = self.stride_for_epoch(epoch)
        file, start_frame, dense = _core.plan_epoch(
            self._table.frames, self.window_frames, stride, self.seed, epoch, self.shuffle_files,
            self._dense_ratio())
        start_sample = _core.frames_to_samples(start_frame, self.sample_rate, self.target_fps, self.alignment)
        plan = EpochPlan(epoch, stride, file, start_frame, start_sample, dense)
        self._plans[epoch] = plan
        if len(self._plans) > 4:
            self._plans.popitem(last=False)
        return plan

    def num_windows(self) -> int:
        """Windows the current epoch delivers to this rank (padding included), without decoding."""
        rank, world = self._rank_world()
        plan = self.plan()
        if self.lanes is not None:
            index, _ = self._lane_table(plan, rank, world)
            return int((index >= 0).sum())
        return _core.rank_share(len(plan), rank, world, self.drop_uneven)[1]

    def __repr__(self) -> str:
        fields = [repr(str(self.data_dir)), f"takes={len(self._table.pairs)}"]
        if self._table.skipped:
            fields.append(f"skipped={len(self._table.skipped)}")
        fields += [f"window_frames={self.window_frames}", *self._repr_fields(), f"epoch={self.epoch}",
                   f"windows_in_epoch={len(self.plan())}"]
        optional = {"rank": self.rank, "world_size": self.world_size, "lanes": self.lanes,
                    "cache_dir": None if self.cache_dir is None else str(self.cache_dir),
                    "augment": self.augment}
        fields += [f"{k}={v!r}" for k, v in optional.items() if v is not None]
        if not self.loop_dataset:
            fields.append("loop_dataset=False")
        return f"{type(self).__name__}({', '.join(fields)})"

    def _repr_fields(self) -> list[str]:
        return []

    def __len__(self) -> int:
        if self.loop_dataset:
            raise TypeError("len() is defined only with loop_dataset=False "
                            "(with loop_dataset=True the stream has no end); see num_windows()")
        if self.lanes is not None:
            rank, world = self._rank_world()
            return len(self._lane_table(self.plan(), rank, world)[0])
        return self.num_windows()

    def state_dict(self, consumed: int | None = None, batch_size: int | None = None) -> dict[str, Any]:
        """Resume state. With DataLoader workers, pass ``consumed``: the windows (lane slots in
        lanes mode) the training loop has received since the stream's epoch started; with
        in-process iteration the dataset's own count is used."""
        if consumed is None:
            epoch, consumed = self._normalised_position(self._stream_epoch, self._consumed)
        else:
            epoch = self._stream_epoch
        state: dict[str, Any] = {"epoch": int(epoch), "consumed": int(consumed)}
        if batch_size is not None:
            state["batch_size"] = int(batch_size)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Makes the next iteration continue exactly after ``state["consumed"]`` windows of
        ``state["epoch"]``."""
        try:
            epoch, consumed = int(state["epoch"]), int(state["consumed"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"state must have integer 'epoch' and 'consumed', got {state!r}") from exc
        batch_size = state.get("batch_size")
        if epoch < 0 or consumed < 0 or (batch_size is not None and int(batch_size) <= 0):
            raise ValueError(f"invalid resume state {state!r}")
        if self.lanes is not None and consumed % self.lanes:
            raise ValueError(f"in lanes mode 'consumed' counts batch slots: a multiple of lanes={self.lanes}, "
                             f"got {consumed}")
        self.set_epoch(epoch)
        self._resume = (epoch, consumed, None if batch_size is None else int(batch_size))
        self._stream_epoch, self._consumed = epoch, consumed

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if info is not None and self.worker_sharing_strategy is not None:
            # How this worker hands its batches to the training process. "file_system" passes
            # shared memory by name instead of one file-descriptor round trip per tensor over
            # a socket: ~1.4x the windows/s of torch's default here (see README, Performance).
            torch.multiprocessing.set_sharing_strategy(self.worker_sharing_strategy)
        rank, world = self._rank_world()
        epoch = self.epoch
        resume = self._resume if self._resume is not None and self._resume[0] == epoch else None
        self._resume = None
        consumed = resume[1] if resume else 0
        if info is None:
            self._stream_epoch, self._consumed = epoch, consumed
        if self.lanes is not None:
            stream = self._iter_lanes(epoch, rank, world, worker, workers, resume)
        else:
            stream = self._iter_windows(epoch, rank, world, worker, workers, resume)
        step = self.lanes if self.lanes is not None else 1
        for item in stream:
            if info is None:  # counted when handed over: a consumer may stop right after it
                self._consumed += step
            yield item

    # ------------------------------------------------------------------ iteration
    def _epochs(self, first: int) -> Iterator[int]:
        return itertools.count(first) if self.loop_dataset else iter((first,))

    def _window_runs(self, epoch: int, rank: int, world: int, worker: int, workers: int,
                     resume: tuple[int, int, int | None] | None) -> Iterator[tuple[EpochPlan, np.ndarray]]:
        """(plan, plan indices) runs this worker delivers, epoch after epoch, resume applied."""
        role, skip = _worker_role_and_skip(worker, workers, resume)
        for e in self._epochs(epoch):
            plan = self.plan(e)
            start, length = _core.rank_share(len(plan), rank, world, self.drop_uneven)
            if self.loop_dataset and length < workers:
                raise ValueError(
                    f"epoch {e} gives rank {rank} only {length} windows, fewer than num_workers={workers}: "
                    "a worker would wait forever; use fewer workers or more/longer takes")
            offset, count = _core.worker_block(length, role, workers)
            if skip >= count:
                skip -= count
                continue
            yield plan, (start + offset + np.arange(skip, count)) % len(plan)
            skip = 0

    def _iter_windows(self, epoch: int, rank: int, world: int, worker: int, workers: int,
                      resume: tuple[int, int, int | None] | None) -> Iterator[dict[str, Any]]:
        for plan, positions in self._window_runs(epoch, rank, world, worker, workers, resume):
            for i in positions.tolist():
                yield self._sample(plan, i)

    def _lane_table(self, plan: EpochPlan, rank: int, world: int) -> tuple[np.ndarray, np.ndarray]:
        """This rank's lanes for the epoch: plan indices [steps, lanes] (-1 = invalid) and
        reset flags, padded with invalid rows to the longest rank's step count."""
        assert self.lanes is not None
        segments = plan.file_segments()
        per_rank = _core.assign_files_to_ranks([n for _, n in segments], world)
        tables = [_core.lane_plan([segments[i] for i in files], self.lanes) for files in per_rank]
        steps = max(len(index) for index, _ in tables)
        index, reset = tables[rank]
        pad = steps - len(index)
        if pad:
            index = np.concatenate((index, np.full((pad, self.lanes), -1, dtype=np.int64)))
            reset = np.concatenate((reset, np.zeros((pad, self.lanes), dtype=bool)))
        return index, reset

    def _lane_steps(self, epoch: int, rank: int, world: int, worker: int, workers: int,
                    resume: tuple[int, int, int | None] | None
                    ) -> Iterator[tuple[EpochPlan, np.ndarray, np.ndarray]]:
        """(plan, plan index per slot, reset per slot) of each batch this worker delivers.

        Batch g of the stream (counted from the first epoch) comes from worker g % workers,
        which is the order the DataLoader takes batches from its workers.
        """
        assert self.lanes is not None
        first = (resume[1] // self.lanes) if resume else 0
        g = 0
        for e in self._epochs(epoch):
            plan = self.plan(e)
            index, reset = self._lane_table(plan, rank, world)
            for step in range(len(index)):
                if g >= first and (g - first) % workers == worker:
                    yield plan, index[step], reset[step]
                g += 1

    def _iter_lanes(self, epoch: int, rank: int, world: int, worker: int, workers: int,
                    resume: tuple[int, int, int | None] | None) -> Iterator[dict[str, Any]]:
        for plan, index, reset in self._lane_steps(epoch, rank, world, worker, workers, resume):
            yield self._lane_batch(plan, index, reset)

    def loader(self, batch_size: int = 4, num_threads: int = 2, pin_memory: bool = False,
               drop_last: bool = True, prefetch: int = 2) -> "Iterable[dict[str, Any]]":
        """Batches assembled in this process by the Rust core, without DataLoader workers.

        Iterating the result yields exactly what ``DataLoader(dataset, batch_size=batch_size,
        num_workers=0, drop_last=drop_last)`` would (same keys, shapes, dtypes and order:
        rank sharding, ``loop_dataset``, ``load_state_dict`` resume and the stride modes carry
        over because both walk the same epoch plan). In lanes mode every batch is one lane
        step (``[lanes, ...]``, as iterating the dataset yields them) and ``batch_size`` and
        ``drop_last`` are ignored.

        Only indices move through Python: the core's own threads copy the windows of the next
        few batches (about ``prefetch`` ahead; ``prefetch=0``: everything in the caller's
        thread) with the GIL released, from the decoded takes (or the memory-mapped cache with
        ``cache_dir``) straight into the batch tensors, using ``num_threads`` threads, pinned
        when ``pin_memory`` is set and CUDA is available. Consecutive batches are row views of
        one chunk tensor (holding a batch keeps its chunk's memory alive). A batch counts as
        consumed for ``state_dict()`` once it is handed over. With ``augment`` set, batches
        are built window by window through the dataset's own sample path (correct and in
        order, but not faster than the DataLoader path with num_workers=0).
        """
        from .loader import _BatchLoader

        return _BatchLoader(self, batch_size=batch_size, num_threads=num_threads, pin_memory=pin_memory,
                            drop_last=drop_last, prefetch=prefetch)

    # ------------------------------------------------------------------ materialising
    def _take(self, file_index: int) -> tuple[np.ndarray, np.ndarray]:
        """Decoded audio and fps-converted blendshapes of one take (a small per-process LRU)."""
        cached = self._takes.get(file_index)
        if cached is not None:
            self._takes.move_to_end(file_index)
            return cached
        audio, blendshapes = self._load_take(file_index)
        self._takes[file_index] = (audio, blendshapes)
        if len(self._takes) > self.max_cached_takes:
            self._takes.popitem(last=False)
        return audio, blendshapes

    def _load_take(self, file_index: int) -> tuple[np.ndarray, np.ndarray]:
        wav, jsonl = self._table.pairs[file_index]
        info = self._table.infos[file_index]
        assert info is not None, "a skipped take has no windows"
        if self.cache_dir is not None:
            # Memory-mapped from the prepared cache (filled on first use; see koemorph_data.cache).
            from .cache import load_take
            audio, values = load_take(self.cache_dir, wav, jsonl, sample_rate=self.sample_rate,
                                      target_fps=self.target_fps)
        else:
            audio = load_audio(wav, self.sample_rate)
            values = None
        needed = int(_core.frames_to_samples(np.array([info.usable_frames], dtype=np.int64), self.sample_rate,
                                             self.target_fps, self.alignment)[0])
        if len(audio) < needed:
            raise DataFormatError(
                f"{wav}: decoded {len(audio)} samples but its header promised at least {needed} "
                "(truncated or corrupt audio found while decoding)", path=str(wav),
                reason="audio shorter than its header")
        if values is None:
            values = _core.load_blendshapes(str(jsonl), float(self.target_fps))[0]
        return audio, values[: info.usable_frames]

    def _window(self, plan: EpochPlan, i: int) -> tuple[int, int, np.ndarray, np.ndarray]:
        file_index = int(plan.file[i])
        frame = int(plan.start_frame[i])
        sample = int(plan.start_sample[i])
        audio, blendshapes = self._take(file_index)
        if self.augment is not None:
            # Drawn from (augment seed, epoch, plan index) only: the same under any number of
            # workers or ranks. Speed perturbation reads its span from the whole take.
            a, b = self.augment.window(audio, blendshapes, start_sample=sample, start_frame=frame,
                                       window_samples=self.window_samples, window_frames=self.window_frames,
                                       sample_rate=self.sample_rate, fps=self.target_fps, epoch=plan.epoch,
                                       index=i, default_seed=self.seed)
            return file_index, frame, a, b
        # Copies: a caller may modify a sample in place, and neighbouring windows share data.
        return (file_index, frame, audio[sample: sample + self.window_samples].copy(),
                blendshapes[frame: frame + self.window_frames].copy())

    def _sample(self, plan: EpochPlan, i: int) -> dict[str, Any]:
        file_index, frame, audio, blendshapes = self._window(plan, i)
        sample: dict[str, Any] = {
            "audio": torch.from_numpy(audio),
            "blendshapes": torch.from_numpy(blendshapes),
            "file_indices": torch.tensor(file_index, dtype=torch.int64),
            "start_frames": torch.tensor(frame, dtype=torch.int64),
            "file_names": self._table.pairs[file_index][0].stem,
        }
        self._add_flags(sample, plan, i)
        return sample

    def _add_flags(self, sample: dict[str, Any], plan: EpochPlan, i: int) -> None:
        pass

    def _lane_batch(self, plan: EpochPlan, index: np.ndarray, reset: np.ndarray) -> dict[str, Any]:
        lanes = len(index)
        audio = torch.zeros((lanes, self.window_samples), dtype=torch.float32)
        blendshapes = torch.zeros((lanes, self.window_frames, 52), dtype=torch.float32)
        file_indices = torch.full((lanes,), -1, dtype=torch.int64)
        start_frames = torch.full((lanes,), -1, dtype=torch.int64)
        names = [""] * lanes
        valid = torch.from_numpy(index >= 0)
        for slot, i in enumerate(index.tolist()):
            if i < 0:
                continue
            file_index, frame, a, b = self._window(plan, i)
            audio[slot] = torch.from_numpy(a)
            blendshapes[slot] = torch.from_numpy(b)
            file_indices[slot] = file_index
            start_frames[slot] = frame
            names[slot] = self._table.pairs[file_index][0].stem
        batch: dict[str, Any] = {
            "audio": audio, "blendshapes": blendshapes, "file_indices": file_indices,
            "start_frames": start_frames, "file_names": names,
            "reset": torch.from_numpy(reset.copy()), "valid": valid,
        }
        self._add_lane_flags(batch, plan, index)
        return batch

    def _add_lane_flags(self, batch: dict[str, Any], plan: EpochPlan, index: np.ndarray) -> None:
        pass

    # ------------------------------------------------------------------ distribution
    def _rank_world(self) -> tuple[int, int]:
        if self._frozen_rank_world is not None:
            return self._frozen_rank_world
        rank, world = _resolve_rank_world(self.rank, self.world_size)
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not in 0..{world - 1}")
        return rank, world

    def __getstate__(self) -> dict[str, Any]:
        # Pickled for spawned DataLoader workers, which do not see the process group: freeze
        # rank and world size as the training process sees them now. Decoded takes stay behind.
        state = self.__dict__.copy()
        state["_frozen_rank_world"] = self._rank_world()
        state["_takes"] = OrderedDict()
        return state

    def _normalised_position(self, epoch: int, consumed: int) -> tuple[int, int]:
        """In-process count -> (epoch, windows into it), moving past finished epochs."""
        if not self.loop_dataset:
            return epoch, consumed
        rank, world = self._rank_world()
        while True:
            per_epoch = (len(self._lane_table(self.plan(epoch), rank, world)[0]) * self.lanes
                         if self.lanes is not None
                         else _core.rank_share(len(self.plan(epoch)), rank, world, self.drop_uneven)[1])
            if per_epoch == 0 or consumed < per_epoch:
                return epoch, consumed
            consumed -= per_epoch
            epoch += 1


def _worker_role_and_skip(worker: int, workers: int, resume: tuple[int, int, int | None] | None) -> tuple[int, int]:
    """Which worker's block this worker plays and how many of its windows were delivered.

    The DataLoader takes batches from workers in turn (worker 0, 1, ..., 0, 1, ...). After q
    batches, worker w has delivered ceil((q - w) / W) of them and the next batch is due from
    worker q % W; the resumed worker 0 therefore plays that worker's role.
    """
    if resume is None:
        return worker, 0
    consumed, batch_size = resume[1], resume[2]
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
            "multiple of batch_size x num_workers)")
    return worker, consumed // workers


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


class SequentialKoeMorphDataset(_WindowDataset):
    """Fixed-stride sliding windows over every take (stride 1 = every frame transition).

    Samples are dicts: ``audio`` float32 [window_frames * hop_length], ``blendshapes`` float32
    [window_frames, 52], ``file_indices`` and ``start_frames`` int64 0-d tensors and
    ``file_names`` (the take's stem).
    """

    def __init__(self, data_dir: str | Path, window_frames: int = 256, stride_frames: int = 1,
                 sample_rate: int = 16000, target_fps: int = 30, shuffle_files: bool = True,
                 loop_dataset: bool = True, seed: int = 0, alignment: str = "exact", on_error: str = "raise",
                 *, epoch: int = 0, rank: int | None = None, world_size: int | None = None,
                 drop_uneven: bool = False, lanes: int | None = None, cache_dir: str | Path | None = None,
                 augment: Any = None, max_cached_takes: int = 2,
                 worker_sharing_strategy: str | None = "file_system") -> None:
        _check_positive(stride_frames=stride_frames)
        self.stride_frames = int(stride_frames)
        super().__init__(data_dir, window_frames=window_frames, sample_rate=sample_rate, target_fps=target_fps,
                         shuffle_files=shuffle_files, loop_dataset=loop_dataset, seed=seed, epoch=epoch,
                         alignment=alignment, on_error=on_error, rank=rank, world_size=world_size,
                         drop_uneven=drop_uneven, lanes=lanes, cache_dir=cache_dir, augment=augment,
                         max_cached_takes=max_cached_takes, worker_sharing_strategy=worker_sharing_strategy)

    def stride_for_epoch(self, epoch: int) -> int:
        return self.stride_frames

    def _repr_fields(self) -> list[str]:
        return [f"stride_frames={self.stride_frames}"]


class AdaptiveSequentialDataset(_WindowDataset):
    """Windows whose stride follows the training stage (dense / sparse / progressive / mixed).

    Samples carry ``is_dense`` (bool 0-d tensor) besides the SequentialKoeMorphDataset keys.
    """

    def __init__(self, data_dir: str | Path, window_frames: int = 256, stride_mode: str = "progressive",
                 initial_stride: int = 32, final_stride: int = 1, epoch: int = 0, max_epochs: int = 100,
                 dense_sampling_ratio: float = 0.1, progressive_schedule: str = "linear",
                 sample_rate: int = 16000, target_fps: int = 30, shuffle_files: bool = True,
                 loop_dataset: bool = True, seed: int = 0, alignment: str = "exact", on_error: str = "raise",
                 *, rank: int | None = None, world_size: int | None = None, drop_uneven: bool = False,
                 lanes: int | None = None, cache_dir: str | Path | None = None, augment: Any = None,
                 max_cached_takes: int = 2, worker_sharing_strategy: str | None = "file_system") -> None:
        if stride_mode not in STRIDE_MODES:
            raise ValueError(f"stride_mode must be one of {STRIDE_MODES}, got {stride_mode!r}")
        if progressive_schedule not in SCHEDULES:
            raise ValueError(f"progressive_schedule must be one of {SCHEDULES}, got {progressive_schedule!r}")
        _check_positive(initial_stride=initial_stride, final_stride=final_stride, max_epochs=max_epochs)
        if not 0.0 <= float(dense_sampling_ratio) <= 1.0:
            raise ValueError(f"dense_sampling_ratio must be in [0, 1], got {dense_sampling_ratio}")
        self.stride_mode = stride_mode
        self.initial_stride = int(initial_stride)
        self.final_stride = int(final_stride)
        self.max_epochs = int(max_epochs)
        self.dense_sampling_ratio = float(dense_sampling_ratio)
        self.progressive_schedule = progressive_schedule
        super().__init__(data_dir, window_frames=window_frames, sample_rate=sample_rate, target_fps=target_fps,
                         shuffle_files=shuffle_files, loop_dataset=loop_dataset, seed=seed, epoch=epoch,
                         alignment=alignment, on_error=on_error, rank=rank, world_size=world_size,
                         drop_uneven=drop_uneven, lanes=lanes, cache_dir=cache_dir, augment=augment,
                         max_cached_takes=max_cached_takes, worker_sharing_strategy=worker_sharing_strategy)

    @property
    def current_stride(self) -> int:
        return self.stride_for_epoch(self.epoch)

    def stride_for_epoch(self, epoch: int) -> int:
        if self.stride_mode == "dense":
            return 1
        if self.stride_mode in ("sparse", "mixed"):
            return self.initial_stride
        initial, final = self.initial_stride, self.final_stride
        if self.progressive_schedule == "linear":
            progress = epoch / self.max_epochs
            return max(final, int(initial - progress * (initial - final)))
        # "step": the design document's table, boundaries at 20%, 50% and 80% of max_epochs.
        if epoch * 10 < 2 * self.max_epochs:
            return max(final, initial)
        if epoch * 10 < 5 * self.max_epochs:
            return max(final, initial // 2)
        if epoch * 10 < 8 * self.max_epochs:
            return max(final, initial // 4)
        return final

    def _dense_ratio(self) -> float | None:
        return self.dense_sampling_ratio if self.stride_mode == "mixed" else None

    def _repr_fields(self) -> list[str]:
        fields = [f"stride_mode={self.stride_mode!r}", f"stride={self.current_stride}"]
        if self.stride_mode == "mixed":
            fields.append(f"dense_sampling_ratio={self.dense_sampling_ratio:g}")
        return fields

    def _add_flags(self, sample: dict[str, Any], plan: EpochPlan, i: int) -> None:
        sample["is_dense"] = torch.tensor(bool(plan.dense[i]))

    def _add_lane_flags(self, batch: dict[str, Any], plan: EpochPlan, index: np.ndarray) -> None:
        batch["is_dense"] = torch.from_numpy(np.where(index >= 0, plan.dense[np.maximum(index, 0)], False))
