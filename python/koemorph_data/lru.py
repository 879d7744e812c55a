"""A small thread-safe LRU, the one cache shape the package uses (plans, decoded takes)."""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """A thread-safe LRU of at most ``capacity`` values; ``get_or_make`` makes a missing value
    once even when several threads ask for it at the same time."""

    def __init__(self, capacity: int) -> None:
        self.capacity = int(capacity)
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()
        self._making: dict[K, threading.Lock] = {}
        _LIVE.add(self)

    def __contains__(self, key: K) -> bool:
        with self._lock:
            return key in self._items or key in self._making

    def __len__(self) -> int:
        return len(self._items)

    def get_or_make(self, key: K, make: Callable[[K], V]) -> V:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            gate = self._making.setdefault(key, threading.Lock())
        with gate:
            with self._lock:
                if key in self._items:
                    return self._items[key]
            try:
                value = make(key)
            except BaseException:
                with self._lock:
                    self._making.pop(key, None)
                raise
            with self._lock:
                self._items[key] = value
                self._making.pop(key, None)
                while len(self._items) > self.capacity:
                    self._items.popitem(last=False)
        return value

    def __reduce__(self):
        # Pickled into DataLoader workers: the contents and the locks stay behind.
        return (BoundedCache, (self.capacity,))


_LIVE: weakref.WeakSet[BoundedCache] = weakref.WeakSet()


def _fresh_locks_after_fork() -> None:
    # A forked child (a DataLoader worker) inherits the values but none of the parent's
    # threads: a lock or a gate one of them held at the fork would never be released.
    for cache in list(_LIVE):
        cache._lock = threading.Lock()
        cache._making = {}


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_locks_after_fork)
