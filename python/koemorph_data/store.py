"""Decoded takes, bounded and shared by every path that reads windows.

``TakeStore`` is the one place a take's audio and blendshapes are loaded (from the prepared
cache when there is one, else decoded from the source files) and kept: a small thread-safe
LRU in which concurrent requests for one take decode it once. The dataset's per-window path,
lanes and ``loader()``'s threads all read through it.

``prefetch`` loads a take in the background (``prefetch_takes`` threads; ``lookahead.py``
says which takes): into the same LRU, so prefetched takes cost no memory beyond its capacity.
A background load that fails keeps its error, which ``get`` raises when the take is needed.
"""

from __future__ import annotations

import os
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from .audio import load_audio
from .cache import TakeArrays, TakeCache
from .errors import DataFormatError
from .lru import BoundedCache
from .takes import TakeTable


class TakeStore:
    """The takes of a ``TakeTable``, loaded on demand and trimmed to their usable frames.

    :param capacity: takes kept.
    :param pad_window: ``tail="pad"``: takes zero-padded by this many frames.
    :param cache_limit: bytes the prepared cache may hold (None: unbounded).
    :param prefetch_takes: background threads for ``prefetch`` (0: ``prefetch`` does nothing).
    """

    def __init__(
        self,
        table: TakeTable,
        *,
        capacity: int,
        pad_window: int | None = None,
        cache_limit: int | None = None,
        prefetch_takes: int = 0,
    ) -> None:
        self.table = table
        self.pad_window = pad_window
        self.prefetch_takes = int(prefetch_takes)
        self.cache: TakeCache | None = None
        if table.cache_dir is not None:
            timing = table.timing
            self.cache = TakeCache(
                table.cache_dir, timing.sample_rate, timing.target_fps, table.labels, limit=cache_limit
            )
        self._takes: BoundedCache[int, TakeArrays] = BoundedCache(capacity)
        self._forget_background()
        _STORES.add(self)

    def _forget_background(self) -> None:
        """No background loads (a new store, or this store in a forked or spawned worker)."""
        self._ahead: ThreadPoolExecutor | None = None
        self._queued: dict[int, Future] = {}  # prefetches not finished yet
        self._failed: dict[int, BaseException] = {}  # prefetches that failed, until the take is needed

    @property
    def capacity(self) -> int:
        return self._takes.capacity

    def require_capacity(self, takes: int) -> None:
        """Keeps at least ``takes`` takes (a reader that needs several at once asks for room)."""
        self._takes.capacity = max(self._takes.capacity, int(takes))

    def __contains__(self, file_index: int) -> bool:
        """The take is kept (or being loaded)."""
        return int(file_index) in self._takes

    def get(self, file_index: int) -> TakeArrays:
        """(audio, blendshapes, pose) of take ``file_index``, from the store or loaded now
        (the error of a failed background load of it is raised here)."""
        file_index = int(file_index)
        queued = self._queued.get(file_index)
        if queued is not None:
            queued.cancel()  # still waiting for a thread: loaded right here instead
        return self._takes.get_or_make(file_index, self._load_or_raise)

    def _load_or_raise(self, file_index: int) -> TakeArrays:
        failed = self._failed.pop(file_index, None)
        if failed is not None:
            raise failed
        return self.load(file_index)

    def prefetch(self, file_index: int) -> None:
        """Starts loading a take in the background (a reader reaches it soon); a failure is
        raised by ``get`` when the take is needed."""
        file_index = int(file_index)
        if self.prefetch_takes <= 0 or file_index in self._queued or file_index in self._failed:
            return
        if file_index in self._takes:
            return
        if self._ahead is None:
            self._ahead = ThreadPoolExecutor(max_workers=self.prefetch_takes, thread_name_prefix="koemorph-take-ahead")
        try:
            future = self._ahead.submit(self._load_ahead, file_index)
        except RuntimeError:  # shut down by another stream's end meanwhile: a hint, skipped
            return
        self._queued[file_index] = future
        future.add_done_callback(lambda _f: self._queued.pop(file_index, None))

    def _load_ahead(self, file_index: int) -> None:
        try:
            self._takes.get_or_make(file_index, self._load_keeping_error)
        except Exception:
            pass  # kept in _failed: raised when the take is needed

    def _load_keeping_error(self, file_index: int) -> TakeArrays:
        try:
            return self.load(file_index)
        except Exception as exc:
            # Kept before the take's gate opens: a reader waiting on this load finds it.
            self._failed[file_index] = exc
            raise

    def cancel_prefetch(self) -> None:
        """Drops the background loads not started yet and the errors kept, and lets the threads
        end once idle (a stream ended: no thread of ours outlives it, e.g. into a fork)."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.shutdown(wait=False, cancel_futures=True)
        self._failed.clear()

    def load(self, file_index: int) -> TakeArrays:
        """Loads a take without keeping it: memory-mapped from the prepared cache (filled on
        first use) or decoded; raises DataFormatError if the audio is shorter than validated."""
        wav, jsonl = self.table.pairs[file_index]
        info = self.table.infos[file_index]
        assert info is not None, "a skipped take has no windows"
        timing, labels = self.table.timing, self.table.labels
        source, stamps, cache = self.table.source, self.table.stamps[file_index], self.cache
        if source.remote and cache is not None and stamps is not None:  # fetched into the cache
            audio, values, pose = cache.fill_fetched(source, source.relative(wav), source.relative(jsonl), stamps)
        elif cache is not None:
            audio, values, pose = cache.load(wav, jsonl)
        else:
            audio = load_audio(wav, timing.sample_rate)
            values = pose = None
        needed = timing.frame_to_sample(info.usable_frames)
        if len(audio) < needed:
            raise DataFormatError(
                f"{wav}: decoded {len(audio)} samples but its header promised at least {needed} "
                "(truncated or corrupt audio found while decoding)",
                path=str(wav),
                reason="audio shorter than its header",
            )
        if values is None:
            values, _fps, _rows, pose = labels.load(jsonl, timing.target_fps)
        pose = pose if labels.pose else None
        if self.pad_window is not None:
            return self.padded(audio, values, pose, info.usable_frames)
        usable = info.usable_frames
        return TakeArrays(audio, values[:usable], None if pose is None else pose[:usable])

    def padded(self, audio: np.ndarray, values: np.ndarray, pose: np.ndarray | None, frames: int) -> TakeArrays:
        """A take cut at its last usable frame (audio at that frame's first sample) and followed
        by zeros: room for any window that starts inside the take (``tail="pad"``)."""
        timing, window = self.table.timing, int(self.pad_window or 0)
        end = timing.frame_to_sample(frames)
        padded_audio = np.zeros(end + timing.window_samples(window), dtype=np.float32)
        padded_audio[:end] = audio[:end]

        def pad_track(track: np.ndarray) -> np.ndarray:
            out = np.zeros((frames + window, track.shape[1]), dtype=np.float32)
            out[:frames] = track[:frames]
            return out

        return TakeArrays(padded_audio, pad_track(values), None if pose is None else pad_track(pose))

    def __getstate__(self) -> dict[str, Any]:
        # Pickled into DataLoader workers: the background threads and their state stay behind
        # (BoundedCache pickles empty).
        state = self.__dict__.copy()
        for name in ("_ahead", "_queued", "_failed"):
            del state[name]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._forget_background()
        _STORES.add(self)


_STORES: weakref.WeakSet[TakeStore] = weakref.WeakSet()


def _forget_after_fork() -> None:
    # A forked DataLoader worker inherits none of the parent's threads: its stores start
    # without background loads (their futures and locks belong to the parent).
    for store in list(_STORES):
        store._forget_background()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
