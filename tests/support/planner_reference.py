"""The batch planner as it was before the flat-array rewrite (commit a4e1d82),
kept in the tests as the oracle the fast planner must match exactly.

It calls the same clustering and layout primitives (``build_forest``,
``Emitter``, ``popular_rank``), so it stays a valid oracle when those change:
what it pins is the planner's own work (interning, chunking, assembly), done
here the slow, obvious way, in one process.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import numpy as np

from contextpilot.core.blocks import Block, BlockTable
from contextpilot.core.candidates import incidence, popular_rank
from contextpilot.core.cluster import Forest, build_forest
from contextpilot.core.order import Emitter, PlanItems
from contextpilot.core.planner import Plan


def _items(contexts: Sequence[Sequence[Block]], table: BlockTable, with_keys: bool):
    requests = table.intern_many(contexts)
    n = len(table)
    values = [table.block(i) for i in range(n)]
    tokens = list(table.token_list)
    base = list(range(n))
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
    rows, cols = incidence(requests)
    freq = np.bincount(cols, minlength=n_pids)
    order = np.argsort(popular_rank(rows, cols, n, freq), kind="stable")
    return [order[i : i + chunk_size].tolist() for i in range(0, n, chunk_size)]


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


def reference_plan(
    contexts,
    *,
    token_counter=None,
    table=None,
    index=None,
    recent=None,
    k=6,
    chunk_size=100_000,
    with_keys=None,
) -> Plan:
    table = table if table is not None else BlockTable(token_counter)
    if with_keys is None:
        with_keys = index is not None or recent is not None
    items, values = _items(contexts, table, with_keys)
    emitter = Emitter(items, index, recent)
    tok = items.tokens
    order, out, keys, tokens, groups, shared = [], [], [], [], [], 0
    for chunk in _chunks(items.requests, chunk_size, len(tok)):
        part = [items.requests[i] for i in chunk]
        forest = build_forest([frozenset(r) for r in part], tok, k=k)
        shared += int(forest.savings(tok))
        o, seqs = emitter.emit(forest, part)
        order.extend(chunk[j] for j in o)
        out.extend([[values[p] for p in q] for q in seqs])
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
