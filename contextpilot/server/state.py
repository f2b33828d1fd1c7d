"""What one server process holds: the pilot, the engine proxy, metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from fastapi import Request

from contextpilot.core.pilot import ContextPilot
from contextpilot.server.config import ServerConfig
from contextpilot.server.engine_proxy import EngineProxy
from contextpilot.server.limits import Limits
from contextpilot.server.metrics import Counter, Gauge, Histogram, Registry
from contextpilot.server.state_file import StateFile

__all__ = ["ServerState", "get_state"]


@dataclass
class ServerState:
    config: ServerConfig
    pilot: ContextPilot
    proxy: EngineProxy
    registry: Registry = field(default_factory=Registry)
    started: float = field(default_factory=time.time)
    limits: Limits = field(init=False)
    #: snapshots of the live state (``--state-file``), or None
    state_file: StateFile | None = field(init=False)

    def __post_init__(self) -> None:
        self.limits = Limits.from_config(self.config)
        self.state_file = (
            StateFile(self.config.state_file, self.pilot, self.config.state_interval)
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
        stats = self.pilot.index.stats
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

    def engine_hit_ratio(self) -> float:
        p = self.prompt_tokens.value()
        return self.cached_tokens.value() / p if p else 0.0


def get_state(request: Request) -> ServerState:
    return request.app.state.cp
