"""Replay workloads through the simulator for each method and capacity."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from contextpilot.bench.methods import BATCH_METHODS, External, ours_online
from contextpilot.bench.workloads import Workload
from contextpilot.core.blocks import BlockTable
from contextpilot.sim.bounds import dedup_ceiling, trie_bound, trie_tokens
from contextpilot.sim.oracle import MAX_ORACLE_BLOCKS, MAX_ORACLE_REQUESTS, optimal_savings
from contextpilot.sim.replay import build_prompts, mean_tokens, replay

__all__ = [
    "Row",
    "capacities",
    "oracle_gap",
    "run_batch",
    "run_online",
    "workload_bounds",
]

DEFAULT_MULTIPLIERS: tuple[float | None, ...] = (None, 64, 16)
CACHES = ("radix", "paged")


@dataclass
class Row:
    workload: str
    method: str
    mode: str
    #: "radix" (SGLang-like) or "paged" (vLLM-like 16-token blocks)
    cache: str = "radix"
    #: capacity label ("inf", "64x", ...) -> hit ratio
    hit: dict[str, float] = field(default_factory=dict)
    plan_seconds: float = 0.0
    #: online: mean planning latency per request, milliseconds
    latency_ms: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def capacities(
    wl: Workload, multipliers: Sequence[float | None] = DEFAULT_MULTIPLIERS
) -> list[tuple[str, float | None]]:
    """(label, tokens) per multiplier of the mean prompt; ``None`` = unbounded."""
    m = mean_tokens(build_prompts(wl.contexts, wl.queries, wl.token_counter, wl.system_tokens))
    return [("inf", None) if x is None else (f"{x:g}x", x * m) for x in multipliers]


def _hits(wl: Workload, order: Sequence[int], reordered, caps, cache: str) -> dict[str, float]:
    prompts = build_prompts(reordered, [wl.queries[i] for i in order], wl.token_counter, wl.system_tokens)
    return {label: replay(prompts, c, cache) for label, c in caps}


def _check(wl: Workload, order: Sequence[int], reordered, who: str) -> None:
    """Every method must return a permutation with each request's blocks."""
    if sorted(order) != list(range(len(wl))) or len(reordered) != len(wl):
        raise AssertionError(f"{who}: order is not a permutation of the requests")
    for j, i in enumerate(order):
        if sorted(map(repr, reordered[j])) != sorted(map(repr, wl.contexts[i])):
            raise AssertionError(f"{who}: request {i} came back with other blocks")


def run_batch(wl: Workload, method: str | Callable, caps, caches: Sequence[str] = ("radix",)) -> list[Row]:
    """One row per cache model for a batch method."""
    fn = BATCH_METHODS[method] if isinstance(method, str) else method
    name = method if isinstance(method, str) else getattr(fn, "name", getattr(fn, "__name__", "custom"))
    t0 = time.perf_counter()
    order, reordered = fn(wl.contexts, wl.token_counter)
    dt = time.perf_counter() - t0
    if isinstance(fn, External) and fn.last_seconds is not None:
        dt = fn.last_seconds
    _check(wl, order, reordered, name)
    return [
        Row(wl.name, name, "batch", cache, _hits(wl, order, reordered, caps, cache), dt) for cache in caches
    ]


def run_online(
    wl: Workload, caps, caches: Sequence[str] = ("radix",), external: External | None = None
) -> list[Row]:
    """Online replay (arrival order, one request at a time). Ours is told
    each capacity, as a user would configure it; an external planner runs
    once and is judged at every capacity."""
    rows = {
        cache: Row(wl.name, external.name if external else "contextpilot", "online", cache)
        for cache in caches
    }
    if external is not None:
        t0 = time.perf_counter()
        order, reordered = external(wl.contexts, wl.token_counter, mode="online")
        dt = external.last_seconds if external.last_seconds is not None else time.perf_counter() - t0
        _check(wl, order, reordered, external.name)
        for cache, row in rows.items():
            row.hit = _hits(wl, order, reordered, caps, cache)
            row.plan_seconds, row.latency_ms = dt, 1000 * dt / max(1, len(wl))
        return list(rows.values())
    for label, c in caps:
        t0 = time.perf_counter()
        order, reordered = ours_online(wl.contexts, wl.token_counter, c)
        dt = time.perf_counter() - t0
        _check(wl, order, reordered, "contextpilot online")
        for cache, row in rows.items():
            row.hit.update(_hits(wl, order, reordered, [(label, c)], cache))
            if label == caps[0][0]:
                row.plan_seconds, row.latency_ms = dt, 1000 * dt / max(1, len(wl))
    return list(rows.values())


def workload_bounds(wl: Workload) -> dict[str, float]:
    prompts = build_prompts(wl.contexts, wl.queries, wl.token_counter, wl.system_tokens)
    return {"trie_bound_as_given": trie_bound(prompts), "dedup_ceiling": dedup_ceiling(prompts)}


def oracle_gap(
    wl: Workload,
    plan_fn: Callable,
    trials: int = 25,
    seed: int = 0,
    max_requests: int = MAX_ORACLE_REQUESTS,
    max_blocks: int = MAX_ORACLE_BLOCKS,
) -> dict[str, float]:
    """Tokens a planner shares on small batches versus the exact optimum.

    Batches of 6..``max_requests`` requests from one group (conversation or
    topic), each cut to its first ``max_blocks`` distinct blocks.
    ``plan_fn(contexts, token_counter) -> (order, reordered)``.
    """
    rnd = random.Random(seed)
    table = BlockTable(wl.token_counter)
    ids = table.intern_many(wl.contexts)
    w = table.token_list
    by_group: dict[int, list[int]] = {}
    for i, g in enumerate(wl.groups or [0] * len(wl)):
        by_group.setdefault(g, []).append(i)
    groups = [g for g in by_group.values() if len(g) >= 6]
    if not groups:
        return {"trials": 0, "ratio": float("nan"), "worst": float("nan")}
    got = best = 0.0
    worst = 1.0
    for _ in range(trials):
        g = rnd.choice(groups)
        pick = rnd.sample(g, rnd.randint(6, min(max_requests, len(g))))
        sets = [list(dict.fromkeys(ids[i]))[:max_blocks] for i in pick]
        opt = optimal_savings(sets, w)
        _, seqs = plan_fn(sets, w.__getitem__)
        prompts = [(s, [w[b] for b in s]) for s in seqs]
        mine = sum(sum(p[1]) for p in prompts) - trie_tokens(prompts)
        got += mine
        best += opt
        if opt:
            worst = min(worst, mine / opt)
    return {"trials": trials, "ratio": got / best if best else 1.0, "worst": worst}
