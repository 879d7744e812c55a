"""``dataset.loader()``: batches gathered in-process by the Rust core, no DataLoader workers.

See ``_WindowDataset.loader`` for the contract: the same stream as iterating the dataset
with ``num_workers=0`` and collating, produced by chunked GIL-free gathers.
"""
from __future__ import annotations

import itertools
import threading
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import torch
from torch.utils.data import default_collate

from . import _core
from .dataset import EpochPlan, _check_positive

if TYPE_CHECKING:
    from .dataset import _WindowDataset


class _ChunkBuffers:
    """Reusable (audio, blendshapes) chunk tensors.

    Fresh memory costs a page fault and the kernel's zeroing per 4 KiB page, as much as the
    copy itself; so a chunk's tensors are reused once nothing else references their storage
    (every batch handed out is a view and holds a reference until the caller drops it).
    Pinned tensors are never reused here: torch's pinned-memory allocator caches them and
    knows about asynchronous copies still reading them.
    """

    def __init__(self, keep: int, pin_memory: bool) -> None:
        self.keep = keep
        self.pin_memory = pin_memory
        self.count = getattr(torch._C, "_storage_Use_Count", None)
        self.free: list[tuple[torch.Tensor, torch.Tensor, int, int]] = []
        self.lock = threading.Lock()
        self.claimed: set[int] = set()  # handed to a thread that has not made its views yet

    def _uses(self, t: torch.Tensor) -> int:
        return self.count(t.untyped_storage()._cdata)

    def get(self, rows: int, window_samples: int, window_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        with self.lock:
            return self._get(rows, window_samples, window_frames)

    def _get(self, rows: int, window_samples: int, window_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        for k in range(len(self.free) - 1, -1, -1):  # most recently used first: still in the CPU cache
            audio, blendshapes, base_a, base_b = self.free[k]
            if (audio.shape[0] == rows and id(audio) not in self.claimed and self._uses(audio) == base_a
                    and self._uses(blendshapes) == base_b):
                self.free.append(self.free.pop(k))
                self.claimed.add(id(audio))
                return audio, blendshapes
        audio = torch.empty((rows, window_samples), dtype=torch.float32, pin_memory=self.pin_memory)
        blendshapes = torch.empty((rows, window_frames, _core.NUM_BLENDSHAPES), dtype=torch.float32,
                                  pin_memory=self.pin_memory)
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
    the take changes (for decoding the next take ahead)."""

    files: np.ndarray
    frames: np.ndarray
    samples: np.ndarray
    flags: dict[str, torch.Tensor]
    bounds: np.ndarray          # positions i where files[i] != files[i - 1]
    upcoming: int | None = None  # the take that follows the chunk

    def __len__(self) -> int:
        return len(self.files)

    def slice(self, lo: int, hi: int) -> "_Chunk":
        k = int(np.searchsorted(self.bounds, hi, side="left"))
        upcoming = int(self.files[self.bounds[k]]) if k < len(self.bounds) else None
        return _Chunk(self.files[lo:hi], self.frames[lo:hi], self.samples[lo:hi],
                      {key: value[lo:hi] for key, value in self.flags.items()},
                      self.bounds[(self.bounds > lo) & (self.bounds < hi)] - lo, upcoming)

    def join(self, other: "_Chunk") -> "_Chunk":
        n = len(self)
        bounds = np.concatenate((self.bounds, [n] if n and len(other) and self.files[-1] != other.files[0] else [],
                                 other.bounds + n)).astype(np.int64)
        return _Chunk(np.concatenate((self.files, other.files)), np.concatenate((self.frames, other.frames)),
                      np.concatenate((self.samples, other.samples)),
                      {key: torch.cat((self.flags[key], other.flags[key])) for key in self.flags},
                      bounds)


class _BatchLoader:
    """The iterable ``_WindowDataset.loader()`` returns (see there).

    Window mode (``_window_stream``): the caller's thread plans chunks of about 8 windows
    (consecutive batches, index arrays computed once per epoch run) and hands each chunk's
    copy to the core's own threads (``_core.gather_batch_async``: GIL-free from start to
    end, no Python thread that must win the GIL back after its copy), a few chunks ahead,
    into reused chunk tensors; it then only waits for the oldest chunk and makes its batches,
    row views of the chunk's tensors. The first batch is gathered synchronously, before the
    epoch's index arrays and any background work. Lanes mode materialises chunks on a pool
    of Python threads; with ``augment`` batches go through the dataset's sample path. A
    helper thread decodes (or maps) the next take of the plan before the stream reaches it.
    """

    def __init__(self, dataset: _WindowDataset, *, batch_size: int, num_threads: int, pin_memory: bool,
                 drop_last: bool, prefetch: int) -> None:
        _check_positive(batch_size=batch_size, num_threads=num_threads)
        if not isinstance(prefetch, (int, np.integer)) or isinstance(prefetch, bool) or prefetch < 0:
            raise ValueError(f"prefetch must be a non-negative integer, got {prefetch!r}")

        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.num_threads = int(num_threads)
        self.pin_memory = bool(pin_memory) and torch.cuda.is_available()
        self.drop_last = bool(drop_last)
        self.prefetch = int(prefetch)
        self._names = [wav.stem for wav, _ in dataset._table.pairs]
        # Takes a chunk needs (two at a file boundary; one per lane in lanes mode) plus the
        # one decoded ahead.
        self._capacity = max(dataset.max_cached_takes, (dataset.lanes or 1) + 2, 4)
        self._lru: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[int, Any] = {}
        self._ahead: Any = None  # executor decoding the next take
        # Copy threads per gather: the pool's threads already copy in parallel (prefetch > 0).
        self._copy_threads = self.num_threads if self.prefetch == 0 else 1
        per = dataset.lanes if dataset.lanes is not None else self.batch_size
        self._chunk = max(1, 8 // per)  # batches per chunk (a few MB: stays in the CPU cache)
        self._queued_chunks = max(1, -(-self.prefetch // self._chunk))
        self._buffers = _ChunkBuffers(max(self.num_threads, self._queued_chunks) + 3, self.pin_memory)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        ds = self.dataset
        rank, world = ds._rank_world()
        epoch = ds.epoch
        resume = ds._resume if ds._resume is not None and ds._resume[0] == epoch else None
        ds._resume = None
        ds._stream_epoch, ds._consumed = epoch, (resume[1] if resume else 0)
        if ds.lanes is not None:
            specs: Iterator[Any] = iter(ds._lane_steps(epoch, rank, world, 0, 1, resume))
            make = self._lane_chunk
        else:
            specs = self._window_batches(epoch, rank, world, resume)
            make = self._window_chunk
        if ds.augment is not None:  # the per-window sample path, in order, one batch at a time
            make = self._lane_chunk_slow if ds.lanes is not None else self._window_chunk_slow
            chunks: Iterator[Any] = iter(lambda: list(itertools.islice(specs, 1)), [])
        elif ds.lanes is not None:
            chunks = iter(lambda: list(itertools.islice(specs, self._chunk)), [])
        else:
            chunks = self._window_chunks(epoch, rank, world, resume)
        if ds.augment is None and ds.lanes is None and self.prefetch > 0:
            yield from self._window_stream(chunks)
            return
        if self.prefetch == 0:  # synchronous: everything in the caller's thread
            for chunk in chunks:
                yield from self._hand_over(make(chunk))
            return

        # Chunks are planned here (vectorised, cheap) and materialised by a pool of threads,
        # several at once: one thread's Python overlaps the others' GIL-free copies. Results are
        # taken in submission order, so the stream's order is the plan's.
        workers = 1 if ds.augment is not None else self.num_threads
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="koemorph-loader")
        ahead = max(workers, self._queued_chunks)
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

    def _window_stream(self, chunks: Iterator["_Chunk"]) -> Iterator[dict[str, Any]]:
        """The window-mode stream: the first chunk (one batch) is gathered right here, so the
        first batch is out before anything runs in the background; later chunks are copied by
        the core's own threads (``gather_batch_async``: no Python, no GIL hand-offs), a few
        chunks ahead, while this thread only plans and makes the batch views."""
        for chunk in chunks:
            yield from self._hand_over(self._window_chunk(chunk, threads=self.num_threads))
            break
        ahead = max(self.num_threads, self._queued_chunks)
        pending: deque = deque()
        try:
            for chunk in chunks:
                audio, blendshapes = self._chunk_tensors(len(chunk))
                ticket = self._gather(chunk.files, chunk.frames, chunk.samples, audio, blendshapes, background=True)
                if chunk.upcoming is not None:
                    self._decode_ahead(chunk.upcoming)
                pending.append((ticket, chunk, audio, blendshapes))
                while len(pending) > ahead:
                    ticket, chunk, audio, blendshapes = pending.popleft()
                    ticket.wait()
                    yield from self._hand_over(self._views(chunk, audio, blendshapes))
            while pending:
                ticket, chunk, audio, blendshapes = pending.popleft()
                ticket.wait()
                yield from self._hand_over(self._views(chunk, audio, blendshapes))
        finally:
            for ticket, _, audio, _ in pending:
                ticket.wait()  # the copy must end before its buffers are reused or freed
                self._buffers.release(audio)

    def _hand_over(self, batches: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Yields batches, counting each as consumed (for state_dict) when it is handed over."""
        for batch in batches:
            self.dataset._consumed += len(batch["file_names"])
            yield batch

    def _views(self, chunk: "_Chunk", audio: torch.Tensor, blendshapes: torch.Tensor) -> list[dict[str, Any]]:
        """The chunk's batches: row views of its tensors (built eagerly: a few slices each)."""
        b = self.batch_size
        n = len(chunk)
        names_of = self._names
        names = [names_of[f] for f in chunk.files.tolist()]
        files, frames = torch.from_numpy(chunk.files), torch.from_numpy(chunk.frames)
        flags = list(chunk.flags.items())
        batches = []
        for lo in range(0, n, b):
            hi = lo + b
            batch = {"audio": audio[lo:hi], "blendshapes": blendshapes[lo:hi], "file_indices": files[lo:hi],
                     "start_frames": frames[lo:hi], "file_names": names[lo:hi]}
            for key, value in flags:
                batch[key] = value[lo:hi]
            batches.append(batch)
        self._buffers.release(audio)
        return batches

    # ------------------------------------------------------------------ plan -> batch specs
    def _window_batches(self, epoch: int, rank: int, world: int, resume: tuple[int, int, int | None] | None
                        ) -> Iterator[list[tuple[EpochPlan, np.ndarray]]]:
        """Consecutive runs of batch_size windows of the in-process stream, as (plan, indices) pieces."""
        pieces: list[tuple[EpochPlan, np.ndarray]] = []
        have = 0
        for plan, positions in self.dataset._window_runs(epoch, rank, world, 0, 1, resume):
            offset = 0
            while offset < len(positions):
                take = min(self.batch_size - have, len(positions) - offset)
                pieces.append((plan, positions[offset: offset + take]))
                have += take
                offset += take
                if have == self.batch_size:
                    yield pieces
                    pieces, have = [], 0
        if pieces and not self.drop_last:
            yield pieces

    def _window_chunks(self, epoch: int, rank: int, world: int, resume: tuple[int, int, int | None] | None
                       ) -> Iterator["_Chunk"]:
        """The same stream as ``_window_batches``, as chunks of whole batches with their index
        arrays computed once per run (a run is usually a whole epoch of this rank)."""
        ds = self.dataset
        size = self._chunk * self.batch_size
        carry: _Chunk | None = None
        first = True
        for plan, positions in ds._window_runs(epoch, rank, world, 0, 1, resume):
            b = self.batch_size
            if first and carry is None and len(positions) > b:
                # The first batch alone, before the run's index arrays: out as early as possible.
                head, positions = positions[:b], positions[b:]
                flags0: dict[str, Any] = {}
                ds._add_lane_flags(flags0, plan, head)
                files = plan.file[head].astype(np.int64, copy=False)
                nxt = int(plan.file[positions[0]])
                yield _Chunk(files, plan.start_frame[head].astype(np.int64, copy=False),
                             plan.start_sample[head].astype(np.int64, copy=False), flags0,
                             np.flatnonzero(np.diff(files)) + 1, nxt if nxt != files[-1] else None)
                first = False
            flags: dict[str, Any] = {}
            ds._add_lane_flags(flags, plan, positions)
            run = _Chunk(plan.file[positions].astype(np.int64, copy=False),
                         plan.start_frame[positions].astype(np.int64, copy=False),
                         plan.start_sample[positions].astype(np.int64, copy=False), flags,
                         np.flatnonzero(np.diff(plan.file[positions])) + 1)
            if carry is not None:
                run = carry.join(run)
            lo = 0
            if first and len(run) >= self.batch_size:  # the first batch alone: out as early as possible
                yield run.slice(0, self.batch_size)
                lo, first = self.batch_size, False
            full = lo + (len(run) - lo) // size * size
            for lo in range(lo, full, size):
                yield run.slice(lo, lo + size)
            carry = run.slice(full, len(run)) if full < len(run) else None
        if carry is not None:
            whole = len(carry) // self.batch_size * self.batch_size
            if whole:
                yield carry.slice(0, whole)
            if whole < len(carry) and not self.drop_last:
                yield carry.slice(whole, len(carry))

    # ------------------------------------------------------------------ takes
    def _take(self, file_index: int) -> tuple[np.ndarray, np.ndarray]:
        """A take from this loader's small LRU; concurrent requests for one take decode it once."""
        with self._lock:
            hit = self._lru.get(file_index)
            if hit is not None:
                self._lru.move_to_end(file_index)
                return hit
            gate = self._loading.setdefault(file_index, threading.Lock())
        with gate:
            with self._lock:
                hit = self._lru.get(file_index)
            if hit is not None:
                return hit
            take = self.dataset._load_take(file_index)
            with self._lock:
                self._lru[file_index] = take
                while len(self._lru) > self._capacity:
                    self._lru.popitem(last=False)
                self._loading.pop(file_index, None)
        return take

    def _decode_ahead(self, upcoming: int) -> None:
        """Starts loading take ``upcoming`` in the background (a hint: the stream reaches it soon)."""
        with self._lock:
            if upcoming in self._lru or upcoming in self._loading:
                return
            if self._ahead is None:
                self._ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="koemorph-decode-ahead")
        future = self._ahead.submit(self._take, upcoming)
        future.add_done_callback(lambda f: f.exception())  # a failure resurfaces when the take is needed

    # ------------------------------------------------------------------ materialising
    def _empty(self, *shape: int) -> torch.Tensor:
        return torch.empty(shape, dtype=torch.float32, pin_memory=self.pin_memory)

    def _chunk_tensors(self, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        ds = self.dataset
        return self._buffers.get(rows, ds.window_samples, ds.window_frames)

    def _gather(self, files: np.ndarray, frames: np.ndarray, samples: np.ndarray,
                audio: torch.Tensor, blendshapes: torch.Tensor, threads: int | None = None,
                background: bool = False) -> Any:
        """Copies the windows (files/frames/samples) into audio [n, S] and blendshapes [n, W, 52]."""
        first = files[0] if len(files) else 0
        if files[-1] == first and (files == first).all():
            take = self._take(int(first))
            audio_sources, bs_sources = [take[0]], [take[1]]
            ids = np.zeros(len(files), dtype=np.int64)
        else:
            unique, ids = np.unique(files, return_inverse=True)
            takes = [self._take(int(f)) for f in unique]
            audio_sources, bs_sources = [a for a, _ in takes], [b for _, b in takes]
            ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        gather = _core.gather_batch_async if background else _core.gather_batch
        return gather(audio_sources, bs_sources, ids, np.ascontiguousarray(samples, dtype=np.int64),
                      np.ascontiguousarray(frames, dtype=np.int64), audio.numpy(), blendshapes.numpy(),
                      1 if background else (self._copy_threads if threads is None else threads))

    def _window_chunk(self, chunk: "_Chunk", threads: int | None = None) -> list[dict[str, Any]]:
        """Gathers a chunk in this thread and returns its batches."""
        audio, blendshapes = self._chunk_tensors(len(chunk))
        self._gather(chunk.files, chunk.frames, chunk.samples, audio, blendshapes, threads=threads)
        if chunk.upcoming is not None:
            self._decode_ahead(chunk.upcoming)
        return self._views(chunk, audio, blendshapes)

    def _lane_chunk(self, chunk: list[tuple[EpochPlan, np.ndarray, np.ndarray]]) -> list[dict[str, Any]]:
        ds = self.dataset
        lanes = len(chunk[0][1])
        n = lanes * len(chunk)
        files = np.full(n, -1, dtype=np.int64)
        frames = np.full(n, -1, dtype=np.int64)
        samples = np.zeros(n, dtype=np.int64)
        valid = np.zeros(n, dtype=bool)
        for s, (plan, index, _reset) in enumerate(chunk):
            ok = index >= 0
            rows = slice(s * lanes, (s + 1) * lanes)
            valid[rows] = ok
            files[rows][ok] = plan.file[index[ok]]
            frames[rows][ok] = plan.start_frame[index[ok]]
            samples[rows][ok] = plan.start_sample[index[ok]]
        audio, blendshapes = self._chunk_tensors(n)
        if valid.all():
            self._gather(files, frames, samples, audio, blendshapes)
        else:
            rows = np.flatnonzero(valid)
            audio[torch.from_numpy(np.flatnonzero(~valid))] = 0.0
            blendshapes[torch.from_numpy(np.flatnonzero(~valid))] = 0.0
            if len(rows):
                a = self._empty(len(rows), ds.window_samples)
                b = self._empty(len(rows), ds.window_frames, _core.NUM_BLENDSHAPES)
                self._gather(files[rows], frames[rows], samples[rows], a, b)
                index_t = torch.from_numpy(rows)
                audio.index_copy_(0, index_t, a)
                blendshapes.index_copy_(0, index_t, b)
        file_t, frame_t, valid_t = torch.from_numpy(files), torch.from_numpy(frames), torch.from_numpy(valid)
        names = [self._names[f] if f >= 0 else "" for f in files.tolist()]
        batches = []
        for s, (plan, index, reset) in enumerate(chunk):
            rows = slice(s * lanes, (s + 1) * lanes)
            batch: dict[str, Any] = {
                "audio": audio[rows], "blendshapes": blendshapes[rows], "file_indices": file_t[rows],
                "start_frames": frame_t[rows], "file_names": names[rows],
                "reset": torch.from_numpy(reset.copy()), "valid": valid_t[rows],
            }
            ds._add_lane_flags(batch, plan, index)
            batches.append(batch)
        self._buffers.release(audio)
        return batches

    def _window_chunk_slow(self, chunk: list[list[tuple[EpochPlan, np.ndarray]]]) -> list[dict[str, Any]]:
        return [default_collate([self.dataset._sample(plan, i) for plan, pos in pieces for i in pos.tolist()])
                for pieces in chunk]

    def _lane_chunk_slow(self, chunk: list[tuple[EpochPlan, np.ndarray, np.ndarray]]) -> list[dict[str, Any]]:
        return [self.dataset._lane_batch(*spec) for spec in chunk]
