"""ContextPilotNodePostprocessor in a real VectorStoreIndex query engine.

The MockLLM echoes its prompt, so every assertion reads the context the
LLM received."""

from __future__ import annotations

import pytest
from li_helpers import Q1, Q2, common_prefix, echo_llm, ids_of
from llama_index.core.postprocessor import LongContextReorder
from llama_index.core.schema import MetadataMode, NodeWithScore, TextNode
from llama_index.postprocessor.contextpilot import (
    DEDUP_KEY,
    RANK_KEY,
    REQUEST_KEY,
    ContextPilotNodePostprocessor,
    node_key,
)

import contextpilot as cp

from support.plugin_fixtures import assert_reuses_prefix


def engine(index, *post):
    return index.as_query_engine(similarity_top_k=4, llm=echo_llm(), node_postprocessors=list(post))


def retrieve(index, q):
    return index.as_retriever(similarity_top_k=4).retrieve(q)


def retrieval_ids(index, q):
    return [n.node.ref_doc_id for n in retrieve(index, q)]


def test_corpus_preconditions(index):
    r1, r2 = retrieval_ids(index, Q1), retrieval_ids(index, Q2)
    assert r1 == ["it", "pt", "fr", "de"] and r2 == ["es", "de", "pt", "it"]
    assert ids_of(str(engine(index).query(Q1))) == r1  # the prompt holds retrieval order


def test_two_query_session_shares_the_longest_prefix(index):
    qe = engine(index, ContextPilotNodePostprocessor())
    p1, p2 = ids_of(str(qe.query(Q1))), ids_of(str(qe.query(Q2)))
    assert sorted(p1) == sorted(retrieval_ids(index, Q1)) and sorted(p2) == sorted(retrieval_ids(index, Q2))
    best = assert_reuses_prefix(p1, p2)
    plain = engine(index)
    assert common_prefix(ids_of(str(plain.query(Q1))), ids_of(str(plain.query(Q2)))) < best


async def test_two_query_session_async(index):
    qe = engine(index, ContextPilotNodePostprocessor())
    p1 = ids_of(str(await qe.aquery(Q1)))
    p2 = ids_of(str(await qe.aquery(Q2)))
    assert_reuses_prefix(p1, p2)


def test_copies_not_mutation_and_scores_kept(index):
    post = ContextPilotNodePostprocessor()
    nodes = index.as_retriever(similarity_top_k=4).retrieve(Q2)
    before = [(n.node.model_dump(), n.score) for n in nodes]
    out = post.postprocess_nodes(nodes)
    assert [(n.node.model_dump(), n.score) for n in nodes] == before
    assert all(o.node is not n.node for o in out for n in nodes)
    assert not any(o.node.metadata[DEDUP_KEY] for o in out)
    # scores travel with their nodes, and the rank says where each came from
    assert {o.node.node_id: o.score for o in out} == {n.node.node_id: n.score for n in nodes}
    assert all(out_n.node.node_id == nodes[out_n.node.metadata[RANK_KEY]].node.node_id for out_n in out)


def test_dedup_without_the_chat_memory_is_refused(index):
    """A query engine sends no history: no note could point at anything."""
    with pytest.raises(ValueError, match="memory"):
        ContextPilotNodePostprocessor(deduplicate=True)
    with pytest.raises(ValueError, match="BaseMemory"):
        ContextPilotNodePostprocessor(deduplicate=True, memory=[])


def test_metadata_is_recorded_but_never_shown_to_the_llm(index):
    post = ContextPilotNodePostprocessor()
    nodes = [
        NodeWithScore(node=TextNode(text="alpha", id_="a", metadata={"src": "x"}), score=0.9),
        NodeWithScore(node=TextNode(text="beta", id_="b"), score=0.5),
    ]
    out = post.postprocess_nodes(nodes)
    assert [o.node.metadata[RANK_KEY] for o in out] == [0, 1]
    assert out[0].node.metadata[REQUEST_KEY].startswith("req-")
    assert out[0].node.get_content(MetadataMode.LLM) == nodes[0].node.get_content(MetadataMode.LLM)
    assert out[0].node.get_content(MetadataMode.EMBED) == nodes[0].node.get_content(MetadataMode.EMBED)
    assert "contextpilot" not in out[1].node.get_content(MetadataMode.LLM)
    assert nodes[0].node.metadata == {"src": "x"} and nodes[0].node.excluded_llm_metadata_keys == []
    # the prompt of a real query engine is unchanged by the metadata
    assert "contextpilot" not in str(engine(index, post).query(Q1))


def test_identity_is_node_id():
    assert node_key(TextNode(text="x", id_="n1")) == node_key(TextNode(text="changed", id_="n1"))
    assert node_key(TextNode(text="x", id_="n1")) != node_key(TextNode(text="x", id_="n2"))


def test_composes_with_other_postprocessors(index):
    post = ContextPilotNodePostprocessor()
    qe = engine(index, LongContextReorder(), post)
    r1, r2 = qe.query(Q1), qe.query(Q2)
    p1, p2 = ids_of(str(r1)), ids_of(str(r2))
    best = assert_reuses_prefix(p1, p2, at_least=1)
    # the prefix is contextpilot's doing: LongContextReorder alone shares less
    alone = engine(index, LongContextReorder())
    assert common_prefix(ids_of(str(alone.query(Q1))), ids_of(str(alone.query(Q2)))) < best
    # contextpilot's rank is the order it received (LongContextReorder's output)
    for q, resp in ((Q1, r1), (Q2, r2)):
        received = [n.node.node_id for n in LongContextReorder().postprocess_nodes(retrieve(index, q))]
        ranks = {n.node.node_id: n.node.metadata[RANK_KEY] for n in resp.source_nodes}
        assert sorted(ranks, key=ranks.get) == received, (q, ranks, received)
    assert post.pilot.stats()["requests_planned"] == 2


def test_shared_pilot():
    pilot = cp.ContextPilot()
    a, b = ContextPilotNodePostprocessor(pilot=pilot), ContextPilotNodePostprocessor(pilot=pilot)
    a.postprocess_nodes([NodeWithScore(node=TextNode(text=t, id_=t)) for t in "xy"])
    out = b.postprocess_nodes([NodeWithScore(node=TextNode(text=t, id_=t)) for t in "zyx"])
    assert [o.node.node_id for o in out][:2] == ["x", "y"] and pilot.stats()["live_requests"] == 2


def test_bad_input_and_options():
    post = ContextPilotNodePostprocessor()
    with pytest.raises(ValueError, match=r"nodes\[1\] must be a NodeWithScore, got TextNode"):
        post.postprocess_nodes([NodeWithScore(node=TextNode(text="a")), TextNode(text="b")])
    assert post.pilot.stats()["live_requests"] == 0
    assert post.postprocess_nodes([]) == []
    with pytest.raises(ValueError, match="server_url"):
        ContextPilotNodePostprocessor(server_url="localhost")
    with pytest.raises(ValueError, match="note_template"):
        ContextPilotNodePostprocessor(note_template="{index}")
    with pytest.raises(ValueError, match="deduplicte"):
        ContextPilotNodePostprocessor(deduplicte=True)
    with pytest.raises(ValueError, match="pilot must be"):
        ContextPilotNodePostprocessor(pilot="nope")


def test_capacity_sizes_the_own_pilot_with_real_lengths():
    post = ContextPilotNodePostprocessor(capacity_tokens=100)
    post.postprocess_nodes([NodeWithScore(node=TextNode(text="x" * 240, id_="a"))])
    assert post.pilot.stats()["index_tokens"] == 60 and post.pilot.stats()["capacity_tokens"] == 100
    post.postprocess_nodes([NodeWithScore(node=TextNode(text="y" * 240, id_="b"))])
    assert post.pilot.stats()["live_requests"] == 1
    with pytest.raises(ValueError, match="capacity_tokens"):
        ContextPilotNodePostprocessor(capacity_tokens=100, server_url="http://127.0.0.1:1")
