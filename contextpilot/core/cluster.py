"""Greedy agglomeration of requests into a prefix-sharing forest.

Each request is a set of planning ids (distinct within the request) with
token weights. Merging two clusters creates a node whose *intersection* is
the blocks every member holds; emitting the forest depth-first with each
node's new intersection blocks first makes every member share that node's
blocks as a prompt prefix. With requests run in that order, each internal
node ``v`` saves exactly ``w(I(v))`` prompt tokens (the first request of its
second subtree reuses them), so the forest's savings are ``sum w(I(v))``
over internal nodes.

The builder merges, greedily, the pair of clusters with the largest
intersection weight. Intersection weight is *reducible* (a merged cluster
is never closer to a third one than its parts were), so a lazy max-heap is
exact: an entry's priority may be stale, never too low once verified.

Candidate pairs come from the block -> requests inverted index, never an
all-pairs matrix: short posting lists pair every member, long ones only
neighbours in a similarity sort (see :func:`candidate_edges`); each request
keeps its ``k`` best candidates.

Invariants of :class:`Forest`:

* nodes ``0 .. n_leaves-1`` are the requests; node ``n_leaves + j`` is the
  j-th merge, with children ``left[j]`` and ``right[j]`` created earlier;
* ``inter[v]`` is the intersection of the sets of all leaves under ``v``,
  so ``inter[parent] <= inter[child]``;
* every node is in exactly one tree; ``roots`` lists the trees.

Cost: O(P log P) numpy work for P posting entries, then O(N k log N)
Python work for N requests.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Forest", "build_forest", "candidate_edges"]

#: Pairs generated from posting lists per candidate search (memory bound).
PAIR_BUDGET = 4_000_000
#: Posting lists too long for the budget pair each request with this many
#: followers in each similarity sort.
WINDOW = 3
#: Rounds of candidate search among the remaining roots.
MAX_PASSES = 6


@dataclass
class Forest:
    n_leaves: int
    left: list[int]
    right: list[int]
    inter: list[frozenset[int]]
    roots: list[int]

    def children(self, v: int) -> tuple[int, int] | None:
        if v < self.n_leaves:
            return None
        j = v - self.n_leaves
        return self.left[j], self.right[j]

    def savings(self, weights: Sequence[float]) -> float:
        """Tokens saved at unbounded cache: ``sum w(I(v))`` over merges."""
        n = self.n_leaves
        return float(sum(sum(weights[b] for b in self.inter[v]) for v in range(n, len(self.inter))))


def _csr(sets: Sequence[frozenset[int]]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(s) for s in sets), dtype=np.int64, count=len(sets))
    rows = np.repeat(np.arange(len(sets), dtype=np.int64), lengths)
    cols = np.fromiter((b for s in sets for b in s), dtype=np.int64, count=int(lengths.sum()))
    return rows, cols


def _full_pair_limit(lens: np.ndarray, budget: int) -> int:
    """Largest posting length whose lists can all be paired exhaustively
    while the total pair count (windowed lists included) stays in budget."""
    if not len(lens):
        return 1
    ls = np.sort(lens)
    full = np.cumsum(ls * (ls - 1) // 2)
    windowed = WINDOW * (ls.sum() - np.cumsum(ls))
    ok = np.flatnonzero(full + windowed <= budget)
    return int(ls[ok[-1]]) if len(ok) else 1


def _posting_pairs(
    rows: np.ndarray, cols: np.ndarray, key: np.ndarray, limit: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (a, b, block) from posting lists sorted by ``key``: every pair
    in lists of length <= ``limit``, neighbours within ``WINDOW`` in longer
    ones. Work is proportional to the pairs produced."""
    order = np.lexsort((key[rows], cols))
    r, c = rows[order], cols[order]
    starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
    lens = np.diff(np.r_[starts, len(c)])
    pos = np.arange(len(c)) - np.repeat(starts, lens)
    plen = np.repeat(lens, lens)
    reach = np.where(plen <= limit, plen - 1 - pos, np.minimum(WINDOW, plen - 1 - pos))
    active = np.flatnonzero(reach > 0)
    pa, pb, pc = [], [], []
    off = 1
    while len(active):
        pa.append(r[active])
        pb.append(r[active + off])
        pc.append(c[active])
        off += 1
        active = active[reach[active] >= off]
    if not pa:
        e = np.zeros(0, dtype=np.int64)
        return e, e, e
    return np.concatenate(pa), np.concatenate(pb), np.concatenate(pc)


def _min_hash_key(rows: np.ndarray, cols: np.ndarray, n: int, n_blocks: int, seed: int) -> np.ndarray:
    """Rank of each request in a sort by two min-hashes of its blocks:
    requests with a high Jaccard overlap tend to share both."""
    rng = np.random.default_rng(seed)
    keys = []
    for _ in range(2):
        perm = rng.permutation(n_blocks)
        mh = np.full(n, n_blocks, dtype=np.int64)
        np.minimum.at(mh, rows, perm[cols])
        keys.append(mh)
    order = np.lexsort((keys[1], keys[0]))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    return rank


def _popular_key(rows: np.ndarray, cols: np.ndarray, n: int, freq: np.ndarray) -> np.ndarray:
    """Rank of each request in a sort by its three most frequent blocks."""
    o = np.lexsort((cols, -freq[cols], rows))
    r, c = rows[o], cols[o]
    first = np.flatnonzero(np.r_[True, r[1:] != r[:-1]])
    lens = np.diff(np.r_[first, len(r)])
    top = np.full((n, 3), -1, dtype=np.int64)
    for j in range(3):
        has = lens > j
        top[r[first[has]], j] = c[first[has] + j]
    order = np.lexsort((top[:, 2], top[:, 1], top[:, 0]))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    return rank


def candidate_edges(
    sets: Sequence[frozenset[int]],
    weights: np.ndarray,
    k: int,
    budget: int = PAIR_BUDGET,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Up to ``k`` likely best partners per request, with overlap estimates.

    Pairs come from the block posting lists (requests holding a block):
    lists short enough to fit ``budget`` pairs in total are paired
    exhaustively, which makes every estimate exact on small batches; longer
    lists pair each request with its ``WINDOW`` followers in two similarity
    sorts (by min-hash and by most popular blocks). A pair's estimate sums
    the weights of the blocks that paired it, so it is a lower bound of the
    true intersection weight.

    Returns ``(a, b, value)`` with ``a < b``, each pair once.
    """
    n = len(sets)
    empty = np.zeros(0, dtype=np.int64)
    if n < 2:
        return empty, empty, np.zeros(0)
    rows, cols = _csr(sets)
    n_blocks = int(cols.max()) + 1 if len(cols) else 1
    freq = np.bincount(cols, minlength=n_blocks)
    limit = _full_pair_limit(freq[freq > 0], budget)
    parts = [_posting_pairs(rows, cols, np.arange(n), limit)]
    if limit < freq.max(initial=0):
        long_ = freq[cols] > limit
        lr, lc = rows[long_], cols[long_]
        for key in (_min_hash_key(rows, cols, n, n_blocks, 0), _popular_key(rows, cols, n, freq)):
            parts.append(_posting_pairs(lr, lc, key, 0))
    a = np.concatenate([p[0] for p in parts])
    b = np.concatenate([p[1] for p in parts])
    c = np.concatenate([p[2] for p in parts])
    if not len(a):
        return empty, empty, np.zeros(0)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    # a block pairs the same requests once even if both sorts found them
    trip = np.unique(np.stack([lo, hi, c]), axis=1) if len(parts) > 1 else np.stack([lo, hi, c])
    pair = trip[0] * n + trip[1]
    uniq, inv = np.unique(pair, return_inverse=True)
    val = np.bincount(inv, weights=weights[trip[2]], minlength=len(uniq))
    lo, hi = uniq // n, uniq % n
    # keep each request's k best partners (an edge survives if either end keeps it)
    ends = np.concatenate([lo, hi])
    eid = np.concatenate([np.arange(len(uniq))] * 2)
    o = np.lexsort((-np.concatenate([val, val]), ends))
    ends_s = ends[o]
    first = np.flatnonzero(np.r_[True, ends_s[1:] != ends_s[:-1]])
    rank = np.arange(len(o)) - np.repeat(first, np.diff(np.r_[first, len(o)]))
    keep = np.zeros(len(uniq), dtype=bool)
    keep[eid[o[rank < k]]] = True
    return lo[keep], hi[keep], val[keep]


def build_forest(
    sets: Sequence[frozenset[int]],
    weights: Sequence[float],
    k: int = 6,
    max_degree: int = 12,
) -> Forest:
    """Greedy max-intersection agglomeration (see module docstring)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    n = len(sets)
    w = [float(x) for x in weights]
    wa = np.asarray(w, dtype=np.float64)
    inter: list[frozenset[int]] = list(sets)
    left: list[int] = []
    right: list[int] = []
    alive = [True] * n

    def merge(a: int, b: int) -> int:
        c = len(inter)
        inter.append(inter[a] & inter[b])
        left.append(a)
        right.append(b)
        alive.append(True)
        alive[a] = alive[b] = False
        return c

    # Identical requests merge first (their value is their whole set).
    firsts: dict[frozenset[int], int] = {}
    for i, s in enumerate(sets):
        j = firsts.get(s)
        firsts[s] = i if j is None else merge(j, i)
    reps = list(firsts.values())

    wsum = w.__getitem__

    def value(a: int, b: int) -> float:
        return sum(map(wsum, inter[a] & inter[b]))

    passes = 0
    while len(reps) > 1:
        rep_sets = [inter[r] for r in reps]
        ea, eb, ev = candidate_edges(rep_sets, wa, k)
        if not len(ea):
            break
        adj: dict[int, dict[int, float]] = {r: {} for r in reps}
        heap: list[tuple[float, int, int, bool]] = []
        for x, y, v in zip(ea.tolist(), eb.tolist(), ev.tolist()):
            a, b = reps[x], reps[y]
            adj[a][b] = v
            adj[b][a] = v
            heap.append((-v, a, b, False))
        heapq.heapify(heap)
        merged = 0
        while heap:
            negv, a, b, exact = heapq.heappop(heap)
            if not (alive[a] and alive[b]):
                continue
            if not exact:
                v = value(a, b)
                if v > 0:
                    heapq.heappush(heap, (-v, a, b, True))
                    adj[a][b] = adj[b][a] = v
                else:
                    adj[a].pop(b, None)
                    adj[b].pop(a, None)
                continue
            c = merge(a, b)
            merged += 1
            cap = -negv  # w(I(c)): no pair with c can beat it
            na, nb = adj.pop(a), adj.pop(b)
            cand: dict[int, float] = {}
            for d, v in na.items():
                if d != b:
                    cand[d] = v
            for d, v in nb.items():
                if d != a:
                    cand[d] = min(cand[d], v) if d in cand else v
            if len(cand) > max_degree:
                cand = dict(heapq.nlargest(max_degree, cand.items(), key=lambda kv: kv[1]))
            mine: dict[int, float] = {}
            for d, v in cand.items():
                if not alive[d]:
                    continue
                p = min(v, cap)
                mine[d] = p
                nd = adj[d]
                nd.pop(a, None)
                nd.pop(b, None)
                nd[c] = p
                heapq.heappush(heap, (-p, c, d, False))
            for d in na:
                if d in adj and d not in mine:
                    adj[d].pop(a, None)
            for d in nb:
                if d in adj and d not in mine:
                    adj[d].pop(b, None)
            adj[c] = mine
        reps = [v for v in range(len(inter)) if alive[v]]
        passes += 1
        if not merged or passes >= MAX_PASSES:
            break
    roots = [v for v in range(len(inter)) if alive[v]]
    return Forest(n, left, right, inter, roots)
