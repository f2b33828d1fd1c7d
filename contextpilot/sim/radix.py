"""Block-level radix prefix cache with LRU eviction (SGLang-like).

A prompt is a sequence of hashable block keys, each with a token weight.
The cache is a tree whose nodes are blocks; a prompt hits the tokens of the
longest path from the root that matches its leading blocks.

Invariants:

* ``used`` equals the sum of the weights of all nodes in the tree;
* after each :meth:`serve`, ``used <= capacity`` (a prompt longer than the
  capacity keeps only the part that fits);
* only leaves are evicted, least recently used first; a node's access time
  is never older than any of its descendants', so eviction is bottom-up.

Cost: O(len(prompt)) per prompt plus O(log n) per evicted node.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Hashable, Sequence

__all__ = ["RadixCacheSim"]


class _Node:
    __slots__ = ("key", "weight", "parent", "children", "last", "alive")

    def __init__(self, key: Hashable, weight: int, parent: _Node | None) -> None:
        self.key = key
        self.weight = weight
        self.parent = parent
        self.children: dict[Hashable, _Node] = {}
        self.last = 0
        self.alive = True


class RadixCacheSim:
    """Prefix cache over blocks. ``capacity`` in tokens; ``None`` = unbounded."""

    def __init__(self, capacity: float | None = None) -> None:
        if capacity is not None and (math.isnan(capacity) or capacity < 0):
            raise ValueError(f"capacity must be >= 0 or None, got {capacity!r}")
        self.capacity = math.inf if capacity is None else capacity
        self.root = _Node(None, 0, None)
        self.used = 0
        self.clock = 0
        self.hit_tokens = 0
        self.total_tokens = 0
        self.evicted_tokens = 0
        self._heap: list[tuple[int, int, _Node]] = []
        self._seq = 0

    @property
    def hit_ratio(self) -> float:
        return self.hit_tokens / self.total_tokens if self.total_tokens else 0.0

    def match(self, keys: Sequence[Hashable], weights: Sequence[int]) -> int:
        """Tokens of the longest cached prefix of the prompt (no side effects)."""
        node, hit = self.root, 0
        for k, w in zip(keys, weights):
            child = node.children.get(k)
            if child is None:
                break
            node = child
            hit += w
        return hit

    def serve(self, keys: Sequence[Hashable], weights: Sequence[int]) -> int:
        """Run one prompt: count its hit, cache it whole, evict to capacity.

        Returns the number of prompt tokens found in the cache.
        """
        if len(keys) != len(weights):
            raise ValueError("keys and weights differ in length")
        self.clock += 1
        t = self.clock
        node, hit, matched = self.root, 0, True
        for k, w in zip(keys, weights):
            child = node.children.get(k) if matched else None
            if child is not None:
                hit += w
            else:
                matched = False
                child = _Node(k, w, node)
                node.children[k] = child
                self.used += w
            child.last = t
            node = child
        if node is not self.root:
            self._push(node)
        self.hit_tokens += hit
        self.total_tokens += sum(weights)
        if self.used > self.capacity:
            self._evict()
        return hit

    def _push(self, node: _Node) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (node.last, self._seq, node))

    def _evict(self) -> None:
        heap = self._heap
        while self.used > self.capacity and heap:
            last, _, node = heapq.heappop(heap)
            if not node.alive or node.children or node.last != last:
                continue  # stale entry
            parent = node.parent
            assert parent is not None  # the root is never in the heap
            del parent.children[node.key]
            node.alive = False
            self.used -= node.weight
            self.evicted_tokens += node.weight
            if parent is not self.root and not parent.children:
                self._push(parent)
        if not heap and self.used > self.capacity:  # pragma: no cover - invariant
            raise RuntimeError("cache accounting out of sync")
