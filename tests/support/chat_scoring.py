"""Chat prompts scored the way contextpilot's simulated engine scores them:
rendered with its chat template, tokenised with its tokeniser, then served
in order through a radix prefix cache (``contextpilot.sim``).

Used by the plugins' suites (integrations/*/tests), which compare the
prompts a framework sends with and without contextpilot, and the orders of
the documents in them.
Deterministic: the same prompts give the same figures. Cost: O(total
prompt tokens) per call (one render, one tokenisation, one cache walk each).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from contextpilot.server.sim_engine import render_chat, tokenize
from contextpilot.sim import RadixCacheSim

Messages = list[dict[str, str]]

__all__ = ["common_prefix", "hit_ratio", "prompt_tokens", "rendered", "shareable_prefix", "uncached_tokens"]


def rendered(messages: Messages) -> str:
    """The text a chat engine sees (the simulated engine's template)."""
    return render_chat(messages)


def common_prefix(a: Sequence[object], b: Sequence[object]) -> int:
    """Length of the longest common prefix of ``a`` and ``b`` (characters of
    two texts, or items of two lists). O(that length)."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def shareable_prefix(first: Sequence[object], second: Collection[object]) -> int:
    """Length of the longest prefix of ``first`` made only of items that
    ``second`` also holds: the most a reordering of the second request can
    share with the first (documents by id). O(that length)."""
    n = 0
    while n < len(first) and first[n] in second:
        n += 1
    return n


def _served(prompts: Sequence[Messages], capacity: float | None) -> RadixCacheSim:
    sim = RadixCacheSim(capacity)
    for messages in prompts:
        toks = tokenize(render_chat(messages))
        sim.serve(toks, [1] * len(toks))
    return sim


def hit_ratio(prompts: Sequence[Messages], capacity: float | None = None) -> float:
    """Token hit ratio of serving the prompts in order (``capacity`` tokens of
    cache, unbounded when None)."""
    return _served(prompts, capacity).hit_ratio


def uncached_tokens(prompts: Sequence[Messages], capacity: float | None = None) -> int:
    """Prompt tokens the engine must compute (not found in the prefix cache)."""
    sim = _served(prompts, capacity)
    return sim.total_tokens - sim.hit_tokens


def prompt_tokens(prompts: Sequence[Messages]) -> int:
    """All prompt tokens, cached or not."""
    return sum(len(tokenize(render_chat(m))) for m in prompts)
