"""The greedy merge loop of :mod:`contextpilot.core.cluster`, compiled with numba.

Same algorithm and the same decisions, merge for merge, as the Python loop
``cluster`` runs on small batches (tests compare the two forests and plans),
on arrays instead of dicts and frozensets. Importing this module imports
numba (:mod:`contextpilot.core.merge_kernel` does so only when a batch is
big enough, and falls back to the Python loop without numba).

Data, for ``N`` node ids (the clusters alive at the start, then one per
merge):

* sets: each cluster's intersection as a sorted run ``sd[st[v]:st[v]+sl[v]]``
  of planning ids; a merge appends its run at the end of ``sd``;
* adjacency: node ``v`` owns the slice ``[aoff[v], aoff[v+1])`` of ``anb``
  (neighbour) / ``apr`` (exact priority), ``alen[v]`` entries used, in
  insertion order (ties in a node's best partner go to the earliest, as
  with the Python loop's dict). A node's degree never grows after the start
  (a merge removes both parts from every neighbour and adds at most the
  merged cluster), so each start node's slice is its starting degree and a
  new cluster's is ``max_degree``;
* heap: tuples ``(TOP - p, node)`` (the Python loop's int keys, unpacked:
  ties to the lower node), ``headp[v]`` the key of ``v``'s live head entry;
  lazy deletion as there.

Compilation: on first use (about 7 s CPU), cached on disk (numba writes
next to this file, or to its user-wide cache directory, ``~/.cache/numba``,
when the package is not writable, or to ``NUMBA_CACHE_DIR``; with none
writable, one warning and a compilation per process). A process then pays
about 0.4 s to import numba and 0.3 s to load the cached code (and about
110 MiB of memory). Cost: O(merges * max_degree * set size) machine work,
O(N + edges) memory.
"""

from __future__ import annotations

import heapq
import logging
from typing import Any

import numba
import numpy as np

__all__ = ["compiled", "merge_pass"]

_log = logging.getLogger(__name__)
_uncached: list[str] = []


def compiled(fn: Any) -> Any:
    """``fn`` compiled (nopython, GIL released), cached on disk when possible
    (else compiled in every process, with one warning per process)."""
    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError as e:  # no writable cache directory anywhere
        if not _uncached:
            _log.warning("numba cannot cache (%s): compiling in every process; set NUMBA_CACHE_DIR", e)
        _uncached.append(fn.__name__)
        return numba.njit(nogil=True)(fn)


@compiled
def _intersect(sd: Any, st: Any, sl: Any, a: int, b: int, out: Any, gain: Any) -> tuple[int, int]:
    """Sorted intersection of sets ``a`` and ``b`` into ``out``: ``(size, gain sum)``."""
    i = st[a]
    ie = i + sl[a]
    j = st[b]
    je = j + sl[b]
    k = 0
    g = 0
    while i < ie and j < je:
        x = sd[i]
        y = sd[j]
        if x == y:
            out[k] = x
            k += 1
            g += gain[x]
            i += 1
            j += 1
        elif x < y:
            i += 1
        else:
            j += 1
    return k, g


@compiled
def merge_pass(
    n_nodes: int,
    sd: Any,
    st: Any,
    sl: Any,
    used: int,
    reps: Any,
    ea: Any,
    eb: Any,
    ev: Any,
    exact: bool,
    gain: Any,
    loss: Any,
    lv: Any,
    max_degree: int,
) -> tuple[Any, Any]:
    """Greedy merges over one candidate graph: ``(left, right)`` node ids of
    each merge in order (merge ``i`` creates node ``n_nodes + i``).

    ``reps``: the live clusters; ``ea, eb, ev``: candidate pairs as positions
    in ``reps`` with priorities (exact when ``exact``, else only estimates:
    recomputed here, pairs sharing no gain dropped); ``lv``: each live
    cluster's loss sum ``L`` (filled in for new clusters). ``sd`` must have
    room for the new clusters' runs after ``used`` (they are never larger
    than their parts: the live sets' total again is enough)."""
    n_new = len(reps)
    total = n_nodes + n_new
    tmp = np.empty(max(1, sl.max() + 1), np.int64)
    deg = np.zeros(total, np.int64)
    for t in range(len(ea)):
        deg[reps[ea[t]]] += 1
        deg[reps[eb[t]]] += 1
    aoff = np.zeros(total + 1, np.int64)
    for v in range(total):
        aoff[v + 1] = aoff[v] + (deg[v] if v < n_nodes else max_degree)
    anb = np.empty(aoff[total], np.int64)
    apr = np.empty(aoff[total], np.int64)
    alen = np.zeros(total, np.int64)
    for t in range(len(ea)):
        a = reps[ea[t]]
        b = reps[eb[t]]
        if exact:
            p = ev[t]
        else:
            _, g = _intersect(sd, st, sl, a, b, tmp, gain)
            if g <= 0:
                continue
            p = g - lv[a] - lv[b]
        anb[aoff[a] + alen[a]] = b
        apr[aoff[a] + alen[a]] = p
        alen[a] += 1
        anb[aoff[b] + alen[b]] = a
        apr[aoff[b] + alen[b]] = p
        alen[b] += 1
    top = np.int64(1) << 61
    headp = np.full(total, top, np.int64)
    heap = [(np.int64(0), np.int64(0))]
    heap.pop()
    for v in range(n_nodes):
        if alen[v] > 0:
            o = aoff[v]
            best = apr[o]
            for q in range(1, alen[v]):
                if apr[o + q] > best:
                    best = apr[o + q]
            headp[v] = top - best
            heap.append((top - best, np.int64(v)))
    heapq.heapify(heap)
    alive = np.zeros(total, np.bool_)
    for v in reps:
        alive[v] = True
    left = np.empty(n_new, np.int64)
    right = np.empty(n_new, np.int64)
    candn = np.empty(aoff[total] + 1, np.int64)
    candp = np.empty(aoff[total] + 1, np.int64)
    merged = 0
    end = used
    while len(heap):
        key, x = heapq.heappop(heap)
        if not alive[x] or alen[x] == 0 or headp[x] != key:
            continue  # merged away, nothing left to pair with, or obsolete
        o = aoff[x]
        bi = 0
        bp = apr[o]
        for q in range(1, alen[x]):
            if apr[o + q] > bp:
                bp = apr[o + q]
                bi = q
        if top - bp != key:  # its best changed: re-key
            headp[x] = top - bp
            heapq.heappush(heap, (top - bp, x))
            continue
        y = anb[o + bi]
        c = n_nodes + merged
        left[merged] = x
        right[merged] = y
        merged += 1
        alive[x] = False
        alive[y] = False
        alive[c] = True
        k, _ = _intersect(sd, st, sl, x, y, tmp, gain)
        st[c] = end
        sl[c] = k
        for q in range(k):
            sd[end + q] = tmp[q]
        end += k
        # the new cluster's candidates: x's partners, then y's, each at the
        # lower of its two priorities (ranking only)
        nc = 0
        for q in range(alen[x]):
            d = anb[o + q]
            if d != y:
                candn[nc] = d
                candp[nc] = apr[o + q]
                nc += 1
        oy = aoff[y]
        for q in range(alen[y]):
            d = anb[oy + q]
            if d == x:
                continue
            found = -1
            for r in range(nc):
                if candn[r] == d:
                    found = r
                    break
            if found >= 0:
                if apr[oy + q] < candp[found]:
                    candp[found] = apr[oy + q]
            else:
                candn[nc] = d
                candp[nc] = apr[oy + q]
                nc += 1
        for r in range(nc):  # x and y leave every neighbour's list, order kept
            d = candn[r]
            od = aoff[d]
            w = 0
            for q in range(alen[d]):
                e = anb[od + q]
                if e != x and e != y:
                    anb[od + w] = e
                    apr[od + w] = apr[od + q]
                    w += 1
            alen[d] = w
        alen[x] = 0
        alen[y] = 0
        if nc > max_degree:  # the best max_degree, ties in insertion order
            keep = np.argsort(-candp[:nc], kind="mergesort")[:max_degree]
            candn[:max_degree] = candn[keep].copy()
            nc = max_degree
        lc = 0
        for q in range(k):
            lc += loss[sd[st[c] + q]]
        lv[c] = lc
        oc = aoff[c]
        m = 0
        bestc = -top
        if k > 0:
            for r in range(nc):
                d = candn[r]
                _, g = _intersect(sd, st, sl, c, d, tmp, gain)
                if g > 0:
                    p = g - lc - lv[d]
                    anb[oc + m] = d
                    apr[oc + m] = p
                    m += 1
                    od = aoff[d]
                    anb[od + alen[d]] = c
                    apr[od + alen[d]] = p
                    alen[d] += 1
                    if top - p < headp[d]:
                        headp[d] = top - p
                        heapq.heappush(heap, (top - p, d))
                    if p > bestc:
                        bestc = p
        alen[c] = m
        if m > 0:
            headp[c] = top - bestc
            heapq.heappush(heap, (top - bestc, np.int64(c)))
    return left[:merged], right[:merged]
