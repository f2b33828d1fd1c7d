"""Server-URL mode against a real contextpilot server process."""

from __future__ import annotations

import pytest
from li_helpers import Q1, Q2, echo_llm, ids_of
from llama_index.core import VectorStoreIndex
from llama_index.core.query_engine import BaseQueryEngine
from llama_index.postprocessor.contextpilot import ContextPilotNodePostprocessor

from support.plugin_fixtures import assert_reuses_prefix, unreachable_url

pytest.importorskip("httpx")
from contextpilot.server.http_client import ContextPilotConnectionError  # noqa: E402


def engine(index: VectorStoreIndex, post: ContextPilotNodePostprocessor) -> BaseQueryEngine:
    return index.as_query_engine(similarity_top_k=4, llm=echo_llm(), node_postprocessors=[post])


def test_two_query_session_through_the_server(index, server_url, index_client):
    post = ContextPilotNodePostprocessor(server_url=server_url)
    qe = engine(index, post)
    assert_reuses_prefix(ids_of(str(qe.query(Q1))), ids_of(str(qe.query(Q2))))
    assert index_client.stats()["index_stats"]["live_requests"] == 2
    post.close()


async def test_async_session_through_the_server(index, server_url, index_client):
    post = ContextPilotNodePostprocessor(server_url=server_url)
    qe = engine(index, post)
    p1 = ids_of(str(await qe.aquery(Q1)))
    p2 = ids_of(str(await qe.aquery(Q2)))
    assert_reuses_prefix(p1, p2)
    assert index_client.stats()["index_stats"]["live_requests"] == 2


def test_unreachable_server_is_a_clear_error(index):
    post = ContextPilotNodePostprocessor(server_url=unreachable_url(), timeout=2)
    with pytest.raises(ContextPilotConnectionError, match="/reorder"):
        engine(index, post).query(Q1)
