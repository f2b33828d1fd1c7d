"""Fixtures: LlamaIndex Settings pinned to offline mocks (unset Settings
would import OpenAI), the index, and a real contextpilot server process."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from li_helpers import REPO, BagOfWords, echo_llm, make_index
from llama_index.core import Settings, VectorStoreIndex


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
    """A real contextpilot server on 127.0.0.1 (started the way the
    repository's own server tests start it)."""
    pytest.importorskip("fastapi", reason="server mode needs contextpilot[server]")
    tests_dir = REPO / "tests"
    if not (tests_dir / "procs.py").exists():
        pytest.skip(f"server tests need the contextpilot repository's tests/procs.py (not at {tests_dir})")
    sys.path.insert(0, str(tests_dir))
    from procs import spawn

    # no engine needed: the plugin uses only the index endpoints
    with spawn("contextpilot.server.http_server", "--infer-api-url", "http://127.0.0.1:9") as proc:
        yield proc.url
