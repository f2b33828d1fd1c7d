"""Planning: block order within each request and the order to run them.

``plan`` is the one entry point for batch and online use: it groups the
requests into a prefix-sharing forest (:mod:`contextpilot.core.cluster`),
then lays each request out along it (:mod:`contextpilot.core.order`),
following what the live index says the engine holds. A batch of one is the
online case.

Huge batches are cut, along a similarity sort, into chunks of at most
``chunk_size`` requests planned one after another, which bounds memory;
requests that share blocks sort together, so little reuse crosses a cut.

Cost: near-linear in the total number of blocks (see the cluster module).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from contextpilot.core.blocks import Block, BlockTable
from contextpilot.core.cluster import Forest, _csr, _popular_key, build_forest
from contextpilot.core.index import PrefixIndex
from contextpilot.core.order import Emitter, PlanItems
from contextpilot.core.recent import RecentRequests

__all__ = ["Plan", "plan"]

DEFAULT_CHUNK = 100_000


@dataclass
class Plan:
    """A schedule: run ``contexts[j]`` (``= input[order[j]]`` reordered) j-th."""

    order: list[int]
    contexts: list[list[Block]]
    #: stable block keys and token lengths, aligned with ``contexts``
    keys: list[list[int]]
    tokens: list[list[int]]
    #: input indices of each prefix-sharing group, groups in schedule order
    groups: list[list[int]] = field(default_factory=list)
    #: prompt tokens reusable within the plan at unbounded cache
    shared_tokens: int = 0


def _items(
    contexts: Sequence[Sequence[Block]], table: BlockTable, with_keys: bool
) -> tuple[PlanItems, list[Block]]:
    """Planning ids: the first copy of a block in a request is the block's
    dense id; a k-th copy gets an id of its own (shared across requests)."""
    requests = table.intern_many(contexts)
    n = len(table)
    values = [table.block(i) for i in range(n)]
    tokens = list(table.token_list)
    base = list(range(n))  # pid -> dense block id
    extra: dict[tuple[int, int], int] = {}
    for pids in requests:
        if len(set(pids)) == len(pids):
            continue
        seen: dict[int, int] = {}
        for j, i in enumerate(pids):
            o = seen.get(i, 0)
            seen[i] = o + 1
            if o:
                p = extra.get((i, o))
                if p is None:
                    p = extra[(i, o)] = len(values)
                    values.append(values[i])
                    tokens.append(tokens[i])
                    base.append(i)
                pids[j] = p
    keys = [table.key(i) for i in base] if with_keys else []
    return PlanItems(keys, tokens, requests), values


def _chunks(sets: list[frozenset[int]], chunk_size: int, n_pids: int) -> list[list[int]]:
    n = len(sets)
    if n <= chunk_size:
        return [list(range(n))]
    rows, cols = _csr(sets)
    freq = np.bincount(cols, minlength=n_pids)
    order = np.argsort(_popular_key(rows, cols, n, freq), kind="stable")
    return [order[i : i + chunk_size].tolist() for i in range(0, n, chunk_size)]


def plan(
    contexts: Sequence[Sequence[Block]],
    *,
    token_counter: Any = None,
    table: BlockTable | None = None,
    index: PrefixIndex | None = None,
    recent: RecentRequests | None = None,
    k: int = 6,
    chunk_size: int = DEFAULT_CHUNK,
    with_keys: bool | None = None,
    backend: str = "scipy",
) -> Plan:
    """Plan already-validated contexts (see ``blocks.validate_contexts``).

    ``index``/``recent``: live state to follow (read only here; the caller
    records what was sent). ``with_keys``: also return stable block keys
    (default: when live state is given). ``backend``: ``"scipy"`` or
    ``"torch"`` for the overlap product. Deterministic for the same inputs
    and state.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    table = table if table is not None else BlockTable(token_counter)
    if with_keys is None:
        with_keys = index is not None or recent is not None
    items, values = _items(contexts, table, with_keys)
    sets = [frozenset(p) for p in items.requests]
    emitter = Emitter(items, index, recent)
    order: list[int] = []
    seqs: list[list[int]] = []
    groups: list[list[int]] = []
    shared = 0.0
    for chunk in _chunks(sets, chunk_size, len(items.keys)):
        forest = build_forest([sets[i] for i in chunk], items.tokens, k=k, backend=backend)
        shared += forest.savings(items.tokens)
        o, s = emitter.emit(forest, [items.requests[i] for i in chunk])
        order.extend(chunk[j] for j in o)
        seqs.extend(s)
        groups.extend(_groups(forest, chunk))
    tok = items.tokens
    return Plan(
        order=order,
        contexts=[[values[p] for p in s] for s in seqs],
        keys=[[items.keys[p] for p in s] for s in seqs] if with_keys else [],
        tokens=[[tok[p] for p in s] for s in seqs],
        groups=groups,
        shared_tokens=int(shared),
    )


def _groups(forest: Forest, chunk: list[int]) -> list[list[int]]:
    out = []
    for root in forest.roots:
        leaves, stack = [], [root]
        while stack:
            v = stack.pop()
            ch = forest.children(v)
            if ch is None:
                leaves.append(chunk[v])
            else:
                stack.extend((ch[1], ch[0]))
        out.append(leaves)
    return out
