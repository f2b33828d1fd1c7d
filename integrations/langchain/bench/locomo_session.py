"""Prefix-cache hit ratio of the prompts a LangChain chain sends, with and
without ``ContextPilotReorder``, on LoCoMo (real conversation text).

Each question's top-20 memories (BM25, as in ``python -m contextpilot.bench``,
workload locomo-mem) go through ``retriever | ContextPilotReorder()`` one
request at a time, in conversation order, on one component instance (an
online session); the documents in the order the chain hands them on are
replayed through contextpilot's radix-cache simulator (120-token system
prompt + documents + question) at unbounded, 64x and 16x the mean prompt.

    python integrations/langchain/bench/locomo_session.py [--limit N]

Needs contextpilot[bench]-free core only, langchain-core and the LoCoMo
file (``../shared/data/locomo10.json`` or ``$CONTEXTPILOT_LOCOMO``).
"""

from __future__ import annotations

import argparse
import sys
import time

from langchain_contextpilot import ContextPilotReorder
from langchain_core.documents import Document
from langchain_core.runnables import RunnableLambda

from contextpilot.bench.workloads import default_locomo_path, locomo_mem
from contextpilot.sim.replay import build_prompts, mean_tokens, replay


def hit_ratios(contexts: list[list[str]], queries: list[str], system_tokens: int) -> list[float]:
    prompts = build_prompts(contexts, queries, system_tokens=system_tokens)
    mean = mean_tokens(prompts)
    return [replay(prompts, cap) for cap in (None, 64 * mean, 16 * mean)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=0, help="first N questions only (0: all)")
    ap.add_argument(
        "--capacity",
        type=float,
        default=0,
        help="tell the plugin the cache size, in mean prompts (0: unknown)",
    )
    args = ap.parse_args()
    if default_locomo_path() is None:
        print("LoCoMo data not found (../shared/data/locomo10.json or $CONTEXTPILOT_LOCOMO): skipped")
        return 0
    wl = locomo_mem()
    if args.limit:
        wl = wl.subset(args.limit)
    mean = mean_tokens(build_prompts(wl.contexts, wl.queries, system_tokens=wl.system_tokens))
    capacity = args.capacity * mean if args.capacity else None
    by_question = {i: [Document(t) for t in ctx] for i, ctx in enumerate(wl.contexts)}
    retriever = RunnableLambda(lambda i: by_question[i])  # stands in for a BM25 retriever
    chain = retriever | ContextPilotReorder(capacity_tokens=capacity)
    t0 = time.perf_counter()
    sent = [[d.page_content for d in chain.invoke(i)] for i in range(len(wl))]
    per_request_ms = 1000 * (time.perf_counter() - t0) / max(1, len(wl))
    base = hit_ratios(wl.contexts, wl.queries, wl.system_tokens)
    ours = hit_ratios(sent, wl.queries, wl.system_tokens)
    print(f"{wl.name}: {len(wl)} requests, one at a time through retriever | ContextPilotReorder()")
    told = f"told capacity {args.capacity:g}x mean prompt" if capacity else "capacity not told"
    print(f"hit ratio (radix cache, inf / 64x / 16x mean prompt; plugin {told})")
    print("  retrieval order     " + " / ".join(f"{x:.3f}" for x in base))
    print("  ContextPilotReorder " + " / ".join(f"{x:.3f}" for x in ours))
    print(f"  chain step time: {per_request_ms:.2f} ms per request (LangChain + planning)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
