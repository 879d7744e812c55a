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

from . import _core
from .audio import load_audio
from .cache import load_take
from .errors import DataFormatError
from .lru import BoundedCache
from .takes import TakeTable

Take = tuple[np.ndarray, np.ndarray]  # (audio float32 [samples], blendshapes float32 [frames, 52])


class TakeStore:
    """The takes of a ``TakeTable``, loaded on demand and trimmed to their usable frames."""

    def __init__(self, table: TakeTable, *, capacity: int, pad_window: int | None = None) -> None:
        self.table = table
        self.pad_window = pad_window  # tail="pad": takes zero-padded by this many frames
        self._takes: BoundedCache[int, Take] = BoundedCache(capacity)
        self._ahead: ThreadPoolExecutor | None = None

    @property
    def capacity(self) -> int:
        return self._takes.capacity

    def require_capacity(self, takes: int) -> None:
        """Keeps at least ``takes`` takes (a reader that needs several at once asks for room)."""
        self._takes.capacity = max(self._takes.capacity, int(takes))

    def get(self, file_index: int) -> Take:
        """(audio, blendshapes) of take ``file_index``, from the store or loaded now."""
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

    def load(self, file_index: int) -> Take:
        """Loads a take without keeping it: memory-mapped from the prepared cache (filled on
        first use) or decoded; raises DataFormatError if the audio is shorter than validated."""
        wav, jsonl = self.table.pairs[file_index]
        info = self.table.infos[file_index]
        assert info is not None, "a skipped take has no windows"
        timing, cache_dir = self.table.timing, self.table.cache_dir
        if cache_dir is not None:
            audio, values = load_take(
                cache_dir, wav, jsonl, sample_rate=timing.sample_rate, target_fps=timing.target_fps
            )
        else:
            audio = load_audio(wav, timing.sample_rate)
            values = None
        needed = timing.frame_to_sample(info.usable_frames)
        if len(audio) < needed:
            raise DataFormatError(
                f"{wav}: decoded {len(audio)} samples but its header promised at least {needed} "
                "(truncated or corrupt audio found while decoding)",
                path=str(wav),
                reason="audio shorter than its header",
            )
        if values is None:
            values = _core.load_blendshapes(str(jsonl), float(timing.target_fps))[0]
        if self.pad_window is not None:
            return self.padded(audio, values, info.usable_frames)
        return audio, values[: info.usable_frames]

    def padded(self, audio: np.ndarray, values: np.ndarray, frames: int) -> Take:
        """A take cut at its last usable frame (audio at that frame's first sample) and followed
        by zeros: room for any window that starts inside the take (``tail="pad"``)."""
        timing, window = self.table.timing, int(self.pad_window or 0)
        end = timing.frame_to_sample(frames)
        padded_audio = np.zeros(end + timing.window_samples(window), dtype=np.float32)
        padded_audio[:end] = audio[:end]
        padded_values = np.zeros((frames + window, values.shape[1]), dtype=np.float32)
        padded_values[:frames] = values[:frames]
        return padded_audio, padded_values

    def __getstate__(self) -> dict[str, Any]:
        # Pickled into DataLoader workers: the decode-ahead thread stays behind (BoundedCache
        # pickles empty).
        state = self.__dict__.copy()
        state["_ahead"] = None
        return state
