"""Prefix-cache hit ratio of the contexts a LlamaIndex query engine would
send, with and without ``ContextPilotNodePostprocessor``, on LoCoMo.

Each question's top-20 memories (BM25, workload locomo-mem of
``python -m contextpilot.bench``) become ``NodeWithScore``s and go through
the postprocessor one request at a time, in conversation order, on one
instance (an online session); the nodes in the order it returns are
replayed through contextpilot's radix-cache simulator (120-token system
prompt + nodes + question) at unbounded, 64x and 16x the mean prompt.

    python integrations/llamaindex/bench/locomo_session.py [--limit N]

Needs llama-index-core and the LoCoMo file (``../shared/data/locomo10.json``
or ``$CONTEXTPILOT_LOCOMO``).
"""

from __future__ import annotations

import argparse
import sys
import time

from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from llama_index.postprocessor.contextpilot import ContextPilotNodePostprocessor

import contextpilot as cp
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
    # one node per distinct memory, id from its text, as an index would hold it
    nodes = {t: TextNode(text=t, id_=f"m{cp.stable_key(t):016x}") for ctx in wl.contexts for t in ctx}
    post = ContextPilotNodePostprocessor(capacity_tokens=capacity)
    t0 = time.perf_counter()
    sent = []
    for ctx, q in zip(wl.contexts, wl.queries):
        retrieved = [NodeWithScore(node=nodes[t], score=1.0 - r / len(ctx)) for r, t in enumerate(ctx)]
        sent.append([n.node.get_content() for n in post.postprocess_nodes(retrieved, QueryBundle(q))])
    per_request_ms = 1000 * (time.perf_counter() - t0) / max(1, len(wl))
    base = hit_ratios(wl.contexts, wl.queries, wl.system_tokens)
    ours = hit_ratios(sent, wl.queries, wl.system_tokens)
    print(f"{wl.name}: {len(wl)} requests, one at a time through ContextPilotNodePostprocessor")
    told = f"told capacity {args.capacity:g}x mean prompt" if capacity else "capacity not told"
    print(f"hit ratio (radix cache, inf / 64x / 16x mean prompt; plugin {told})")
    print("  retrieval order               " + " / ".join(f"{x:.3f}" for x in base))
    print("  ContextPilotNodePostprocessor " + " / ".join(f"{x:.3f}" for x in ours))
    print(f"  postprocess time: {per_request_ms:.2f} ms per request (node copies + planning)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
