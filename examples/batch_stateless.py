"""Stateless batch, end to end: plan a RAG batch with ``optimize_batch`` and
send it through the contextpilot proxy to an engine; compare with the same
batch sent as retrieved (retrieval order, arrival order).

    python examples/batch_stateless.py                 # starts the simulated engine and the server
    python examples/batch_stateless.py --server URL    # a contextpilot server already in front of an engine

Shows the engine's own figures (``usage.prompt_tokens_details.cached_tokens``)
for both runs (same workload, different passage text, so the second run
finds nothing of the first in the cache).
Exits 1 if the planned batch is not served from cache more than the baseline.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys

import httpx
from stack import check, contextpilot_server, sim_engine

import contextpilot as cp

TOPICS = ["billing", "refunds", "shipping", "returns", "warranty", "accounts"]


def make_batch(n: int, tag: str, seed: int = 7) -> tuple[list[list[str]], list[str]]:
    """``n`` questions, each retrieving 5 of the 8 passages of its topic, in
    retrieval (relevance) order, topics interleaved as queries arrive. The
    same workload for every ``tag``, but its passages' text differs, so two
    runs never share cached text."""
    rng = random.Random(seed)
    passages = {
        t: [
            f"[{tag}: {t} policy, section {k}] " + " ".join(f"{t}-fact-{k}-{w}" for w in range(40))
            for k in range(8)
        ]
        for t in TOPICS
    }
    docs, queries = [], []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        docs.append(rng.sample(passages[topic], 5))
        queries.append(f"Question {i} about {topic}?")
    return docs, queries


def send_all(http: httpx.Client, batch: list[list[dict[str, str]]]) -> tuple[int, int]:
    prompt = cached = 0
    for messages in batch:
        r = http.post("/v1/chat/completions", json={"messages": messages, "max_tokens": 1, "temperature": 0})
        r.raise_for_status()
        usage = r.json()["usage"]
        prompt += usage["prompt_tokens"]
        cached += (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return prompt, cached


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", help="a running contextpilot server (default: start one with the sim engine)")
    ap.add_argument("--requests", type=int, default=36)
    args = ap.parse_args(argv)
    with contextlib.ExitStack() as stack:
        server = args.server
        if server is None:
            engine = stack.enter_context(sim_engine())
            server = stack.enter_context(contextpilot_server(engine, "--stateless"))
        http = stack.enter_context(httpx.Client(base_url=server, timeout=60))
        # baseline: as retrieved, in arrival order
        docs, queries = make_batch(args.requests, "run A")
        baseline = [cp.build_messages(d, q) for d, q in zip(docs, queries)]
        base_prompt, base_cached = send_all(http, baseline)
        print(
            f"as retrieved: {base_cached}/{base_prompt} prompt tokens from cache "
            f"({base_cached / base_prompt:.1%})"
        )

        docs, queries = make_batch(args.requests, "run B")
        # planned: blocks reordered for shared prefixes, requests scheduled back to back
        planned, order = cp.optimize_batch(docs, queries)
        check(sorted(order) == list(range(len(queries))), "the plan answers every question exactly once")
        plan_prompt, plan_cached = send_all(http, planned)
        print(
            f"planned:      {plan_cached}/{plan_prompt} prompt tokens from cache "
            f"({plan_cached / plan_prompt:.1%})"
        )
        check(plan_cached > base_cached, "planning raised the cached prompt tokens above the baseline")
    print("RESULT batch_stateless: cached tokens rise with planning", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
