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
    "ContextPilotNotSupportedError",
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


class ContextPilotNotSupportedError(ContextPilotHTTPError):
    """The server has no such endpoint (404 on an unknown route, or 405):
    e.g. ``/deduplicate`` or ``/warm`` on a ContextPilot 0.5.0 server."""

    def __init__(self, status: int, detail: Any, method: str = "", path: str = "") -> None:
        super().__init__(status, detail)
        self.args = (f"{method} {path} is not supported by this server (HTTP {status}: {detail})",)
        self.method, self.path = method, path


#: what FastAPI/Starlette answer for a route that does not exist
_NO_ROUTE = {404: "Not Found", 405: "Method Not Allowed"}


def _health(resp: httpx.Response) -> dict[str, Any]:
    """``/health`` body. A 0.5.0 server answers 503 ``{"status": "not_ready"}``
    until its first ``/reorder``: it is up with an empty index, so that body
    is returned (with ``"index_empty": True``) instead of raised."""
    if resp.status_code == 503:
        try:
            body = resp.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("status") == "not_ready":
            return {**body, "index_empty": True}
    result: dict[str, Any] = _handle(resp)
    return result


def _up(health: dict[str, Any]) -> bool:
    return health.get("status") == "ready" or bool(health.get("index_empty"))


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
    if _NO_ROUTE.get(resp.status_code) == detail:
        req = resp.request
        raise ContextPilotNotSupportedError(resp.status_code, detail, req.method, req.url.path)
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
        self,
        contexts: Sequence[Sequence[Block]],
        conversation_id: str | Sequence[str | None] | None = None,
        hint_template: str | None = None,
        *,
        parent_request_ids: Sequence[str | None] | None = None,
    ) -> dict[str, Any]:
        """Hints for blocks a conversation sent before: name it by
        ``conversation_id``, or per context by the previous turn's request id
        (``parent_request_ids``, None = new; a list in second place, as 0.5.0
        clients pass it, means the same). Each result's ``request_id`` is the
        parent for the next turn."""
        return self._call(_Calls.deduplicate(contexts, conversation_id, hint_template, parent_request_ids))

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
        """The health body; a 0.5.0 server's 503 "not_ready" (up, index
        empty) is returned with ``index_empty: True``, not raised."""
        try:
            resp = self._http.get("/health")
        except httpx.HTTPError as e:
            raise ContextPilotConnectionError(f"GET {self.base_url}/health: {e}") from e
        return _health(resp)

    def is_ready(self) -> bool:
        """Whether the server is up and answers its health check (never raises)."""
        try:
            return _up(self.health())
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
        self,
        contexts: Sequence[Sequence[Block]],
        conversation_id: str | Sequence[str | None] | None = None,
        hint_template: str | None = None,
        *,
        parent_request_ids: Sequence[str | None] | None = None,
    ) -> dict[str, Any]:
        """Hints for blocks a conversation sent before: name it by
        ``conversation_id``, or per context by the previous turn's request id
        (``parent_request_ids``, None = new; a list in second place, as 0.5.0
        clients pass it, means the same). Each result's ``request_id`` is the
        parent for the next turn."""
        call = _Calls.deduplicate(contexts, conversation_id, hint_template, parent_request_ids)
        return await self._call(call)

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
        try:
            resp = await self._http.get("/health")
        except httpx.HTTPError as e:
            raise ContextPilotConnectionError(f"GET {self.base_url}/health: {e}") from e
        return _health(resp)

    async def is_ready(self) -> bool:
        try:
            return _up(await self.health())
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
