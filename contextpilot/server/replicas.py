"""The engine replicas one server fronts: per replica a live index (its own
:class:`~contextpilot.core.pilot.ContextPilot`), an engine proxy and load,
plus the :class:`~contextpilot.server.router.Router` that chooses among them.

The first replica's pilot is the *primary*: it also holds the multi-turn
dedup sessions, which belong to conversations, not to engines. With one
replica this is exactly the single-engine server.

Invariants: 1..``MAX_REPLICAS`` replicas with unique names and URLs; a
request id is live in at most one replica's index (ids are globally unique
and each request is recorded on the replica it was routed to).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from contextpilot.core.blocks import Block, BlockTable
from contextpilot.core.fanout import BatchView, Placement
from contextpilot.core.index import IndexStats
from contextpilot.core.pilot import ContextPilot
from contextpilot.core.validation import validate_contexts
from contextpilot.server.config import ServerConfig
from contextpilot.server.engine_client import EngineClient
from contextpilot.server.engine_specs import EngineSpec, load_engines_file, specs_from_urls
from contextpilot.server.router import Router

__all__ = ["Replica", "Replicas", "build_replicas", "engine_specs"]


@dataclass
class Replica:
    position: int
    spec: EngineSpec
    pilot: ContextPilot
    proxy: EngineClient

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def url(self) -> str:
        return self.spec.url


class Replicas:
    """Replicas in configuration order, and their router."""

    def __init__(
        self, items: Sequence[Replica], router: Router, fallback: EngineClient | None = None
    ) -> None:
        if not items or len(items) != len(router):
            raise ValueError("one router slot per replica")
        self.items = list(items)
        self.router = router
        #: engine used only when no replica can take a request (no index: its cache is not tracked)
        self.fallback = fallback
        self._by_ref = {r.name: r for r in self.items}
        self._by_ref.update({r.url: r for r in self.items})

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Replica]:
        return iter(self.items)

    def __getitem__(self, i: int) -> Replica:
        return self.items[i]

    @property
    def primary(self) -> Replica:
        return self.items[0]

    @property
    def multi(self) -> bool:
        return len(self.items) > 1

    def find(self, ref: str) -> Replica | None:
        """A replica by name or URL (a trailing slash is ignored)."""
        ref = ref.strip()
        return self._by_ref.get(ref) or self._by_ref.get(ref.rstrip("/"))

    def holding(self, rid: str) -> Replica | None:
        """The replica whose index holds this (normalised) request id."""
        for r in self.items:
            if rid in r.pilot.index:
                return r
        return None

    def names(self) -> list[str]:
        return [r.name for r in self.items]

    def keys(self, blocks: Sequence[Block]) -> tuple[list[int], list[int]]:
        """Stable block keys and token lengths, as every replica's index
        keys them (the server's pilots share the default token counter)."""
        (row,) = validate_contexts([blocks])
        return BlockTable().measure(row)

    def placement(self, pinned: Replica | None = None) -> Placement:
        """Where a ``/reorder`` batch goes (for :func:`~contextpilot.core.fanout.reorder_over`):
        all on ``pinned`` if given; one context where the router finds its
        heaviest cached path (load permitting); a batch split along its
        prefix-sharing groups (the call's one clustering) by
        :meth:`Router.assign_groups`."""
        router = self.router

        def place(batch: BatchView) -> dict[int, list[int]]:
            if pinned is not None:
                for i in range(len(batch)):
                    router.note(pinned.position, "pinned", sum(batch.blocks([i])[1]))
                return {pinned.position: list(range(len(batch)))}
            if len(batch) == 1:
                keys, toks = batch.blocks([0])
                d, _ = router.route(router.set_hits(keys, toks), sum(toks), acquire=False)
                return {d.replica: [0]}
            found = batch.groups()
            hits, sizes = [], []
            for g in found:
                keys, toks = batch.blocks(g)
                hits.append(router.set_hits(keys, toks))
                sizes.append(sum(toks))
            parts: dict[int, list[int]] = {}
            for g, r in zip(found, router.assign_groups(hits, sizes)):
                parts.setdefault(r, []).extend(g)
            return parts

        return place

    def totals(self) -> IndexStats:
        """Index figures summed over replicas (one replica: its own)."""
        parts = [r.pilot.index.stats() for r in self.items]
        if len(parts) == 1:
            return parts[0]
        caps = [p.capacity_tokens for p in parts]
        return IndexStats(
            requests=sum(p.requests for p in parts),
            nodes=sum(p.nodes for p in parts),
            tokens=sum(p.tokens for p in parts),
            capacity_tokens=None if any(c is None for c in caps) else sum(c for c in caps if c is not None),
            inserted=sum(p.inserted for p in parts),
            hit_tokens=sum(p.hit_tokens for p in parts),
            sent_tokens=sum(p.sent_tokens for p in parts),
            evicted_requests=sum(p.evicted_requests for p in parts),
            evicted_by_engine=sum(p.evicted_by_engine for p in parts),
            evicted_by_capacity=sum(p.evicted_by_capacity for p in parts),
            evicted_by_ttl=sum(p.evicted_by_ttl for p in parts),
        )

    def index_stats(self) -> dict[str, Any]:
        """``/stats`` ``index_stats``: the pilot's own with one replica, sums with several."""
        if not self.multi:
            return self.primary.pilot.stats()
        per = [r.pilot.stats() for r in self.items]
        t = self.totals()
        out: dict[str, Any] = {"mode": per[0]["mode"]}
        for key in ("calls", "requests_planned"):
            out[key] = sum(p[key] for p in per)
        out.update(
            live_requests=t.requests,
            index_nodes=t.nodes,
            index_tokens=t.tokens,
            capacity_tokens=t.capacity_tokens,
            predicted_hit_ratio=round(t.hit_ratio, 6),
            evicted_requests=t.evicted_requests,
            evicted_by_engine=t.evicted_by_engine,
            evicted_by_capacity=t.evicted_by_capacity,
            evicted_by_ttl=t.evicted_by_ttl,
            conversations=per[0]["conversations"],
        )
        return out

    async def close(self) -> None:
        for r in self.items:
            await r.proxy.close()
        if self.fallback is not None:
            await self.fallback.close()


def engine_specs(config: ServerConfig) -> list[EngineSpec]:
    """Replicas from ``--engines-file`` if given, else ``--infer-api-url``."""
    common = {
        "api_key": config.engine_api_key,
        "max_inflight": config.route_max_inflight,
        "max_inflight_tokens": config.route_max_inflight_tokens,
        "capacity_tokens": config.capacity_tokens,
    }
    if config.engines_file:
        return load_engines_file(config.engines_file, **common)
    return specs_from_urls(config.engine_urls, **common)


def build_replicas(config: ServerConfig, specs: Sequence[EngineSpec] | None = None) -> Replicas:
    specs = list(specs) if specs is not None else engine_specs(config)
    items = []
    for i, spec in enumerate(specs):
        pilot = ContextPilot(
            stateless=config.stateless,
            capacity_tokens=spec.capacity_tokens,
            ttl=config.ttl,
            max_conversations=config.max_sessions,
            conversation_ttl=config.session_ttl,
            # chat sessions (/chat/sessions) share the same bounds as dedup conversations
            max_chat_sessions=config.max_sessions,
            chat_ttl=config.session_ttl,
            workers=config.planning_workers,
            chunk_size=config.planning_chunk,
        )
        proxy = EngineClient(spec.url, config.engine_connect_timeout, config.engine_timeout, spec.api_key)
        items.append(Replica(i, spec, pilot, proxy))
    router = Router(
        [r.pilot.index for r in items],
        config.routing,
        max_inflight=[s.max_inflight for s in specs],
        max_inflight_tokens=[s.max_inflight_tokens for s in specs],
        max_imbalance=config.route_max_imbalance,
        min_match=config.route_min_match,
    )
    fallback = None
    if config.fallback_url:
        fallback = EngineClient(
            config.fallback_url, config.engine_connect_timeout, config.engine_timeout, config.engine_api_key
        )
    return Replicas(items, router, fallback)
