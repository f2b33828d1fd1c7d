"""Which engine cache entries hold which requests' KV, bounded.

Engine caches know blocks or pages, not requests; the hooks learn which
request brought which entry in and ask this map which requests have no
entry left after an eviction.

Invariants:
- ``_by_rid[r]`` and ``_by_entry[e]`` are mirror images: ``e in _by_rid[r]``
  iff ``r in _by_entry[e]``; no empty set is kept on either side.
- A request is reported evicted exactly once, when its last entry goes; it
  is then forgotten (a later ``add`` starts it afresh).
- At most ``max_requests`` requests and ``max_refs`` (request, entry) pairs
  are held. Past either cap the least recently added requests are dropped
  without being reported (``pruned`` counts them): the index keeps them
  until its own capacity or TTL ages them out, which is safe, whereas
  reporting a request that may still be cached would not be.

Costs: ``add`` is O(new entries) amortised (plus pruning), ``remove_entries``
O(entries + requests holding them), ``clear`` O(requests). Thread-safe (one
lock); only the standard library is used.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable

__all__ = ["RequestEntries"]


class RequestEntries:
    """Many-to-many map request id <-> cache entry (block id, page key...)."""

    def __init__(self, max_requests: int = 200_000, max_refs: int = 8_000_000) -> None:
        if max_requests < 1 or max_refs < 1:
            raise ValueError("max_requests and max_refs must be >= 1")
        self.max_requests = max_requests
        self.max_refs = max_refs
        self._by_rid: OrderedDict[str, set[Hashable]] = OrderedDict()
        self._by_entry: dict[Hashable, set[str]] = {}
        self._refs = 0
        self._lock = threading.Lock()
        self.counts = dict.fromkeys(("added", "evicted", "pruned"), 0)

    def __contains__(self, rid: object) -> bool:
        return rid in self._by_rid

    def __len__(self) -> int:
        return len(self._by_rid)

    def add(self, rid: str, entries: Iterable[Hashable]) -> None:
        """Record that ``rid``'s KV lives (also) in ``entries``."""
        with self._lock:
            held = self._by_rid.get(rid)
            if held is None:
                held = self._by_rid[rid] = set()
                self.counts["added"] += 1
            else:
                self._by_rid.move_to_end(rid)
            for e in entries:
                if e not in held:
                    held.add(e)
                    self._by_entry.setdefault(e, set()).add(rid)
                    self._refs += 1
            if not held:  # nothing cached for it after all
                del self._by_rid[rid]
                self.counts["added"] -= 1
            self._prune()

    def remove_entries(self, entries: Iterable[Hashable]) -> list[str]:
        """Entries left the cache; returns the requests that now have none."""
        gone: list[str] = []
        with self._lock:
            for e in entries:
                rids = self._by_entry.pop(e, None)
                if not rids:
                    continue
                for r in rids:
                    held = self._by_rid[r]
                    held.discard(e)
                    self._refs -= 1
                    if not held:
                        del self._by_rid[r]
                        gone.append(r)
            self.counts["evicted"] += len(gone)
        return gone

    def move_entry(self, src: Hashable, dst: Hashable) -> None:
        """The cache re-homed ``src``'s content to ``dst`` (same requests)."""
        with self._lock:
            rids = self._by_entry.pop(src, None)
            if not rids:
                return
            into = self._by_entry.setdefault(dst, set())
            for r in rids:
                held = self._by_rid[r]
                held.discard(src)
                if dst in held:
                    self._refs -= 1
                else:
                    held.add(dst)
                    into.add(r)

    def clear(self) -> list[str]:
        """The whole cache was dropped: every tracked request is evicted."""
        with self._lock:
            gone = list(self._by_rid)
            self._by_rid.clear()
            self._by_entry.clear()
            self._refs = 0
            self.counts["evicted"] += len(gone)
        return gone

    def _prune(self) -> None:
        # caller holds the lock; oldest-added first
        while self._by_rid and (len(self._by_rid) > self.max_requests or self._refs > self.max_refs):
            rid, held = self._by_rid.popitem(last=False)
            for e in held:
                rids = self._by_entry[e]
                rids.discard(rid)
                if not rids:
                    del self._by_entry[e]
            self._refs -= len(held)
            self.counts["pruned"] += 1

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                **self.counts,
                "requests": len(self._by_rid),
                "entries": len(self._by_entry),
                "refs": self._refs,
            }
