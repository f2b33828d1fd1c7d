"""ContextPilotCompressor in ContextualCompressionRetriever and
ContextPilotRetriever around a vector store retriever, in LCEL chains."""

from __future__ import annotations

import pytest
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_contextpilot import RANK_KEY, ContextPilotCompressor, ContextPilotRetriever
from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.callbacks.base import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda
from lc_helpers import Q1, Q2, ids_of, make_chain

from support.plugin_fixtures import assert_reuses_prefix


def test_compressor_in_contextual_compression_retriever(store):
    comp = ContextualCompressionRetriever(
        base_compressor=ContextPilotCompressor(), base_retriever=store.as_retriever(search_kwargs={"k": 4})
    )
    chain = make_chain(comp)
    assert_reuses_prefix(ids_of(chain.invoke(Q1)), ids_of(chain.invoke(Q2)))


async def test_compressor_async_in_contextual_compression_retriever(store):
    comp = ContextualCompressionRetriever(
        base_compressor=ContextPilotCompressor(), base_retriever=store.as_retriever(search_kwargs={"k": 4})
    )
    chain = make_chain(comp)
    assert_reuses_prefix(ids_of(await chain.ainvoke(Q1)), ids_of(await chain.ainvoke(Q2)))
    with pytest.raises(ValueError, match="ContextPilotChatPrompt"):
        ContextPilotCompressor(deduplicate=True)


def test_compressor_direct_call_keeps_every_document():
    docs = [Document("a", id="1"), Document("b", id="2")]
    out = ContextPilotCompressor().compress_documents(docs, "query")
    assert sorted(d.id for d in out) == ["1", "2"] and {d.metadata[RANK_KEY] for d in out} == {0, 1}
    assert all(not d.metadata for d in docs)
    with pytest.raises(ValueError, match=r"documents\[0\] must be a Document"):
        ContextPilotCompressor().compress_documents([{"page_content": "a"}], "q")


def test_retriever_in_chain_two_query_session(store):
    retriever = ContextPilotRetriever(base_retriever=store.as_retriever(search_kwargs={"k": 4}))
    chain = make_chain(retriever)
    assert_reuses_prefix(ids_of(chain.invoke(Q1)), ids_of(chain.invoke(Q2)))


def test_retriever_k_kwarg_and_callbacks(store):
    events: list[str] = []

    class Recorder(BaseCallbackHandler):
        def on_retriever_start(self, serialized, query, *, run_id, parent_run_id=None, **kw):
            events.append(f"start:{'child' if parent_run_id else 'root'}")

    retriever = ContextPilotRetriever(base_retriever=store.as_retriever(), k=2)
    first = retriever.invoke(Q1, config={"callbacks": [Recorder()]})
    assert len(first) == 2 and events == ["start:root", "start:child"]
    assert len(retriever.invoke(Q1, k=3)) == 3
    with pytest.raises(ValueError, match="ContextPilotChatPrompt"):
        ContextPilotRetriever(base_retriever=store.as_retriever(), deduplicate=True)
    with pytest.raises(ValueError, match="k must be"):
        retriever.invoke(Q1, k=0)


def test_retriever_wraps_any_runnable(store):
    base = RunnableLambda(lambda q: store.similarity_search(q, k=4))
    out = ContextPilotRetriever(base_retriever=base, k=3).invoke(Q1)
    assert len(out) == 3 and all(isinstance(d, Document) for d in out)


class AsyncOnly(BaseRetriever):
    """A base retriever whose sync path fails: proves the async path is native."""

    docs: list[Document]

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun):
        raise AssertionError("sync path used")

    async def _aget_relevant_documents(self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun):
        return list(self.docs)


async def test_retriever_native_async():
    docs = [Document("a", id="1"), Document("b", id="2"), Document("c", id="3")]
    retriever = ContextPilotRetriever(base_retriever=AsyncOnly(docs=docs))
    await retriever.ainvoke("q")
    out = await retriever.ainvoke("q2")
    assert [d.id for d in out] == ["1", "2", "3"]
    with pytest.raises(AssertionError, match="sync path used"):
        retriever.invoke("q")
