"""Online turns with eviction: the server's live index follows what the
engine holds, orders each new request after a cached prefix, and forgets
requests the engine evicted (``POST /evict``, what the engine hooks send).

    python examples/online_eviction.py               # starts the simulated engine and the server
    python examples/online_eviction.py --server URL  # a stateful contextpilot server in front of an engine

Turn 1 (user A) is planned with ``/reorder`` and sent through the proxy
under its request id. Turn 2 (user B) shares three of A's documents,
retrieved in another order: the server puts them first, in A's order, so the
engine serves them from its cache. Then A and B are reported evicted, and
the same request as B's is planned again: nothing live matches any more, so
the server predicts no cached prefix for it. Exits 1 if any of that does not
show.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import uuid
from typing import Any

import httpx
from stack import check, contextpilot_server, sim_engine

import contextpilot as cp


def passage(name: str) -> str:
    return f"[{name}] " + " ".join(f"{name}-detail-{w}" for w in range(60))


def turn(http: httpx.Client, docs: list[str], query: str) -> dict[str, Any]:
    """Plan one request against the live index, send it through the proxy
    under the planned id; returns the plan and the engine's usage."""
    plan = http.post("/reorder", json={"contexts": [docs]})
    plan.raise_for_status()
    body = plan.json()
    ordered, rid = body["reordered_contexts"][0], body["request_ids"][0]
    messages = cp.build_messages(ordered, query, original=docs)
    r = http.post(
        "/v1/chat/completions", json={"messages": messages, "rid": rid, "max_tokens": 1, "temperature": 0}
    )
    r.raise_for_status()
    usage = r.json()["usage"]
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return {
        "ordered": ordered,
        "rid": rid,
        "prompt": usage["prompt_tokens"],
        "cached": cached,
        "predicted": body["stats"]["cached_tokens_estimate"],
    }


def show(label: str, docs: list[str], t: dict[str, Any]) -> None:
    names = [d.split("]")[0][1:] for d in t["ordered"]]
    print(
        f"{label}: retrieved {[d.split(']')[0][1:] for d in docs]} -> sent {names}; "
        f"server predicted {t['predicted']} block tokens cached; engine: {t['cached']}/{t['prompt']} "
        "prompt tokens cached"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", help="a running stateful contextpilot server (default: start one)")
    args = ap.parse_args(argv)
    with contextlib.ExitStack() as stack:
        server = args.server
        if server is None:
            engine = stack.enter_context(sim_engine())
            server = stack.enter_context(contextpilot_server(engine))
        http = stack.enter_context(httpx.Client(base_url=server, timeout=60))
        run = uuid.uuid4().hex[:6]  # fresh text per run: nothing cached from earlier runs
        d = {k: passage(f"{k}-{run}") for k in "PQRSTUV"}

        a_docs = [d["P"], d["Q"], d["R"], d["S"]]
        a = turn(http, a_docs, "User A: what do P, Q, R and S say?")
        show("turn 1, user A", a_docs, a)
        live = http.get("/requests").json()["request_ids"]
        check(a["rid"] in live, "the live index holds A's request under the id the engine saw")

        b_docs = [d["T"], d["S"], d["Q"], d["P"]]  # shares P, Q, S with A, retrieved in another order
        b = turn(http, b_docs, "User B: and T?")
        show("turn 2, user B", b_docs, b)
        shared = [x for x in a["ordered"] if x in b_docs]
        check(
            b["ordered"][: len(shared)] == shared,
            "B's shared documents were moved first, in A's cached order",
        )
        c_docs = [d["U"], d["V"], d["U"].replace("U-", "W-"), d["V"].replace("V-", "X-")]
        c = turn(http, c_docs, "User C: something unrelated?")
        show("turn 3, user C (control: nothing shared)", c_docs, c)
        check(
            b["cached"] > 2 * c["cached"],
            f"B found far more of its prompt cached ({b['cached']} tokens) than an unrelated request "
            f"of the same shape ({c['cached']})",
        )

        before = http.get("/stats").json()["index_stats"]["live_requests"]
        ev = http.post("/evict", json={"request_ids": [f"chatcmpl-{a['rid']}", b["rid"]]})
        ev.raise_for_status()
        after = http.get("/stats").json()["index_stats"]["live_requests"]
        print(f"/evict A and B (engine ids, normalised by the server): live requests {before} -> {after}")
        check(after == before - 2, "eviction removed both requests from the live index")
        live = http.get("/requests").json()["request_ids"]
        check(a["rid"] not in live and b["rid"] not in live, "neither id is live any more")

        again = http.post("/reorder", json={"contexts": [b_docs]}).json()
        predicted = again["stats"]["cached_tokens_estimate"]
        print(
            f"after eviction, B's documents planned again: server predicts {predicted} block tokens cached "
            f"(before eviction: {b['predicted']})"
        )
        check(b["predicted"] > 0 == predicted, "the server no longer counts on the evicted prefix")
    print("RESULT online_eviction: shared prefix reused before /evict, gone from the index after", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
