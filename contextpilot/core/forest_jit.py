"""The forest's finishing steps of :mod:`contextpilot.core.rotations`, compiled
with numba: the rotation sweep (``rotations.rebracket``) and the renumbering
that puts every merge after its children (``rotations.renumbered``).

Same decisions as the Python versions, step for step (tests compare the
forests and plans). Sets are runs ``sd[st[v]:st[v]+sl[v]]`` of planning ids
in any order: intersections are weighed by marking one side in a
per-block flag array, O(|a| + |b|) each, no sorting. The rotation sweep
logs each rotation ``(y, x, kept)``: the caller replays
``inter[y] = inter[x] & inter[kept]`` in that order, building the very same
sets the Python sweep builds. Importing this module imports numba (see
:mod:`contextpilot.core.merge_kernel`); compiled code is cached on disk as
in :mod:`contextpilot.core.merge_jit`.

Cost: O(visits * set size) for the sweep (at most ``rounds`` visits per
merge), O(nodes) for the renumbering.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from contextpilot.core.merge_jit import compiled

__all__ = ["post_order", "rebracket"]


@compiled
def rebracket(
    n: int, left: Any, right: Any, sd: Any, used: int, st: Any, sl: Any, w: Any, rounds: int
) -> Any:
    """Rotations, in place on ``left``/``right`` (``st``/``sl`` too): returns
    ``(log, count, gained)``, ``log[:count]`` rows ``(y, x, kept)``.
    ``sd[:used]`` holds the runs; new runs go after them (grown as needed).

    For ``v = (x, (b, c))`` the forest may hold ``((x, b), c)`` or
    ``((x, c), b)`` instead: the inner node keeps its heavier intersection
    with ``x``. Nodes are visited in creation order, then those next to a
    rotation again, each at most ``rounds`` times."""
    m = len(left)
    log = np.empty((max(1, rounds * m), 3), np.int64)
    count = 0
    gained = 0
    if rounds < 1 or m == 0:
        return log, count, gained
    mark = np.zeros(len(w), np.bool_)
    wv = np.zeros(m, np.int64)
    for j in range(m):
        v = n + j
        s = 0
        for q in range(st[v], st[v] + sl[v]):
            s += w[sd[q]]
        wv[j] = s
    parent = np.full(n + m, -1, np.int64)
    for j in range(m):
        parent[left[j]] = n + j
        parent[right[j]] = n + j
    visits = np.zeros(m, np.int64)
    queued = np.ones(m, np.bool_)
    todo = np.empty(m, np.int64)  # a stack: each merge at most once in it
    for j in range(m):
        todo[j] = m - 1 - j
    top = m
    while top > 0:
        top -= 1
        j = todo[top]
        queued[j] = False
        if visits[j] >= rounds:
            continue
        visits[j] += 1
        for side in range(2):
            y = left[j] if side == 1 else right[j]
            if y < n:
                continue
            x = right[j] if side == 1 else left[j]
            jy = y - n
            b = left[jy]
            c = right[jy]
            for q in range(st[x], st[x] + sl[x]):
                mark[sd[q]] = True
            wb = 0
            for q in range(st[b], st[b] + sl[b]):
                if mark[sd[q]]:
                    wb += w[sd[q]]
            wc = 0
            for q in range(st[c], st[c] + sl[c]):
                if mark[sd[q]]:
                    wc += w[sd[q]]
            cur = wv[jy]
            rotate = wb > cur or wc > cur
            if rotate:
                keep, other, wnew = (b, c, wb) if wb >= wc else (c, b, wc)
                if used + sl[keep] > len(sd):  # grow the run store
                    bigger = np.empty(2 * len(sd) + sl[keep], sd.dtype)
                    bigger[:used] = sd[:used]
                    sd = bigger
                start = used
                for q in range(st[keep], st[keep] + sl[keep]):
                    if mark[sd[q]]:
                        sd[used] = sd[q]
                        used += 1
                st[y] = start
                sl[y] = used - start
            for q in range(st[x], st[x] + sl[x]):
                mark[sd[q]] = False
            if not rotate:
                continue
            left[jy] = x
            right[jy] = keep
            wv[jy] = wnew
            if side == 1:
                right[j] = other
            else:
                left[j] = other
            parent[x] = y
            parent[other] = n + j
            gained += wnew - cur
            log[count, 0] = y
            log[count, 1] = x
            log[count, 2] = keep
            count += 1
            for u in (jy, j, parent[n + j] - n):  # the rotated nodes and the parent above
                if u >= 0 and not queued[u]:
                    queued[u] = True
                    todo[top] = u
                    top += 1
            break  # v's children changed: the other side is stale
    return log, count, gained


@compiled
def post_order(n: int, left: Any, right: Any, roots: Any) -> Any:
    """Renumbering with every merge after its children, trees in ``roots``
    order, each depth-first left to right: ``(new_left, new_right, old,
    new_roots)``, ``old[k]`` the old id of new merge ``n + k``."""
    m = len(left)
    new_id = np.arange(n + m)
    nl = np.empty(m, np.int64)
    nr = np.empty(m, np.int64)
    old = np.empty(m, np.int64)
    new_roots = np.empty(len(roots), np.int64)
    stack = np.empty(2 * (n + m) + 2, np.int64)  # node, and (as -1 - node) expanded nodes
    k = 0
    for i in range(len(roots)):
        stack[0] = roots[i]
        top = 1
        while top > 0:
            top -= 1
            e = stack[top]
            if e >= 0:
                if e < n:
                    continue
                stack[top] = -1 - e
                stack[top + 1] = right[e - n]
                stack[top + 2] = left[e - n]
                top += 3
                continue
            v = -1 - e
            new_id[v] = n + k
            nl[k] = new_id[left[v - n]]
            nr[k] = new_id[right[v - n]]
            old[k] = v
            k += 1
        new_roots[i] = new_id[roots[i]]
    return nl[:k], nr[:k], old[:k], new_roots
