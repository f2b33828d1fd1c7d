"""The server's Prometheus metrics, on ``prometheus_client`` (what vLLM and SGLang expose).

One :class:`ServerMetrics` per app, with its own registry (several apps can
live in one process, as in the tests), holding the event counters the
handlers bump, scrape-time gauges read from the live indexes and router, and
the library's standard process, platform and GC collectors.

Label sets stay bounded by construction: paths come from the app's own
route list (anything else is ``other``), status classes, engine error
kinds, and replica names fixed at start (at most ``MAX_REPLICAS``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from contextpilot.core.pilot import ContextPilot
    from contextpilot.server.replicas import Replicas

__all__ = ["CONTENT_TYPE_LATEST", "LATENCY_BUCKETS", "ServerMetrics"]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _Scraped(Collector):
    """A labelled family whose values are read at scrape time: ``read()``
    maps label tuples to values (monotonic totals kept elsewhere use
    ``counter=True``)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str],
        read: Callable[[], dict[tuple[str, ...], float]],
        counter: bool = False,
    ) -> None:
        self.name, self.documentation, self.labels = name, documentation, list(labels)
        self.read, self.counter = read, counter

    def _family(self) -> CounterMetricFamily | GaugeMetricFamily:
        kind = CounterMetricFamily if self.counter else GaugeMetricFamily
        return kind(self.name, self.documentation, labels=self.labels)

    def describe(self) -> Iterator[Metric]:
        yield self._family()  # names only: registering must not read live state

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for key, value in sorted(self.read().items()):
            family.add_metric(list(key), float(value))
        yield family


class ServerMetrics:
    """Every series of one server; see the module docstring."""

    def __init__(self, pilot: ContextPilot, replicas: Replicas) -> None:
        self.registry = r = CollectorRegistry()
        for standard in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            r.register(standard)
        self.requests = Counter("contextpilot_http_requests", "HTTP requests", ("path", "status"), registry=r)
        self.latency = Histogram(
            "contextpilot_http_request_seconds", "HTTP request latency", ("path",), buckets=LATENCY_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.planned = Counter("contextpilot_planned_requests", "requests planned by /reorder", registry=r)
        self.proxied = Counter(
            "contextpilot_proxied_requests", "requests forwarded to the engine", ("endpoint",), registry=r
        )
        self.engine_errors = Counter(
            "contextpilot_engine_errors", "engine failures seen by the proxy", ("kind",), registry=r
        )
        self.prompt_tokens = Counter(
            "contextpilot_engine_prompt_tokens", "prompt tokens reported by the engine", registry=r
        )
        self.cached_tokens = Counter(
            "contextpilot_engine_cached_tokens", "cached prompt tokens reported by the engine", registry=r
        )
        self.evicted = Counter(
            "contextpilot_evicted_requests", "requests dropped on engine eviction notices", registry=r
        )
        self.planning = Histogram(
            "contextpilot_planning_seconds", "time spent planning a /reorder", buckets=LATENCY_BUCKETS,
            registry=r,
        )  # fmt: skip
        stats = replicas.totals
        for name, doc, read in (
            ("contextpilot_index_requests", "live requests in the index", lambda: stats().requests),
            ("contextpilot_index_nodes", "blocks (nodes) in the index", lambda: stats().nodes),
            ("contextpilot_index_tokens", "tokens the index believes cached", lambda: stats().tokens),
            (
                "contextpilot_hit_ratio_estimate",
                "predicted prefix hit ratio of planned requests",
                lambda: stats().hit_ratio,
            ),
            (
                "contextpilot_engine_hit_ratio",
                "cached / prompt tokens as reported by the engine",
                self.engine_hit_ratio,
            ),
            ("contextpilot_sessions", "conversations tracked", lambda: len(pilot.conversations)),
        ):
            Gauge(name, doc, registry=r).set_function(read)
        self._replica_series(replicas)

    def _replica_series(self, reps: Replicas) -> None:
        """Per-replica series, labelled ``replica="name"``."""
        r, lab = self.registry, ("replica",)
        self.replica_proxied = Counter(
            "contextpilot_replica_proxied_requests", "requests forwarded to each replica", lab, registry=r
        )
        self.replica_prompt_tokens = Counter(
            "contextpilot_replica_prompt_tokens", "prompt tokens reported by each replica", lab, registry=r
        )
        self.replica_cached_tokens = Counter(
            "contextpilot_replica_cached_tokens",
            "cached prompt tokens reported by each replica",
            lab,
            registry=r,
        )
        self.replica_errors = Counter(
            "contextpilot_replica_engine_errors",
            "engine failures per replica",
            ("replica", "kind"),
            registry=r,
        )
        self.replica_evicted = Counter(
            "contextpilot_replica_evicted_requests", "requests dropped on eviction notices", lab, registry=r
        )
        # failover (see contextpilot.server.failover); reasons are a fixed vocabulary
        self.failovers = Counter(
            "contextpilot_failovers",
            "requests retried on another replica (or the fallback engine) after a failure",
            ("from_replica", "to_replica", "reason"),
            registry=r,
        )
        self.replica_marked_down = Counter(
            "contextpilot_replica_marked_down",
            "times a replica was marked down, by reason",
            ("replica", "reason"),
            registry=r,
        )
        self.replica_recovered = Counter(
            "contextpilot_replica_recovered", "times the probe brought a replica back up", lab, registry=r
        )
        router = reps.router

        def per_load(attr: str) -> Callable[[], dict[tuple[str, ...], float]]:
            return lambda: {(x.name,): getattr(router.loads[x.position], attr) for x in reps}

        def per_index(attr: str) -> Callable[[], dict[tuple[str, ...], float]]:
            return lambda: {(x.name,): getattr(x.pilot.index.stats(), attr) for x in reps}

        def decisions() -> dict[tuple[str, ...], float]:
            return {(x.name, why): n for x in reps for why, n in router.loads[x.position].reasons.items()}

        for collector in (
            _Scraped(
                "contextpilot_replica_inflight_requests", "requests in flight", lab, per_load("inflight")
            ),
            _Scraped(
                "contextpilot_replica_inflight_tokens",
                "prompt tokens in flight",
                lab,
                per_load("inflight_tokens"),
            ),
            _Scraped(
                "contextpilot_replica_index_requests",
                "live requests in the index",
                lab,
                per_index("requests"),
            ),
            _Scraped(
                "contextpilot_replica_index_tokens",
                "tokens the index believes cached",
                lab,
                per_index("tokens"),
            ),
            _Scraped(
                "contextpilot_replica_engine_hit_ratio",
                "cached / prompt tokens as reported by each replica",
                lab,
                lambda: {(x.name,): self.replica_hit_ratio(x.name) for x in reps},
            ),
            _Scraped(
                "contextpilot_replica_up",
                "1 while a replica is in use, 0 while it is marked down",
                lab,
                lambda: {(x.name,): 0.0 if router.is_down(x.position) else 1.0 for x in reps},
            ),
            _Scraped(
                "contextpilot_routing_decisions",
                "routing decisions by chosen replica and reason",
                ("replica", "reason"),
                decisions,
                counter=True,
            ),
        ):
            r.register(collector)

    @staticmethod
    def read(counter: Counter, **labels: str) -> float:
        """A counter's current total for ``labels`` (0 if never counted);
        reads that one metric only, so gauges may call it at scrape time."""
        for family in counter.collect():
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels == labels:
                    return sample.value
        return 0.0

    def replica_hit_ratio(self, name: str) -> float:
        p = self.read(self.replica_prompt_tokens, replica=name)
        return self.read(self.replica_cached_tokens, replica=name) / p if p else 0.0

    def engine_hit_ratio(self) -> float:
        p = self.read(self.prompt_tokens)
        return self.read(self.cached_tokens) / p if p else 0.0

    def render(self) -> bytes:
        """The Prometheus text exposition of every series."""
        return generate_latest(self.registry)
