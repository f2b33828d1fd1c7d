"""LangChain partner-package conventions: the public surface is pinned,
components serialise and load back, the API key is a secret, and the
server settings come from the environment."""

from __future__ import annotations

import langchain_contextpilot
import pytest
from langchain_contextpilot import (
    ContextPilotChatPrompt,
    ContextPilotCompressor,
    ContextPilotReorder,
    ContextPilotRetriever,
)
from langchain_core.documents import Document
from langchain_core.load import dumpd, dumps, load
from pydantic import SecretStr

EXPECTED_ALL = [
    "RANK_KEY",
    "REQUEST_KEY",
    "ContextPilotChatHistory",
    "ContextPilotChatPrompt",
    "ContextPilotCompressor",
    "ContextPilotReorder",
    "ContextPilotRetriever",
    "__version__",
    "block_key",
    "label_of",
]


def test_all_is_pinned():
    assert sorted(langchain_contextpilot.__all__) == sorted(EXPECTED_ALL)
    for name in EXPECTED_ALL:
        assert hasattr(langchain_contextpilot, name)


@pytest.mark.parametrize("cls", [ContextPilotReorder, ContextPilotChatPrompt, ContextPilotCompressor])
@pytest.mark.filterwarnings("ignore::langchain_core._api.beta_decorator.LangChainBetaWarning")
def test_dumpd_load_round_trip(cls, monkeypatch):
    monkeypatch.delenv("CONTEXTPILOT_URL", raising=False)
    monkeypatch.delenv("CONTEXTPILOT_API_KEY", raising=False)
    assert cls.is_lc_serializable()
    obj = cls(timeout=7.5, capacity_tokens=1000)
    data = dumpd(obj)
    assert data["id"] == ["langchain_contextpilot", cls.__name__]
    back = load(data, valid_namespaces=["langchain_contextpilot"], allowed_objects=[cls])
    assert type(back) is cls and back.timeout == 7.5 and back.capacity_tokens == 1000
    assert back.pilot is not obj.pilot  # each instance plans with its own pilot


@pytest.mark.filterwarnings("ignore::langchain_core._api.beta_decorator.LangChainBetaWarning")
def test_secret_key_is_never_serialised_or_printed(monkeypatch):
    monkeypatch.delenv("CONTEXTPILOT_API_KEY", raising=False)
    r = ContextPilotChatPrompt(server_url="http://127.0.0.1:9", api_key="sk-secret-123")
    assert isinstance(r.api_key, SecretStr) and r.api_key.get_secret_value() == "sk-secret-123"
    assert "sk-secret-123" not in repr(r) and "sk-secret-123" not in dumps(r)
    data = dumpd(r)
    assert data["kwargs"]["api_key"] == {"lc": 1, "type": "secret", "id": ["CONTEXTPILOT_API_KEY"]}
    back = load(
        data,
        secrets_map={"CONTEXTPILOT_API_KEY": "sk-secret-123"},
        valid_namespaces=["langchain_contextpilot"],
        allowed_objects=[ContextPilotChatPrompt],
    )
    assert back.api_key.get_secret_value() == "sk-secret-123" and back.server_url == "http://127.0.0.1:9"


def test_server_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("CONTEXTPILOT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("CONTEXTPILOT_API_KEY", "sk-env")
    r = ContextPilotReorder()
    assert r.server_url == "http://127.0.0.1:9" and r.api_key.get_secret_value() == "sk-env"
    assert r.pilot is None  # plans on that server
    monkeypatch.setenv("CONTEXTPILOT_URL", "not-a-url")
    with pytest.raises(ValueError, match="server_url"):
        ContextPilotReorder()
    monkeypatch.delenv("CONTEXTPILOT_URL")
    monkeypatch.delenv("CONTEXTPILOT_API_KEY")
    local = ContextPilotReorder()
    assert local.server_url is None and local.api_key is None and local.pilot is not None
    assert local.invoke([Document("a")])[0].page_content == "a"


def test_retriever_is_serialisable_in_principle():
    assert ContextPilotRetriever.is_lc_serializable()
