"""Bounded map of live chat sessions (LRU cap + idle TTL).

Invariants: at most ``max_sessions`` sessions; once :meth:`SessionStore.get`
or :meth:`SessionStore.expire` runs, none has been idle longer than ``ttl``
seconds. Every session dropped (LRU, TTL or explicit) is passed to
``on_drop`` so its owner can release related state (the pilot's dedup
conversation). O(1) amortised per call. Not thread-safe: the owner locks.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["SessionStore"]

S = TypeVar("S")


class SessionStore(Generic[S]):
    def __init__(
        self,
        max_sessions: int,
        ttl: float | None,
        on_drop: Callable[[S], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(max_sessions, bool) or not isinstance(max_sessions, int) or max_sessions < 1:
            raise ValueError(f"max_sessions must be an int >= 1, got {max_sessions!r}")
        if ttl is not None and not (isinstance(ttl, (int, float)) and ttl > 0):
            raise ValueError(f"session_ttl must be > 0 seconds or None, got {ttl!r}")
        self.max_sessions = max_sessions
        self.ttl = ttl
        self._on_drop = on_drop
        self._clock = clock
        self._items: OrderedDict[str, tuple[S, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def ids(self) -> list[str]:
        return list(self._items)

    def expire(self) -> int:
        if self.ttl is None:
            return 0
        horizon = self._clock() - self.ttl
        dropped = 0
        while self._items:
            key, (item, last) = next(iter(self._items.items()))
            if last > horizon:
                break
            del self._items[key]
            self._on_drop(item)
            dropped += 1
        return dropped

    def get(self, key: str, create: Callable[[], S]) -> S:
        """The live session ``key`` (marked used), or a new one from ``create``."""
        self.expire()
        now = self._clock()
        entry = self._items.get(key)
        if entry is not None:
            self._items[key] = (entry[0], now)
            self._items.move_to_end(key)
            return entry[0]
        item = create()
        self._items[key] = (item, now)
        while len(self._items) > self.max_sessions:
            _, (old, _) = self._items.popitem(last=False)
            self._on_drop(old)
        return item

    def drop(self, key: str) -> bool:
        entry = self._items.pop(key, None)
        if entry is None:
            return False
        self._on_drop(entry[0])
        return True

    def clear(self) -> None:
        while self._items:
            _, (item, _) = self._items.popitem(last=False)
            self._on_drop(item)
