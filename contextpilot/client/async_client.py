"""The asynchronous client, :class:`AsyncContextPilotIndexClient`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from contextpilot.client.base import ClientBase
from contextpilot.client.calls import Block, Call, Calls
from contextpilot.client.chat import AsyncChatSessionMethods
from contextpilot.client.errors import ContextPilotError, is_up, parse_answer, parse_health

__all__ = ["AsyncContextPilotIndexClient"]


class AsyncContextPilotIndexClient(ClientBase, AsyncChatSessionMethods):
    """Asynchronous twin of :class:`~contextpilot.client.ContextPilotIndexClient`:
    the same methods, each a coroutine (``transport``: an async one)."""

    http_class = httpx.AsyncClient
    _http: httpx.AsyncClient

    async def _send(self, call: Call) -> httpx.Response:
        method, path, body = call
        try:
            return await self._http.request(method, path, json=body)
        except httpx.HTTPError as e:
            raise self._unreachable(call, e) from e

    async def _call(self, call: Call) -> Any:
        return parse_answer(await self._send(call))

    async def reorder(
        self, contexts: Sequence[Sequence[Block]], **opts: Any
    ) -> tuple[list[list[Block]], list[int]]:
        r = await self.reorder_raw(contexts, **opts)
        return r["reordered_contexts"], r["original_indices"]

    async def reorder_raw(self, contexts: Sequence[Sequence[Block]], **opts: Any) -> dict[str, Any]:
        return await self._call(Calls.reorder(contexts, **opts))

    async def build(self, contexts: Sequence[Sequence[Block]], **opts: Any) -> dict[str, Any]:
        return await self._call(Calls.reorder(contexts, path="/build", **opts))

    async def schedule(self, contexts: Sequence[Sequence[Block]], **opts: Any) -> dict[str, Any]:
        return await self._call(Calls.reorder(contexts, path="/schedule", **opts))

    async def evict(self, request_ids: Sequence[str]) -> dict[str, Any]:
        return await self._call(Calls.evict(request_ids))

    async def deduplicate(
        self,
        contexts: Sequence[Sequence[Block]],
        conversation_id: str | Sequence[str | None] | None = None,
        hint_template: str | None = None,
        *,
        parent_request_ids: Sequence[str | None] | None = None,
    ) -> dict[str, Any]:
        """See :meth:`ContextPilotIndexClient.deduplicate`."""
        call = Calls.deduplicate(contexts, conversation_id, hint_template, parent_request_ids)
        return await self._call(call)

    async def warm(
        self,
        prefixes: Sequence[str] | None = None,
        blocks: Sequence[Sequence[str]] | None = None,
        model: str | None = None,
    ) -> dict[str, Any]:
        return await self._call(Calls.warm(prefixes, blocks, model))

    async def reset(self) -> dict[str, Any]:
        return await self._call(Calls.RESET)

    async def stats(self) -> dict[str, Any]:
        return await self._call(Calls.STATS)

    get_stats = stats

    async def health(self) -> dict[str, Any]:
        return parse_health(await self._send(Calls.HEALTH))

    async def is_ready(self) -> bool:
        try:
            return is_up(await self.health())
        except ContextPilotError:
            return False

    async def sessions(self) -> dict[str, Any]:
        return await self._call(Calls.SESSIONS)

    async def delete_session(self, conversation_id: str) -> dict[str, Any]:
        return await self._call(Calls.delete_session(conversation_id))

    async def requests(self) -> dict[str, Any]:
        return await self._call(Calls.REQUESTS)

    get_requests = requests

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncContextPilotIndexClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
