"""The finishing sweep of :mod:`contextpilot.core.cluster`'s greedy forest:
tree rotations that fix brackets the greedy order could not see, then a
renumbering so every merge follows its children.

Forest arrays as there: leaves ``0 .. n-1``, merge ``j`` is node ``n + j``
with children ``left[j]``, ``right[j]``, ``inter[v]`` the intersection of
the leaves under ``v``. Invariant: a rotation keeps every node's leaf set
but one, whose intersection only grows in weight, so the forest's savings
never drop. With ``fast`` (big batches) both steps run compiled
(:mod:`contextpilot.core.merge_kernel`), with the same result. Cost:
O(merges) set intersections for the sweep, O(nodes) for the renumbering.
"""

from __future__ import annotations

from contextpilot.core import merge_kernel

__all__ = ["REBRACKET_ROUNDS", "finish", "rebracket", "renumbered"]

#: Rotation sweeps after merging (0: none).
REBRACKET_ROUNDS = 3


def finish(
    n: int,
    left: list[int],
    right: list[int],
    inter: list[frozenset[int]],
    w: list[int],
    roots: list[int],
    fast: bool,
) -> tuple[list[int], list[int], list[frozenset[int]], list[int]]:
    """``(left, right, inter, roots)`` after the rotation sweep, renumbered
    if a rotation left a child after its parent; ``fast``: both steps
    compiled (the same result). The input lists may be changed in place."""
    gained = merge_kernel.rebracket(n, left, right, inter, w, REBRACKET_ROUNDS) if fast else None
    if gained is None:
        gained = rebracket(n, left, right, inter, w)
    if not gained or not any(a >= v or b >= v for v, a, b in zip(range(n, len(inter)), left, right)):
        return left, right, inter, roots
    order = merge_kernel.post_order(n, left, right, roots) if fast else None
    if order is None:
        return renumbered(n, left, right, inter, roots)
    nl, nr, old, new_roots = order
    return nl, nr, inter[:n] + [inter[v] for v in old], new_roots


def rebracket(n: int, left: list[int], right: list[int], inter: list[frozenset[int]], w: list[int]) -> int:
    """Local re-bracketing (tree rotations), in place; returns tokens gained.

    For a node ``v = (x, (b, c))`` the forest may instead hold
    ``((x, b), c)`` or ``((x, c), b)``: ``v``'s members, hence ``I(v)``,
    stay the same and only the inner node's intersection changes, so the
    rotation with the heaviest inner intersection is kept. Greedy merging
    fixes ``(b, c)`` before ``x`` exists and cannot see this. Nodes are
    visited in creation order, then those next to a rotation again (at most
    ``REBRACKET_ROUNDS`` visits each). Cost O(merges) set intersections.
    May leave a child with a larger index than its parent (see
    :func:`renumbered`).
    """
    if REBRACKET_ROUNDS < 1 or not left:
        return 0
    get_w = w.__getitem__
    m = len(left)
    wv = [sum(map(get_w, inter[n + j])) for j in range(m)]
    parent = [-1] * (n + m)
    for j in range(m):
        parent[left[j]] = parent[right[j]] = n + j
    visits = [0] * m
    todo = list(range(m - 1, -1, -1))  # a stack: creation order first
    queued = [True] * m
    total = 0
    while todo:
        j = todo.pop()
        queued[j] = False
        if visits[j] >= REBRACKET_ROUNDS:
            continue
        visits[j] += 1
        for side in (0, 1):
            y = left[j] if side else right[j]
            if y < n:
                continue
            x = right[j] if side else left[j]
            jy = y - n
            b, c = left[jy], right[jy]
            ix = inter[x]
            xb, xc = ix & inter[b], ix & inter[c]
            wb, wc = sum(map(get_w, xb)), sum(map(get_w, xc))
            cur = wv[jy]
            if wb <= cur and wc <= cur:
                continue
            if wb >= wc:
                left[jy], right[jy], inter[y], wv[jy], other = x, b, xb, wb, c
            else:
                left[jy], right[jy], inter[y], wv[jy], other = x, c, xc, wc, b
            if side:
                right[j] = other
            else:
                left[j] = other
            parent[x], parent[other] = y, n + j
            total += wv[jy] - cur
            # the rotated nodes and the parent above see new children
            for u in (jy, j, parent[n + j] - n):
                if u >= 0 and not queued[u]:
                    queued[u] = True
                    todo.append(u)
            break  # v's children changed: the other side is stale
    return total


def renumbered(
    n: int, left: list[int], right: list[int], inter: list[frozenset[int]], roots: list[int]
) -> tuple[list[int], list[int], list[frozenset[int]], list[int]]:
    """The same forest, ``(left, right, inter, roots)``, with every merge
    numbered after its children (trees in ``roots`` order, depth-first)."""
    new_id: dict[int, int] = {}
    nl: list[int] = []
    nr: list[int] = []
    ni: list[frozenset[int]] = list(inter[:n])
    new_roots = []
    for root in roots:
        stack = [(root, False)]
        while stack:
            v, expanded = stack.pop()
            if v < n:
                continue
            j = v - n
            if not expanded:
                stack.append((v, True))
                stack.append((right[j], False))
                stack.append((left[j], False))
                continue
            a, b = left[j], right[j]
            new_id[v] = n + len(nl)
            nl.append(new_id.get(a, a))
            nr.append(new_id.get(b, b))
            ni.append(inter[v])
        new_roots.append(new_id.get(root, root))
    return nl, nr, ni, new_roots
