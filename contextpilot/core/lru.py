"""A bounded map with least-recently-used eviction and an idle TTL.

The one container behind every per-key store of the live state: the dedup
ledger's conversations (:class:`~contextpilot.core.dedup.DedupLedger`) and
the chat sessions (:class:`~contextpilot.core.chat.ChatStore`).

Invariants: at most ``max_items`` entries; once :meth:`BoundedLRU.get` or
:meth:`BoundedLRU.expire` runs, none has been idle longer than ``ttl``
seconds. Every entry dropped (LRU, TTL or explicit) is passed to
``on_drop`` so its owner can release related state. O(1) amortised per
call. Not thread-safe: the owner locks.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

__all__ = ["BoundedLRU"]

S = TypeVar("S")


def _ignore(item: object) -> None:
    pass


class BoundedLRU(Generic[S]):
    """``max_items`` (int >= 1) and ``ttl`` (seconds > 0, or ``None``) bound
    the map; ``clock`` gives the time entries were last used."""

    def __init__(
        self,
        max_items: int,
        ttl: float | None,
        on_drop: Callable[[S], None] = _ignore,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 1:
            raise ValueError(f"max_sessions must be an int >= 1, got {max_items!r}")
        if ttl is not None and not (isinstance(ttl, (int, float)) and ttl > 0):
            raise ValueError(f"session_ttl must be > 0 seconds or None, got {ttl!r}")
        self.max_items = max_items
        self.ttl = ttl
        self._on_drop = on_drop
        self.clock = clock
        self._items: OrderedDict[str, tuple[S, float]] = OrderedDict()

    @property
    def max_sessions(self) -> int:
        return self.max_items

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def ids(self) -> list[str]:
        """Keys, least recently used first."""
        return list(self._items)

    def entries(self) -> Iterator[tuple[str, S, float]]:
        """``(key, item, last use)``, least recently used first (no use marked)."""
        for key, (item, last) in self._items.items():
            yield key, item, last

    def peek(self, key: str) -> S | None:
        """The entry ``key`` without marking it used (``None`` if absent)."""
        entry = self._items.get(key)
        return None if entry is None else entry[0]

    def last_used(self, key: str) -> float | None:
        """When ``key`` was last used (``None`` if absent); no use marked."""
        entry = self._items.get(key)
        return None if entry is None else entry[1]

    def expire(self) -> int:
        """Drop the entries idle longer than ``ttl``; returns how many."""
        if self.ttl is None:
            return 0
        horizon = self.clock() - self.ttl
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
        """The live entry ``key`` (marked used), or a new one from ``create``."""
        self.expire()
        now = self.clock()
        entry = self._items.get(key)
        if entry is not None:
            self._items[key] = (entry[0], now)
            self._items.move_to_end(key)
            return entry[0]
        item = create()
        self._items[key] = (item, now)
        self.trim()
        return item

    def put(self, key: str, item: S, last: float) -> None:
        """Add or replace ``key`` as the most recently used entry, last used
        at ``last`` (a replaced item is not passed to ``on_drop``): for
        loading saved state in LRU order. Bounds apply at :meth:`trim`."""
        self._items.pop(key, None)
        self._items[key] = (item, last)

    def trim(self) -> None:
        """Drop least recently used entries beyond ``max_items``."""
        while len(self._items) > self.max_items:
            _, (old, _) = self._items.popitem(last=False)
            self._on_drop(old)

    def drop_oldest(self) -> S:
        """Drop the least recently used entry (there must be one)."""
        _, (item, _) = self._items.popitem(last=False)
        self._on_drop(item)
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
