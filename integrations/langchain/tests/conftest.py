"""Fixtures: a small in-memory vector store (deterministic fake embeddings)
and a real contextpilot server process for server-URL mode."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores import InMemoryVectorStore
from lc_helpers import CAPITALS, REPO


@pytest.fixture
def store() -> InMemoryVectorStore:
    st = InMemoryVectorStore(DeterministicFakeEmbedding(size=32))
    st.add_documents([Document(text, id=i) for i, text in CAPITALS.items()])
    return st


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A real contextpilot server on 127.0.0.1 (started the way the
    repository's own server tests start it)."""
    pytest.importorskip("fastapi", reason="server mode needs contextpilot[server]")
    tests_dir = REPO / "tests"
    if not (tests_dir / "procs.py").exists():
        pytest.skip(f"server tests need the contextpilot repository's tests/procs.py (not at {tests_dir})")
    sys.path.insert(0, str(tests_dir))
    from procs import spawn

    # no engine needed: the plugins use only the index endpoints
    with spawn("contextpilot.server.http_server", "--infer-api-url", "http://127.0.0.1:9") as proc:
        yield proc.url
