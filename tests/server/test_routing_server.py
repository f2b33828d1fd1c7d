"""Several real engines behind one real contextpilot server on 127.0.0.1:
per-replica indexes, routing, /evict tagged by replica, per-replica /stats,
/metrics, /health, /warm, and every routing flag checked by its effect."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from support.procs import engine, server

pytest.importorskip("fastapi")

REPLICA = "x-contextpilot-replica"
#: tests that start many servers (about 4 s each here) run in .ci/steps/51-routing.sh
_skip_unless_asked = pytest.mark.skipif(
    not os.environ.get("CONTEXTPILOT_ROUTING_TESTS"),
    reason="multi-process routing suite: set CONTEXTPILOT_ROUTING_TESTS=1 (run by .ci/steps/51-routing.sh)",
)


def suite(test):
    return pytest.mark.routing(_skip_unless_asked(test))


@contextlib.contextmanager
def engines(n, *args):
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(engine(*args)) for _ in range(n)]


def multi(engs, *args, env=None):
    urls = [a for e in engs[1:] for a in ("--infer-api-url", e.url)]
    return server(engs[0].url, *urls, *args, env=env)


def name(e) -> str:
    return e.url.removeprefix("http://")


def rids_seen(e) -> list[str]:
    return [r["rid"] for r in httpx.get(e.url + "/debug/requests").json()["requests"]]


def chat(url, system, user, **extra):
    msgs = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    return httpx.post(url + "/v1/chat/completions", json={"messages": msgs, **extra}, timeout=60)


SYSTEM = "You answer questions about the shared handbook. " + " ".join(f"rule{i}" for i in range(40))


def test_replicas_api_end_to_end():
    with engines(3) as engs, multi(engs) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        names = [name(e) for e in engs]
        stats = c.get("/stats").json()
        assert [r["name"] for r in stats["replicas"]] == names and stats["routing"]["policy"] == "cache-aware"
        health = c.get("/health").json()
        assert [r["name"] for r in health["replicas"]] == names
        assert all(r["reachable"] for r in health["replicas"])

        # warm every replica (a pinned plan each), so cache affinity can decide
        for n in names:
            assert c.post("/reorder", json={"contexts": [[f"seed {n}"]], "replica": n}).json()[
                "replicas"
            ] == [n]
        # /reorder one context: routed, planned and recorded on one replica
        docs = ["alpha doc " * 10, "beta doc " * 10, "gamma doc " * 10]
        plan = c.post("/reorder", json={"contexts": [docs]}).json()
        (where,) = plan["replicas"]
        rid = plan["request_ids"][0]
        r = c.post(
            "/v1/chat/completions",
            json={
                "messages": [{"role": "user", "content": "\n".join(plan["reordered_contexts"][0])}],
                "rid": rid,
            },
        )
        assert r.status_code == 200 and r.headers[REPLICA] == where  # sticky: planned for that cache
        assert [rid in rids_seen(e) for e in engs] == [n == where for n in names]
        again = c.post("/reorder", json={"contexts": [[docs[2], docs[0], "delta doc"]]}).json()
        assert again["replicas"] == [where] and again["stats"]["cached_tokens_estimate"] > 0
        # pinned, and unknown replicas
        other = next(n for n in names if n != where)
        pinned = c.post("/reorder", json={"contexts": [["x", "y"]], "replica": other}).json()
        assert pinned["replicas"] == [other]
        bad = c.post("/reorder", json={"contexts": [["x"]], "replica": "nope"})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "replica"]
        # a batch: two disjoint topics, each kept whole on one replica
        batch = [[f"t{t}-d{i}" for i in range(6)] for t in (0, 1) for _ in range(3)]
        out = c.post("/reorder", json={"contexts": batch}).json()
        assert sorted(out["original_indices"]) == list(range(6)) and len(out["replicas"]) == 6
        topic_of = {out["original_indices"][j]: out["replicas"][j] for j in range(6)}
        assert len({topic_of[i] for i in (0, 1, 2)}) == 1 and len({topic_of[i] for i in (3, 4, 5)}) == 1
        assert len(c.get("/requests").json()["replicas"]) == 3

        # /evict: tagged by replica (name or URL), or found wherever the id lives
        prid = pinned["request_ids"][0]
        wrong = c.post("/evict", json={"request_ids": [prid], "replica": where}).json()
        assert wrong["removed"] == [] and wrong["not_found"] == [prid]
        url_of = dict(zip(names, (e.url for e in engs)))
        ev = c.post("/evict", json={"request_ids": [prid], "replica": url_of[other] + "/"}).json()
        assert ev["removed"] == [prid] and ev["removed_by_replica"] == {other: 1} and ev["replica"]
        ev = c.post("/evict", json={"request_ids": [f"chatcmpl-{rid}", "req-none"]}).json()
        assert ev["removed"] == [rid] and ev["not_found"] == ["req-none"]
        assert ev["removed_by_replica"] == {where: 1}
        bad = c.post("/evict", json={"request_ids": [rid], "replica": "gpu-9"})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "replica"]
        assert c.post("/evict", json={"request_ids": ["x"], "replica": ""}).status_code == 200  # unset

        # plain proxied chats: same system prompt -> the replica that holds it
        first = chat(srv.url, SYSTEM, "question one")
        second = chat(srv.url, SYSTEM, "question two")
        assert first.headers[REPLICA] == second.headers[REPLICA]
        assert second.json()["usage"]["prompt_tokens_details"]["cached_tokens"] > 40

        # /warm: every replica by default, one when named
        w = c.post("/warm", json={"prefixes": ["hot prefix text"]}).json()
        assert w["status"] == "success" and w["succeeded"] == [0] and set(w["replicas"]) == set(names)
        w1 = c.post("/warm", json={"prefixes": ["hot prefix text"], "replica": names[1]}).json()
        assert set(w1["replicas"]) == {names[1]}
        assert c.post("/warm", json={"prefixes": ["p"], "replica": "nope"}).status_code == 422

        stats = c.get("/stats").json()
        per = {r["name"]: r for r in stats["replicas"]}
        assert sum(r["proxied_requests"] for r in per.values()) == 3  # /warm is not proxying
        assert (
            per[first.headers[REPLICA]]["engine_cached_tokens"] > 40 and per[other]["evicted_requests"] == 1
        )
        assert stats["index_stats"]["live_requests"] == sum(r["index"]["live_requests"] for r in per.values())
        metrics = c.get("/metrics").text
        assert f'contextpilot_replica_proxied_requests_total{{replica="{where}"}}' in metrics
        assert f'contextpilot_replica_evicted_requests_total{{replica="{other}"}} 1' in metrics
        # the exposition lists labels sorted by name
        assert f'contextpilot_routing_decisions_total{{reason="sticky",replica="{where}"}} 1' in metrics
        assert 'contextpilot_replica_inflight_requests{replica="' in metrics
        assert c.post("/reset").json()["status"] == "success"
        assert c.get("/requests").json()["num_requests"] == 0


def _where(srv_url, n, system=SYSTEM):
    """Replicas of n chats sharing a system prompt, after two unrelated ones."""
    for i in range(2):
        chat(srv_url, f"unrelated assistant {i}", "hello")
    return [chat(srv_url, system, f"question {i}").headers[REPLICA] for i in range(n)]


@suite
def test_routing_flag_and_env():
    with engines(2) as engs:
        names = [name(e) for e in engs]
        with multi(engs) as srv:  # cache-aware: a shared system prompt keeps one replica
            assert len(set(_where(srv.url, 4))) == 1
        with multi(engs, "--routing", "round-robin") as srv:
            assert _where(srv.url, 4) == names * 2
        with multi(engs, env={"CONTEXTPILOT_ROUTING": "round-robin"}) as srv:
            assert _where(srv.url, 4) == names * 2
            assert httpx.get(srv.url + "/stats").json()["routing"]["policy"] == "round-robin"
        with multi(engs, env={"CONTEXTPILOT_ROUTING": "least-loaded"}) as srv:
            assert _where(srv.url, 2) == names  # ignores the cache: idle, fewer routed


def _concurrent(srv_url, n):
    """n chats at once that share the system prompt, each with its own question.
    A barrier releases them together, so they overlap even on a loaded machine."""
    gate = threading.Barrier(n)

    def one(i):
        with httpx.Client(timeout=60) as c:
            question = " ".join(f"w{i}x{k}" for k in range(8))
            msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
            gate.wait(30)
            return c.post(srv_url + "/v1/chat/completions", json={"messages": msgs}).headers[REPLICA]

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


@suite
def test_inflight_limits_spill_to_other_replicas():
    # each uncached token costs 100 ms: concurrent requests overlap for about a second
    with engines(2, "--prefill-ms-per-token", "100") as engs:
        cases = [
            (["--route-max-imbalance", "none"], None, 1),  # all want the replica holding SYSTEM
            (["--route-max-imbalance", "none", "--route-max-inflight", "1"], None, 2),
            (["--route-max-imbalance", "none"], {"CONTEXTPILOT_ROUTE_MAX_INFLIGHT": "1"}, 2),
            (["--route-max-imbalance", "none", "--route-max-inflight-tokens", "5"], None, 2),
            (["--route-max-imbalance", "1"], None, 2),
            ([], {"CONTEXTPILOT_ROUTE_MAX_IMBALANCE": "1"}, 2),
        ]
        for args, env, used in cases:
            with multi(engs, *args, env=env) as srv:
                home = chat(srv.url, SYSTEM, "warm up").headers[REPLICA]  # holds the system prompt
                assert chat(srv.url, "another assistant", "x").headers[REPLICA] != home  # both warm
                got = _concurrent(srv.url, 4)
                assert len(set(got)) == used, (args, env, got)


@suite
def test_min_match_flag():
    with engines(2) as engs:
        for args, env, same in (
            (["--route-min-match", "0"], None, True),
            (["--route-min-match", "0.95"], None, False),
            ([], {"CONTEXTPILOT_ROUTE_MIN_MATCH": "0.95"}, False),
        ):
            with multi(engs, *args, env=env) as srv:
                a = chat(srv.url, SYSTEM, "first").headers[REPLICA]
                assert chat(srv.url, "another assistant", "x").headers[REPLICA] != a  # both warm now
                # only the system prompt is cached, on a's replica: about half of this prompt
                b = chat(srv.url, SYSTEM, "a different, much longer question " * 6).headers[REPLICA]
                assert (a == b) is same, (args, env)


@suite
def test_engines_file(tmp_path):
    with engines(2) as engs:
        spec = [
            {"name": "left", "url": engs[0].url},
            {"name": "right", "url": engs[1].url, "api_key": "right-key", "max_inflight": 3},
        ]
        path = tmp_path / "engines.json"
        path.write_text(json.dumps(spec))
        for args, env in (
            (["--engines-file", str(path)], None),
            ([], {"CONTEXTPILOT_ENGINES_FILE": str(path)}),
        ):
            with server("http://127.0.0.1:9", *args, env=env) as srv:  # the file replaces the URL
                stats = httpx.get(srv.url + "/stats").json()
                assert [r["name"] for r in stats["replicas"]] == ["left", "right"]
                assert stats["replicas"][1]["load"]["max_inflight"] == 3
                pinned = httpx.post(
                    srv.url + "/reorder", json={"contexts": [["a"]], "replica": "right"}
                ).json()
                r = chat(srv.url, "s", "a", rid=pinned["request_ids"][0])
                assert r.headers[REPLICA] == "right"
                seen = httpx.get(engs[1].url + "/debug/requests").json()["requests"][-1]
                assert seen["authorization"] == "Bearer right-key"
                ev = httpx.post(
                    srv.url + "/evict", json={"request_ids": [pinned["request_ids"][0]], "replica": "right"}
                )
                assert ev.json()["removed_by_replica"] == {"right": 1}
        left_seen = httpx.get(engs[0].url + "/debug/requests").json()["requests"]
        assert all(x["authorization"] is None for x in left_seen)
