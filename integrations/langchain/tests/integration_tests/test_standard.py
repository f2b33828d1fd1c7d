"""LangChain's standard retriever tests (langchain-tests) on ContextPilotRetriever."""

from __future__ import annotations

import pytest
from langchain_contextpilot import ContextPilotRetriever
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_tests.integration_tests import RetrieversIntegrationTests
from lc_helpers import CAPITALS


def _base():
    st = InMemoryVectorStore(DeterministicFakeEmbedding(size=32))
    st.add_documents([Document(text, id=i) for i, text in CAPITALS.items()])
    return st.as_retriever()


class TestContextPilotRetrieverLocal(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> type[ContextPilotRetriever]:
        return ContextPilotRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"base_retriever": _base()}

    @property
    def retriever_query_example(self) -> str:
        return "capital of France"


class TestContextPilotRetrieverServer(TestContextPilotRetrieverLocal):
    url = ""

    @pytest.fixture(autouse=True)
    def _server(self, server_url):
        type(self).url = server_url

    @property
    def retriever_constructor_params(self) -> dict:
        return {"base_retriever": _base(), "server_url": self.url}
