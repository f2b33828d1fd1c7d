"""What one server process holds: the replicas (each a live index and an
engine proxy; ``pilot``/``proxy`` are the first, the primary), metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from contextpilot.core.pilot import ContextPilot
from contextpilot.server.config import ServerConfig
from contextpilot.server.engine_proxy import EngineProxy
from contextpilot.server.limits import Limits
from contextpilot.server.metrics import Counter, Gauge, GaugeFamily, Histogram, Registry
from contextpilot.server.replicas import Replicas
from contextpilot.server.router import Router
from contextpilot.server.state_file import StateFile

__all__ = ["ServerState", "get_state"]


@dataclass
class ServerState:
    config: ServerConfig
    pilot: ContextPilot
    proxy: EngineProxy
    registry: Registry = field(default_factory=Registry)
    started: float = field(default_factory=time.time)
    #: all replicas (default: the one made of ``pilot`` and ``proxy``)
    replicas: Replicas = None  # type: ignore[assignment]
    limits: Limits = field(init=False)
    #: snapshots of the live state (``--state-file``), or None
    state_file: StateFile | None = field(init=False)

    def __post_init__(self) -> None:
        if self.replicas is None:
            from contextpilot.server.engines import EngineSpec
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
        r = self.registry
        self.requests = r.add(
            Counter("contextpilot_http_requests_total", "HTTP requests", ("path", "status"))
        )
        self.latency = r.add(
            Histogram("contextpilot_http_request_seconds", "HTTP request latency", ("path",))
        )
        self.planned = r.add(Counter("contextpilot_planned_requests_total", "requests planned by /reorder"))
        self.proxied = r.add(
            Counter("contextpilot_proxied_requests_total", "requests forwarded to the engine", ("endpoint",))
        )
        self.engine_errors = r.add(
            Counter("contextpilot_engine_errors_total", "engine failures seen by the proxy", ("kind",))
        )
        self.prompt_tokens = r.add(
            Counter("contextpilot_engine_prompt_tokens_total", "prompt tokens reported by the engine")
        )
        self.cached_tokens = r.add(
            Counter("contextpilot_engine_cached_tokens_total", "cached prompt tokens reported by the engine")
        )
        self.evicted = r.add(
            Counter("contextpilot_evicted_requests_total", "requests dropped on engine eviction notices")
        )
        self.planning = r.add(Histogram("contextpilot_planning_seconds", "time spent planning a /reorder"))
        stats = self.replicas.totals
        r.add(Gauge("contextpilot_index_requests", "live requests in the index", lambda: stats().requests))
        r.add(Gauge("contextpilot_index_nodes", "blocks (nodes) in the index", lambda: stats().nodes))
        r.add(Gauge("contextpilot_index_tokens", "tokens the index believes cached", lambda: stats().tokens))
        r.add(
            Gauge(
                "contextpilot_hit_ratio_estimate",
                "predicted prefix hit ratio of planned requests",
                lambda: stats().hit_ratio,
            )
        )
        r.add(
            Gauge(
                "contextpilot_engine_hit_ratio",
                "cached / prompt tokens as reported by the engine",
                self.engine_hit_ratio,
            )
        )
        r.add(Gauge("contextpilot_sessions", "conversations tracked", lambda: len(self.pilot.conversations)))
        self._replica_metrics(r)

    def _replica_metrics(self, r: Registry) -> None:
        """Per-replica series, labelled ``replica="name"`` (at most
        ``MAX_REPLICAS`` names, fixed at start)."""
        lab = ("replica",)
        self.replica_proxied = r.add(
            Counter("contextpilot_replica_proxied_requests_total", "requests forwarded to each replica", lab)
        )
        self.replica_prompt_tokens = r.add(
            Counter("contextpilot_replica_prompt_tokens_total", "prompt tokens reported by each replica", lab)
        )
        self.replica_cached_tokens = r.add(
            Counter(
                "contextpilot_replica_cached_tokens_total",
                "cached prompt tokens reported by each replica",
                lab,
            )
        )
        self.replica_errors = r.add(
            Counter(
                "contextpilot_replica_engine_errors_total", "engine failures per replica", ("replica", "kind")
            )
        )
        self.replica_evicted = r.add(
            Counter(
                "contextpilot_replica_evicted_requests_total", "requests dropped on eviction notices", lab
            )
        )
        reps, router = self.replicas, self.replicas.router

        def per_load(attr: str):  # type: ignore[no-untyped-def]
            return lambda: {(x.name,): getattr(router.loads[x.position], attr) for x in reps}

        def per_index(attr: str):  # type: ignore[no-untyped-def]
            return lambda: {(x.name,): getattr(x.pilot.index.stats(), attr) for x in reps}

        def decisions() -> dict[tuple[str, ...], float]:
            return {
                (x.name, reason): n for x in reps for reason, n in router.loads[x.position].reasons.items()
            }

        r.add(
            GaugeFamily(
                "contextpilot_replica_inflight_requests", "requests in flight", lab, per_load("inflight")
            )
        )
        r.add(
            GaugeFamily(
                "contextpilot_replica_inflight_tokens",
                "prompt tokens in flight",
                lab,
                per_load("inflight_tokens"),
            )
        )
        r.add(
            GaugeFamily(
                "contextpilot_replica_index_requests",
                "live requests in the index",
                lab,
                per_index("requests"),
            )
        )
        r.add(
            GaugeFamily(
                "contextpilot_replica_index_tokens",
                "tokens the index believes cached",
                lab,
                per_index("tokens"),
            )
        )
        r.add(
            GaugeFamily(
                "contextpilot_replica_engine_hit_ratio",
                "cached / prompt tokens as reported by each replica",
                lab,
                lambda: {(x.name,): self.replica_hit_ratio(x.name) for x in reps},
            )
        )
        r.add(
            GaugeFamily(
                "contextpilot_routing_decisions_total",
                "routing decisions by chosen replica and reason",
                ("replica", "reason"),
                decisions,
                kind="counter",
            )
        )

    def replica_stats(self) -> list[dict[str, Any]]:
        """``/stats`` per replica: index, load and routing, engine usage."""
        loads = self.replicas.router.snapshot()
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
                    "proxied_requests": self.replica_proxied.value(x.name),
                    "engine_prompt_tokens": self.replica_prompt_tokens.value(x.name),
                    "engine_cached_tokens": self.replica_cached_tokens.value(x.name),
                    "engine_hit_ratio": self.replica_hit_ratio(x.name),
                    "evicted_requests": self.replica_evicted.value(x.name),
                }
            )
        return out

    def replica_hit_ratio(self, name: str) -> float:
        p = self.replica_prompt_tokens.value(name)
        return self.replica_cached_tokens.value(name) / p if p else 0.0

    def engine_hit_ratio(self) -> float:
        p = self.prompt_tokens.value()
        return self.cached_tokens.value() / p if p else 0.0


def get_state(request: Request) -> ServerState:
    return request.app.state.cp
