"""Online latency with a large live index.

A stateful :class:`ContextPilot` is filled with ``live`` distinct requests
of 20 document ids each (a popular core plus a long tail, recorded as the
engine would hold them; no capacity, so all stay live), then ``probes``
further requests are planned online one at a time (``reorder`` of one
context, which also records it), each timed. Prints p50 / p99 / max per
request and the index size. The probes come from the same distribution, so
they follow cached paths as real traffic would.

    python -m contextpilot.bench --latency [--latency-live 100000]
"""

from __future__ import annotations

import random
import time
from typing import Any

__all__ = ["run", "table"]

BLOCKS = 20


def _request(rnd: random.Random, core: int, tail: int) -> list[int]:
    hot = rnd.sample(range(core), BLOCKS // 2)
    cold = rnd.sample(range(core, core + tail), BLOCKS - len(hot))
    return hot + cold


def run(live: int, probes: int = 2000, seed: int = 0) -> dict[str, Any]:
    from contextpilot.core.pilot import ContextPilot

    if live < 0 or probes < 1:
        raise ValueError("live must be >= 0 and probes >= 1")
    pilot = ContextPilot(max_requests=max(1_000_000, 2 * (live + probes)))
    rnd = random.Random(seed)
    core, tail = 500, max(50_000, 5 * live)
    t0 = time.perf_counter()
    for _ in range(live):
        pilot.record(_request(rnd, core, tail))
    fill = time.perf_counter() - t0
    times = []
    for _ in range(probes):
        ctx = [_request(rnd, core, tail)]
        t = time.perf_counter()
        pilot.reorder(ctx)
        times.append(time.perf_counter() - t)
    times.sort()

    def q(p: float) -> float:
        return round(1000 * times[min(len(times) - 1, int(p * len(times)))], 3)

    s = pilot.stats()
    return {
        "live_requests": s["live_requests"],
        "index_nodes": s["index_nodes"],
        "probes": probes,
        "fill_seconds": round(fill, 2),
        "p50_ms": q(0.50),
        "p99_ms": q(0.99),
        "max_ms": round(1000 * times[-1], 3),
    }


def table(r: dict[str, Any]) -> str:
    return (
        f"  live requests {r['live_requests']:,}  index nodes {r['index_nodes']:,}  probes {r['probes']:,}\n"
        f"  per request: p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms  max {r['max_ms']:.3f} ms"
    )
