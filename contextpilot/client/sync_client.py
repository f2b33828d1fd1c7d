"""The synchronous client, :class:`ContextPilotIndexClient`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from contextpilot.client.base import ClientBase
from contextpilot.client.calls import Block, Call, Calls
from contextpilot.client.chat import ChatSessionMethods
from contextpilot.client.errors import ContextPilotError, is_up, parse_answer, parse_health

__all__ = ["ContextPilotIndexClient"]


class ContextPilotIndexClient(ClientBase, ChatSessionMethods):
    """Synchronous client (see :class:`~contextpilot.client.base.ClientBase`
    for the constructor). Every method returns parsed JSON (or a tuple for
    :meth:`reorder`) and raises a
    :class:`~contextpilot.client.errors.ContextPilotError` on failure."""

    http_class = httpx.Client
    _http: httpx.Client

    def _send(self, call: Call) -> httpx.Response:
        method, path, body = call
        try:
            return self._http.request(method, path, json=body)
        except httpx.HTTPError as e:
            raise self._unreachable(call, e) from e

    def _call(self, call: Call) -> Any:
        return parse_answer(self._send(call))

    def reorder(
        self, contexts: Sequence[Sequence[Block]], **opts: Any
    ) -> tuple[list[list[Block]], list[int]]:
        """``(reordered, order)``: run ``reordered[j]`` (= ``contexts[order[j]]``) j-th."""
        r = self.reorder_raw(contexts, **opts)
        return r["reordered_contexts"], r["original_indices"]

    def reorder_raw(self, contexts: Sequence[Sequence[Block]], **opts: Any) -> dict[str, Any]:
        return self._call(Calls.reorder(contexts, **opts))

    def build(self, contexts: Sequence[Sequence[Block]], **opts: Any) -> dict[str, Any]:
        """Deprecated alias of :meth:`reorder_raw`."""
        return self._call(Calls.reorder(contexts, path="/build", **opts))

    def schedule(self, contexts: Sequence[Sequence[Block]], **opts: Any) -> dict[str, Any]:
        """Deprecated: stateless plan with ``scheduled_contexts``."""
        return self._call(Calls.reorder(contexts, path="/schedule", **opts))

    def evict(self, request_ids: Sequence[str]) -> dict[str, Any]:
        return self._call(Calls.evict(request_ids))

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
        return self._call(Calls.deduplicate(contexts, conversation_id, hint_template, parent_request_ids))

    def warm(
        self,
        prefixes: Sequence[str] | None = None,
        blocks: Sequence[Sequence[str]] | None = None,
        model: str | None = None,
    ) -> dict[str, Any]:
        return self._call(Calls.warm(prefixes, blocks, model))

    def reset(self) -> dict[str, Any]:
        return self._call(Calls.RESET)

    def stats(self) -> dict[str, Any]:
        return self._call(Calls.STATS)

    get_stats = stats

    def health(self) -> dict[str, Any]:
        """The health body; a 0.5.0 server's 503 "not_ready" (up, index
        empty) is returned with ``index_empty: True``, not raised."""
        return parse_health(self._send(Calls.HEALTH))

    def is_ready(self) -> bool:
        """Whether the server is up and answers its health check (never raises)."""
        try:
            return is_up(self.health())
        except ContextPilotError:
            return False

    def sessions(self) -> dict[str, Any]:
        return self._call(Calls.SESSIONS)

    def delete_session(self, conversation_id: str) -> dict[str, Any]:
        return self._call(Calls.delete_session(conversation_id))

    def requests(self) -> dict[str, Any]:
        return self._call(Calls.REQUESTS)

    get_requests = requests

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ContextPilotIndexClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
