"""Chat sessions (``/chat/sessions``) for both clients, as mixins: the
server keeps the history and sends each turn to the engine. Not the dedup
conversations of :meth:`ContextPilotIndexClient.sessions`. Each method only
sends a :class:`~contextpilot.client.calls.ChatCalls` description through
the client's ``_call``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from contextpilot.client.calls import Call, ChatCalls

__all__ = ["AsyncChatSessionMethods", "ChatSessionMethods"]


class ChatSessionMethods:
    """Chat sessions for :class:`~contextpilot.client.ContextPilotIndexClient`."""

    def _call(self, call: Call) -> Any:
        raise NotImplementedError

    def create_chat_session(
        self,
        system_prompt: str | None = None,
        *,
        session_id: str | None = None,
        max_turns: int | None = None,
        model: str | None = None,
        warm: bool = True,
    ) -> dict[str, Any]:
        """Create (or reuse, same settings) a session; its system prompt is warmed on the engine."""
        return self._call(ChatCalls.create(system_prompt, session_id, max_turns, model, warm))

    def chat_turn(
        self, session_id: str, query: str, docs: Sequence[str] | None = None, **opts: Any
    ) -> dict[str, Any]:
        """One turn (``opts``: model, max_tokens, temperature); returns the answer and usage."""
        return self._call(ChatCalls.turn(session_id, query, docs, opts))

    def chat_sessions(self) -> dict[str, Any]:
        return self._call(ChatCalls.LIST)

    def chat_session(self, session_id: str) -> dict[str, Any]:
        """One session with its history."""
        return self._call(ChatCalls.get(session_id))

    def delete_chat_session(self, session_id: str) -> dict[str, Any]:
        return self._call(ChatCalls.delete(session_id))


class AsyncChatSessionMethods:
    """Asynchronous twin of :class:`ChatSessionMethods`."""

    async def _call(self, call: Call) -> Any:
        raise NotImplementedError

    async def create_chat_session(
        self,
        system_prompt: str | None = None,
        *,
        session_id: str | None = None,
        max_turns: int | None = None,
        model: str | None = None,
        warm: bool = True,
    ) -> dict[str, Any]:
        return await self._call(ChatCalls.create(system_prompt, session_id, max_turns, model, warm))

    async def chat_turn(
        self, session_id: str, query: str, docs: Sequence[str] | None = None, **opts: Any
    ) -> dict[str, Any]:
        return await self._call(ChatCalls.turn(session_id, query, docs, opts))

    async def chat_sessions(self) -> dict[str, Any]:
        return await self._call(ChatCalls.LIST)

    async def chat_session(self, session_id: str) -> dict[str, Any]:
        return await self._call(ChatCalls.get(session_id))

    async def delete_chat_session(self, session_id: str) -> dict[str, Any]:
        return await self._call(ChatCalls.delete(session_id))
