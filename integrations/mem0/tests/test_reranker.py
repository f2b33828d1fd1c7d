"""ContextPilotReranker in mem0's own search: configured by provider name,
called by ``Memory.search(..., rerank=True)``; results keep mem0's fields."""

from __future__ import annotations

import asyncio

import pytest
from _support import as_messages
from contextpilot_mem0 import RANK_KEY, REQUEST_KEY, ContextPilotReranker, ContextPilotRerankerConfig

import contextpilot as cp

FACTS = [
    "Alice lives in Lisbon near the river",
    "Alice has a dog called Rex",
    "Rex is a border collie who loves the beach",
    "Alice works as a nurse at the city hospital",
    "Alice's sister Maria lives in Porto",
    "Maria visits Lisbon every spring",
]
USER = {"user_id": "alice"}


def ids(results):
    return [r["id"] for r in results["results"]]


def test_provider_is_configured_the_mem0_way(ranked_memory):
    assert isinstance(ranked_memory.reranker, ContextPilotReranker)
    assert ranked_memory.reranker.pilot is not None


def test_search_keeps_results_and_scores_and_orders_for_the_cache(ranked_memory):
    m = ranked_memory
    m.add(as_messages(FACTS), user_id="alice", infer=False)
    plain1 = m.search("Where does Alice live? Her dog Rex", filters=USER, top_k=4, threshold=0.0)
    plain2 = m.search("Tell me about Rex the dog and Lisbon", filters=USER, top_k=4, threshold=0.0)
    r1 = m.search("Where does Alice live? Her dog Rex", filters=USER, top_k=4, threshold=0.0, rerank=True)
    r2 = m.search("Tell me about Rex the dog and Lisbon", filters=USER, top_k=4, threshold=0.0, rerank=True)
    # same memories as mem0's own search, relevance rank and score kept on each
    for plain, ours in ((plain1, r1), (plain2, r2)):
        assert sorted(ids(plain)) == sorted(ids(ours))
        for item in ours["results"]:
            p = item[RANK_KEY]
            assert plain["results"][p]["id"] == item["id"]
            assert item["rerank_score"] == pytest.approx(plain["results"][p]["score"])
            assert item[REQUEST_KEY].startswith("req-")
    # the second search starts with the memories of the first that it shares, in the first's order
    shared = [i for i in ids(r1) if i in set(ids(r2))]
    assert len(shared) >= 2
    n = 0
    while n < len(shared) and ids(r1)[n] == shared[n]:
        n += 1
    assert n >= 1 and ids(r2)[:n] == ids(r1)[:n]
    assert m.reranker.pilot.stats()["live_requests"] == 2


def test_plain_search_is_untouched(ranked_memory):
    m = ranked_memory
    m.add(as_messages(FACTS[:3]), user_id="alice", infer=False)
    out = m.search("Rex", filters=USER, top_k=3, threshold=0.0)
    assert all(RANK_KEY not in r for r in out["results"])
    assert m.reranker.pilot.stats()["live_requests"] == 0


def test_async_memory(async_memory):
    async def run():
        m = async_memory
        await m.add(as_messages(FACTS), user_id="alice", infer=False)
        return await m.search("Alice and Rex", filters=USER, top_k=3, threshold=0.0, rerank=True)

    out = asyncio.run(run())
    assert sorted(r[RANK_KEY] for r in out["results"]) == [0, 1, 2]


def test_direct_use_config_and_errors():
    pilot = cp.ContextPilot()
    r = ContextPilotReranker(pilot=pilot)
    docs = [{"id": "a1", "memory": "alpha", "score": 0.9}, {"id": "b2", "memory": "beta", "score": 0.5}]
    r.rerank("q", docs)
    out = r.rerank("q", [{"id": "c3", "memory": "gamma", "score": 0.99}, *docs[::-1]])
    assert [o["id"] for o in out][:2] == ["a1", "b2"] and [o[RANK_KEY] for o in out] == [2, 1, 0]
    assert docs[0] == {"id": "a1", "memory": "alpha", "score": 0.9}  # the caller's dicts are untouched
    assert r.rerank("q", []) == []
    assert ContextPilotReranker({"capacity_tokens": 1000}).pilot.stats()["capacity_tokens"] == 1000
    assert ContextPilotReranker(ContextPilotRerankerConfig(timeout=5)).config.timeout == 5
    with pytest.raises(ValueError, match=r"documents\[0\] has no mem0 'id'"):
        r.rerank("q", [{"memory": "x"}])
    with pytest.raises(ValueError, match=r"documents\[1\] must be a mem0 result"):
        r.rerank("q", [docs[0], {"id": "z"}])
    with pytest.raises(ValueError, match="not both"):
        ContextPilotReranker(ContextPilotRerankerConfig(), timeout=3)
    with pytest.raises(ValueError):
        ContextPilotReranker(server_url="localhost:1")
    with pytest.raises(ValueError):
        ContextPilotReranker({"no_such_option": 1})


def test_an_updated_memory_is_a_new_block():
    r = ContextPilotReranker()
    r.rerank("q", [{"id": "a", "memory": "v1", "hash": "h1"}])
    out = r.rerank("q", [{"id": "b", "memory": "w", "hash": "hb"}, {"id": "a", "memory": "v2", "hash": "h2"}])
    assert [o["id"] for o in out] == ["b", "a"]  # nothing cached: relevance order
