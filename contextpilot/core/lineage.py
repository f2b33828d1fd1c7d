"""Conversations named by request chains (the 0.5.0 ``parent_request_ids`` style).

A client that never names a conversation can still deduplicate across
turns: it passes, for each context, the request id of the previous turn
(its *parent*), or ``None`` to start a conversation. This map remembers
which conversation each request id belongs to, so a parent id resolves to
the conversation of its whole chain; the dedup state itself stays in the
:class:`~contextpilot.core.dedup.DedupLedger` under that conversation id.

Invariants: at most ``max_requests`` ids, none idle longer than ``ttl``
seconds once looked up or expired (a :class:`~contextpilot.core.lru.BoundedLRU`).
An unknown or expired parent starts a new conversation: no hint then
points at text the caller may not have sent. Resolving a parent touches
it. O(1) per id. Not thread-safe: the owning pilot locks.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from contextpilot.core.ids import normalize_request_id
from contextpilot.core.lru import BoundedLRU
from contextpilot.core.persist import SnapshotError

__all__ = ["RequestLineage"]


class RequestLineage:
    """request id -> conversation id, bounded by ``max_requests`` and ``ttl``."""

    def __init__(
        self,
        max_requests: int = 100_000,
        ttl: float | None = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._map: BoundedLRU[str] = BoundedLRU(max_requests, ttl, clock=clock)

    def __len__(self) -> int:
        return len(self._map)

    @property
    def max_requests(self) -> int:
        return self._map.max_items

    @property
    def ttl(self) -> float | None:
        return self._map.ttl

    def conversation_of(self, parent: str | None) -> str | None:
        """The conversation ``parent`` belongs to, or None (unknown, expired or None)."""
        if parent is None:
            return None
        self._map.expire()
        key = normalize_request_id(parent)
        if key not in self._map:
            return None
        return self._map.get(key, str)  # present: marks it used

    def resolve(self, parents: Sequence[str | None]) -> list[str]:
        """One conversation per parent: the parent's, or a fresh ``conv-…`` id."""
        return [self.conversation_of(p) or f"conv-{uuid.uuid4().hex[:16]}" for p in parents]

    def link(self, request_ids: Sequence[str], conversations: Sequence[str]) -> None:
        """Remember that each request continues its conversation (empty ids skipped)."""
        now = self._map.clock()
        for rid, conv in zip(request_ids, conversations):
            if rid:
                self._map.put(normalize_request_id(rid), conv, now)
        self._map.trim()

    def clear(self) -> None:
        self._map.clear()

    def empty_like(self) -> RequestLineage:
        """A new, empty map with the same bounds and clock."""
        return RequestLineage(self._map.max_items, self._map.ttl, self._map.clock)

    def export(self) -> list[list[Any]]:
        """``[[request_id, conversation_id, idle_seconds], ...]`` oldest first."""
        now = self._map.clock()
        return [[rid, conv, round(now - last, 3)] for rid, conv, last in self._map.entries()]

    def load(self, rows: Any, *, downtime: float = 0.0) -> None:
        """Replace the contents by :meth:`export` rows (ages grow by ``downtime``);
        a malformed row raises :class:`SnapshotError` before anything changes."""
        if rows is None:
            rows = []
        if not isinstance(rows, list):
            raise SnapshotError("lineage: expected a list")
        parsed = []
        for i, row in enumerate(rows):
            if (
                not isinstance(row, list)
                or len(row) != 3
                or not all(isinstance(x, str) and x for x in row[:2])
                or isinstance(row[2], bool)
                or not isinstance(row[2], (int, float))
                or row[2] < 0
            ):
                raise SnapshotError(f"lineage[{i}]: expected [request_id, conversation_id, idle_seconds]")
            parsed.append(row)
        now = self._map.clock()
        self._map.clear()
        for rid, conv, idle in parsed:
            self._map.put(rid, conv, now - idle - downtime)
        self._map.expire()
        self._map.trim()
