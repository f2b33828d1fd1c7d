"""Planning: block order within each request and the order to run them.

``plan`` is the one entry point for batch and online use: it groups the
requests into a prefix-sharing forest (:mod:`contextpilot.core.cluster`),
then lays each request out along it (:mod:`contextpilot.core.order`),
following what the live index says the engine holds. A batch of one is the
online case.

Huge batches are cut, along a similarity sort, into chunks of at most
``chunk_size`` requests, planned in parallel worker processes, which bounds
memory per process; requests that share blocks sort together, so little
reuse crosses a cut.

Cost: near-linear in the total number of blocks (see the cluster module).
"""

from __future__ import annotations

import gc
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import chain, repeat
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
    #: stable block keys and token lengths, aligned with ``contexts`` (empty
    #: unless keys were asked for: ``with_keys`` or live state)
    keys: list[list[int]]
    tokens: list[list[int]]
    #: input indices of each prefix-sharing group, groups in schedule order
    groups: list[list[int]] = field(default_factory=list)
    #: prompt tokens reusable within the plan at unbounded cache
    shared_tokens: int = 0
    #: tokens of all blocks planned
    total_tokens: int = 0


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


def _chunks(requests: list[list[int]], chunk_size: int, n_pids: int) -> list[list[int]]:
    n = len(requests)
    if n <= chunk_size:
        return [list(range(n))]
    rows, cols = _csr(requests)
    freq = np.bincount(cols, minlength=n_pids)
    order = np.argsort(_popular_key(rows, cols, n, freq), kind="stable")
    return [order[i : i + chunk_size].tolist() for i in range(0, n, chunk_size)]


@dataclass
class _ChunkPlan:
    left: list[int]
    right: list[int]
    roots: list[int]
    shared: int
    #: schedule and pid sequences, when planned without live state
    order: list[int] | None = None
    seqs: list[list[int]] | None = None


def _plan_chunk(
    requests: list[list[int]], tokens: Sequence[int], k: int, backend: str, emit: bool
) -> _ChunkPlan:
    """Forest (and, without live state, the layout) of one chunk. Runs in
    this process or a worker; arguments and result pickle compactly."""
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        forest = build_forest([frozenset(r) for r in requests], tokens, k=k, backend=backend)
    finally:
        if gc_was_on:
            gc.enable()
    out = _ChunkPlan(forest.left, forest.right, forest.roots, int(forest.savings(tokens)))
    if emit:
        items = PlanItems([], list(tokens), requests)
        out.order, out.seqs = Emitter(items).emit(forest, requests)
    return out


def _forest_of(requests: list[list[int]], cp: _ChunkPlan) -> Forest:
    inter = [frozenset(r) for r in requests]
    for a, b in zip(cp.left, cp.right):
        inter.append(inter[a] & inter[b])
    return Forest(len(requests), cp.left, cp.right, inter, cp.roots)


def _chunk_plans(
    parts: list[list[list[int]]], tokens: list[int], k: int, backend: str, emit: bool, workers: int
):
    if workers <= 1 or len(parts) <= 1:
        for part in parts:
            yield _plan_chunk(part, tokens, k, backend, emit)
        return
    # spawn, not fork: the caller may be a threaded server
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(parts)), mp_context=ctx) as pool:
        yield from pool.map(_plan_chunk, parts, repeat(tokens), repeat(k), repeat(backend), repeat(emit))


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
    workers: int = 1,
) -> Plan:
    """Plan already-validated contexts (see ``blocks.validate_contexts``).

    ``index``/``recent``: live state to follow (read only here; the caller
    records what was sent). ``with_keys``: also return stable block keys
    (default: when live state is given). ``backend``: ``"scipy"`` or
    ``"torch"`` for the overlap product. ``workers``: processes planning
    the chunks of a huge batch in parallel (default 1; they are spawned, so
    a calling script needs the usual ``if __name__ == "__main__":`` guard).
    Deterministic for the same inputs and state, whatever ``workers``.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    gc_was_on = gc.isenabled()
    gc.disable()  # millions of small containers: the cyclic GC only costs here
    try:
        return _plan(
            contexts, token_counter, table, index, recent, k, chunk_size, with_keys, backend, workers
        )
    finally:
        if gc_was_on:
            gc.enable()


def _plan(contexts, token_counter, table, index, recent, k, chunk_size, with_keys, backend, workers) -> Plan:
    table = table if table is not None else BlockTable(token_counter)
    if with_keys is None:
        with_keys = index is not None or recent is not None
    items, values = _items(contexts, table, with_keys)
    emitter = Emitter(items, index, recent)
    live = emitter.index is not None or emitter.recent is not None
    chunks = _chunks(items.requests, chunk_size, len(items.tokens))
    parts = [[items.requests[i] for i in chunk] for chunk in chunks]
    tok = items.tokens
    order: list[int] = []
    out: list[list[Block]] = []
    keys: list[list[int]] = []
    tokens: list[list[int]] = []
    groups: list[list[int]] = []
    shared = 0
    plans = _chunk_plans(parts, tok, k, backend, not live, workers)
    for chunk, part, cp in zip(chunks, parts, plans):
        forest = _forest_of(part, cp) if live else Forest(len(part), cp.left, cp.right, [], cp.roots)
        if live:
            o, seqs = emitter.emit(forest, part)
        else:
            assert cp.order is not None and cp.seqs is not None
            o, seqs = cp.order, cp.seqs
        shared += cp.shared
        order.extend(chunk[j] for j in o)
        get_value = values.__getitem__
        out.extend([list(map(get_value, q)) for q in seqs])
        if with_keys:
            keys.extend([[items.keys[p] for p in q] for q in seqs])
            tokens.extend([[tok[p] for p in q] for q in seqs])
        groups.extend(_groups(forest, chunk))
    return Plan(
        order=order,
        contexts=out,
        keys=keys,
        tokens=tokens,
        groups=groups,
        shared_tokens=shared,
        total_tokens=sum(map(tok.__getitem__, chain.from_iterable(items.requests))),
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
