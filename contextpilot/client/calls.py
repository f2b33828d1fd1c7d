"""The server's API as call descriptions, shared by both client twins.

Each function checks its arguments (ValueError before anything is sent)
and returns ``(method, path, JSON body or None)``; the sync and async
clients only send it, so they cannot drift apart. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

__all__ = ["Block", "Call", "Calls", "ChatCalls"]

Block = int | str
Call = tuple[str, str, dict[str, Any] | None]


class Calls:
    """The index API's calls (``/reorder``, ``/evict``, ``/deduplicate``, ...)."""

    @staticmethod
    def reorder(contexts: Sequence[Sequence[Block]], path: str = "/reorder", **opts: Any) -> Call:
        return "POST", path, {"contexts": [list(c) for c in contexts], **opts}

    @staticmethod
    def evict(request_ids: Sequence[str]) -> Call:
        if isinstance(request_ids, str):
            raise ValueError("request_ids must be a list of strings")
        return "POST", "/evict", {"request_ids": list(request_ids)}

    @staticmethod
    def deduplicate(
        contexts: Sequence[Sequence[Block]],
        conversation_id: str | Sequence[str | None] | None,
        hint_template: str | None,
        parent_request_ids: Sequence[str | None] | None = None,
    ) -> Call:
        if conversation_id is not None and not isinstance(conversation_id, str):
            if parent_request_ids is not None:
                raise ValueError("give conversation_id or parent_request_ids, not both")
            parent_request_ids, conversation_id = conversation_id, None  # 0.5.0 positional order
        body: dict[str, Any] = {"contexts": [list(c) for c in contexts]}
        if conversation_id is not None:
            body["conversation_id"] = conversation_id
        if parent_request_ids is not None:
            body["parent_request_ids"] = list(parent_request_ids)
        if conversation_id is None and parent_request_ids is None:
            raise ValueError("deduplicate needs conversation_id or parent_request_ids")
        if hint_template is not None:
            body["hint_template"] = hint_template
        return "POST", "/deduplicate", body

    @staticmethod
    def warm(
        prefixes: Sequence[str] | None, blocks: Sequence[Sequence[str]] | None, model: str | None
    ) -> Call:
        body: dict[str, Any] = {}
        if prefixes is not None:
            body["prefixes"] = list(prefixes)
        if blocks is not None:
            body["blocks"] = [list(b) for b in blocks]
        if model is not None:
            body["model"] = model
        return "POST", "/warm", body

    @staticmethod
    def delete_session(conversation_id: str) -> Call:
        return "DELETE", f"/sessions/{conversation_id}", None

    RESET: Call = ("POST", "/reset", None)
    STATS: Call = ("GET", "/stats", None)
    HEALTH: Call = ("GET", "/health", None)
    SESSIONS: Call = ("GET", "/sessions", None)
    REQUESTS: Call = ("GET", "/requests", None)


class ChatCalls:
    """The chat-session calls (``/chat/sessions``): server-side multi-turn history."""

    @staticmethod
    def path(session_id: str, tail: str = "") -> str:
        if not isinstance(session_id, str) or not session_id:
            raise ValueError("session_id must be a non-empty string")
        return f"/chat/sessions/{quote(session_id, safe='')}{tail}"

    @staticmethod
    def create(
        system_prompt: str | None,
        session_id: str | None,
        max_turns: int | None,
        model: str | None,
        warm: bool,
    ) -> Call:
        body: dict[str, Any] = {"warm": warm}
        for name, value in (
            ("system_prompt", system_prompt),
            ("session_id", session_id),
            ("max_turns", max_turns),
            ("model", model),
        ):
            if value is not None:
                body[name] = value
        return "POST", "/chat/sessions", body

    @staticmethod
    def turn(session_id: str, query: str, docs: Sequence[str] | None, opts: dict[str, Any]) -> Call:
        if isinstance(docs, str):
            raise ValueError("docs must be a list of strings, not a string")
        body = {"query": query, "docs": list(docs or []), **opts}
        return "POST", ChatCalls.path(session_id, "/turns"), body

    @staticmethod
    def get(session_id: str) -> Call:
        return "GET", ChatCalls.path(session_id), None

    @staticmethod
    def delete(session_id: str) -> Call:
        return "DELETE", ChatCalls.path(session_id), None

    LIST: Call = ("GET", "/chat/sessions", None)
