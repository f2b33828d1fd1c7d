"""Scale series: time and peak memory against batch size, through the
object users call.

Each (size, workload, mode) runs in a fresh child process (``python -m
contextpilot.bench.scale N WORKERS WORKLOAD MODE``) so its peak RSS is its
own; the peak counts the process and the planning workers it starts,
sampled every 0.1 s. Modes:

* ``stateful`` — ``ContextPilot().reorder_detailed(contexts)`` (what
  ``reorder`` runs), the default object: plans and records the batch in
  the live index;
* ``stateless`` — the same with ``ContextPilot(stateless=True)``;
* ``planner`` — ``plan(contexts, workers=W)`` alone, for comparison.

Workloads: ``synthetic`` (the bench's topic-clustered batch, 20 blocks per
request, universe growing with the batch so density stays constant) and
``noisy`` (the same with 30% of the blocks drawn at random from a 500,000
document vocabulary: fewer shared prefixes, a much bigger trie).

CPU time (user + sys) is reported beside wall time, for the process and
for the workers it started (``RUSAGE_CHILDREN`` counts them once they are
waited for, which they are when the call returns): on a shared machine
wall time is inflated by other load, CPU time much less. ``phases`` says
where the CPU went (interning, chunking, candidates, merging, emission,
assembly, recording; worker phases summed over workers). ``digest`` is a
hash of the plan (order and contexts): the three modes must agree.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

__all__ = [
    "MODES",
    "WORKLOADS",
    "fit_exponent",
    "measure",
    "plan_digest",
    "rss_tree",
    "series",
    "text_vs_ids",
]

FULL_SIZES = (1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 1_000_000)
QUICK_SIZES = (1_000, 3_000, 10_000)
MODES = ("planner", "stateless", "stateful")
WORKLOADS = ("synthetic", "noisy")
#: phases reported, in pipeline order
PHASES = ("interning", "chunking", "candidates", "merging", "emission", "assembly", "recording")


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


def workload(name: str, n: int):
    """The scale series' batches (see the module docstring)."""
    from contextpilot.bench.workloads import synthetic_rag

    topics = max(200, n // 50)
    if name == "synthetic":
        return synthetic_rag(n, n_docs=max(20_000, n // 2), n_topics=topics, topic_size=60, seed=0)
    if name == "noisy":
        return synthetic_rag(n, n_docs=500_000, n_topics=topics, topic_size=60, noise=0.3, seed=0)
    raise ValueError(f"unknown scale workload {name!r} (expected one of {', '.join(WORKLOADS)})")


def _child(n: int, workers: int | None, name: str, mode: str) -> dict:
    from contextpilot.core.pilot import ContextPilot
    from contextpilot.core.planner import plan

    wl = workload(name, n)
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_tree(os.getpid()))
            time.sleep(0.1)

    threading.Thread(target=sample, daemon=True).start()
    r0s, r0c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    if mode == "planner":
        p = plan(wl.contexts, token_counter=wl.token_counter, workers=workers or os.cpu_count() or 1)
        order, contexts, timings = p.order, p.contexts, p.timings
        shared, total = p.shared_tokens, p.total_tokens
    elif mode in ("stateless", "stateful"):
        pilot = ContextPilot(stateless=mode == "stateless", token_counter=wl.token_counter, workers=workers)
        r = pilot.reorder_detailed(wl.contexts)
        order, contexts, timings = r.order, r.reordered, r.timings
        shared, total = 0, r.total_tokens
    else:
        raise ValueError(f"unknown mode {mode!r} (expected one of {', '.join(MODES)})")
    seconds = time.perf_counter() - t0
    r1s, r1c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    stop.set()
    peak[0] = max(peak[0], rss_tree(os.getpid()))
    out = {
        "requests": n,
        "workload": name,
        "mode": mode,
        "workers": int(timings.get("workers", 0)),
        "seconds": seconds,
        "peak_rss_bytes": peak[0],
        "cpu_parent_seconds": _cpu(r1s) - _cpu(r0s),
        "cpu_workers_seconds": _cpu(r1c) - _cpu(r0c),
        "phases": {k: round(timings[k], 3) for k in PHASES if k in timings},
        "digest": plan_digest(order, contexts),
        "load": os.getloadavg()[0],
    }
    if shared:
        out["shared_fraction"] = shared / total if total else 0.0
    if mode == "stateful":
        s = pilot.stats()
        out["live_requests"], out["index_nodes"] = s["live_requests"], s["index_nodes"]
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


def measure(
    n: int, workers: int | None = None, name: str = "synthetic", mode: str = "stateful", timeout: float = 3600
) -> dict:
    """One run in a fresh process (``workers`` None: the front object's default)."""
    out = subprocess.run(
        [sys.executable, "-m", "contextpilot.bench.scale", str(n), str(workers or 0), name, mode],
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


def series(
    sizes: Sequence[int],
    workers: int | None = None,
    progress=None,
    workloads: Sequence[str] = WORKLOADS,
    modes: Sequence[str] = MODES,
) -> dict:
    """Every (workload, size, mode); per workload, the growth exponent of
    the stateful front object's time (sizes >= 10k when there are two)."""
    rows = []
    for name in workloads:
        for n in sizes:
            for mode in modes:
                rows.append(measure(n, workers, name, mode))
                if progress is not None:
                    progress.update()
    exponents = {}
    for name in workloads:
        mine = [r for r in rows if r["workload"] == name and r["mode"] == modes[-1]]
        pts = [(r["requests"], r["seconds"]) for r in mine]
        fit = [p for p in pts if p[0] >= 10_000]
        fit = fit if len(fit) > 1 else pts
        exponents[name] = fit_exponent(fit) if len(fit) > 1 else float("nan")
    return {"rows": rows, "exponents": exponents, "modes": list(modes)}


def text_vs_ids(path: str | None = None, repeats: int = 5) -> list[dict]:
    """LoCoMo batches planned from their text blocks (what a RAG pipeline
    passes) and from int ids of the same blocks (each distinct text one
    id, same token lengths), through ``ContextPilot().reorder_detailed``,
    stateless and stateful (a fresh object each time); the best of
    ``repeats`` runs, so other load on the machine counts least."""
    from contextpilot.bench.workloads import locomo_chunks, locomo_mem
    from contextpilot.core.pilot import ContextPilot

    rows = []
    for make in (locomo_mem, locomo_chunks):
        wl = make(path)
        ids: dict[object, int] = {}
        as_ids = [[ids.setdefault(b, len(ids)) for b in c] for c in wl.contexts]
        lengths = [wl.token_counter(b) for b in ids]
        for stateless in (True, False):
            best = {}
            for name, contexts, counter in (
                ("text", wl.contexts, None),
                ("ids", as_ids, lengths.__getitem__),
            ):
                runs = []
                for _ in range(repeats):
                    pilot = ContextPilot(stateless=stateless, token_counter=counter)
                    t0 = time.perf_counter()
                    r = pilot.reorder_detailed(contexts)
                    runs.append(time.perf_counter() - t0)
                # text blocks as their ids, so the two plans can be compared
                best[name] = (min(runs), [[ids.get(b, b) for b in c] for c in r.reordered], r.order)
            rows.append(
                {
                    "workload": wl.name,
                    "requests": len(wl.contexts),
                    "mode": "stateless" if stateless else "stateful",
                    "text_seconds": best["text"][0],
                    "ids_seconds": best["ids"][0],
                    "ratio": best["text"][0] / best["ids"][0],
                    "same_plan": best["text"][1:] == best["ids"][1:],
                }
            )
    return rows


if __name__ == "__main__":
    args = sys.argv[1:]
    print(
        json.dumps(
            _child(
                int(args[0]),
                int(args[1]) or None if len(args) > 1 else None,
                args[2] if len(args) > 2 else "synthetic",
                args[3] if len(args) > 3 else "stateful",
            )
        )
    )
