"""Turn a batch into prompts and replay it through a cache simulator.

A prompt is ``system prompt + blocks + query``; keys are dense ints (the
system prompt is key 0), so the simulators' hashing is deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from contextpilot.core.blocks import Block, BlockTable
from contextpilot.sim.paged import PagedCacheSim
from contextpilot.sim.radix import RadixCacheSim

__all__ = ["Prompt", "build_prompts", "mean_tokens", "replay"]

Prompt = tuple[list[int], list[int]]


def build_prompts(
    contexts: Sequence[Sequence[Block]],
    queries: Sequence[str] | None,
    token_counter: Callable[[Block], int] | None = None,
    system_tokens: int = 120,
    table: BlockTable | None = None,
) -> list[Prompt]:
    """Prompts in the given order. Blocks and queries share one key space;
    queries are tagged so a query never matches a block of equal text."""
    table = table if table is not None else BlockTable(token_counter)
    qtable = BlockTable()
    sys_key = 0
    prompts: list[Prompt] = []
    for i, ctx in enumerate(contexts):
        keys = [sys_key] if system_tokens else []
        weights = [system_tokens] if system_tokens else []
        for b in ctx:
            j = table.intern(b)
            keys.append(2 * j + 1)
            weights.append(table.tokens(j))
        if queries is not None:
            q = qtable.intern(queries[i])
            keys.append(2 * q + 2)
            weights.append(qtable.tokens(q))
        prompts.append((keys, weights))
    return prompts


def mean_tokens(prompts: Sequence[Prompt]) -> float:
    return sum(sum(w) for _, w in prompts) / max(1, len(prompts))


def replay(
    prompts: Sequence[Prompt],
    capacity: float | None = None,
    mode: str = "radix",
    page_tokens: int = 16,
) -> float:
    """Hit ratio of serving ``prompts`` in order with the given cache."""
    if mode == "radix":
        sim: RadixCacheSim | PagedCacheSim = RadixCacheSim(capacity)
    elif mode == "paged":
        sim = PagedCacheSim(capacity, page_tokens)
    else:
        raise ValueError(f"mode must be 'radix' or 'paged', got {mode!r}")
    for keys, weights in prompts:
        sim.serve(keys, weights)
    return sim.hit_ratio
