"""Replays through a real contextpilot server in front of four real engines
(``sim_engine`` processes with capacity-limited caches) on 127.0.0.1,
cache-aware routing against round-robin on the same server code
(``--routing``). Figures come from the engines themselves: cached prompt
tokens they report and requests each served.

* multi-turn chats (synthetic, always runs): each turn resends the
  conversation so far, plain ``/v1/chat/completions``;
* LoCoMo online (when the data is present): each question's top-20
  memories through ``/reorder`` then ``/v1/chat/completions`` with its
  request id, questions in conversation order.

Several clients send at once, so in-flight limits matter.
"""

from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from contextpilot.bench.workloads import locomo_mem
from contextpilot.core.prompt import build_messages
from contextpilot.sim.engine import render_chat, tokenize

from support.procs import engine, server

pytest.importorskip("fastapi")
pytestmark = [
    pytest.mark.routing,
    pytest.mark.skipif(
        not os.environ.get("CONTEXTPILOT_ROUTING_TESTS"),
        reason="multi-process routing replay: set CONTEXTPILOT_ROUTING_TESTS=1 (.ci/steps/51-routing.sh)",
    ),
]

REPLICAS = 4
CLIENTS = 4
#: cache-aware may load the busiest replica at most this much above the mean (requests)
BALANCE_BOUND = 1.5


@contextlib.contextmanager
def cluster(policy: str, capacity: int):
    with contextlib.ExitStack() as stack:
        engs = [stack.enter_context(engine("--capacity-tokens", str(capacity))) for _ in range(REPLICAS)]
        urls = [a for e in engs[1:] for a in ("--infer-api-url", e.url)]
        srv = stack.enter_context(server(engs[0].url, *urls, "--routing", policy))
        yield srv, engs


def figures(engs) -> dict:
    per = [httpx.get(e.url + "/debug/requests").json() for e in engs]
    counts = [len(p["requests"]) for p in per]
    cached, prompt = sum(p["cached_tokens"] for p in per), sum(p["prompt_tokens"] for p in per)
    return {
        "hit_ratio": cached / prompt,
        "cached_tokens": cached,
        "prompt_tokens": prompt,
        "requests": counts,
        "balance": max(counts) / (sum(counts) / len(counts)),
    }


def _report(title: str, got: dict[str, dict]) -> None:
    print(f"\n{title}")
    for policy, f in got.items():
        print(
            f"  {policy:<12} hit ratio {f['hit_ratio']:.3f} "
            f"({f['cached_tokens']}/{f['prompt_tokens']} tokens), "
            f"requests per replica {f['requests']}, max/mean {f['balance']:.2f}"
        )


def _chat_turns(n_conv: int = 13, turns: int = 6) -> list[list[dict]]:
    """Interleaved turns of ``n_conv`` conversations; each turn is the whole
    history so far plus a new question (13 conversations: round-robin over
    4 replicas does not line up with them by accident)."""
    system = "You are a helpful assistant for a travel agency. " + " ".join(f"policy{i}" for i in range(60))
    history = [[{"role": "system", "content": system}] for _ in range(n_conv)]
    out = []
    for t in range(turns):
        for c in range(n_conv):
            q = f"conversation {c} turn {t}: " + " ".join(f"c{c}t{t}w{k}" for k in range(50))
            history[c] = [*history[c], {"role": "user", "content": q}]
            out.append(list(history[c]))
            history[c] = [*history[c], {"role": "assistant", "content": f"answer {c}.{t} " * 20}]
    return out


def test_multi_turn_chats_cache_aware_beats_round_robin():
    requests = _chat_turns()
    mean = sum(len(tokenize(render_chat(m))) for m in requests) / len(requests)
    got = {}
    for policy in ("cache-aware", "round-robin"):
        with cluster(policy, int(6 * mean)) as (srv, engs), httpx.Client(base_url=srv.url, timeout=60) as c:

            def send(msgs, c=c):
                r = c.post("/v1/chat/completions", json={"messages": msgs, "max_tokens": 1})
                assert r.status_code == 200, r.text

            with ThreadPoolExecutor(CLIENTS) as pool:
                list(pool.map(send, requests))
            got[policy] = figures(engs)
    _report(f"multi-turn chats: {len(requests)} requests, {REPLICAS} replicas, {CLIENTS} clients", got)
    ca, rr = got["cache-aware"], got["round-robin"]
    assert ca["hit_ratio"] > rr["hit_ratio"] + 0.15, got
    assert ca["balance"] <= BALANCE_BOUND, got


def _locomo_requests(path, per_conversation: int = 20):
    wl = locomo_mem(path)
    seen: dict[int, int] = {}
    keep = []
    for i, g in enumerate(wl.groups):
        seen[g] = seen.get(g, 0) + 1
        if seen[g] <= per_conversation:
            keep.append(i)
    return [wl.contexts[i] for i in keep], [wl.queries[i] for i in keep]


@pytest.mark.locomo
def test_locomo_online_cache_aware_beats_round_robin(locomo_path):
    contexts, queries = _locomo_requests(locomo_path)
    mean = sum(len(tokenize(render_chat(build_messages(d, q)))) for d, q in zip(contexts, queries)) / len(
        queries
    )
    got = {}
    for policy in ("cache-aware", "round-robin"):
        with cluster(policy, int(16 * mean)) as (srv, engs), httpx.Client(base_url=srv.url, timeout=60) as c:

            def one(i, c=c):
                plan = c.post("/reorder", json={"contexts": [contexts[i]]}).json()
                msgs = build_messages(plan["reordered_contexts"][0], queries[i], original=contexts[i])
                r = c.post("/v1/chat/completions", json={"messages": msgs, "rid": plan["request_ids"][0]})
                assert r.status_code == 200 and r.headers["x-contextpilot-replica"] == plan["replicas"][0]

            with ThreadPoolExecutor(CLIENTS) as pool:
                list(pool.map(one, range(len(queries))))
            got[policy] = figures(engs)
    _report(f"LoCoMo online (locomo-mem, {len(queries)} questions in conversation order)", got)
    ca, rr = got["cache-aware"], got["round-robin"]
    assert ca["hit_ratio"] > rr["hit_ratio"] + 0.03, got
    assert ca["balance"] <= BALANCE_BOUND, got
