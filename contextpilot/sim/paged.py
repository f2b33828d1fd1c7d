"""Paged prefix cache with hash chains and LRU (vLLM-like).

The prompt's tokens are cut into fixed-size pages; a page is identified by
the hash of its parent page's hash and its own content, so a page can only
hit when everything before it matches too. Only full pages are cached. A
prompt hits its longest run of leading pages present in the cache.

Blocks carry no real tokens here: a block ``k`` of weight ``w`` stands for
tokens ``(k, 0) .. (k, w-1)``, so a page's content is the list of block
segments ``(k, start, end)`` it covers.

Invariants: ``len(pages) <= capacity // page_tokens`` after each
:meth:`serve`; eviction takes the least recently used page, and among pages
touched by the same prompt the deepest first (vLLM frees a request's blocks
tail first). Cost: O(len(prompt) + tokens / page_tokens) per prompt.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Hashable, Sequence

__all__ = ["PagedCacheSim"]


class PagedCacheSim:
    def __init__(self, capacity: float | None = None, page_tokens: int = 16) -> None:
        if page_tokens < 1:
            raise ValueError(f"page_tokens must be >= 1, got {page_tokens!r}")
        if capacity is not None and (math.isnan(capacity) or capacity < 0):
            raise ValueError(f"capacity must be >= 0 or None, got {capacity!r}")
        self.page_tokens = page_tokens
        self.max_pages = math.inf if capacity is None else int(capacity // page_tokens)
        self.pages: dict[int, tuple[int, int]] = {}  # hash -> (last, depth)
        self._heap: list[tuple[int, int, int]] = []  # (last, -depth, hash)
        self.clock = 0
        self.hit_tokens = 0
        self.total_tokens = 0

    @property
    def hit_ratio(self) -> float:
        return self.hit_tokens / self.total_tokens if self.total_tokens else 0.0

    def page_hashes(self, keys: Sequence[Hashable], weights: Sequence[int]) -> list[int]:
        """Chain hash of every full page of the prompt."""
        size = self.page_tokens
        out: list[int] = []
        parent = 0
        segs: list[tuple[Hashable, int, int]] = []
        fill = 0
        for k, w in zip(keys, weights):
            pos = 0
            while pos < w:
                take = min(w - pos, size - fill)
                segs.append((k, pos, pos + take))
                pos += take
                fill += take
                if fill == size:
                    parent = hash((parent, tuple(segs)))
                    out.append(parent)
                    segs, fill = [], 0
        return out

    def serve(self, keys: Sequence[Hashable], weights: Sequence[int]) -> int:
        """Run one prompt; returns its hit tokens (whole leading pages)."""
        self.clock += 1
        t = self.clock
        hashes = self.page_hashes(keys, weights)
        hit_pages = 0
        for h in hashes:
            if h not in self.pages:
                break
            hit_pages += 1
        for depth, h in enumerate(hashes):
            self.pages[h] = (t, depth)
            heapq.heappush(self._heap, (t, -depth, h))
        hit = hit_pages * self.page_tokens
        self.hit_tokens += hit
        self.total_tokens += sum(weights)
        heap = self._heap
        while len(self.pages) > self.max_pages and heap:
            last, negd, h = heapq.heappop(heap)
            if self.pages.get(h) == (last, -negd):
                del self.pages[h]
        return hit
