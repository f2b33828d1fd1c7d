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
from itertools import chain
from typing import Any

import numpy as np
import scipy.sparse as sp

from contextpilot.core.overlap import overlap_matrix

__all__ = ["Forest", "build_forest", "candidate_edges"]

#: Pairs generated from posting lists per candidate search (memory bound).
PAIR_BUDGET = 4_000_000
#: Posting lists too long for the budget pair each request with this many
#: followers in each similarity sort.
WINDOW = 3
#: Long posting lists are paired only through each request's rarest blocks.
RAREST = 12
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
    lengths = np.fromiter(map(len, sets), dtype=np.int64, count=len(sets))
    rows = np.repeat(np.arange(len(sets), dtype=np.int64), lengths)
    cols = np.fromiter(chain.from_iterable(sets), dtype=np.int64, count=int(lengths.sum()))
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
    order = np.argsort(cols * (int(key.max(initial=0)) + 1) + key[rows], kind="stable")
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


def _rarest(rows: np.ndarray, cols: np.ndarray, freq: np.ndarray, r: int) -> np.ndarray:
    """Mask of each request's ``r`` rarest blocks (the most telling ones)."""
    nb = len(freq)
    o = np.argsort(rows * (int(freq.max(initial=0)) + 1) * nb + freq[cols] * nb + cols, kind="stable")
    ro = rows[o]
    first = np.flatnonzero(np.r_[True, ro[1:] != ro[:-1]])
    rank = np.arange(len(o)) - np.repeat(first, np.diff(np.r_[first, len(o)]))
    mask = np.zeros(len(rows), dtype=bool)
    mask[o[rank < r]] = True
    return mask


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
    nb = len(freq)
    brank = np.empty(nb, dtype=np.int64)
    brank[np.lexsort((np.arange(nb), -freq))] = np.arange(nb)  # 0 = most frequent
    top = _three_smallest(rows, brank[cols], n, nb)
    if top is None:
        o = np.argsort(rows * nb + brank[cols], kind="stable")
        r, c = rows[o], brank[cols[o]]
        first = np.flatnonzero(np.r_[True, r[1:] != r[:-1]])
        lens = np.diff(np.r_[first, len(r)])
    key = np.zeros(n, dtype=np.int64)
    for j in range(3):  # base nb+1 digits; a missing block sorts first
        if top is not None:
            digit = np.where(top[:, j] < nb, top[:, j] + 1, 0).astype(np.int64)
        else:
            digit = np.zeros(n, dtype=np.int64)
            has = lens > j
            digit[r[first[has]]] = c[first[has] + j] + 1
        key = key * (nb + 1) + digit if (nb + 1) ** 3 < 2**62 else np.maximum(key, digit)
    order = np.argsort(key, kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    return rank


def _three_smallest(rows: np.ndarray, vals: np.ndarray, n: int, nb: int) -> np.ndarray | None:
    """Each row's three smallest ``vals`` ascending, ``nb`` where it has
    fewer, as an ``(n, 3)`` array: what :func:`_popular_key` reads off a
    full sort, with a per-row partition instead (O(P) for P entries). Only
    for entries grouped by row (as ``_csr`` makes them) and rows of similar
    length; else ``None``."""
    if len(rows) > 1 and bool((rows[1:] < rows[:-1]).any()):
        return None
    lens = np.bincount(rows, minlength=n)
    width = max(3, int(lens.max(initial=0)))
    if n * width > 2 * len(rows) + 1024:
        return None
    pad = np.full((n, width), nb, dtype=np.int32 if nb < 2**31 - 1 else np.int64)
    starts = np.zeros(n, dtype=np.int64)
    np.cumsum(lens[:-1], out=starts[1:])
    shift = np.arange(0, n * width, width, dtype=np.int64) - starts
    pad.reshape(-1)[np.arange(len(rows), dtype=np.int64) + np.repeat(shift, lens)] = vals
    return np.sort(np.partition(pad, 2, axis=1)[:, :3], axis=1)


def _top_k_per_row(m: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's ``k`` largest entries as edges ``(lo, hi, value)``, each
    pair once (kept if either end keeps it). One sort on a combined key."""
    counts = np.diff(m.indptr)
    r = np.repeat(np.arange(m.shape[0], dtype=np.int64), counts)
    top = float(m.data.max()) + 1.0
    order = np.argsort(r * top + (top - m.data), kind="stable")
    rank = np.arange(len(order)) - np.repeat(m.indptr[:-1], counts)
    sel = order[rank < k]
    a, b, v = r[sel], m.indices[sel].astype(np.int64), m.data[sel]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    _, first = np.unique(lo * m.shape[0] + hi, return_index=True)
    return lo[first], hi[first], v[first]


def candidate_edges(
    sets: Sequence[frozenset[int]],
    weights: np.ndarray,
    k: int,
    budget: int = PAIR_BUDGET,
    with_exactness: bool = False,
    backend: str = "scipy",
) -> Any:
    """Up to ``k`` likely best partners per request, with overlap estimates.

    Blocks whose posting lists (requests holding them) are short enough to
    fit ``budget`` pairs in total pair everyone, through one sparse product
    (exact overlaps on small batches). Blocks with longer lists pair each
    request only with its ``WINDOW`` followers in two similarity sorts (by
    min-hash and by most popular blocks). An estimate sums the weights of
    the blocks that paired the two requests (exact when every list was
    paired exhaustively; otherwise only a ranking hint).

    ``backend``: ``"scipy"`` or ``"torch"`` for the sparse product (see
    :mod:`contextpilot.core.overlap`).

    Returns ``(a, b, value)`` with ``a < b``, each pair once, plus (with
    ``with_exactness``) whether every value is exact.
    """
    n = len(sets)
    empty = np.zeros(0, dtype=np.int64)
    none = (empty, empty, np.zeros(0)) + ((True,) if with_exactness else ())
    if n < 2:
        return none
    rows, cols = _csr(sets)
    if not len(cols):
        return none
    n_blocks = int(cols.max()) + 1
    freq = np.bincount(cols, minlength=n_blocks)
    limit = _full_pair_limit(freq[freq > 0], budget)
    short = freq[cols] <= limit
    overlap = overlap_matrix(rows[short], cols[short], weights, n, n_blocks, backend)
    if limit < freq.max():
        long_ = ~short & _rarest(rows, cols, freq, RAREST)
        lr, lc = rows[long_], cols[long_]
        pa, pb, pw = [], [], []
        for key in (_min_hash_key(rows, cols, n, n_blocks, 0), _popular_key(rows, cols, n, freq)):
            a_, b_, c_ = _posting_pairs(lr, lc, key, 0)
            pa += [a_, b_]
            pb += [b_, a_]
            pw += [weights[c_]] * 2
        # a block both sorts found counts twice: these estimates only rank
        # candidates (the planner makes kept ones exact)
        ia, ib = np.concatenate(pa), np.concatenate(pb)
        overlap = overlap + sp.csr_matrix((np.concatenate(pw), (ia, ib)), shape=(n, n))
    overlap.setdiag(0)
    overlap.eliminate_zeros()
    overlap.sort_indices()  # ties in the top-k go to the lower id, whatever the backend
    if not overlap.nnz:
        return none
    edges = _top_k_per_row(overlap, k)
    return edges + ((bool(limit >= freq.max()),) if with_exactness else ())


def build_forest(
    sets: Sequence[frozenset[int]],
    weights: Sequence[int],
    k: int = 6,
    max_degree: int = 12,
    backend: str = "scipy",
) -> Forest:
    """Greedy max-intersection agglomeration (see module docstring).

    ``weights[b]``: token length of planning id ``b`` (an int)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    n = len(sets)
    w = [int(x) for x in weights]
    if any(x < 0 for x in w):
        raise ValueError("weights must be >= 0")
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

    for _ in range(MAX_PASSES):
        if len(reps) < 2 or not _merge_pass(reps, inter, w, wa, alive, merge, k, max_degree, backend):
            break
        reps = [v for v in range(len(inter)) if alive[v]]
    roots = [v for v in range(len(inter)) if alive[v]]
    return Forest(n, left, right, inter, roots)


_SHIFT = 32
_MASK = (1 << _SHIFT) - 1
_TOP = 1 << 62


def _merge_pass(reps, inter, w, wa, alive, merge, k: int, max_degree: int, backend: str) -> int:
    """Greedy merging over one candidate graph; returns merges made.

    ``adj[x][y]`` is the exact overlap of live clusters x and y. A heap
    holds one entry per cluster, keyed by its best overlap when pushed (ints
    ``(_TOP - value) << 32 | cluster``: cheap to compare, ties to the lower
    id). Overlaps only shrink as clusters merge, so a popped entry is at
    least its cluster's true best: stale entries are re-keyed, and a
    current one is the best merge available.
    """
    rep_sets = [inter[r] for r in reps]
    ea, eb, ev, exact = candidate_edges(rep_sets, wa, k, with_exactness=True, backend=backend)
    if not len(ea):
        return 0
    get_w = w.__getitem__
    adj: dict[int, dict[int, int]] = {r: {} for r in reps}
    for x, y, v in zip(ea.tolist(), eb.tolist(), ev.tolist()):
        a, b = reps[x], reps[y]
        # estimates from long posting lists are lower bounds: make them exact
        v = int(v) if exact else sum(map(get_w, inter[a] & inter[b]))
        if v > 0:
            adj[a][b] = adj[b][a] = v
    heap = [((_TOP - max(nb.values())) << _SHIFT) | x for x, nb in adj.items() if nb]
    heapq.heapify(heap)
    pop, push = heapq.heappop, heapq.heappush
    merged = 0
    while heap:
        key = pop(heap)
        x = key & _MASK
        nbrs = adj.get(x)
        if not nbrs:
            continue  # merged away, or nothing left to pair with
        y = max(nbrs, key=nbrs.__getitem__)
        v = nbrs[y]
        if (((_TOP - v) << _SHIFT) | x) != key:
            push(heap, ((_TOP - v) << _SHIFT) | x)  # its best shrank: re-key
            continue
        c = merge(x, y)
        merged += 1
        na, nb = adj.pop(x), adj.pop(y)
        # overlap(c, d) <= min(overlap(x, d), overlap(y, d)): rank by that
        cand = {d: u for d, u in na.items() if d != y}
        for d, u in nb.items():
            if d != x:
                cand[d] = min(cand[d], u) if d in cand else u
        for d in na:
            if d != y:
                del adj[d][x]
        for d in nb:
            if d != x:
                del adj[d][y]
        if len(cand) > max_degree:
            cand = dict(heapq.nlargest(max_degree, cand.items(), key=_second))
        ic = inter[c]
        mine: dict[int, int] = {}
        if ic:
            for d in cand:
                u = sum(map(get_w, ic & inter[d]))
                if u > 0:
                    mine[d] = u
                    adj[d][c] = u
        adj[c] = mine
        if mine:
            push(heap, ((_TOP - max(mine.values())) << _SHIFT) | c)
    return merged


def _second(kv: tuple[int, int]) -> int:
    return kv[1]
