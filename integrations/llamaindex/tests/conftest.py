"""Fixtures: LlamaIndex Settings pinned to offline mocks (unset Settings
would import OpenAI), the index, and the shared ones
(support.plugin_fixtures): a real contextpilot server process and a client
of it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from li_helpers import echo_llm, make_index
from llama_index.core import Settings, VectorStoreIndex

from support.embedding import llamaindex_embedding
from support.plugin_fixtures import index_client, server_url  # noqa: F401  (fixtures)


@pytest.fixture(autouse=True)
def offline_settings() -> Iterator[None]:
    Settings.llm = echo_llm()
    Settings.embed_model = llamaindex_embedding()
    yield


@pytest.fixture
def index() -> VectorStoreIndex:
    return make_index()
