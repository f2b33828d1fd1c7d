"""Reference points printed beside measured hit ratios.

* fixed-order trie bound: the hit ratio of the prompts *as given* at an
  unbounded cache, whatever the execution order: ``1 - |trie| / sum``,
  with the trie weighted by tokens;
* dedup ceiling: no plan can compute fewer tokens than each distinct block
  (and each distinct query, and the system prompt) once:
  ``1 - distinct tokens / sum``.
"""

from __future__ import annotations

from collections.abc import Sequence

from contextpilot.sim.replay import Prompt

__all__ = ["dedup_ceiling", "trie_bound", "trie_tokens"]


def trie_tokens(prompts: Sequence[Prompt]) -> int:
    """Tokens in the prefix trie of the prompts (each shared prefix once)."""
    root: dict = {}
    size = 0
    for keys, weights in prompts:
        node = root
        for k, w in zip(keys, weights):
            nxt = node.get(k)
            if nxt is None:
                nxt = node[k] = {}
                size += w
            node = nxt
    return size


def _total(prompts: Sequence[Prompt]) -> int:
    return sum(sum(w) for _, w in prompts)


def trie_bound(prompts: Sequence[Prompt]) -> float:
    total = _total(prompts)
    return 1 - trie_tokens(prompts) / total if total else 0.0


def dedup_ceiling(prompts: Sequence[Prompt]) -> float:
    total = _total(prompts)
    distinct: dict = {}
    for keys, weights in prompts:
        for k, w in zip(keys, weights):
            distinct[k] = w
    return 1 - sum(distinct.values()) / total if total else 0.0
