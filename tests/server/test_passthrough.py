"""OpenAI passthrough on real processes (127.0.0.1): every other /v1/* path
reaches the simulated engine unchanged, with the server's auth, the engine
key, replica routing and streams relayed as they come."""

from __future__ import annotations

import contextlib
import json
import time

import httpx
import pytest

from support.procs import engine, server

pytest.importorskip("fastapi")

KEY, ENGINE_KEY = "server-secret", "engine-secret"


def test_models_embeddings_and_unknown_paths_pass_through_with_auth():
    with engine() as eng, server(eng.url, "--api-key", KEY, "--engine-api-key", ENGINE_KEY) as srv:
        auth = {"Authorization": f"Bearer {KEY}"}
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            # the server's key guards passthrough paths too
            assert c.get("/v1/models").status_code == 401
            assert c.post("/v1/embeddings", json={"input": "x"}).status_code == 401

            direct = httpx.get(eng.url + "/v1/models", timeout=30)
            via = c.get("/v1/models", headers=auth)
            assert via.status_code == 200 and via.json() == direct.json()

            body = {"input": ["the cat sat", "a dog ran far"], "model": "m", "dimensions": 16}
            direct = httpx.post(eng.url + "/v1/embeddings", json=body, timeout=30)
            via = c.post("/v1/embeddings?trace=1", json=body, headers=auth)
            assert via.status_code == 200 and via.content == direct.content  # byte-identical
            vecs = [d["embedding"] for d in via.json()["data"]]
            assert len(vecs) == 2 and all(len(v) == 16 for v in vecs) and vecs[0] != vecs[1]

            # the engine saw the engine key (never the server's) and the query string
            seen = [
                r for r in httpx.get(eng.url + "/debug/requests").json()["requests"] if r["query"] is not None
            ]
            last = seen[-1]
            assert last["authorization"] == f"Bearer {ENGINE_KEY}" and last["query"] == "trace=1"

            # a path the engine does not serve: the engine's own answer comes back
            direct = httpx.get(eng.url + "/v1/no/such/thing", timeout=30)
            via = c.get("/v1/no/such/thing", headers=auth)
            assert direct.status_code == 404 and via.status_code == 404 and via.json() == direct.json()
            # a bad body reaches the engine, which answers 400 (not a server crash)
            via = c.post("/v1/embeddings", content=b"not json", headers=auth)
            assert via.status_code == 400
            assert c.get("/health").json()["status"] == "ready"

            metrics = c.get("/metrics", headers=auth).text
            assert 'contextpilot_proxied_requests_total{endpoint="passthrough"}' in metrics


def test_passthrough_stream_is_relayed_as_it_comes():
    # five SSE events 0.4 s apart (1.6 s first to last); a buffering proxy would deliver them together
    with engine("--stream-chunks", "5", "--stream-chunk-ms", "400") as eng, server(eng.url) as srv:
        arrivals, events = [], []
        with httpx.Client(timeout=60) as c:
            with c.stream("POST", srv.url + "/v1/responses", json={"input": "hi", "stream": True}) as r:
                assert r.status_code == 200
                assert r.headers["content-type"].startswith("text/event-stream")
                t0 = time.perf_counter()
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        arrivals.append(time.perf_counter() - t0)
                        events.append(json.loads(line[6:])["type"])
        assert events == ["response.output_text.delta"] * 5 + ["response.completed"]
        # lower bound only: a loaded machine can delay arrivals, never make the engine emit sooner
        assert arrivals[-1] - arrivals[0] > 0.8, arrivals
        # non-streamed answers of the same path come back whole
        r = httpx.post(srv.url + "/v1/responses", json={"input": "hi"}, timeout=30)
        assert r.status_code == 200 and r.json()["output_text"] == "ok"


def test_passthrough_routes_over_replicas():
    with contextlib.ExitStack() as stack:
        engs = [stack.enter_context(engine()) for _ in range(2)]
        srv = stack.enter_context(
            server(engs[0].url, "--infer-api-url", engs[1].url, "--routing", "round-robin")
        )
        names = {e.url.removeprefix("http://") for e in engs}
        used = set()
        for i in range(4):
            r = httpx.post(srv.url + "/v1/embeddings", json={"input": f"text {i}"}, timeout=30)
            assert r.status_code == 200
            used.add(r.headers["x-contextpilot-replica"])
        assert used == names
