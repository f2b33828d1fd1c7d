"""The HTTP API against a real server process and a real (simulated) engine."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest

pytest.importorskip("fastapi")


def contract(contexts, body):
    order, reordered = body["original_indices"], body["reordered_contexts"]
    assert sorted(order) == list(range(len(contexts)))
    for j, i in enumerate(order):
        assert Counter(reordered[j]) == Counter(contexts[i])


def test_reorder_stateful_modes_ids_and_contract(http):
    first = [[1, 2, 3], [7, 8], [1, 2, 4]]
    b1 = http.post("/reorder", json={"contexts": first}).json()
    assert b1["mode"] == "initial" and b1["input_type"] == "integer"
    contract(first, b1)
    second = [["x", "y"], ["y", "x", "z"]]
    b2 = http.post("/reorder", json={"contexts": second}).json()
    assert b2["mode"] == "incremental" and b2["input_type"] == "string"
    contract(second, b2)
    ids = b1["request_ids"] + b2["request_ids"]
    assert len(set(ids)) == 5 and all(i.startswith("req-") for i in ids)
    assert sum(len(g) for g in b1["groups"]) == 3 and b1["num_groups"] == len(b1["groups"])
    assert http.get("/requests").json()["num_requests"] == 5


@pytest.mark.parametrize(
    "contexts, loc",
    [
        ([[1, 2.5]], ["body", "contexts", 0, 1]),
        ([[1], ["a"]], ["body", "contexts", 1, 0]),
        ([[1, None]], ["body", "contexts", 0, 1]),
        ([[True]], ["body", "contexts", 0, 0]),
        ([], ["body", "contexts"]),
        ([[]], ["body", "contexts", 0]),
    ],
)
def test_bad_contexts_get_422_naming_the_field(http, contexts, loc):
    before = http.get("/requests").json()["num_requests"]
    r = http.post("/reorder", json={"contexts": contexts})
    assert r.status_code == 422
    assert any(d["loc"][: len(loc)] == loc for d in r.json()["detail"]), r.json()
    assert http.get("/requests").json()["num_requests"] == before  # nothing applied


def test_deprecated_aliases(http):
    b = http.post("/build", json={"contexts": [[1, 2], [2, 3]]})
    assert b.status_code == 200 and b.headers["deprecation"] == "true" and b.json()["mode"] == "initial"
    live = http.get("/requests").json()["num_requests"]
    s = http.post("/schedule", json={"contexts": [[5, 6], [6, 5, 7]]}).json()
    assert s["mode"] == "stateless" and s["scheduled_contexts"] == s["reordered_contexts"]
    assert "request_ids" not in s
    assert http.get("/requests").json()["num_requests"] == live  # /schedule keeps no state


def test_reorder_with_dedup_attaches_results_to_the_right_request(http):
    docs = [["d1", "d2", "d3"], ["d4", "d5"]]
    r1 = http.post(
        "/reorder", json={"contexts": docs, "deduplicate": True, "conversation_ids": ["a", "b"]}
    ).json()
    assert r1["deduplication"]["total_blocks_deduped"] == 0
    again = [["d3", "d9"], ["d4", "d1"]]
    r2 = http.post(
        "/reorder", json={"contexts": again, "deduplicate": True, "conversation_ids": ["a", "b"]}
    ).json()
    for j, (res, rid) in enumerate(zip(r2["deduplication"]["results"], r2["request_ids"])):
        assert res["request_id"] == rid
        assert res["original_docs"] == r2["reordered_contexts"][j]
    by_conv = {res["conversation_id"]: res for res in r2["deduplication"]["results"]}
    assert by_conv["a"]["overlapping_docs"] == ["d3"]  # d3 was sent in conversation a
    assert by_conv["b"]["overlapping_docs"] == ["d4"]  # d1 belongs to a, not b
    # no conversation named (0.5.0 style): each context starts its own, nothing is hinted
    fresh = http.post("/reorder", json={"contexts": again, "deduplicate": True}).json()
    assert fresh["deduplication"]["total_blocks_deduped"] == 0
    assert len({res["conversation_id"] for res in fresh["deduplication"]["results"]}) == len(again)
    short = http.post("/reorder", json={"contexts": docs, "deduplicate": True, "parent_request_ids": [None]})
    assert short.status_code == 422 and short.json()["detail"][0]["loc"] == ["body", "parent_request_ids"]


def test_deduplicate_and_sessions(http):
    r1 = http.post("/deduplicate", json={"contexts": [["a", "b"]], "conversation_id": "c1"}).json()
    r2 = http.post("/deduplicate", json={"contexts": [["b", "c"]], "conversation_id": "c1"}).json()
    assert r1["total_blocks_deduped"] == 0 and r2["total_blocks_deduped"] == 1
    assert r2["results"][0]["docs_with_hints"][1] == "c" and "b" in r2["results"][0]["reference_hints"][0]
    sessions = http.get("/sessions").json()
    assert [s["conversation_id"] for s in sessions["sessions"]] == ["c1"] and sessions["sessions"][0][
        "turns"
    ] == 2
    assert http.delete("/sessions/c1").status_code == 200
    assert http.delete("/sessions/c1").status_code == 404
    bad = http.post(
        "/deduplicate", json={"contexts": [["a"]], "conversation_id": "c", "hint_template": "{x}"}
    )
    assert bad.status_code == 422


def test_evict_normalises_engine_ids(http):
    ids = http.post("/reorder", json={"contexts": [[1, 2], [3, 4], [5, 6]]}).json()["request_ids"]
    r = http.post(
        "/evict",
        json={
            "request_ids": [
                f"chatcmpl-{ids[0]}",
                f"{ids[1]}-0-deadbeef",
                "HEALTH_CHECK_7",
                "req-nope",
            ]
        },
    ).json()
    assert r["removed_count"] == 2 and set(r["removed"]) == {ids[0], ids[1]}
    assert r["not_found"] == ["req-nope"] and r["ignored"] == ["HEALTH_CHECK_7"]
    assert r["requests_remaining"] == 1 and r["conversations_cleared"] == 0
    assert r["cleared_conversation_ids"] == []
    assert http.post("/evict", json={"request_ids": [1]}).status_code == 422


def test_reset_stats_health_metrics(http):
    http.post("/reorder", json={"contexts": [[1, 2], [1, 2, 3]]})
    stats = http.get("/stats").json()
    assert stats["index_stats"]["live_requests"] == 2 and stats["config"]["chunk_modulus"] == 13
    health = http.get("/health").json()
    assert health["status"] == "ready" and health["engine"]["reachable"] is True
    metrics = http.get("/metrics").text
    for name in (
        "contextpilot_index_requests 2",
        "contextpilot_http_request_seconds_bucket",
        "contextpilot_hit_ratio_estimate",
        "contextpilot_evicted_requests_total",
    ):
        assert name in metrics
    assert http.post("/reset").json()["status"] == "success"
    assert http.get("/stats").json()["index_stats"]["live_requests"] == 0
    assert "openapi" in http.get("/openapi.json").json()


def test_proxy_sets_request_id_and_returns_engine_body(http, eng):
    r = http.post("/v1/completions", json={"prompt": "hello world", "max_tokens": 1, "rid": "cmpl-req-abc"})
    assert r.status_code == 200
    assert r.headers["x-contextpilot-request-id"] == "req-abc"
    body = r.json()
    assert body["id"] == "cmpl-req-abc" and body["usage"]["prompt_tokens"] == 2  # engine's own body
    seen = httpx.get(eng.url + "/debug/requests").json()["requests"][-1]
    assert seen["rid"] == seen["request_id"] == seen["x_request_id"] == "req-abc"
    auto = http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
    rid = auto.headers["x-contextpilot-request-id"]
    assert rid.startswith("req-") and rid in http.get("/requests").json()["request_ids"]
    assert http.post("/evict", json={"request_ids": [f"chatcmpl-{rid}"]}).json()["removed"] == [rid]
    assert http.post("/v1/completions", content=b"not json").status_code == 400


def test_warm_precaches_prefixes(http, eng):
    r = http.post("/warm", json={"prefixes": ["shared system prompt", "another hot block"]}).json()
    assert r["status"] == "success" and r["succeeded"] == [0, 1] and all(r["request_ids"])
    hit = http.post("/v1/completions", json={"prompt": "shared system prompt and more"}).json()
    assert hit["usage"]["prompt_tokens_details"]["cached_tokens"] >= 3
    assert http.post("/warm", json={}).status_code == 422


def test_parent_request_ids_chain_conversations(http):
    """0.5.0 flow: None starts a conversation, a request id continues its chain."""
    t1 = http.post(
        "/reorder", json={"contexts": [["pa", "pb"]], "deduplicate": True, "parent_request_ids": [None]}
    ).json()
    rid1 = t1["request_ids"][0]
    assert t1["deduplication"]["results"][0]["request_id"] == rid1
    t2 = http.post("/deduplicate", json={"contexts": [["pb", "pc"]], "parent_request_ids": [rid1]}).json()
    assert t2["results"][0]["overlapping_docs"] == ["pb"] and t2["results"][0]["new_docs"] == ["pc"]
    rid2 = t2["request_ids"][0]
    t3 = http.post(
        "/reorder",
        json={"contexts": [["pc", "pa", "pd"]], "deduplicate": True, "parent_request_ids": [rid2]},
    ).json()
    assert sorted(t3["deduplication"]["results"][0]["overlapping_docs"]) == ["pa", "pc"]
    fresh = http.post("/deduplicate", json={"contexts": [["pa"]], "parent_request_ids": [None]}).json()
    assert fresh["results"][0]["overlapping_docs"] == []
    assert fresh["results"][0]["conversation_id"] != t2["results"][0]["conversation_id"]
    neither = http.post("/deduplicate", json={"contexts": [["pa"]]})
    assert neither.status_code == 422 and neither.json()["detail"][0]["loc"] == ["body", "conversation_id"]
    short = http.post("/deduplicate", json={"contexts": [["pa"], ["pb"]], "parent_request_ids": ["x"]})
    assert short.status_code == 422 and short.json()["detail"][0]["loc"] == ["body", "parent_request_ids"]
