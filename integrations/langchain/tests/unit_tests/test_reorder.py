"""ContextPilotReorder in real LCEL chains: retriever | reorder | prompt | chat model.

Every assertion reads the prompt the fake chat model received."""

from __future__ import annotations

import pytest
from langchain_contextpilot import RANK_KEY, REQUEST_KEY, ContextPilotReorder, block_key
from langchain_core.documents import Document
from lc_helpers import (
    Q1,
    Q2,
    common_prefix,
    ids_of,
    make_chain,
    make_docs_chain,
    shareable_prefix,
)

import contextpilot as cp

from support.plugin_fixtures import assert_reuses_prefix


def retrieval_ids(store, q: str) -> list[str]:
    return [d.id for d in store.as_retriever(search_kwargs={"k": 4}).invoke(q)]


def test_corpus_preconditions(store):
    """The queries retrieve overlapping sets, in an order that shares no prefix."""
    r1, r2 = retrieval_ids(store, Q1), retrieval_ids(store, Q2)
    assert shareable_prefix(r1, set(r2)) >= 2
    assert common_prefix(r1, r2) == 0


def test_two_query_session_shares_the_longest_prefix(store):
    retriever = store.as_retriever(search_kwargs={"k": 4})
    plain = make_chain(retriever)
    chain = make_chain(retriever | ContextPilotReorder())
    p1, p2 = ids_of(chain.invoke(Q1)), ids_of(chain.invoke(Q2))
    assert sorted(p1) == sorted(retrieval_ids(store, Q1)) and sorted(p2) == sorted(retrieval_ids(store, Q2))
    best = assert_reuses_prefix(p1, p2)
    # without contextpilot the model gets retrieval order, which shares less
    assert common_prefix(ids_of(plain.invoke(Q1)), ids_of(plain.invoke(Q2))) < best


async def test_two_query_session_async(store):
    chain = make_chain(store.as_retriever(search_kwargs={"k": 4}) | ContextPilotReorder())
    p1 = ids_of(await chain.ainvoke(Q1))
    p2 = ids_of(await chain.ainvoke(Q2))
    assert_reuses_prefix(p1, p2)


def test_batch_plans_together_and_keeps_alignment(store):
    reorder = ContextPilotReorder()
    chain = make_docs_chain(store.as_retriever(search_kwargs={"k": 4}) | reorder)
    out = chain.batch([Q1, Q2])
    p1, p2 = ids_of(out[0]), ids_of(out[1])
    assert sorted(p1) == sorted(retrieval_ids(store, Q1)) and sorted(p2) == sorted(retrieval_ids(store, Q2))
    # planned as one batch: the shared documents lead both prompts
    shared = set(p1) & set(p2)
    assert set(p1[: len(shared)]) == shared and p1[: len(shared)] == p2[: len(shared)]
    assert reorder.pilot.stats()["requests_planned"] == 2 and reorder.pilot.stats()["calls"] == 1
    # one at a time, the first request could not know what the second holds
    seq = ContextPilotReorder()
    one_by_one = [
        ids_of(make_docs_chain(store.as_retriever(search_kwargs={"k": 4}) | seq).invoke(q)) for q in (Q1, Q2)
    ]
    assert common_prefix(*one_by_one) < common_prefix(p1, p2)


async def test_abatch(store):
    chain = make_docs_chain(store.as_retriever(search_kwargs={"k": 4}) | ContextPilotReorder())
    out = await chain.abatch([Q1, Q2, Q1])
    p = [ids_of(o) for o in out]
    shared = set(p[0]) & set(p[1])
    assert p[0][: len(shared)] == p[1][: len(shared)] and set(p[0][: len(shared)]) == shared
    assert p[2] == p[0]


def test_metadata_and_no_mutation():
    docs = [Document("one", id="a", metadata={"src": 1}), Document("two"), Document("three", id="c")]
    before = [d.model_dump() for d in docs]
    reorder = ContextPilotReorder()
    out = reorder.invoke(docs)
    assert [d.model_dump() for d in docs] == before
    assert all(o is not d for o in out for d in docs)
    ranks = {o.page_content: o.metadata[RANK_KEY] for o in out}
    assert ranks == {"one": 0, "two": 1, "three": 2}
    assert len({o.metadata[REQUEST_KEY] for o in out}) == 1
    assert next(o for o in out if o.id == "a").metadata["src"] == 1
    assert reorder.pilot.stats()["live_requests"] == 1


def test_identity_is_id_else_text():
    assert block_key(Document("x", id="a")) == block_key(Document("changed text", id="a"))
    assert block_key(Document("x", id="a")) != block_key(Document("x", id="b"))
    assert block_key(Document("same text")) == block_key(Document("same text")) == cp.stable_key("same text")
    assert block_key(Document("x", id="a")) != block_key(Document("x"))


def test_dedup_is_refused_with_the_reason():
    """The reorder step cannot see the prompt, so it never writes a note."""
    for bad in ({"deduplicate": True}, {"deduplicate": True, "pilot": cp.ContextPilot()}):
        with pytest.raises(ValueError, match="ContextPilotChatPrompt"):
            ContextPilotReorder(**bad)
    assert ContextPilotReorder(deduplicate=False).invoke([Document("a")])[0].page_content == "a"


def test_shared_pilot_across_components():
    pilot = cp.ContextPilot()
    a, b = ContextPilotReorder(pilot=pilot), ContextPilotReorder(pilot=pilot)
    a.invoke([Document("x", id="1"), Document("y", id="2")])
    out = b.invoke([Document("z", id="3"), Document("y", id="2"), Document("x", id="1")])
    assert [o.id for o in out][:2] == ["1", "2"]
    assert pilot.stats()["live_requests"] == 2


def test_bad_input_is_a_clear_error():
    reorder = ContextPilotReorder()
    with pytest.raises(ValueError, match=r"input\[1\] must be a Document, got str"):
        reorder.invoke([Document("a"), "b"])
    with pytest.raises(ValueError, match="must be a list of Documents"):
        reorder.invoke("text")
    with pytest.raises(ValueError, match="server_url"):
        ContextPilotReorder(server_url="localhost:8765")
    with pytest.raises(ValueError, match="deduplicte"):
        ContextPilotReorder(deduplicte=True)
    with pytest.raises(ValueError, match="not both"):
        ContextPilotReorder(pilot=cp.ContextPilot(), server_url="http://x")
    out = reorder.batch([[Document("a")], ["b"]], return_exceptions=True)
    assert out[0][0].page_content == "a" and isinstance(out[1], ValueError)
    assert reorder.pilot.stats()["live_requests"] == 1  # the bad input changed nothing


def test_empty_input():
    reorder = ContextPilotReorder()
    assert reorder.invoke([]) == []
    assert reorder.batch([[], [Document("a")]])[0] == []
    assert reorder.pilot.stats()["live_requests"] == 1


def test_capacity_sizes_the_own_pilot_with_real_lengths():
    reorder = ContextPilotReorder(capacity_tokens=100)
    assert reorder.pilot.stats()["capacity_tokens"] == 100
    reorder.invoke([Document("x" * 240, id="big")])  # 60 tokens, not a 64-token id
    assert reorder.pilot.stats()["index_tokens"] == 60
    reorder.invoke([Document("y" * 240, id="big2")])  # 120 > 100: the first is evicted
    assert reorder.pilot.stats()["live_requests"] == 1
    with pytest.raises(ValueError, match="capacity_tokens"):
        ContextPilotReorder(capacity_tokens=100, pilot=cp.ContextPilot())


def test_a_document_repeated_in_one_retrieval():
    a, b = Document("alpha", id="a"), Document("beta", id="b")
    out = ContextPilotReorder().invoke([a, b, a])
    assert sorted(o.metadata[RANK_KEY] for o in out) == [0, 1, 2] and [o.id for o in out].count("a") == 2
