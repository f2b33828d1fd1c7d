"""Memory bound of the live state: N distinct requests through one
stateful :class:`ContextPilot` with a capacity set, in a fresh process.

Each request is 20 document ids (a popular core plus a long tail, so
requests share prefixes and are all distinct), planned online
(``reorder`` of one request, recorded in the live index); every 10th also
goes through multi-turn dedup in one of 50,000 rotating conversations, and
every 20th evicts an earlier request, as engine hooks would. The index is
bounded by its capacity in tokens, the conversations by their count and
total remembered blocks, the recent-request store by its ring, so RSS must
level off however many requests pass; the run prints RSS along the way, the
peak (``VmHWM``) and the time.

    python -m contextpilot.bench --memory [--memory-requests 1000000] [--memory-capacity 2000000]
    python -m contextpilot.bench.memory N CAPACITY   # the child: one JSON line
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from typing import Any

__all__ = ["measure", "run", "table"]

BLOCKS = 20
CONVERSATIONS = 50_000


def _rss_kib(field: str) -> int:
    """A ``/proc/self/status`` figure in KiB (``VmRSS`` now, ``VmHWM`` peak);
    falls back to ``ru_maxrss`` off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def run(n: int, capacity_tokens: float, seed: int = 0, samples: int = 20) -> dict[str, Any]:
    from contextpilot.core.pilot import ContextPilot

    pilot = ContextPilot(capacity_tokens=capacity_tokens)
    rnd = random.Random(seed)
    core = 2_000  # popular documents
    tail = max(100_000, n)  # long tail: the universe grows with the run
    every = max(1, n // samples)
    curve: list[dict[str, Any]] = []
    ids: list[str] = []
    start_kib = _rss_kib("VmRSS")
    t0 = time.perf_counter()
    for i in range(n):
        k = rnd.randint(5, 15)
        docs = set(rnd.sample(range(core), k))
        while len(docs) < BLOCKS:
            docs.add(core + rnd.randrange(tail))
        ctx = list(docs)
        rnd.shuffle(ctx)
        r = pilot.reorder_detailed([ctx])
        ids.append(r.request_ids[0])
        if len(ids) > 1000:
            del ids[:500]
        if i % 10 == 0:
            pilot.deduplicate(r.reordered, f"conv-{rnd.randrange(CONVERSATIONS)}")
        if i % 20 == 0:
            pilot.evict([rnd.choice(ids)])
        if (i + 1) % every == 0 or i + 1 == n:
            st = pilot.index.stats()
            curve.append(
                {
                    "requests": i + 1,
                    "seconds": round(time.perf_counter() - t0, 1),
                    "rss_mib": round(_rss_kib("VmRSS") / 1024, 1),
                    "live_requests": st.requests,
                    "index_nodes": st.nodes,
                    "index_tokens": st.tokens,
                    "conversations": len(pilot.conversations),
                    "dedup_blocks": pilot.conversations.total_blocks,
                }
            )
    seconds = time.perf_counter() - t0
    pilot.index.check()
    return {
        "requests": n,
        "capacity_tokens": capacity_tokens,
        "seconds": round(seconds, 1),
        "per_request_ms": round(1000 * seconds / n, 3),
        "start_rss_mib": round(start_kib / 1024, 1),
        "peak_rss_mib": round(_rss_kib("VmHWM") / 1024, 1),
        "curve": curve,
    }


def measure(n: int, capacity_tokens: float, timeout: float = 7200) -> dict[str, Any]:
    """:func:`run` in a fresh process (its peak RSS is its own)."""
    out = subprocess.run(
        [sys.executable, "-m", "contextpilot.bench.memory", str(n), repr(capacity_tokens)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(res: dict[str, Any]) -> str:
    lines = [
        f"{'requests':>10} {'seconds':>8} {'RSS MiB':>8} {'live req':>9} "
        f"{'nodes':>8} {'tokens':>9} {'convs':>6}"
    ]
    for row in res["curve"]:
        lines.append(
            f"{row['requests']:>10,} {row['seconds']:>8.1f} {row['rss_mib']:>8.1f} "
            f"{row['live_requests']:>9,} {row['index_nodes']:>8,} {row['index_tokens']:>9,} "
            f"{row['conversations']:>6,}"
        )
    lines.append(
        f"{res['requests']:,} requests in {res['seconds']:.0f} s ({res['per_request_ms']:.2f} ms each), "
        f"capacity {res['capacity_tokens']:,.0f} tokens: peak RSS {res['peak_rss_mib']:.0f} MiB "
        f"(at start {res['start_rss_mib']:.0f} MiB)"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]), float(sys.argv[2]))))
