"""Server-URL mode against a real contextpilot server process."""

from __future__ import annotations

import pytest
from langchain_contextpilot import REQUEST_KEY, ContextPilotReorder, ContextPilotRetriever
from langchain_core.documents import Document
from lc_helpers import Q1, Q2, ids_of, make_chain, make_docs_chain

from support.plugin_fixtures import assert_reuses_prefix, unreachable_url

httpx = pytest.importorskip("httpx")
from contextpilot.server.http_client import ContextPilotConnectionError  # noqa: E402


def test_two_query_session_through_the_server(store, server_url, index_client):
    reorder = ContextPilotReorder(server_url=server_url)
    assert reorder.pilot is None
    chain = make_chain(store.as_retriever(search_kwargs={"k": 4}) | reorder)
    assert_reuses_prefix(ids_of(chain.invoke(Q1)), ids_of(chain.invoke(Q2)))
    assert index_client.stats()["index_stats"]["live_requests"] == 2
    reorder.close()


async def test_async_session_and_request_ids(store, server_url, index_client):
    reorder = ContextPilotReorder(server_url=server_url)
    retriever = store.as_retriever(search_kwargs={"k": 4})
    docs1 = await (retriever | reorder).ainvoke(Q1)
    p2 = ids_of(await make_chain(retriever | reorder).ainvoke(Q2))
    assert_reuses_prefix([d.id for d in docs1], p2)
    # the server's request ids are on the documents and live in its index
    assert docs1[0].metadata[REQUEST_KEY] in index_client.requests()["request_ids"]


def test_batch_through_the_server(store, server_url, index_client):
    chain = make_docs_chain(
        store.as_retriever(search_kwargs={"k": 4}) | ContextPilotReorder(server_url=server_url)
    )
    p1, p2 = (ids_of(o) for o in chain.batch([Q1, Q2]))
    shared = set(p1) & set(p2)
    assert p1[: len(shared)] == p2[: len(shared)] and set(p1[: len(shared)]) == shared


async def test_retriever_async_through_the_server(store, server_url, index_client):
    retriever = ContextPilotRetriever(
        base_retriever=store.as_retriever(search_kwargs={"k": 4}), server_url=server_url
    )
    p1 = [d.id for d in await retriever.ainvoke(Q1)]
    p2 = [d.id for d in await retriever.ainvoke(Q2)]
    assert_reuses_prefix(p1, p2)


def test_unreachable_server_is_a_clear_error():
    reorder = ContextPilotReorder(server_url=unreachable_url(), timeout=2)
    docs = [Document("a")]
    with pytest.raises(ContextPilotConnectionError, match="/reorder"):
        reorder.invoke(docs)
    assert docs[0].metadata == {}
