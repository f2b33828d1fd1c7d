"""Fixtures: LlamaIndex Settings pinned to offline mocks (unset Settings
would import OpenAI), the index, and a real contextpilot server process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from li_helpers import REPO, BagOfWords, echo_llm, make_index
from llama_index.core import Settings, VectorStoreIndex

TESTS = REPO / "tests"  # on sys.path (li_helpers): the server tests use support.procs


@pytest.fixture(autouse=True)
def offline_settings() -> Iterator[None]:
    Settings.llm = echo_llm()
    Settings.embed_model = BagOfWords()
    yield


@pytest.fixture
def index() -> VectorStoreIndex:
    return make_index()


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A real contextpilot server on 127.0.0.1, started by the repository's
    own test helper (tests/support/procs.py); no engine behind it: the
    plugin uses only the index endpoints."""
    pytest.importorskip("fastapi", reason="server mode needs contextpilot[server]")
    reason = f"server tests need the contextpilot repository's tests/ (not at {TESTS})"
    procs = pytest.importorskip("support.procs", reason=reason)
    with procs.server("http://127.0.0.1:9") as proc:
        yield proc.url
