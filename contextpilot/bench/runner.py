"""Replay workloads through the simulator for each method and capacity."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from contextpilot.bench.methods import BATCH_METHODS, ours_online
from contextpilot.bench.workloads import Workload
from contextpilot.sim.bounds import dedup_ceiling, trie_bound
from contextpilot.sim.replay import build_prompts, mean_tokens, replay

__all__ = ["Row", "capacities", "run_batch", "run_online", "workload_bounds"]

DEFAULT_MULTIPLIERS: tuple[float | None, ...] = (None, 64, 16)


@dataclass
class Row:
    workload: str
    method: str
    mode: str
    #: capacity label ("inf", "64x", ...) -> hit ratio
    hit: dict[str, float] = field(default_factory=dict)
    plan_seconds: float = 0.0
    #: online only: per-request planning latency percentiles, milliseconds
    latency_ms: dict[str, float] = field(default_factory=dict)


def capacities(
    wl: Workload, multipliers: Sequence[float | None] = DEFAULT_MULTIPLIERS
) -> list[tuple[str, float | None]]:
    """(label, tokens) per multiplier of the mean prompt; ``None`` = unbounded."""
    m = mean_tokens(build_prompts(wl.contexts, wl.queries, wl.token_counter, wl.system_tokens))
    out = []
    for x in multipliers:
        out.append(("inf", None) if x is None else (f"{x:g}x", x * m))
    return out


def _hits(wl: Workload, order: Sequence[int], reordered, caps, mode: str = "radix") -> dict[str, float]:
    prompts = build_prompts(reordered, [wl.queries[i] for i in order], wl.token_counter, wl.system_tokens)
    return {label: replay(prompts, c, mode) for label, c in caps}


def _check(wl: Workload, order: Sequence[int], reordered) -> None:
    """Every method must return a permutation with each request's blocks."""
    if sorted(order) != list(range(len(wl))):
        raise AssertionError("order is not a permutation of the requests")
    for j, i in enumerate(order):
        if sorted(map(repr, reordered[j])) != sorted(map(repr, wl.contexts[i])):
            raise AssertionError(f"request {i}: blocks changed")


def run_batch(wl: Workload, method: str | Callable, caps, mode: str = "radix") -> Row:
    fn = BATCH_METHODS[method] if isinstance(method, str) else method
    name = method if isinstance(method, str) else getattr(fn, "__name__", "custom")
    t0 = time.perf_counter()
    order, reordered = fn(wl.contexts, wl.token_counter)
    dt = time.perf_counter() - t0
    _check(wl, order, reordered)
    return Row(wl.name, name, "batch", _hits(wl, order, reordered, caps, mode), dt)


def run_online(wl: Workload, caps, mode: str = "radix") -> Row:
    """Online replay; the live index is told each capacity, as a user would."""
    row = Row(wl.name, "contextpilot", "online")
    for label, c in caps:
        t0 = time.perf_counter()
        order, reordered = ours_online(wl.contexts, wl.token_counter, c)
        dt = time.perf_counter() - t0
        _check(wl, order, reordered)
        row.hit.update(_hits(wl, order, reordered, [(label, c)], mode))
        if label == caps[0][0]:
            row.plan_seconds = dt
            row.latency_ms = {"mean": 1000 * dt / max(1, len(wl))}
    return row


def workload_bounds(wl: Workload) -> dict[str, float]:
    prompts = build_prompts(wl.contexts, wl.queries, wl.token_counter, wl.system_tokens)
    return {"trie_bound_as_given": trie_bound(prompts), "dedup_ceiling": dedup_ceiling(prompts)}
