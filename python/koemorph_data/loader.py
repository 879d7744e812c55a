"""``dataset.loader()``: batches gathered in-process by the Rust core, no DataLoader workers.

See ``WindowDataset.loader`` for the contract: the same stream as iterating the dataset
with ``num_workers=0`` and collating, produced by chunked GIL-free gathers. The loader reads
the dataset's public pieces (``sampler``, ``store``, ``schema``, ``reader``, ``position``),
nothing else.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import default_collate

from . import _core
from .batch import Batch, BatchSchema
from .lookahead import TakeLookahead, lane_starts, run_starts
from .plan import EpochPlan
from .sampling import Resume, StreamPosition, WindowSampler, check_positive
from .store import TakeStore
from .windows import WindowReader


class WindowSource(Protocol):
    """What the loader needs of a dataset: its public pieces."""

    sampler: WindowSampler
    store: TakeStore
    schema: BatchSchema
    reader: WindowReader
    position: StreamPosition


class _ChunkBuffers:
    """Reusable (audio, blendshapes) chunk tensors.

    Fresh memory costs a page fault and the kernel's zeroing per 4 KiB page, as much as the
    copy itself; so a chunk's tensors are reused once nothing else references their storage
    (every batch handed out is a view and holds a reference until the caller drops it).
    Pinned tensors are never reused here: torch's pinned-memory allocator caches them and
    knows about asynchronous copies still reading them.
    """

    def __init__(self, keep: int, pin_memory: bool, schema: BatchSchema) -> None:
        self.keep = keep
        self.pin_memory = pin_memory
        self.schema = schema
        self.count = getattr(torch._C, "_storage_Use_Count", None)
        self.free: list[tuple[torch.Tensor, torch.Tensor, int, int]] = []
        self.lock = threading.Lock()
        self.claimed: set[int] = set()  # handed to a thread that has not made its views yet

    def _uses(self, t: torch.Tensor) -> int:
        return self.count(t.untyped_storage()._cdata)

    def get(self, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(audio, blendshapes) chunk tensors of ``rows`` windows, reused when free."""
        with self.lock:
            return self._get(rows)

    def _get(self, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        for k in range(len(self.free) - 1, -1, -1):  # most recently used first: still in the CPU cache
            audio, blendshapes, base_a, base_b = self.free[k]
            if (
                audio.shape[0] == rows
                and id(audio) not in self.claimed
                and self._uses(audio) == base_a
                and self._uses(blendshapes) == base_b
            ):
                self.free.append(self.free.pop(k))
                self.claimed.add(id(audio))
                return audio, blendshapes
        audio, blendshapes = self.schema.empty(rows, pin_memory=self.pin_memory)
        if self.count is not None and not self.pin_memory:
            self.free.append((audio, blendshapes, self._uses(audio), self._uses(blendshapes)))
            self.claimed.add(id(audio))
            if len(self.free) > self.keep:
                dropped = self.free.pop(0)
                self.claimed.discard(id(dropped[0]))
        return audio, blendshapes

    def release(self, audio: torch.Tensor) -> None:
        """The chunk's views exist now (they keep the storage busy while the caller holds them)."""
        with self.lock:
            self.claimed.discard(id(audio))


@dataclass
class _Chunk:
    """Consecutive windows of the stream: index arrays, flag tensors and the positions where
    the take changes."""

    files: np.ndarray
    frames: np.ndarray
    samples: np.ndarray
    flags: dict[str, torch.Tensor]
    bounds: np.ndarray  # positions i where files[i] != files[i - 1]
    pose: torch.Tensor | None = None  # [n, window_frames, 9], once gathered (pose=True)

    def __len__(self) -> int:
        return len(self.files)

    def takes(self) -> list[int]:
        """The takes of the chunk in order (what the lookahead prefetches)."""
        if not len(self.files):
            return []
        return self.files[np.concatenate(([0], self.bounds)).astype(np.int64)].tolist()

    def slice(self, lo: int, hi: int) -> _Chunk:
        return _Chunk(
            self.files[lo:hi],
            self.frames[lo:hi],
            self.samples[lo:hi],
            {key: value[lo:hi] for key, value in self.flags.items()},
            self.bounds[(self.bounds > lo) & (self.bounds < hi)] - lo,
        )

    def join(self, other: _Chunk) -> _Chunk:
        n = len(self)
        bounds = np.concatenate(
            (self.bounds, [n] if n and len(other) and self.files[-1] != other.files[0] else [], other.bounds + n)
        ).astype(np.int64)
        return _Chunk(
            np.concatenate((self.files, other.files)),
            np.concatenate((self.frames, other.frames)),
            np.concatenate((self.samples, other.samples)),
            {key: torch.cat((self.flags[key], other.flags[key])) for key in self.flags},
            bounds,
        )


def _batch_starts(pieces: list[tuple[EpochPlan, np.ndarray]]) -> list[int]:
    """The takes of one batch's (plan, positions) pieces, in order."""
    return [take for plan, positions in pieces for take in run_starts(plan, positions)]


class ChunkPlanner:
    """The in-process window stream cut into batches and chunks of whole batches: index arrays
    and flags only (no I/O)."""

    def __init__(
        self, sampler: WindowSampler, schema: BatchSchema, *, batch_size: int, chunk_batches: int, drop_last: bool
    ) -> None:
        self.sampler, self.schema = sampler, schema
        self.batch_size, self._chunk, self.drop_last = batch_size, chunk_batches, drop_last

    def window_batches(self, epoch: int, resume: Resume | None) -> Iterator[list[tuple[EpochPlan, np.ndarray]]]:
        """Consecutive runs of batch_size windows of the in-process stream, as (plan, indices) pieces."""
        pieces: list[tuple[EpochPlan, np.ndarray]] = []
        have = 0
        for plan, positions in self.sampler.window_runs(epoch, 0, 1, resume):
            offset = 0
            while offset < len(positions):
                take = min(self.batch_size - have, len(positions) - offset)
                pieces.append((plan, positions[offset : offset + take]))
                have += take
                offset += take
                if have == self.batch_size:
                    yield pieces
                    pieces, have = [], 0
        if pieces and not self.drop_last:
            yield pieces

    def run_chunk(self, plan: EpochPlan, positions: np.ndarray) -> _Chunk:
        """The windows ``positions`` of a plan as one chunk (index arrays and flags)."""
        windows = plan.lookup(positions)
        return _Chunk(
            windows.file,
            windows.start_frame,
            windows.start_sample,
            self.schema.flags(plan, positions, windows),
            np.flatnonzero(np.diff(windows.file)) + 1,
        )

    def window_chunks(self, epoch: int, resume: Resume | None) -> Iterator[_Chunk]:
        """The same stream as ``_window_batches``, as chunks of whole batches with their index
        arrays computed once per run (at most ``PLAN_CHUNK`` windows of the stream)."""
        b = self.batch_size
        size = self._chunk * b
        carry: _Chunk | None = None
        first = True
        for plan, positions in self.sampler.window_runs(epoch, 0, 1, resume):
            if first and carry is None and len(positions) > b:
                # The first batch alone, before the run's index arrays: out as early as possible.
                head = self.run_chunk(plan, positions[:b])
                positions = positions[b:]
                yield head
                first = False
            run = self.run_chunk(plan, positions)
            if carry is not None:
                run = carry.join(run)
            lo = 0
            if first and len(run) >= b:  # the first batch alone: out as early as possible
                yield run.slice(0, b)
                lo, first = b, False
            full = lo + (len(run) - lo) // size * size
            for at in range(lo, full, size):
                yield run.slice(at, at + size)
            carry = run.slice(full, len(run)) if full < len(run) else None
        if carry is not None:
            whole = len(carry) // b * b
            if whole:
                yield carry.slice(0, whole)
            if whole < len(carry) and not self.drop_last:
                yield carry.slice(whole, len(carry))


class ChunkGatherer:
    """Copies planned chunks out of the take store into batch tensors (the Rust core's gathers)."""

    def __init__(
        self,
        store: TakeStore,
        schema: BatchSchema,
        buffers: _ChunkBuffers,
        *,
        batch_size: int,
        copy_threads: int,
        pin_memory: bool,
    ) -> None:
        self.store, self.schema, self._buffers = store, schema, buffers
        self.batch_size, self._copy_threads, self.pin_memory = batch_size, copy_threads, pin_memory

    def gather(
        self,
        files: np.ndarray,
        frames: np.ndarray,
        samples: np.ndarray,
        audio: torch.Tensor,
        blendshapes: torch.Tensor,
        pose: torch.Tensor | None = None,
        threads: int | None = None,
        background: bool = False,
    ) -> Any:
        """Copies the windows (files/frames/samples) into audio [n, S] and blendshapes [n, W, 52]
        (and pose [n, W, 9], in this thread: it is small)."""
        first = files[0] if len(files) else 0
        if files[-1] == first and (files == first).all():
            takes = [self.store.get(int(first))]
            ids = np.zeros(len(files), dtype=np.int64)
        else:
            unique, ids = np.unique(files, return_inverse=True)
            takes = [self.store.get(int(f)) for f in unique]
            ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        frames = np.ascontiguousarray(frames, dtype=np.int64)
        if pose is not None:
            starts = frames * _core.NUM_POSE  # gather_windows counts in elements of the flat track
            _core.gather_windows([t.pose for t in takes], ids, starts, pose.numpy(), 1)
        gather = _core.gather_batch_async if background else _core.gather_batch
        return gather(
            [t.audio for t in takes],
            [t.blendshapes for t in takes],
            ids,
            np.ascontiguousarray(samples, dtype=np.int64),
            frames,
            audio.numpy(),
            blendshapes.numpy(),
            1 if background else (self._copy_threads if threads is None else threads),
        )

    def gather_chunk(
        self,
        chunk: _Chunk,
        audio: torch.Tensor,
        blendshapes: torch.Tensor,
        *,
        threads: int | None = None,
        background: bool = False,
    ) -> Any:
        """``gather`` of a chunk's windows; its pose lands in ``chunk.pose``."""
        chunk.pose = self.schema.empty_pose(len(chunk), pin_memory=self.pin_memory)
        return self.gather(
            chunk.files,
            chunk.frames,
            chunk.samples,
            audio,
            blendshapes,
            chunk.pose,
            threads=threads,
            background=background,
        )

    def window_chunk(self, chunk: _Chunk, threads: int | None = None) -> list[Batch]:
        """Gathers a chunk in this thread and returns its batches."""
        audio, blendshapes = self._buffers.get(len(chunk))
        self.gather_chunk(chunk, audio, blendshapes, threads=threads)
        return self.views(chunk, audio, blendshapes)

    def views(self, chunk: _Chunk, audio: torch.Tensor, blendshapes: torch.Tensor) -> list[Batch]:
        """The chunk's batches: row views of its tensors (built eagerly: a few slices each)."""
        b = self.batch_size
        files, frames, pose = torch.from_numpy(chunk.files), torch.from_numpy(chunk.frames), chunk.pose
        flags = list(chunk.flags.items())
        batches = [
            self.schema.batch(
                audio[lo : lo + b],
                blendshapes[lo : lo + b],
                files[lo : lo + b],
                frames[lo : lo + b],
                pose=None if pose is None else pose[lo : lo + b],
                flags={key: value[lo : lo + b] for key, value in flags},
            )
            for lo in range(0, len(chunk), b)
        ]
        self._buffers.release(audio)
        return batches

    def lane_chunk(self, chunk: list[tuple[EpochPlan, np.ndarray, np.ndarray]]) -> list[Batch]:
        """Lane steps gathered at once: valid slots copied by the core, invalid ones zeroed."""
        lanes = len(chunk[0][1])
        n = lanes * len(chunk)
        files = np.full(n, -1, dtype=np.int64)
        frames = np.full(n, -1, dtype=np.int64)
        samples = np.zeros(n, dtype=np.int64)
        looked_up = []
        for s, (plan, index, _reset) in enumerate(chunk):
            ok = index >= 0
            rows = slice(s * lanes, (s + 1) * lanes)
            windows = plan.lookup(np.maximum(index, 0)) if ok.any() else None
            looked_up.append(windows)
            if windows is not None:
                files[rows][ok] = windows.file[ok]
                frames[rows][ok] = windows.start_frame[ok]
                samples[rows][ok] = windows.start_sample[ok]
        valid = files >= 0
        audio, blendshapes = self._buffers.get(n)
        pose = self.schema.empty_pose(n, pin_memory=self.pin_memory)
        self.gather_valid(files, frames, samples, valid, audio, blendshapes, pose)
        file_t, frame_t, valid_t = torch.from_numpy(files), torch.from_numpy(frames), torch.from_numpy(valid)
        batches = []
        for s, (plan, index, reset) in enumerate(chunk):
            rows = slice(s * lanes, (s + 1) * lanes)
            batches.append(
                self.schema.batch(
                    audio[rows],
                    blendshapes[rows],
                    file_t[rows],
                    frame_t[rows],
                    pose=None if pose is None else pose[rows],
                    lanes=(reset, valid_t[rows]),
                    flags=self.schema.flags(plan, index, looked_up[s]),
                )
            )
        self._buffers.release(audio)
        return batches

    def gather_valid(
        self,
        files: np.ndarray,
        frames: np.ndarray,
        samples: np.ndarray,
        valid: np.ndarray,
        audio: torch.Tensor,
        blendshapes: torch.Tensor,
        pose: torch.Tensor | None,
    ) -> None:
        """Gathers the valid rows into audio / blendshapes / pose and zeroes the others."""
        if valid.all():
            self.gather(files, frames, samples, audio, blendshapes, pose)
            return
        outputs = [t for t in (audio, blendshapes, pose) if t is not None]
        invalid = torch.from_numpy(np.flatnonzero(~valid))
        for out in outputs:
            out[invalid] = 0.0
        rows = np.flatnonzero(valid)
        if len(rows):
            a, b = self.schema.empty(len(rows), pin_memory=self.pin_memory)
            p = self.schema.empty_pose(len(rows), pin_memory=self.pin_memory)
            self.gather(files[rows], frames[rows], samples[rows], a, b, p)
            index_t = torch.from_numpy(rows)
            for out, part in zip(outputs, (a, b, p)):
                out.index_copy_(0, index_t, part)


class BatchLoader:
    """The iterable ``WindowDataset.loader()`` returns (see there).

    Window mode (``_window_stream``): the caller's thread plans chunks of about 8 windows
    (consecutive batches, index arrays computed once per epoch run) and hands each chunk's
    copy to the core's own threads (``_core.gather_batch_async``: GIL-free from start to
    end, no Python thread that must win the GIL back after its copy), a few chunks ahead,
    into reused chunk tensors; it then only waits for the oldest chunk and makes its batches,
    row views of the chunk's tensors. The first batch is gathered synchronously, before the
    epoch's index arrays and any background work. Lanes mode materialises chunks on a pool
    of Python threads; with ``augment`` batches go through the dataset's sample path. The
    take store loads the next ``prefetch_takes`` takes of the stream in the background before
    the stream reaches them (``lookahead.py``).
    """

    def __init__(
        self,
        dataset: WindowSource,
        *,
        batch_size: int,
        num_threads: int,
        pin_memory: bool,
        drop_last: bool,
        prefetch: int,
    ) -> None:
        check_positive(batch_size=batch_size, num_threads=num_threads)
        if not isinstance(prefetch, (int, np.integer)) or isinstance(prefetch, bool) or prefetch < 0:
            raise ValueError(f"prefetch must be a non-negative integer, got {prefetch!r}")

        self.dataset = dataset
        self.sampler, self.store = dataset.sampler, dataset.store
        self.batch_size = int(batch_size)
        self.num_threads = int(num_threads)
        self.pin_memory = bool(pin_memory) and torch.cuda.is_available()
        self.drop_last = bool(drop_last)
        self.prefetch = int(prefetch)
        lanes = self.sampler.lanes
        # Takes a chunk needs (two at a file boundary; one per lane in lanes mode) plus the
        # ones loaded ahead.
        self.store.require_capacity(max((lanes or 1) + 1, 3) + self.store.prefetch_takes)
        per = lanes if lanes is not None else self.batch_size
        self._chunk = max(1, 8 // per)  # batches per chunk (a few MB: stays in the CPU cache)
        self._queued_chunks = max(1, -(-self.prefetch // self._chunk))
        self._buffers = _ChunkBuffers(max(self.num_threads, self._queued_chunks) + 3, self.pin_memory, dataset.schema)
        self.planner = ChunkPlanner(
            self.sampler,
            dataset.schema,
            batch_size=self.batch_size,
            chunk_batches=self._chunk,
            drop_last=self.drop_last,
        )
        # Copy threads per gather: the pool's threads already copy in parallel (prefetch > 0).
        self.gatherer = ChunkGatherer(
            self.store,
            dataset.schema,
            self._buffers,
            batch_size=self.batch_size,
            copy_threads=self.num_threads if self.prefetch == 0 else 1,
            pin_memory=self.pin_memory,
        )

    def __iter__(self) -> Iterator[Batch]:
        epoch = self.sampler.epoch
        resume = self.dataset.position.begin(epoch, count=True)
        self.sampler.start_stream(0, 0, resume)
        lanes, augment = self.sampler.lanes is not None, self.dataset.reader.augment is not None
        ahead = TakeLookahead(self.store)  # the next takes of the stream, loaded in the background
        if lanes:
            specs: Iterator[Any] = ahead.follow(self.sampler.lane_steps(epoch, 0, 1, resume), lane_starts)
        elif augment:
            specs = ahead.follow(self.planner.window_batches(epoch, resume), _batch_starts)
        if augment:  # the per-window sample path, in order, one batch at a time
            make = self._lane_chunk_slow if lanes else self._window_chunk_slow
            chunks: Iterator[Any] = iter(lambda: list(itertools.islice(specs, 1)), [])
        elif lanes:
            make = self.gatherer.lane_chunk
            chunks = iter(lambda: list(itertools.islice(specs, self._chunk)), [])
        else:
            make = self.gatherer.window_chunk
            # The first chunk (one batch) is handed out before any peeking: as early as before.
            chunks = ahead.follow(self.planner.window_chunks(epoch, resume), _Chunk.takes, first_alone=True)
        if not augment and not lanes and self.prefetch > 0:
            yield from self._window_stream(chunks)
        elif self.prefetch == 0:  # synchronous: everything in the caller's thread
            yield from self._synchronous(chunks, make, salvage=not augment and not lanes)
        else:
            yield from self._pooled(chunks, make, threads=1 if augment else self.num_threads)

    def _pooled(self, chunks: Iterator[Any], make: Any, threads: int) -> Iterator[Batch]:
        """Chunks planned here (vectorised, cheap) and materialised by a pool of threads,
        several at once: one thread's Python overlaps the others' GIL-free copies. Results are
        taken in submission order, so the stream's order is the plan's."""
        pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="koemorph-loader")
        ahead = max(threads, self._queued_chunks)
        pending: deque = deque()
        try:
            for chunk in chunks:
                pending.append(pool.submit(make, chunk))
                while len(pending) > ahead:
                    yield from self._hand_over(pending.popleft().result())
            while pending:
                yield from self._hand_over(pending.popleft().result())
        finally:
            for future in pending:
                future.cancel()
            pool.shutdown(wait=False, cancel_futures=True)

    def _window_stream(self, chunks: Iterator[_Chunk]) -> Iterator[Batch]:
        """The window-mode stream: the first chunk (one batch) is gathered right here, so the
        first batch is out before anything runs in the background; later chunks are copied by
        the core's own threads (``gather_batch_async``: no Python, no GIL hand-offs), a few
        chunks ahead, while this thread only plans and makes the batch views."""
        for chunk in chunks:
            yield from self._hand_over(self.gatherer.window_chunk(chunk, threads=self.num_threads))
            break
        ahead = max(self.num_threads, self._queued_chunks)
        pending: deque = deque()
        try:
            for chunk in chunks:
                audio, blendshapes = self._buffers.get(len(chunk))
                try:
                    ticket = self.gatherer.gather_chunk(chunk, audio, blendshapes, background=True)
                except Exception as error:  # a take failed to load (nothing was started)
                    self._buffers.release(audio)
                    while pending:
                        yield from self._finish(*pending.popleft())
                    yield from self._salvage(chunk, error)  # ends by raising the error
                pending.append((ticket, chunk, audio, blendshapes))
                while len(pending) > ahead:
                    yield from self._finish(*pending.popleft())
            while pending:
                yield from self._finish(*pending.popleft())
        finally:
            for ticket, _, audio, _ in pending:
                ticket.wait()  # the copy must end before its buffers are reused or freed
                self._buffers.release(audio)

    def _synchronous(self, chunks: Iterator[Any], make: Any, *, salvage: bool) -> Iterator[Batch]:
        """Every chunk made and handed over in the caller's thread."""
        for chunk in chunks:
            try:
                batches = make(chunk)
            except Exception as error:
                if not salvage:
                    raise
                yield from self._salvage(chunk, error)  # ends by raising the error
            yield from self._hand_over(batches)

    def _salvage(self, chunk: _Chunk, error: Exception) -> Iterator[Batch]:
        """After a take of ``chunk`` failed to load: the chunk's batches before the first one
        that needs a take the store does not hold are handed over, then ``error`` is raised,
        so the stream fails where it reaches the failing take (as the dataset's iterator does)."""
        b = self.batch_size
        for lo in range(0, len(chunk), b):
            part = chunk.slice(lo, lo + b)
            if not all(take in self.store for take in part.takes()):
                break
            yield from self._hand_over(self.gatherer.window_chunk(part, threads=1))
        raise error

    def _finish(self, ticket: Any, chunk: _Chunk, audio: torch.Tensor, blendshapes: torch.Tensor) -> Iterator[Batch]:
        ticket.wait()
        return self._hand_over(self.gatherer.views(chunk, audio, blendshapes))

    def _hand_over(self, batches: list[Batch]) -> Iterator[Batch]:
        """Yields batches, counting each as consumed (for state_dict) when it is handed over."""
        position = self.dataset.position
        for batch in batches:
            position.advance(len(batch["file_names"]))
            yield batch

    def _window_chunk_slow(self, chunk: list[list[tuple[EpochPlan, np.ndarray]]]) -> list[Batch]:
        return [
            default_collate([self.dataset.reader.sample(plan, i) for plan, pos in pieces for i in pos.tolist()])
            for pieces in chunk
        ]

    def _lane_chunk_slow(self, chunk: list[tuple[EpochPlan, np.ndarray, np.ndarray]]) -> list[Batch]:
        return [self.dataset.reader.lane_batch(*spec) for spec in chunk]
