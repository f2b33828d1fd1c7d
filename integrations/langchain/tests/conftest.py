"""Fixtures: a small in-memory vector store (deterministic fake embeddings)
and a real contextpilot server process for server-URL mode."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores import InMemoryVectorStore
from lc_helpers import CAPITALS, REPO

TESTS = REPO / "tests"  # on sys.path (lc_helpers): the server tests use support.procs


@pytest.fixture
def store() -> InMemoryVectorStore:
    st = InMemoryVectorStore(DeterministicFakeEmbedding(size=32))
    st.add_documents([Document(text, id=i) for i, text in CAPITALS.items()])
    return st


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A real contextpilot server on 127.0.0.1, started by the repository's
    own test helper (tests/support/procs.py); no engine behind it: the
    plugins use only the index endpoints."""
    pytest.importorskip("fastapi", reason="server mode needs contextpilot[server]")
    reason = f"server tests need the contextpilot repository's tests/ (not at {TESTS})"
    procs = pytest.importorskip("support.procs", reason=reason)
    with procs.server("http://127.0.0.1:9") as proc:
        yield proc.url
