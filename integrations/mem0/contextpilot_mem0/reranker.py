"""``ContextPilotReranker``: mem0's reranker slot, used to order search
results for prefix-cache reuse.

mem0 runs a reranker inside ``Memory.search(..., rerank=True)`` (and
``AsyncMemory.search``) on the results of the vector search. This one keeps
every result and mem0's scores, and returns them in the order contextpilot
chose: memories the engine already holds from earlier prompts first, in the
order they were sent, so consecutive prompts share long prefixes. Each
result (a copy) gains ``relevance_rank`` (its position in mem0's ranking, 0
= most relevant), ``rerank_score`` (mem0's own score, so nothing downstream
loses relevance) and ``contextpilot_request_id`` (the live index's id, for
engine eviction notices).

Configure it the mem0 way (importing ``contextpilot_mem0`` registers the
provider)::

    Memory.from_config({..., "reranker": {"provider": "contextpilot", "config": {}}})

or assign ``memory.reranker = ContextPilotReranker(pilot=...)``.

Identity of a memory: its mem0 id plus its content hash (an UPDATE that
changes the text is a new block). Cost: one planning call per search.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mem0.configs.rerankers.base import BaseRerankerConfig
from mem0.reranker.base import BaseReranker
from pydantic import ConfigDict, Field

from contextpilot.plugins import Item, Planner, estimate_tokens, stable_key

__all__ = ["RANK_KEY", "REQUEST_KEY", "ContextPilotReranker", "ContextPilotRerankerConfig", "memory_key"]

RANK_KEY = "relevance_rank"
REQUEST_KEY = "contextpilot_request_id"


class ContextPilotRerankerConfig(BaseRerankerConfig):
    """``pilot``: a ``contextpilot.ContextPilot`` to share (default: a fresh
    local one, sized by ``capacity_tokens``, the engine's KV cache in tokens);
    ``server_url`` / ``api_key`` / ``timeout``: plan on a contextpilot server."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    provider: str | None = "contextpilot"
    pilot: Any = None
    server_url: str | None = None
    timeout: float = Field(default=30.0, gt=0)
    capacity_tokens: float | None = Field(default=None, gt=0)


def memory_key(item: Mapping[str, Any]) -> int:
    """Block identity of a mem0 result: its id and content hash."""
    return stable_key(f"\x00mem0\x00{item.get('id')}\x00{item.get('hash') or item['memory']}")


def check_results(results: Any, name: str = "results") -> list[Mapping[str, Any]]:
    """mem0 results (a list, or ``{"results": [...]}``), or ``ValueError`` naming the bad one."""
    items = results.get("results") if isinstance(results, Mapping) else results
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise ValueError(f"{name} must be mem0 output: {{'results': [...]}} or a list of results")
    for i, item in enumerate(items):
        if not isinstance(item, Mapping) or not isinstance(item.get("memory"), str):
            raise ValueError(f"{name}[{i}] must be a mem0 result with a string 'memory'")
        if not isinstance(item.get("id"), str) or not item["id"]:
            raise ValueError(f"{name}[{i}] has no mem0 'id'")
    return list(items)


class ContextPilotReranker(BaseReranker):
    """mem0 reranker that orders for the prefix cache; see the module docstring."""

    def __init__(
        self, config: ContextPilotRerankerConfig | Mapping[str, Any] | None = None, **kwargs: Any
    ) -> None:
        if config is None or isinstance(config, Mapping):
            config = ContextPilotRerankerConfig(**{**dict(config or {}), **kwargs})
        elif kwargs:
            raise ValueError("give either a config or keyword options, not both")
        if not isinstance(config, ContextPilotRerankerConfig):
            raise ValueError(f"config must be a ContextPilotRerankerConfig, got {type(config).__name__}")
        self.config = config
        self.planner = Planner(
            pilot=config.pilot,
            server_url=config.server_url,
            api_key=config.api_key,
            timeout=config.timeout,
            capacity_tokens=config.capacity_tokens,
        )
        #: the pilot in use (``None`` with a server), for stats and evictions
        self.pilot = self.planner.pilot

    def rerank(
        self, query: str, documents: list[dict[str, Any]], top_k: int | None = None
    ) -> list[dict[str, Any]]:
        """mem0's results, kept whole (``top_k`` already applied by mem0's
        search), in cache order. O(k) besides planning."""
        items = check_results(documents, "documents")
        if not items:
            return []
        (placement,) = self.planner.plan(
            [[Item(memory_key(m), estimate_tokens(m["memory"])) for m in items]], [None], False
        )
        out = []
        for p in placement.order:
            item = dict(items[p])
            item[RANK_KEY] = p
            item.setdefault("rerank_score", item.get("score"))
            if placement.request_id is not None:
                item[REQUEST_KEY] = placement.request_id
            out.append(item)
        return out
