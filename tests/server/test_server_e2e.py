"""End to end: cached tokens reported by an engine rise when traffic goes
through contextpilot; streaming passes through unbuffered; a down or slow
engine gives clear errors in bounded time while /reorder keeps working."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from contextpilot.bench.workloads import synthetic_rag
from contextpilot.core.prompt import build_messages

from support.procs import engine, free_port, server

pytest.importorskip("fastapi")


def _docs(n=60, seed=5):
    wl = synthetic_rag(n, blocks_per_request=8, n_docs=400, n_topics=6, topic_size=20, seed=seed)
    text = {
        b: f"Document {b}. " + " ".join(f"fact{b}_{i}" for i in range(30)) for c in wl.contexts for b in c
    }
    return [[text[b] for b in c] for c in wl.contexts], wl.queries


def _cached(usage_bodies):
    return sum(b["usage"]["prompt_tokens_details"]["cached_tokens"] for b in usage_bodies)


def test_cached_tokens_rise_through_contextpilot():
    docs, queries = _docs()
    with engine() as direct_engine:
        direct = [
            httpx.post(
                direct_engine.url + "/v1/chat/completions",
                json={"messages": build_messages(d, q)},
                timeout=30,
            ).json()
            for d, q in zip(docs, queries)
        ]
    with engine() as eng, server(eng.url) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        plan = c.post("/reorder", json={"contexts": docs}).json()
        via = []
        for j, i in enumerate(plan["original_indices"]):
            msgs = build_messages(plan["reordered_contexts"][j], queries[i], original=docs[i])
            via.append(
                c.post("/v1/chat/completions", json={"messages": msgs, "rid": plan["request_ids"][j]}).json()
            )
        stats = c.get("/stats").json()["server"]
    total = sum(b["usage"]["prompt_tokens"] for b in direct)
    assert sum(b["usage"]["prompt_tokens"] for b in via) == total  # same tokens, other order
    print("cached via contextpilot", _cached(via), "direct", _cached(direct), "of", total)
    assert _cached(via) > 1.5 * _cached(direct), (_cached(via), _cached(direct))
    assert stats["engine_cached_tokens"] == _cached(via)


def test_streaming_is_relayed_unbuffered():
    # the engine holds its stream after the first chunk until we release it:
    # a relay that buffers never delivers that chunk (the read would time out);
    # one that relays delivers it while the engine is still holding the rest
    with engine("--stream-chunks", "5", "--stream-hold") as eng, server(eng.url) as srv:
        with httpx.stream(
            "POST", srv.url + "/v1/completions", json={"prompt": "x", "stream": True}, timeout=30
        ) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            assert r.headers["x-contextpilot-request-id"].startswith("req-")
            lines = r.iter_lines()
            first = next(line for line in lines if line.startswith("data:"))
            assert json.loads(first[5:])["choices"][0]["text"] == "t0"
            assert httpx.post(eng.url + "/debug/release", timeout=10).status_code == 200
            rest = [line for line in lines if line.startswith("data:")]
    assert len(rest) == 6 and rest[-1] == "data: [DONE]"  # 4 more chunks, usage, [DONE]


def test_engine_down_gives_502_quickly_and_reorder_still_works():
    dead = f"http://127.0.0.1:{free_port()}"
    with server(dead) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        t0 = time.perf_counter()
        r = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
        # a refused connection is answered at once, not after retries or the client's 30 s
        assert r.status_code == 502 and time.perf_counter() - t0 < 15
        err = r.json()["error"]
        assert err["type"] == "engine_unreachable" and dead in err["message"]
        assert c.post("/reorder", json={"contexts": [[1, 2], [2, 3]]}).status_code == 200
        health = c.get("/health").json()
        assert health["status"] == "degraded" and health["engine"]["reachable"] is False
        assert health["engine_reachable"] is False and health["index_ready"] is True
        assert 'contextpilot_engine_errors_total{kind="engine_unreachable"} 1' in c.get("/metrics").text


@pytest.mark.slow
def test_slow_engine_times_out_with_504():
    # the engine would take 4 x 10 s; the server gives up after 1 s. The upper
    # bound only has to sit well below 40 s, not near 1 s, to tell them apart.
    with engine("--prefill-ms-per-token", "10000") as eng, server(eng.url, "--engine-timeout", "1") as srv:
        t0 = time.perf_counter()
        r = httpx.post(srv.url + "/v1/completions", json={"prompt": "a b c d"}, timeout=60)
        took = time.perf_counter() - t0
    assert r.status_code == 504 and r.json()["error"]["type"] == "engine_timeout"
    assert 0.9 < took < 20
