"""Greedy agglomeration of requests into a prefix-sharing forest.

Each request is a set of planning ids (distinct within the request) with
token weights. Merging two clusters creates a node whose *intersection* is
the blocks every member holds; emitting the forest depth-first with each
node's new intersection blocks first makes every member share that node's
blocks as a prompt prefix. With requests run in that order, each internal
node ``v`` saves exactly ``w(I(v))`` prompt tokens (the first request of its
second subtree reuses them), so the forest's savings are ``sum w(I(v))``
over internal nodes.

The builder merges, greedily, the pair of clusters with the highest
*loss-aware* priority: the intersection weight gained now, minus a charge
for the popular blocks the merge drops from the merged cluster's shared set
(they would likely have been shared again by a later merge; see
:func:`_priority_weights`). A pair's priority is fixed while both clusters
live, so a lazy max-heap fed with every new pair is exact. A final sweep
of tree rotations (:mod:`contextpilot.core.rotations`) fixes brackets the
greedy order could not see.

Candidate pairs come from :mod:`contextpilot.core.candidates` (the block ->
requests inverted index, never an all-pairs matrix); each request keeps its
``k`` best candidates by priority.

Invariants of :class:`Forest`:

* nodes ``0 .. n_leaves-1`` are the requests; node ``n_leaves + j`` is the
  j-th merge, with children ``left[j]`` and ``right[j]`` created earlier;
* ``inter[v]`` is the intersection of the sets of all leaves under ``v``,
  so ``inter[parent] <= inter[child]``;
* every node is in exactly one tree; ``roots`` lists the trees.

Cost: the candidate search (O(P log P) numpy work for P posting entries),
then the greedy merges: O(N k log N) work for N requests, compiled for big
batches (about 10 µs per merge on this project's 2-core reference machine,
100 µs on the Python loop small batches use).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np

from contextpilot.core import merge_kernel
from contextpilot.core.candidates import candidate_edges, incidence
from contextpilot.core.rotations import finish

__all__ = ["KERNEL_MIN_CLUSTERS", "Forest", "build_forest"]

#: Rounds of candidate search among the remaining roots.
MAX_PASSES = 6
#: Batches of at least this many requests merge in compiled code
#: (:mod:`contextpilot.core.merge_kernel`); smaller ones on the Python loop,
#: which needs no compilation (nor numba) and is as fast there.
KERNEL_MIN_CLUSTERS = 20_000


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
        """Tokens saved at unbounded cache: ``sum w(I(v))`` over merges.
        O(total size of the merges' sets), summed in numpy when big."""
        merged = self.inter[self.n_leaves :]
        w = np.asarray(weights) if len(merged) >= 1000 else None
        if w is None or w.dtype.kind not in "iu":  # small, or float weights: exact in Python
            return float(sum(sum(weights[b] for b in s) for s in merged))
        # token counts: an int64 sum is exact (totals stay far below 2**63)
        ids = np.fromiter(chain.from_iterable(merged), dtype=np.int64, count=sum(map(len, merged)))
        return float(w[ids].sum(dtype=np.int64))


def build_forest(
    sets: Sequence[frozenset[int]],
    weights: Sequence[int],
    k: int = 6,
    max_degree: int = 12,
    backend: str = "scipy",
    timings: dict[str, float] | None = None,
    kernel_min: int | None = None,
) -> Forest:
    """Greedy loss-aware max-intersection agglomeration (see module docstring).

    ``weights[b]``: token length of planning id ``b`` (an int).
    ``kernel_min``: batches of at least this many requests merge, rotate
    and renumber in compiled code (default :data:`KERNEL_MIN_CLUSTERS`);
    the forest does not depend on it.
    ``timings``: if given, CPU seconds of this thread are added to its
    ``"candidates"`` (candidate search) and ``"merging"`` (the rest)."""
    t0 = time.thread_time()
    cand = [0.0]
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    fast = len(sets) >= (KERNEL_MIN_CLUSTERS if kernel_min is None else kernel_min)
    n = len(sets)
    w = [int(x) for x in weights]
    if any(x < 0 for x in w):
        raise ValueError("weights must be >= 0")
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

    def merge_all(ls: list[int], rs: list[int]) -> int:
        """``merge`` for each pair in order (a merge's parts existed before it)."""
        get, add = inter.__getitem__, inter.append
        for a, b in zip(ls, rs):
            add(get(a) & get(b))
        left.extend(ls)
        right.extend(rs)
        alive.extend([True] * len(ls))
        for x in chain(ls, rs):
            alive[x] = False
        return len(ls)

    # Identical requests merge first (their value is their whole set).
    firsts: dict[frozenset[int], int] = {}
    for i, s in enumerate(sets):
        j = firsts.get(s)
        firsts[s] = i if j is None else merge(j, i)
    reps = list(firsts.values())
    gain, loss = _priority_weights(sets, w)
    ga = np.asarray(gain, dtype=np.float64)

    for _ in range(MAX_PASSES):
        if len(reps) < 2:
            break
        merges = (merge, merge_all)
        if not _merge_pass(reps, inter, gain, loss, ga, merges, k, max_degree, backend, cand, fast):
            break
        reps = [v for v in range(len(inter)) if alive[v]]
    roots = [v for v in range(len(inter)) if alive[v]]
    out = Forest(n, *finish(n, left, right, inter, w, roots, fast))
    if timings is not None:
        timings["candidates"] = timings.get("candidates", 0.0) + cand[0]
        timings["merging"] = timings.get("merging", 0.0) + time.thread_time() - t0 - cand[0]
    return out


#: Weight of the future sharing a merge forgoes (see :func:`_priority_weights`).
LOSS = 0.5
LOSS_EXP = 1.5
_SCALE = 1024


def _priority_weights(sets: Sequence[frozenset[int]], w: list[int]) -> tuple[list[int], list[int]]:
    """Integer per-block weights of the merge priority.

    Merging ``a`` and ``b`` saves ``w(X)`` now (``X = I(a) & I(b)``) and
    drops the blocks of ``I(a) ^ I(b)`` from any later shared prefix of the
    merged cluster. A block held by many requests would likely have been
    shared again: its drop costs ``LOSS * w * phi`` with ``phi`` the block's
    popularity relative to the most popular block. Priority::

        p(a, b) = w(X) - LOSS * (V(I(a)) + V(I(b)) - 2 V(X))
                = sum_X gain - (L(a) + L(b))

    with ``gain = w + 2 LOSS w phi`` and ``L(c) = sum_{I(c)} LOSS w phi``,
    all scaled to ints so ties break the same way everywhere.
    """
    nb = len(w)
    _, cols = incidence(sets, compact=True)
    freq = np.bincount(cols, minlength=nb)
    top = int(freq.max(initial=1)) - 1
    wn = np.asarray(w, dtype=np.float64)
    if LOSS <= 0 or top <= 0:
        return (_SCALE * wn).astype(np.int64).tolist(), [0] * nb
    phi = (np.maximum(freq - 1, 0) / top) ** LOSS_EXP
    loss = np.rint(_SCALE * LOSS * wn * phi).astype(np.int64)
    gain = _SCALE * wn.astype(np.int64) + 2 * loss
    return gain.tolist(), loss.tolist()


_SHIFT = 32
_MASK = (1 << _SHIFT) - 1
_TOP = 1 << 62


def _merge_pass(
    reps,
    inter,
    gain,
    loss,
    ga,
    merges,
    k: int,
    max_degree: int,
    backend: str,
    cand_cpu: list[float],
    fast: bool,
) -> int:
    """Greedy merging over one candidate graph; returns merges made.

    ``merges``: the builder's ``(merge, merge_all)``. With ``fast`` the
    compiled kernel merges (:mod:`contextpilot.core.merge_kernel`: the same
    merges in the same order), else (or without numba) the loop below.

    ``adj[x][y]`` is the exact priority of merging live clusters x and y
    (present only when they share a block of positive weight). The heap
    holds ints ``(_TOP - p) << 32 | cluster`` (cheap to compare, ties to
    the lower id); ``head[x]`` is x's highest entry in it. A pair's priority
    never changes while both ends live and a new pair is pushed when it
    beats its cluster's head, so every cluster's head is at least its true
    best: a popped head that does not match the best is re-keyed, a matching
    one is the best merge overall, and an entry below its head is obsolete.
    """
    merge, merge_all = merges
    rep_sets = [inter[r] for r in reps]
    get_g = gain.__getitem__
    get_l = loss.__getitem__
    lv = {r: sum(map(get_l, inter[r])) for r in reps}  # L(c) of live clusters
    pen = np.fromiter((lv[r] for r in reps), dtype=np.float64, count=len(reps))
    t0 = time.thread_time()
    ea, eb, ev, exact = candidate_edges(rep_sets, ga, k, with_exactness=True, backend=backend, penalty=pen)
    cand_cpu[0] += time.thread_time() - t0
    if not len(ea):
        return 0
    done = None
    if fast:
        done = merge_kernel.greedy_merges(reps, inter, gain, loss, lv, ea, eb, ev, exact, max_degree)
    if done is not None:
        return merge_all(*done)
    adj: dict[int, dict[int, int]] = {r: {} for r in reps}
    for x, y, v in zip(ea.tolist(), eb.tolist(), ev.tolist()):
        a, b = reps[x], reps[y]
        if exact:
            p = int(v)  # already the priority (penalties applied)
        else:  # estimates from long posting lists only rank: make them exact
            g = sum(map(get_g, inter[a] & inter[b]))
            if g <= 0:
                continue
            p = g - lv[a] - lv[b]
        adj[a][b] = adj[b][a] = p
    head = {x: ((_TOP - max(nb.values())) << _SHIFT) | x for x, nb in adj.items() if nb}
    heap = list(head.values())
    heapq.heapify(heap)
    pop, push = heapq.heappop, heapq.heappush
    merged = 0
    while heap:
        key = pop(heap)
        x = key & _MASK
        nbrs = adj.get(x)
        if not nbrs or head[x] != key:
            continue  # merged away, nothing left to pair with, or obsolete
        y = max(nbrs, key=nbrs.__getitem__)
        best = ((_TOP - nbrs[y]) << _SHIFT) | x
        if best != key:
            head[x] = best  # its best changed: re-key
            push(heap, best)
            continue
        c = merge(x, y)
        merged += 1
        na, nb = adj.pop(x), adj.pop(y)
        # rank the new cluster's candidates by its parts' priorities
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
            lc = lv[c] = sum(map(get_l, ic))
            for d in cand:
                g = sum(map(get_g, ic & inter[d]))
                if g > 0:
                    p = g - lc - lv[d]
                    mine[d] = adj[d][c] = p
                    pk = ((_TOP - p) << _SHIFT) | d
                    if pk < head[d]:
                        head[d] = pk
                        push(heap, pk)
        adj[c] = mine
        if mine:
            head[c] = ((_TOP - max(mine.values())) << _SHIFT) | c
            push(heap, head[c])
    return merged


def _second(kv: tuple[int, int]) -> int:
    return kv[1]
