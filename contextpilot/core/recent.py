"""Recently sent requests, searchable by shared blocks.

Online ordering asks: which past requests look like this one, and which of
its blocks did they hold? Blocks those neighbours also held are likely to
be wanted again by the next similar request, so they go first.

Invariants:

* at most ``capacity`` requests are kept (a ring; the oldest is forgotten);
* each block key's posting list holds at most ``max_posting`` slots, newest
  last; entries whose slot was reused are skipped when read, and a sweep
  once per ``capacity`` additions drops them, so the posting map only holds
  keys of the last ``2 * capacity`` requests (amortised O(1) per add);
* keys are stable block keys, so the store never grows with distinct
  blocks beyond those live in the ring.

Cost: :meth:`add` O(len(blocks)); :meth:`scores` O(len(blocks) *
max_posting + top * len(block)). Not thread-safe: the owner locks.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Mapping
from typing import Any

from contextpilot.core.persist import as_int, as_list

__all__ = ["RecentRequests"]


class RecentRequests:
    def __init__(self, capacity: int = 4096, max_posting: int = 16) -> None:
        if capacity < 1 or max_posting < 1:
            raise ValueError("capacity and max_posting must be >= 1")
        self.capacity = capacity
        self.max_posting = max_posting
        self.clear()

    def clear(self) -> None:
        self._slots: list[frozenset[int] | None] = [None] * self.capacity
        self._gen = [0] * self.capacity
        self._next = 0
        self._count = 0
        self._adds = 0
        self._post: dict[int, deque[tuple[int, int]]] = {}

    def __len__(self) -> int:
        return self._count

    def export(self) -> list[list[int]]:
        """The kept requests' keys (each sorted), oldest first. O(kept keys)."""
        n = self.capacity
        out = []
        for i in range(n):  # oldest first: the ring starts at the next slot to overwrite
            slot = self._slots[(self._next + i) % n]
            if slot is not None:
                out.append(sorted(slot))
        return out

    def load(self, rows: Any) -> None:
        """Replace the contents by :meth:`export` rows (all or nothing: a bad
        row raises :class:`~contextpilot.core.persist.SnapshotError`); only
        the newest ``capacity`` rows are kept."""
        parsed = [
            [as_int(k, f"recent[{i}][{j}]") for j, k in enumerate(as_list(row, f"recent[{i}]"))]
            for i, row in enumerate(as_list(rows, "recent"))
        ]
        self.clear()
        for row in parsed[-self.capacity :]:
            self.add(row)

    def add(self, keys: Iterable[int]) -> None:
        slot = self._next
        self._next = (slot + 1) % self.capacity
        self._gen[slot] += 1
        if self._slots[slot] is None:
            self._count += 1
        ks = frozenset(keys)
        self._slots[slot] = ks
        entry = (slot, self._gen[slot])
        post = self._post
        for k in ks:
            q = post.get(k)
            if q is None:
                q = post[k] = deque(maxlen=self.max_posting)
            q.append(entry)
        self._adds += 1
        if self._adds >= self.capacity:
            self._prune()

    def _prune(self) -> None:
        self._adds = 0
        gen = self._gen
        for k in list(self._post):
            q = deque((e for e in self._post[k] if gen[e[0]] == e[1]), maxlen=self.max_posting)
            if q:
                self._post[k] = q
            else:
                del self._post[k]

    def scores(self, keys: Mapping[int, float], top: int = 2) -> Counter[int]:
        """Score each key by how much the ``top`` most similar past requests
        (similarity: summed weight of shared keys, ``keys`` maps key ->
        weight) held it, weighted by their similarity."""
        gen, slots = self._gen, self._slots
        sim: Counter[int] = Counter()
        for k, w in keys.items():
            q = self._post.get(k)
            if q:
                for slot, g in q:
                    if gen[slot] == g:
                        sim[slot] += w  # type: ignore[assignment]  # float weights in a Counter, on purpose
        out: Counter[int] = Counter()
        for slot, s in sim.most_common(top):
            members = slots[slot]
            assert members is not None
            for k in members:
                if k in keys:
                    out[k] += s
        return out
