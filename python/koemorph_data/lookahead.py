"""Takes loaded ahead of the reader that needs them (the datasets' ``prefetch_takes``).

A reader walks items (the window pieces of one take, lane steps, chunks of batches), each of
which may start takes. ``TakeLookahead.follow`` yields the same items; before handing one
out, it peeks at the items after it (at most ``HORIZON`` of them, indices only, no data) for
the next ``prefetch_takes`` takes they start and asks the store to load those in its
background threads. The store keeps them (its capacity has room for them), so the reader
finds them loaded; a load that failed raises its error when the reader reaches that take.
This is the one place that decides what is prefetched: the dataset's iterator (in a DataLoader
worker or in-process) and ``loader()`` both wrap their streams with it.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import numpy as np

from .plan import EpochPlan
from .store import TakeStore

T = TypeVar("T")

#: Items peeked at most (a lane step or a chunk of batches each): enough to find the next
#: takes of long takes, bounded for streams where they start far ahead.
HORIZON = 1024


def run_starts(plan: EpochPlan, positions: np.ndarray) -> list[int]:
    """The takes plan windows ``positions`` start, in order (consecutive repeats once)."""
    if len(positions) == 0:
        return []
    files = np.asarray(plan.file[positions])
    return files[np.concatenate(([True], files[1:] != files[:-1]))].tolist()


def lane_starts(step: tuple[EpochPlan, np.ndarray, np.ndarray]) -> list[int]:
    """The takes a lane step starts (its slots with ``reset`` set)."""
    plan, index, reset = step
    started = index[(index >= 0) & reset]
    return np.asarray(plan.file[started]).tolist() if len(started) else []


def take_pieces(runs: Iterable[tuple[EpochPlan, np.ndarray]]) -> Iterator[tuple[int, EpochPlan, np.ndarray]]:
    """The same (plan, positions) runs cut where the take changes: (take, plan, positions) of
    one take each."""
    for plan, positions in runs:
        if len(positions) == 0:
            continue
        files = np.asarray(plan.file[positions])
        bounds = np.flatnonzero(files[1:] != files[:-1]) + 1
        takes = files[np.concatenate(([0], bounds))].tolist()
        for take, lo, hi in zip(takes, [0, *bounds.tolist()], [*bounds.tolist(), len(positions)]):
            yield take, plan, positions[lo:hi]


def piece_start(piece: tuple[int, EpochPlan, np.ndarray]) -> list[int]:
    """The take a ``take_pieces`` piece starts."""
    return [piece[0]]


class TakeLookahead:
    """Prefetches, for a stream of items, the takes the next items start (see the module)."""

    def __init__(self, store: TakeStore, *, horizon: int = HORIZON) -> None:
        self.store = store
        self.depth = store.prefetch_takes
        self.horizon = int(horizon)

    def follow(self, items: Iterable[T], starts: Callable[[T], list[int]], *, first_alone: bool = False) -> Iterator[T]:
        """``items``, with the next ``depth`` takes they start loading ahead of the reader.

        :param starts: the takes an item starts, in order.
        :param first_alone: hand out the first item before peeking (it stays as quick to
            come as without prefetching, e.g. ``loader()``'s first batch).
        """
        if self.depth <= 0:
            yield from items
            return
        source = iter(items)
        buffered: deque[T] = deque()
        upcoming: deque[tuple[int, int]] = deque()  # (item number, take) of the starts ahead
        counts = {"pulled": 0, "served": 0}
        last = [None]

        def pull() -> bool:
            for item in source:
                for take in starts(item):
                    if take != last[0]:  # a take continued by the next item is not started again
                        upcoming.append((counts["pulled"], take))
                        last[0] = take
                buffered.append(item)
                counts["pulled"] += 1
                return True
            return False

        self.store.cancel_prefetch()  # errors kept from an earlier stream are not this one's
        try:
            if first_alone:
                for first in itertools.islice(source, 1):
                    last[0] = (starts(first) or [None])[-1]
                    counts["pulled"] = counts["served"] = 1
                    yield first
            more = True
            while buffered or (more := pull()):
                item = buffered.popleft()
                while upcoming and upcoming[0][0] <= counts["served"]:
                    upcoming.popleft()
                counts["served"] += 1
                ahead = self._next_takes(upcoming)
                while len(ahead) < self.depth and more and len(buffered) < self.horizon:
                    more = pull()
                    ahead = self._next_takes(upcoming)
                for take in ahead:
                    self.store.prefetch(take)
                yield item
        finally:
            self.store.cancel_prefetch()

    def _next_takes(self, upcoming: deque[tuple[int, int]]) -> list[int]:
        """The first ``depth`` distinct takes of ``upcoming``."""
        found: list[int] = []
        for _, take in upcoming:
            if take not in found:
                found.append(take)
                if len(found) == self.depth:
                    break
        return found
