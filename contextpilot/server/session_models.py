"""Request and response models of the chat-session API (``/chat/sessions``,
:mod:`contextpilot.server.api_sessions`). Requests are strict (``0`` is no
bool, ``"1"`` no number); a bad field is a 422 naming it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr

__all__ = [
    "ChatMessageOut",
    "CreateChatSession",
    "CreateChatSessionResponse",
    "ChatSessionDetail",
    "ChatSessionInfo",
    "ChatSessionList",
    "ChatTurn",
    "ChatTurnResponse",
    "DeletedChatSession",
    "EngineFailure",
    "WarmedPrefix",
]

#: session ids travel in URL paths: visible ASCII without "/", "?" or "#"
SESSION_ID_PATTERN = r"^[!-\"$-.0->@-~]+$"


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class CreateChatSession(_Request):
    session_id: StrictStr | None = Field(
        None,
        min_length=1,
        max_length=256,
        pattern=SESSION_ID_PATTERN,
        description="the id to use (default: a fresh ``cs-…``); an id already live is reused "
        "when its settings match, else 409",
    )
    system_prompt: StrictStr | None = Field(
        None,
        max_length=1_000_000,
        description="system message of every turn (default: the server's; '' none)",
    )
    max_turns: int | None = Field(
        None, ge=1, le=100_000, description="history restarts after this many turns"
    )
    model: StrictStr | None = Field(None, max_length=1024, description="model name sent to the engine")
    warm: bool = Field(True, description="send the system prompt to the engine now, so its prefix is cached")


class WarmedPrefix(BaseModel):
    """What one warm-up request left in the engine's cache."""

    request_id: str
    prompt_tokens: int | None = Field(description="tokens of the warmed prompt (the engine's usage figure)")
    cached_tokens: int | None = Field(description="of those, already cached before (the engine's figure)")


class ChatSessionInfo(BaseModel):
    session_id: str
    turns: int = Field(description="user turns in the current history")
    restarts: int = Field(description="times the history restarted after max_turns")
    messages: int = Field(description="user and assistant messages held")
    pending: bool = Field(description="a question awaits its answer (the engine failed)")
    conversation_id: str = Field(
        description="its dedup conversation (``chat-<hex>``; in ``GET /sessions`` once it sent documents)"
    )


class CreateChatSessionResponse(BaseModel):
    session: ChatSessionInfo
    created: bool = Field(description="False: the id was live already (same settings)")
    system_prompt: str
    max_turns: int
    warmed: WarmedPrefix | None = Field(None, description="the warm-up, when one was sent")


class ChatMessageOut(BaseModel):
    role: str
    content: str


class ChatSessionDetail(ChatSessionInfo):
    system_prompt: str
    max_turns: int
    history: list[ChatMessageOut]


class ChatSessionList(BaseModel):
    count: int
    sessions: list[ChatSessionInfo] = Field(description="least recently used first")


class ChatTurn(_Request):
    query: StrictStr = Field(min_length=1, max_length=1_000_000, description="this turn's question")
    docs: list[StrictStr] = Field(
        default_factory=list, max_length=10_000, description="this turn's documents, most relevant first"
    )
    model: StrictStr | None = Field(None, max_length=1024)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    temperature: float | None = Field(None, ge=0, le=2)


class ChatTurnResponse(BaseModel):
    session_id: str
    turn: int = Field(description="this turn's number in the current history (1 = first)")
    answer: str
    request_id: str = Field(description="the id the engine saw (its eviction notices name it)")
    prompt_tokens: int | None
    cached_tokens: int | None = Field(description="prompt tokens the engine served from its cache")
    messages_sent: int = Field(description="messages in the prompt sent (system + whole history + this turn)")
    usage: dict[str, Any] | None = None


class EngineFailure(BaseModel):
    """502: the engine failed or answered with an error (its status and message)."""

    detail: dict[str, Any]


class DeletedChatSession(BaseModel):
    session_id: str
    deleted: bool = True
