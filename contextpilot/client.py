"""Python clients for the contextpilot server, sync and async (httpx).

    from contextpilot.client import ContextPilotIndexClient
    # the reference's path works too: contextpilot.server.http_client

    with ContextPilotIndexClient("http://localhost:8765") as client:
        reordered, order = client.reorder([[1, 2, 3], [2, 3, 4]])
        client.evict(["req-…"])

Every method returns parsed JSON (or a tuple for :meth:`reorder`) and
raises a :class:`ContextPilotError` subclass on failure — never ``None``.
Both twins share one description of each call (:class:`_Calls`), so they
cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx

__all__ = [
    "AsyncContextPilotIndexClient",
    "ContextPilotAuthError",
    "ContextPilotConnectionError",
    "ContextPilotError",
    "ContextPilotHTTPError",
    "ContextPilotIndexClient",
    "ContextPilotValidationError",
]

Block = int | str
Call = tuple[str, str, dict[str, Any] | None]


class ContextPilotError(Exception):
    """Base of every error the clients raise."""


class ContextPilotConnectionError(ContextPilotError):
    """The server could not be reached or did not answer in time."""


class ContextPilotHTTPError(ContextPilotError):
    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status, self.detail = status, detail


class ContextPilotValidationError(ContextPilotHTTPError):
    """422: the request was malformed; ``detail`` names the field."""


class ContextPilotAuthError(ContextPilotHTTPError):
    """401: missing or wrong API key."""


def _handle(resp: httpx.Response) -> Any:
    if resp.status_code < 400:
        try:
            return resp.json()
        except ValueError:
            raise ContextPilotHTTPError(resp.status_code, "response is not JSON") from None
    try:
        body = resp.json()
        detail = body.get("detail", body.get("error", body)) if isinstance(body, dict) else body
    except ValueError:
        detail = resp.text[:500]
    cls = {401: ContextPilotAuthError, 422: ContextPilotValidationError}.get(
        resp.status_code, ContextPilotHTTPError
    )
    raise cls(resp.status_code, detail)


class _Calls:
    """The API's calls as (method, path, body); shared by both clients."""

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
        contexts: Sequence[Sequence[Block]], conversation_id: str, hint_template: str | None
    ) -> Call:
        body: dict[str, Any] = {"contexts": [list(c) for c in contexts], "conversation_id": conversation_id}
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


# -- chat sessions (/chat/sessions): server-side multi-turn history ------------------
# Kept as one block of mixins, so the clients only name them as bases.


class _ChatCalls:
    """The chat-session calls as (method, path, body); shared by both mixins."""

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
        return "POST", _ChatCalls.path(session_id, "/turns"), body


class _ChatSessionMethods:
    """Chat sessions (``/chat/sessions``) for :class:`ContextPilotIndexClient`:
    the server keeps the history and sends each turn to the engine. Not the
    dedup conversations of :meth:`ContextPilotIndexClient.sessions`."""

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
        return self._call(_ChatCalls.create(system_prompt, session_id, max_turns, model, warm))

    def chat_turn(
        self, session_id: str, query: str, docs: Sequence[str] | None = None, **opts: Any
    ) -> dict[str, Any]:
        """One turn (``opts``: model, max_tokens, temperature); returns the answer and usage."""
        return self._call(_ChatCalls.turn(session_id, query, docs, opts))

    def chat_sessions(self) -> dict[str, Any]:
        return self._call(("GET", "/chat/sessions", None))

    def chat_session(self, session_id: str) -> dict[str, Any]:
        """One session with its history."""
        return self._call(("GET", _ChatCalls.path(session_id), None))

    def delete_chat_session(self, session_id: str) -> dict[str, Any]:
        return self._call(("DELETE", _ChatCalls.path(session_id), None))


class _AsyncChatSessionMethods:
    """Asynchronous twin of :class:`_ChatSessionMethods`."""

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
        return await self._call(_ChatCalls.create(system_prompt, session_id, max_turns, model, warm))

    async def chat_turn(
        self, session_id: str, query: str, docs: Sequence[str] | None = None, **opts: Any
    ) -> dict[str, Any]:
        return await self._call(_ChatCalls.turn(session_id, query, docs, opts))

    async def chat_sessions(self) -> dict[str, Any]:
        return await self._call(("GET", "/chat/sessions", None))

    async def chat_session(self, session_id: str) -> dict[str, Any]:
        return await self._call(("GET", _ChatCalls.path(session_id), None))

    async def delete_chat_session(self, session_id: str) -> dict[str, Any]:
        return await self._call(("DELETE", _ChatCalls.path(session_id), None))


# -- end of chat sessions ---------------------------------------------------------------


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class ContextPilotIndexClient(_ChatSessionMethods):
    """Synchronous client. ``timeout`` in seconds for every call."""

    def __init__(
        self,
        base_url: str = "http://localhost:8765",
        timeout: float = 30.0,
        api_key: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url, timeout=timeout, headers=_headers(api_key), transport=transport
        )

    def _call(self, call: Call) -> Any:
        method, path, body = call
        try:
            resp = self._http.request(method, path, json=body)
        except httpx.HTTPError as e:
            raise ContextPilotConnectionError(f"{method} {self.base_url}{path}: {e}") from e
        return _handle(resp)

    def reorder(
        self, contexts: Sequence[Sequence[Block]], **opts: Any
    ) -> tuple[list[list[Block]], list[int]]:
        """``(reordered, order)``: run ``reordered[j]`` (= ``contexts[order[j]]``) j-th."""
        r = self.reorder_raw(contexts, **opts)
        return r["reordered_contexts"], r["original_indices"]

    def reorder_raw(self, contexts: Sequence[Sequence[Block]], **opts: Any) -> dict[str, Any]:
        return self._call(_Calls.reorder(contexts, **opts))

    def build(self, contexts: Sequence[Sequence[Block]], **opts: Any) -> dict[str, Any]:
        """Deprecated alias of :meth:`reorder_raw`."""
        return self._call(_Calls.reorder(contexts, path="/build", **opts))

    def schedule(self, contexts: Sequence[Sequence[Block]], **opts: Any) -> dict[str, Any]:
        """Deprecated: stateless plan with ``scheduled_contexts``."""
        return self._call(_Calls.reorder(contexts, path="/schedule", **opts))

    def evict(self, request_ids: Sequence[str]) -> dict[str, Any]:
        return self._call(_Calls.evict(request_ids))

    def deduplicate(
        self, contexts: Sequence[Sequence[Block]], conversation_id: str, hint_template: str | None = None
    ) -> dict[str, Any]:
        return self._call(_Calls.deduplicate(contexts, conversation_id, hint_template))

    def warm(
        self,
        prefixes: Sequence[str] | None = None,
        blocks: Sequence[Sequence[str]] | None = None,
        model: str | None = None,
    ) -> dict[str, Any]:
        return self._call(_Calls.warm(prefixes, blocks, model))

    def reset(self) -> dict[str, Any]:
        return self._call(("POST", "/reset", None))

    def stats(self) -> dict[str, Any]:
        return self._call(("GET", "/stats", None))

    get_stats = stats

    def health(self) -> dict[str, Any]:
        return self._call(("GET", "/health", None))

    def is_ready(self) -> bool:
        """Whether the server answers its health check (never raises)."""
        try:
            return self.health().get("status") == "ready"
        except ContextPilotError:
            return False

    def sessions(self) -> dict[str, Any]:
        return self._call(("GET", "/sessions", None))

    def delete_session(self, conversation_id: str) -> dict[str, Any]:
        return self._call(("DELETE", f"/sessions/{conversation_id}", None))

    def requests(self) -> dict[str, Any]:
        return self._call(("GET", "/requests", None))

    get_requests = requests

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ContextPilotIndexClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncContextPilotIndexClient(_AsyncChatSessionMethods):
    """Asynchronous twin of :class:`ContextPilotIndexClient`."""

    def __init__(
        self,
        base_url: str = "http://localhost:8765",
        timeout: float = 30.0,
        api_key: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, headers=_headers(api_key), transport=transport
        )

    async def _call(self, call: Call) -> Any:
        method, path, body = call
        try:
            resp = await self._http.request(method, path, json=body)
        except httpx.HTTPError as e:
            raise ContextPilotConnectionError(f"{method} {self.base_url}{path}: {e}") from e
        return _handle(resp)

    async def reorder(
        self, contexts: Sequence[Sequence[Block]], **opts: Any
    ) -> tuple[list[list[Block]], list[int]]:
        r = await self.reorder_raw(contexts, **opts)
        return r["reordered_contexts"], r["original_indices"]

    async def reorder_raw(self, contexts: Sequence[Sequence[Block]], **opts: Any) -> dict[str, Any]:
        return await self._call(_Calls.reorder(contexts, **opts))

    async def build(self, contexts: Sequence[Sequence[Block]], **opts: Any) -> dict[str, Any]:
        return await self._call(_Calls.reorder(contexts, path="/build", **opts))

    async def schedule(self, contexts: Sequence[Sequence[Block]], **opts: Any) -> dict[str, Any]:
        return await self._call(_Calls.reorder(contexts, path="/schedule", **opts))

    async def evict(self, request_ids: Sequence[str]) -> dict[str, Any]:
        return await self._call(_Calls.evict(request_ids))

    async def deduplicate(
        self, contexts: Sequence[Sequence[Block]], conversation_id: str, hint_template: str | None = None
    ) -> dict[str, Any]:
        return await self._call(_Calls.deduplicate(contexts, conversation_id, hint_template))

    async def warm(
        self,
        prefixes: Sequence[str] | None = None,
        blocks: Sequence[Sequence[str]] | None = None,
        model: str | None = None,
    ) -> dict[str, Any]:
        return await self._call(_Calls.warm(prefixes, blocks, model))

    async def reset(self) -> dict[str, Any]:
        return await self._call(("POST", "/reset", None))

    async def stats(self) -> dict[str, Any]:
        return await self._call(("GET", "/stats", None))

    get_stats = stats

    async def health(self) -> dict[str, Any]:
        return await self._call(("GET", "/health", None))

    async def is_ready(self) -> bool:
        try:
            return (await self.health()).get("status") == "ready"
        except ContextPilotError:
            return False

    async def sessions(self) -> dict[str, Any]:
        return await self._call(("GET", "/sessions", None))

    async def delete_session(self, conversation_id: str) -> dict[str, Any]:
        return await self._call(("DELETE", f"/sessions/{conversation_id}", None))

    async def requests(self) -> dict[str, Any]:
        return await self._call(("GET", "/requests", None))

    get_requests = requests

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncContextPilotIndexClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
