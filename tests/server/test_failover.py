"""Failover on real processes (127.0.0.1): two simulated-engine replicas
behind one server; one is killed mid-run, then brought back; engines that
answer 5xx; a fallback engine; /health and the failover metrics. Waits
are polls with generous deadlines, never fixed sleeps."""

from __future__ import annotations

import contextlib
import re
import threading

import httpx
import pytest

from contextpilot.server.engine_client import EngineError
from contextpilot.server.failover import is_safe, judge
from contextpilot.server.router import Router

from support.procs import engine, free_port, server, spawn, wait_for

pytest.importorskip("fastapi")

REPLICA = "x-contextpilot-replica"


def name(e) -> str:
    return e.url.removeprefix("http://")


def chat(c: httpx.Client, text: str) -> httpx.Response:
    return c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": text}]})


def metric(text: str, series: str) -> float:
    """Sum of every sample of ``series`` whose labels contain each given pair."""
    base, _, want = series.partition("{")
    pairs = re.findall(r'(\w+)="([^"]*)"', want)
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(base)}(?:\{{(.*)\}})? (\S+)$", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in pairs):
            total += float(m.group(2))
    return total


# -- policy, in process --------------------------------------------------------


class _Ix:
    tokens = 0

    def match(self, keys):
        return 0

    def heaviest_path(self, available, start=None, budget=128):
        return [], None


@pytest.mark.parametrize("policy", ["cache-aware", "round-robin", "random", "least-loaded"])
def test_router_skips_replicas_marked_down_and_excluded(policy):
    r = Router([_Ix(), _Ix(), _Ix()], policy)
    assert r.mark_down(1) and not r.mark_down(1)
    chosen = {r.route([0, 0, 0], 10)[0].replica for _ in range(12)}
    assert 1 not in chosen and chosen <= {0, 2}
    # excluded ones are skipped too; when only down ones are left, they are used
    assert {r.route([0, 0, 0], 10, exclude={0})[0].replica for _ in range(6)} == {2}
    assert {r.route([0, 0, 0], 10, exclude={0, 2})[0].replica for _ in range(3)} == {1}
    with pytest.raises(ValueError):
        r.route([0, 0, 0], 10, exclude={0, 1, 2})
    assert r.available({0}) == [2]
    assert r.mark_up(1) and 1 in {r.route([0, 0, 0], 10)[0].replica for _ in range(12)}
    assert [s["down"] for s in r.snapshot()] == [False, False, False]


def test_failure_policy():
    refused = EngineError(502, "engine_unreachable", "x", reached=False)
    broken = EngineError(502, "engine_error", "x")
    timeout = EngineError(504, "engine_timeout", "x")
    assert judge(refused, 502, safe=False) == (True, True, "unreachable")  # never reached: always retried
    assert judge(broken, 502, safe=False) == (False, True, "broken")
    assert judge(broken, 502, safe=True) == (True, True, "broken")
    assert judge(timeout, 504, safe=True) == (False, False, "timeout")
    assert judge(None, 503, safe=True) == (True, True, "http_503")
    assert judge(None, 500, safe=True) == (True, False, "http_500")
    assert judge(None, 400, safe=True) == (False, False, "ok")
    assert is_safe("GET", "/v1/models") and is_safe("POST", "/v1/embeddings")
    assert not is_safe("POST", "/v1/files") and not is_safe("DELETE", "/v1/models/x")


# -- real processes ------------------------------------------------------------


def test_kill_a_replica_mid_run_loses_no_request_and_it_comes_back():
    port_b = free_port()
    with contextlib.ExitStack() as stack:
        a = stack.enter_context(engine())
        b = stack.enter_context(spawn("contextpilot.sim.engine", port=port_b))
        srv = stack.enter_context(
            server(a.url, "--infer-api-url", b.url, "--routing", "round-robin", "--health-interval", "0.3")
        )
        c = stack.enter_context(httpx.Client(base_url=srv.url, timeout=60))
        results: list[tuple[int, str | None]] = []
        stop = threading.Event()

        def load() -> None:  # a client sending requests one after another the whole time
            with httpx.Client(base_url=srv.url, timeout=60) as lc:
                i = 0
                while not stop.is_set():
                    r = chat(lc, f"question {i} about topic {i % 7}")
                    results.append((r.status_code, r.headers.get(REPLICA)))
                    i += 1

        worker = threading.Thread(target=load, daemon=True)
        worker.start()
        try:
            # both replicas serve while healthy
            wait_for("both replicas used", lambda: {n for s, n in results if s == 200} >= {name(a), name(b)})
            assert c.get("/health").json()["status"] == "ready"

            n0 = len(results)
            b.popen.kill()  # mid-run, no goodbye
            b.popen.wait()
            health = wait_for(
                "/health degraded",
                lambda: (h := c.get("/health").json())["status"] == "degraded" and h,
            )
            assert health["replicas_down"] == [name(b)] and health["engine_reachable"] is True
            assert health["index_ready"] is True
            assert [r["down"] for r in health["replicas"]] == [False, True]
            # traffic keeps flowing, all on the survivor
            wait_for("20 more answers", lambda: len(results) >= n0 + 20)
            m = c.get("/metrics").text
            assert metric(m, f'contextpilot_replica_up{{replica="{name(b)}"}}') == 0
            assert metric(m, f'contextpilot_replica_marked_down_total{{replica="{name(b)}"}}') >= 1

            # bring it back on the same port: the probe marks it up and it serves again
            n1 = len(results)
            b2 = stack.enter_context(spawn("contextpilot.sim.engine", port=port_b))
            wait_for("/health ready again", lambda: c.get("/health").json()["status"] == "ready")
            wait_for("the revived replica serves", lambda: any(n == name(b2) for _, n in results[n1:]))
            m = c.get("/metrics").text
            assert metric(m, f'contextpilot_replica_recovered_total{{replica="{name(b)}"}}') >= 1
            assert metric(m, f'contextpilot_replica_up{{replica="{name(b)}"}}') == 1
        finally:
            stop.set()
            worker.join(timeout=60)
        statuses = [s for s, _ in results]
        # zero lost: refused connections are retried on the other replica, and a chat
        # completion broken mid-exchange is safe to repeat
        assert statuses and all(s == 200 for s in statuses), [s for s in statuses if s != 200]


def test_engine_5xx_is_retried_elsewhere_and_only_502_to_504_mark_down():
    with contextlib.ExitStack() as stack:
        a, b = stack.enter_context(engine()), stack.enter_context(engine())
        # a long probe interval: only requests mark replicas down or up here
        srv = stack.enter_context(
            server(a.url, "--infer-api-url", b.url, "--routing", "round-robin", "--health-interval", "3600")
        )
        c = stack.enter_context(httpx.Client(base_url=srv.url, timeout=60))
        before = c.get("/metrics").text
        # every request to A answers 500 for a while: each is retried on B, A stays in use
        httpx.post(a.url + "/debug/fail", json={"status": 500, "count": 2})
        got = [chat(c, f"five hundred {i}") for i in range(4)]
        assert [r.status_code for r in got] == [200] * 4
        assert got[0].headers[REPLICA] == name(b) and got[1].headers[REPLICA] == name(b)
        after = c.get("/metrics").text
        retried = metric(after, f'contextpilot_failovers_total{{from_replica="{name(a)}",reason="http_500"}}')
        assert retried - metric(before, "contextpilot_failovers_total") == 2
        assert metric(after, f'contextpilot_replica_up{{replica="{name(a)}"}}') == 1

        # a 503 marks A down: the request goes to B, and A is skipped afterwards
        httpx.post(a.url + "/debug/fail", json={"status": 503, "count": 1})
        got = [chat(c, f"five oh three {i}") for i in range(4)]
        assert [r.status_code for r in got] == [200] * 4
        after = c.get("/metrics").text
        assert (
            metric(after, f'contextpilot_failovers_total{{from_replica="{name(a)}",reason="http_503"}}') == 1
        )
        assert metric(after, f'contextpilot_replica_up{{replica="{name(a)}"}}') == 0
        assert got[-1].headers[REPLICA] == name(b) and got[-2].headers[REPLICA] == name(b)
        assert c.get("/health").json()["replicas_down"] == [name(a)]

        # a path that is not safe to repeat (/v1/responses may store state) is not retried after
        # a 5xx: the client sees the engine's answer, and B is marked down all the same
        httpx.post(b.url + "/debug/fail", json={"status": 503, "count": 1})
        r = c.post("/v1/responses", json={"input": "x"})
        assert r.status_code == 503 and r.headers[REPLICA] == name(b)
        assert r.json()["error"]["message"] == "injected failure"
        assert c.get("/health").json()["replicas_down"] == [name(a), name(b)]
        # both marked down, no fallback: the next request still reaches an engine, whose
        # answer marks it up again
        r = chat(c, "after both down")
        assert r.status_code == 200
        assert c.get("/health").json()["replicas_down"] == [
            n for n in (name(a), name(b)) if n != r.headers[REPLICA]
        ]
        httpx.post(b.url + "/debug/fail", json={"status": 503, "count": 1})
        r = c.post("/v1/embeddings", json={"input": "x"})
        # embeddings are safe to repeat: retried on A, marked down but the only one left (no
        # fallback), which answers and so is marked up again
        assert r.status_code == 200 and r.headers[REPLICA] == name(a)
        assert c.get("/health").json()["replicas_down"] == [name(b)]
        r = c.put("/v1/embeddings", json={"input": "x"})
        assert r.status_code in (404, 405)  # the engine's own answer to an unknown method, passed through


def test_fallback_engine_and_health_fields():
    dead = f"http://127.0.0.1:{free_port()}"
    with engine() as fb, engine() as live:
        # one dead replica only: the fallback answers, named in the header
        with server(dead, "--fallback-url", fb.url, "--health-interval", "0.3") as srv:
            c = httpx.Client(base_url=srv.url, timeout=60)
            r = chat(c, "hello there")
            assert r.status_code == 200 and r.headers[REPLICA] == "fallback"
            assert r.json()["object"] == "chat.completion"
            health = wait_for(
                "degraded", lambda: (h := c.get("/health").json())["status"] == "degraded" and h
            )
            assert health["engine_reachable"] is True and health["engine"]["reachable"] is False
            assert health["fallback"]["reachable"] is True
            # once the replica is marked down, requests go straight to the fallback
            r = chat(c, "hello again")
            assert r.status_code == 200 and r.headers[REPLICA] == "fallback"
            m = c.get("/metrics").text
            assert metric(m, 'contextpilot_failovers_total{to_replica="fallback",reason="marked_down"}') >= 1
            assert metric(m, 'contextpilot_failovers_total{to_replica="fallback"}') == 2
        # without a fallback: the refused request fails fast and /health says why
        with server(dead) as srv:
            c = httpx.Client(base_url=srv.url, timeout=60)
            assert chat(c, "hi").status_code == 502
            health = c.get("/health").json()
            assert health["status"] == "degraded" and health["engine_reachable"] is False
            assert health["index_ready"] is True and "fallback" not in health
        # healthy, with a capacity: the reference's current_tokens / utilization_pct
        with server(live.url, "--capacity-tokens", "100000") as srv:
            c = httpx.Client(base_url=srv.url, timeout=60)
            h0 = c.get("/health").json()
            assert h0["status"] == "ready" and h0["current_tokens"] == 0 and h0["utilization_pct"] == 0
            assert h0["index_initialized"] is False and h0["replicas_down"] == []
            assert chat(c, "some words to cache " * 20).status_code == 200
            h1 = c.get("/health").json()
            assert h1["current_tokens"] > 0 and h1["index_initialized"] is True
            assert h1["current_tokens"] == c.get("/stats").json()["index_stats"]["index_tokens"]
            assert h1["max_tokens"] == 100000
            assert h1["utilization_pct"] == pytest.approx(100 * h1["current_tokens"] / 100000, abs=0.01)
