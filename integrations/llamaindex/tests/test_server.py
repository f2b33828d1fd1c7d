"""Server-URL mode against a real contextpilot server process."""

from __future__ import annotations

import pytest
from li_helpers import Q1, Q2, echo_llm, ids_of, shareable_prefix
from llama_index.postprocessor.contextpilot import ContextPilotNodePostprocessor

pytest.importorskip("httpx")
from contextpilot.server.http_client import ContextPilotConnectionError, ContextPilotIndexClient  # noqa: E402


@pytest.fixture
def client(server_url):
    with ContextPilotIndexClient(server_url) as c:
        c.reset()
        yield c


def engine(index, post):
    return index.as_query_engine(similarity_top_k=4, llm=echo_llm(), node_postprocessors=[post])


def test_two_query_session_through_the_server(index, server_url, client):
    post = ContextPilotNodePostprocessor(server_url=server_url)
    qe = engine(index, post)
    p1, p2 = ids_of(str(qe.query(Q1))), ids_of(str(qe.query(Q2)))
    best = shareable_prefix(p1, set(p2))
    assert best >= 2 and p2[:best] == p1[:best]
    assert client.stats()["index_stats"]["live_requests"] == 2
    post.close()


async def test_async_session_through_the_server(index, server_url, client):
    post = ContextPilotNodePostprocessor(server_url=server_url)
    qe = engine(index, post)
    p1 = ids_of(str(await qe.aquery(Q1)))
    p2 = ids_of(str(await qe.aquery(Q2)))
    best = shareable_prefix(p1, set(p2))
    assert best >= 2 and p2[:best] == p1[:best]
    assert client.stats()["index_stats"]["live_requests"] == 2


def test_unreachable_server_is_a_clear_error(index):
    from support.procs import free_port

    post = ContextPilotNodePostprocessor(server_url=f"http://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(ContextPilotConnectionError, match="/reorder"):
        engine(index, post).query(Q1)
