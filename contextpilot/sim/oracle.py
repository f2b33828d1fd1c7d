"""Exact optimum of block ordering for small batches (N <= 12 requests).

At an unbounded cache the order of requests does not matter and the hit
tokens equal the tokens saved by the prefix trie of the prompts; choosing
block orders to minimise that trie is NP-hard, but small batches can be
solved exactly. A trie node holding group ``G`` (with blocks ``C`` already
on its path) splits ``G`` into parts, each continuing with one block all
its members still hold; the part holding the lowest member is chosen
first, which enumerates every split once::

    f(G, C) = max( f(G - {i}, C),
                   max over S ∋ i, S ⊆ G, b ∈ ∩S - C of
                       (|S| - 1) * w(b) + f(S, C + {b}) + f(G - S, C) )

with ``i = min(G)``. Memoised on ``(G, C)``; exponential in N, so guarded.
The optimal orders are rebuilt from the choices and can be checked by
replaying them through a simulator.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache

__all__ = ["MAX_ORACLE_REQUESTS", "MAX_ORACLE_BLOCKS", "optimal_orders", "optimal_savings"]

MAX_ORACLE_REQUESTS = 12
MAX_ORACLE_BLOCKS = 6


#: ``f(group, placed) -> (savings, (part, block) or ())``, and the requests as sets
_Solved = tuple[Callable[[int, frozenset[int]], tuple[float, tuple[int, ...]]], list[frozenset[int]]]


def _solve(sets: Sequence[Sequence[int]], weights: Sequence[float]) -> _Solved:
    n = len(sets)
    if n > MAX_ORACLE_REQUESTS or any(len(s) > MAX_ORACLE_BLOCKS for s in sets):
        raise ValueError(
            f"oracle handles at most {MAX_ORACLE_REQUESTS} requests of {MAX_ORACLE_BLOCKS} blocks"
        )
    fs = [frozenset(s) for s in sets]
    if any(len(f) != len(s) for f, s in zip(fs, sets)):
        raise ValueError("oracle requests must not repeat a block")

    @cache
    def f(group: int, placed: frozenset[int]) -> tuple[float, tuple[int, ...]]:
        if group & (group - 1) == 0:
            return 0.0, ()
        i = (group & -group).bit_length() - 1
        rest = group & ~(1 << i)
        best: float = f(rest, placed)[0]
        choice: tuple[int, ...] = ()
        mine = fs[i] - placed
        sub = rest
        while sub:
            common = mine
            m = sub
            while m and common:
                j = (m & -m).bit_length() - 1
                common = common & fs[j]
                m &= m - 1
            if common:
                part = sub | (1 << i)
                size = bin(part).count("1")
                others = f(group & ~part, placed)[0]
                for b in common:
                    v = (size - 1) * weights[b] + f(part, placed | {b})[0] + others
                    if v > best:
                        best, choice = v, (part, b)
            sub = (sub - 1) & rest
        return best, choice

    return f, fs


def optimal_savings(sets: Sequence[Sequence[int]], weights: Sequence[float]) -> float:
    """Largest number of tokens any block ordering can share (``sets``:
    distinct block ids per request; ``weights[b]``: tokens of block b)."""
    f, fs = _solve(sets, weights)
    return f((1 << len(fs)) - 1, frozenset())[0]


def optimal_orders(sets: Sequence[Sequence[int]], weights: Sequence[float]) -> list[list[int]]:
    """One block order per request achieving :func:`optimal_savings`."""
    f, fs = _solve(sets, weights)
    orders: list[list[int]] = [[] for _ in fs]
    stack: list[tuple[int, frozenset[int], tuple[int, ...]]] = [((1 << len(fs)) - 1, frozenset(), ())]
    while stack:
        group, placed, prefix = stack.pop()
        if not group:
            continue
        if group & (group - 1) == 0:
            i = group.bit_length() - 1
            orders[i] = list(prefix) + sorted(fs[i] - set(prefix))
            continue
        _, choice = f(group, placed)
        if not choice:
            i = (group & -group).bit_length() - 1
            stack.append((group & ~(1 << i), placed, prefix))
            stack.append((1 << i, placed, prefix))
            continue
        part, b = choice
        stack.append((group & ~part, placed, prefix))
        stack.append((part, placed | {b}, prefix + (b,)))
    return orders
