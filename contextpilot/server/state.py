"""What one server process holds: the replicas (each a live index and an
engine proxy; ``pilot``/``proxy`` are the first, the primary), metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from contextpilot.core.pilot import ContextPilot
from contextpilot.server.config import ServerConfig
from contextpilot.server.engine_client import EngineClient
from contextpilot.server.limits import Limits
from contextpilot.server.metrics import ServerMetrics
from contextpilot.server.replicas import Replicas
from contextpilot.server.router import Router
from contextpilot.server.state_file import StateFile

__all__ = ["ServerState", "get_state"]


@dataclass
class ServerState:
    config: ServerConfig
    pilot: ContextPilot
    proxy: EngineClient
    started: float = field(default_factory=time.time)
    #: all replicas (default: the one made of ``pilot`` and ``proxy``)
    replicas: Replicas = None  # type: ignore[assignment]
    limits: Limits = field(init=False)
    #: snapshots of the live state (``--state-file``), or None
    state_file: StateFile | None = field(init=False)
    metrics: ServerMetrics = field(init=False)

    def __post_init__(self) -> None:
        if self.replicas is None:
            from contextpilot.server.engine_specs import EngineSpec
            from contextpilot.server.replicas import Replica

            spec = EngineSpec("engine", self.proxy.base_url)
            self.replicas = Replicas([Replica(0, spec, self.pilot, self.proxy)], Router([self.pilot.index]))
        self.limits = Limits.from_config(self.config)
        self.state_file = (
            StateFile(
                self.config.state_file,
                {"" if r.position == 0 else r.name: r.pilot for r in self.replicas},
                self.config.state_interval,
            )
            if self.config.state_file
            else None
        )
        self.metrics = ServerMetrics(self.pilot, self.replicas)

    def replica_stats(self) -> list[dict[str, Any]]:
        """``/stats`` per replica: index, load and routing, engine usage."""
        loads = self.replicas.router.snapshot()
        m = self.metrics
        out = []
        for x, load in zip(self.replicas, loads):
            s = x.pilot.index.stats()
            out.append(
                {
                    "name": x.name,
                    "url": x.url,
                    "index": {
                        "live_requests": s.requests,
                        "index_nodes": s.nodes,
                        "index_tokens": s.tokens,
                        "capacity_tokens": s.capacity_tokens,
                        "predicted_hit_ratio": round(s.hit_ratio, 6),
                        "evicted_by_engine": s.evicted_by_engine,
                        "evicted_by_capacity": s.evicted_by_capacity,
                        "evicted_by_ttl": s.evicted_by_ttl,
                    },
                    "load": load,
                    "proxied_requests": m.read(m.replica_proxied, replica=x.name),
                    "engine_prompt_tokens": m.read(m.replica_prompt_tokens, replica=x.name),
                    "engine_cached_tokens": m.read(m.replica_cached_tokens, replica=x.name),
                    "engine_hit_ratio": m.replica_hit_ratio(x.name),
                    "evicted_requests": m.read(m.replica_evicted, replica=x.name),
                }
            )
        return out


def get_state(request: Request) -> ServerState:
    return request.app.state.cp
