"""Python clients for the contextpilot server, sync and async (httpx).

    from contextpilot.client import ContextPilotIndexClient
    # the reference's path works too: contextpilot.server.http_client

    with ContextPilotIndexClient("http://localhost:8765") as client:
        reordered, order = client.reorder([[1, 2, 3], [2, 3, 4]])
        client.evict(["req-…"])

Every method returns parsed JSON (or a tuple for
:meth:`~ContextPilotIndexClient.reorder`) and raises a
:class:`ContextPilotError` subclass on failure — never ``None``.

Modules: :mod:`~contextpilot.client.calls` describes each call once
(method, path, body) for both twins, so they cannot drift apart;
:mod:`~contextpilot.client.errors` reads answers into JSON or errors;
:mod:`~contextpilot.client.base` holds what both twins hold;
:mod:`~contextpilot.client.sync_client`, :mod:`~contextpilot.client.async_client`
and :mod:`~contextpilot.client.chat` (the ``/chat/sessions`` methods) only send.
Needs httpx alone: nothing of the server, numpy or scipy.
"""

from __future__ import annotations

from contextpilot.client.async_client import AsyncContextPilotIndexClient
from contextpilot.client.errors import (
    ContextPilotAuthError,
    ContextPilotConnectionError,
    ContextPilotError,
    ContextPilotHTTPError,
    ContextPilotNotSupportedError,
    ContextPilotValidationError,
)
from contextpilot.client.sync_client import ContextPilotIndexClient

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
