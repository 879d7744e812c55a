"""Decoded takes, bounded and shared by every path that reads windows.

``TakeStore`` is the one place a take's audio and blendshapes are loaded (from the prepared
cache when there is one, else decoded from the source files) and kept: a small thread-safe
LRU in which concurrent requests for one take decode it once. The dataset's per-window path,
lanes and ``loader()``'s threads all read through it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .audio import load_audio
from .cache import TakeArrays, TakeCache, load_take
from .errors import DataFormatError
from .lru import BoundedCache
from .takes import TakeTable


class TakeStore:
    """The takes of a ``TakeTable``, loaded on demand and trimmed to their usable frames."""

    def __init__(self, table: TakeTable, *, capacity: int, pad_window: int | None = None) -> None:
        self.table = table
        self.pad_window = pad_window  # tail="pad": takes zero-padded by this many frames
        self._takes: BoundedCache[int, TakeArrays] = BoundedCache(capacity)
        self._ahead: ThreadPoolExecutor | None = None

    @property
    def capacity(self) -> int:
        return self._takes.capacity

    def require_capacity(self, takes: int) -> None:
        """Keeps at least ``takes`` takes (a reader that needs several at once asks for room)."""
        self._takes.capacity = max(self._takes.capacity, int(takes))

    def get(self, file_index: int) -> TakeArrays:
        """(audio, blendshapes, pose) of take ``file_index``, from the store or loaded now."""
        return self._takes.get_or_make(int(file_index), self.load)

    def prefetch(self, file_index: int) -> None:
        """Starts loading a take in the background (a hint: a reader reaches it soon); a
        failure resurfaces when the take is needed."""
        if file_index in self._takes:
            return
        if self._ahead is None:
            self._ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="koemorph-decode-ahead")
        future = self._ahead.submit(self.get, file_index)
        future.add_done_callback(lambda f: f.exception())

    def load(self, file_index: int) -> TakeArrays:
        """Loads a take without keeping it: memory-mapped from the prepared cache (filled on
        first use) or decoded; raises DataFormatError if the audio is shorter than validated."""
        wav, jsonl = self.table.pairs[file_index]
        info = self.table.infos[file_index]
        assert info is not None, "a skipped take has no windows"
        timing, cache_dir, labels = self.table.timing, self.table.cache_dir, self.table.labels
        source, stamps = self.table.source, self.table.stamps[file_index]
        if source.remote and cache_dir is not None and stamps is not None:  # fetched into the cache
            cache = TakeCache(cache_dir, timing.sample_rate, timing.target_fps, labels)
            audio, values, pose = cache.fill_fetched(source, source.relative(wav), source.relative(jsonl), stamps)
        elif cache_dir is not None:
            audio, values, pose = load_take(
                cache_dir, wav, jsonl, sample_rate=timing.sample_rate, target_fps=timing.target_fps, labels=labels
            )
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
        # Pickled into DataLoader workers: the decode-ahead thread stays behind (BoundedCache
        # pickles empty).
        state = self.__dict__.copy()
        state["_ahead"] = None
        return state
