"""Scale series: planning time and peak memory against batch size.

Each size runs in a fresh child process (``python -m
contextpilot.bench.scale N WORKERS``) so its peak RSS is its own: the
process builds a synthetic batch (20 blocks per request, universe growing
with the batch so density stays constant), then plans it; the peak counts
the parent and any planning workers it spawned, sampled every 0.1 s.

CPU time (user + sys) is reported beside wall time, for the planning
process and for the workers it spawned (``RUSAGE_CHILDREN`` counts workers
once they have exited, which they have when ``plan`` returns): on a shared
machine wall time is inflated by other load, CPU time much less.
``digest`` is a hash of the plan (order and contexts), to compare
implementations on the same input; ``prepare_*`` is the serial part before
any chunk is planned (interning, chunk sort).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

__all__ = ["fit_exponent", "measure", "plan_digest", "rss_tree", "series"]

FULL_SIZES = (1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 1_000_000)
QUICK_SIZES = (1_000, 3_000, 10_000)


def rss_tree(pid: int) -> int:
    """RSS in bytes of a process and its descendants (Linux /proc)."""
    total, stack, seen = 0, [pid], set()
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    stack.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            continue
    return total


def _child(n: int, workers: int) -> dict:
    from contextpilot.bench.workloads import synthetic_rag
    from contextpilot.core.planner import plan

    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_tree(os.getpid()))
            time.sleep(0.1)

    threading.Thread(target=sample, daemon=True).start()
    phases: dict[str, logging.LogRecord] = {}

    class _Phases(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            phase = getattr(record, "planner_phase", None)
            if phase:
                phases[phase] = record

    planner_log = logging.getLogger("contextpilot.core.planner")
    planner_log.setLevel(logging.DEBUG)
    planner_log.addHandler(_Phases())
    wl = synthetic_rag(n, n_docs=max(20_000, n // 2), n_topics=max(200, n // 50), topic_size=60, seed=0)
    r0s, r0c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = plan(wl.contexts, token_counter=wl.token_counter, workers=workers)
    seconds = time.perf_counter() - t0
    r1s, r1c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    stop.set()
    peak[0] = max(peak[0], rss_tree(os.getpid()))
    total = p.total_tokens
    out = {
        "requests": n,
        "workers": workers,
        "plan_seconds": seconds,
        "peak_rss_bytes": peak[0],
        "shared_fraction": p.shared_tokens / total if total else 0.0,
        "cpu_parent_seconds": _cpu(r1s) - _cpu(r0s),
        "cpu_workers_seconds": _cpu(r1c) - _cpu(r0c),
        "digest": plan_digest(p.order, p.contexts),
    }
    ready = phases.get("chunks_ready")
    if ready is not None:  # serial part: interning and the chunk sort, before any worker plans
        out["prepare_cpu_seconds"] = ready.cpu_seconds
        out["prepare_wall_seconds"] = ready.wall_seconds
    return out


def _cpu(r: resource.struct_rusage) -> float:
    return r.ru_utime + r.ru_stime


def plan_digest(order: Sequence[int], contexts: Sequence[Sequence[object]]) -> str:
    """Short hash of a plan's order and contexts (blocks by ``repr``)."""
    h = hashlib.blake2b(digest_size=12)
    h.update(repr(list(order)).encode())
    for c in contexts:
        h.update(repr(list(c)).encode())
    return h.hexdigest()


def measure(n: int, workers: int = 1, timeout: float = 3600) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "contextpilot.bench.scale", str(n), str(workers)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def fit_exponent(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of log(time) against log(size)."""
    xs = [math.log(n) for n, _ in points]
    ys = [math.log(t) for _, t in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else float("nan")


def series(sizes: Sequence[int], workers: int = 1, progress=None) -> dict:
    rows = []
    for n in sizes:
        rows.append(measure(n, workers))
        if progress is not None:
            progress.update()
    fit = [(r["requests"], r["plan_seconds"]) for r in rows if r["requests"] >= 10_000] or [
        (r["requests"], r["plan_seconds"]) for r in rows
    ]
    return {"rows": rows, "exponent": fit_exponent(fit) if len(fit) > 1 else float("nan")}


if __name__ == "__main__":
    print(json.dumps(_child(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 1)))
