"""LoCoMo replay of a framework plugin, shared by the plugins' bench scripts.

Each question's top-20 memories (BM25, workload locomo-mem of
``python -m contextpilot.bench``) go through the plugin's step one request
at a time, in conversation order, on one component instance (an online
session); the texts in the order the step hands them on are replayed
through contextpilot's radix-cache simulator (system prompt + documents +
question) at unbounded, 64x and 16x the mean prompt, beside retrieval order.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

__all__ = ["Step", "run_locomo_session"]

#: (documents in relevance order, question) -> the texts the step sends, in its order
Step = Callable[[list[str], str], list[str]]


def run_locomo_session(
    name: str, make_step: Callable[[float | None], Step], argv: list[str] | None = None
) -> int:
    """Parse ``--limit`` / ``--capacity``, replay, print; 0 (skips without LoCoMo).

    ``make_step(capacity_tokens)`` builds the plugin's step; capacity is the
    engine cache size the plugin is told (``None``: unknown)."""
    from contextpilot.bench.workloads import default_locomo_path, locomo_mem
    from contextpilot.sim.replay import build_prompts, mean_tokens, replay

    ap = argparse.ArgumentParser(description=f"LoCoMo prefix-cache replay through {name}")
    ap.add_argument("--limit", type=int, default=0, help="first N questions only (0: all)")
    ap.add_argument(
        "--capacity",
        type=float,
        default=0,
        help="tell the plugin the cache size, in mean prompts (0: unknown)",
    )
    args = ap.parse_args(argv)
    if default_locomo_path() is None:
        print("LoCoMo data not found (../shared/data/locomo10.json or $CONTEXTPILOT_LOCOMO): skipped")
        return 0
    wl = locomo_mem()
    if args.limit:
        wl = wl.subset(args.limit)

    def hit_ratios(contexts: list[list[str]]) -> list[float]:
        prompts = build_prompts(contexts, wl.queries, system_tokens=wl.system_tokens)
        mean = mean_tokens(prompts)
        return [replay(prompts, cap) for cap in (None, 64 * mean, 16 * mean)]

    mean = mean_tokens(build_prompts(wl.contexts, wl.queries, system_tokens=wl.system_tokens))
    step = make_step(args.capacity * mean if args.capacity else None)
    t0 = time.perf_counter()
    sent = [step(list(ctx), q) for ctx, q in zip(wl.contexts, wl.queries)]
    per_request_ms = 1000 * (time.perf_counter() - t0) / max(1, len(wl))
    told = f"told capacity {args.capacity:g}x mean prompt" if args.capacity else "capacity not told"
    print(f"{wl.name}: {len(wl)} requests, one at a time through {name}")
    print(f"hit ratio (radix cache, inf / 64x / 16x mean prompt; plugin {told})")
    width = max(len(name), len("retrieval order"))
    print(f"  {'retrieval order':<{width}} " + " / ".join(f"{x:.3f}" for x in hit_ratios(wl.contexts)))
    print(f"  {name:<{width}} " + " / ".join(f"{x:.3f}" for x in hit_ratios(sent)))
    print(f"  step time: {per_request_ms:.2f} ms per request (framework + planning)")
    return 0
