"""Fixtures: a small in-memory vector store (deterministic fake embeddings),
and the shared ones (support.plugin_fixtures): a real contextpilot server
process for server-URL mode and a client of it."""

from __future__ import annotations

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores import InMemoryVectorStore
from lc_helpers import CAPITALS

from support.plugin_fixtures import index_client, server_url  # noqa: F401  (fixtures)


@pytest.fixture
def store() -> InMemoryVectorStore:
    st = InMemoryVectorStore(DeterministicFakeEmbedding(size=32))
    st.add_documents([Document(text, id=i) for i, text in CAPITALS.items()])
    return st
