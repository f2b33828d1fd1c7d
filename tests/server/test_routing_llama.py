"""Cache-aware routing against round-robin on real llama-server replicas.

Two ``llama-server`` processes (tiny random-weight GGUF, byte vocabulary,
``-np 3 --cache-ram 0``: each replica keeps exactly three prompts, in its
slots, and a fourth conversation overwrites one) behind one real
contextpilot server on 127.0.0.1 (``--infer-api-url`` twice), once per
policy, each time on freshly started engines. Five conversations of four
turns are replayed interleaved (turn 1 of every conversation, then turn 2,
...) through the server's ``/v1/chat/completions``; every turn resends the
conversation so far plus a new question.

Reuse is what llama-server itself reports per request
(``usage.prompt_tokens_details.cached_tokens``, equal to ``timings.cache_n``),
read from the relayed bodies; the server's per-replica ``/stats`` must
agree. Five conversations over two replicas: round-robin sends a
conversation's turns to alternating replicas, and each replica then cycles
through all five over its three slots (each turn finds its slot overwritten
and reuses only the chat template's opening), while
cache-aware keeps each conversation on one replica (3 + 2 conversations,
all fit in the slots).

Runs when a built llama-server is found (cache folder, ``$LLAMA_SERVER_BIN``
or PATH); with ``CONTEXTPILOT_ENGINE_TESTS=1`` (CI step
``.ci/steps/31-llama-server.sh``) it builds one when missing and never skips.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from contextpilot.bench.engine import LlamaServer, tiny_model

from support.llamacpp_chain import require_llama_server
from support.procs import Proc, server

REPLICAS = 2
SLOTS = 3  # per replica
CONVERSATIONS = 5  # not a multiple of REPLICAS: round-robin does not line up with them by accident
TURNS = 4
#: cache-aware places whole conversations, so its busiest replica serves at most
#: ceil(C / R) of them: max/mean requests <= ceil(C / R) * R / C (1.2 here)
BALANCE_BOUND = math.ceil(CONVERSATIONS / REPLICAS) * REPLICAS / CONVERSATIONS
#: cache-aware must reuse at least this share of the previous turn's prompt, summed
MIN_REUSE_OF_PREVIOUS = 0.9
NAMES = ("Alpha", "Bravo", "Charlie", "Delta", "Echo")


pytestmark = pytest.mark.llama_server


@pytest.fixture(scope="module")
def engine_setup() -> tuple[Path, Path]:
    binary = require_llama_server()
    with tiny_model(64, 2) as model:
        return binary, model


@contextlib.contextmanager
def cluster(binary: Path, model: Path, policy: str) -> Iterator[Proc]:
    """Fresh llama-server replicas (empty caches) and a contextpilot server routing over them."""
    with contextlib.ExitStack() as stack:
        engines = [
            stack.enter_context(LlamaServer(binary, model, ctx=1024 * SLOTS, parallel=SLOTS))
            for _ in range(REPLICAS)
        ]
        more = [a for e in engines[1:] for a in ("--infer-api-url", e.url)]
        yield stack.enter_context(server(engines[0].url, *more, "--routing", policy))


def conversations() -> list[tuple[int, list[dict[str, str]]]]:
    """(conversation, messages) in arrival order: turn t of every conversation,
    then turn t + 1. Each conversation has its own system prompt (a document)
    starting with its own name, so conversations share only the chat
    template's opening: under 10% of a prompt. (llama-server puts a prompt
    in the slot whose cached prompt shares more than ``--slot-prompt-similarity``
    0.1 of it, even over an idle slot, so a longer shared opening would make
    conversations overwrite one another on any routing.)"""
    history = [
        [
            {
                "role": "system",
                "content": f"{NAMES[c]} assistant: you answer questions about document {c}. "
                + " ".join(f"d{c}-fact{k}" for k in range(12)),
            }
        ]
        for c in range(CONVERSATIONS)
    ]
    out = []
    for t in range(TURNS):
        for c in range(CONVERSATIONS):
            question = f"Question {t} on document {c}: what about fact {t}?"
            history[c].append({"role": "user", "content": question})
            out.append((c, [dict(m) for m in history[c]]))
            answer = f"Fact {t} of document {c} says d{c}-fact{t}."
            history[c].append({"role": "assistant", "content": answer})
    return out


def replay(srv: Proc) -> dict:
    """Send the workload in order; per request: conversation, replica, prompt
    and cached tokens as llama-server reported them."""
    rows = []
    with httpx.Client(base_url=srv.url, timeout=120) as c:
        for conv, msgs in conversations():
            r = c.post("/v1/chat/completions", json={"messages": msgs, "max_tokens": 1, "temperature": 0})
            assert r.status_code == 200, r.text
            body = r.json()
            usage, timings = body["usage"], body["timings"]
            cached = usage["prompt_tokens_details"]["cached_tokens"]
            assert cached == timings["cache_n"], body  # llama-server's two ways of saying it agree
            rows.append(
                {
                    "conv": conv,
                    "replica": r.headers["x-contextpilot-replica"],
                    "prompt": usage["prompt_tokens"],
                    "cached": cached,
                }
            )
        stats = c.get("/stats").json()
    counts = Counter(row["replica"] for row in rows)
    per = {x["name"]: x for x in stats["replicas"]}
    assert set(counts) <= set(per), (counts, list(per))
    # the server's usage accounting reads llama-server's field: it must match the bodies
    for name, x in per.items():
        mine = [row for row in rows if row["replica"] == name]
        assert x["proxied_requests"] == len(mine), (name, x)
        assert x["engine_prompt_tokens"] == sum(row["prompt"] for row in mine), (name, x)
        assert x["engine_cached_tokens"] == sum(row["cached"] for row in mine), (name, x)
    requests = [counts.get(name, 0) for name in per]
    cached, prompt = sum(r["cached"] for r in rows), sum(r["prompt"] for r in rows)
    return {
        "rows": rows,
        "cached_tokens": cached,
        "prompt_tokens": prompt,
        "hit_ratio": cached / prompt,
        "requests": requests,
        "balance": max(requests) / (sum(requests) / len(requests)),
    }


def _replicas_of(rows: list[dict]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for row in rows:
        out.setdefault(row["conv"], []).append(row["replica"])
    return out


@pytest.mark.slow
def test_cache_aware_beats_round_robin_on_llama_server(engine_setup):
    binary, model = engine_setup
    got = {}
    for policy in ("cache-aware", "round-robin"):
        with cluster(binary, model, policy) as srv:
            got[policy] = replay(srv)
    print(
        f"\n{CONVERSATIONS} conversations x {TURNS} turns, interleaved; "
        f"{REPLICAS} llama-server replicas, -np {SLOTS} --cache-ram 0 each"
    )
    for policy, f in got.items():
        print(
            f"  {policy:<12} cached {f['cached_tokens']}/{f['prompt_tokens']} prompt tokens "
            f"(hit ratio {f['hit_ratio']:.3f}), requests per replica {f['requests']}, "
            f"max/mean {f['balance']:.2f}"
        )
    ca, rr = got["cache-aware"], got["round-robin"]
    summary = {p: {k: v for k, v in f.items() if k != "rows"} for p, f in got.items()}

    # cache-aware: every conversation stays on the replica that served its first turn ...
    for conv, where in _replicas_of(ca["rows"]).items():
        assert len(set(where)) == 1, (conv, where)
    # ... and llama-server reuses (nearly) all of the previous turn's prompt each time
    previous: dict[int, int] = {}
    ideal = 0
    for row in ca["rows"]:
        ideal += previous.get(row["conv"], 0)
        previous[row["conv"]] = row["prompt"]
    assert ca["cached_tokens"] >= MIN_REUSE_OF_PREVIOUS * ideal, (ideal, summary)
    # round-robin scatters conversations (so the comparison means something)
    assert any(len(set(w)) > 1 for w in _replicas_of(rr["rows"]).values()), rr["rows"]

    assert ca["cached_tokens"] > rr["cached_tokens"], summary
    assert ca["balance"] <= BALANCE_BOUND + 1e-9, summary
    assert rr["balance"] == 1.0, summary
