"""What both client twins hold: the server's address, the credentials and
the httpx client, and how a call that never reached the server is reported."""

from __future__ import annotations

from typing import ClassVar

import httpx

from contextpilot.client.calls import Call
from contextpilot.client.errors import ContextPilotConnectionError

__all__ = ["DEFAULT_URL", "ClientBase"]

DEFAULT_URL = "http://localhost:8765"


class ClientBase:
    """``base_url``: the server; ``timeout``: seconds for every call;
    ``api_key``: sent as a bearer token; ``transport``: an httpx transport
    of the twin's kind (sync or async), e.g. for tests or proxies."""

    #: the httpx client class the twin sends with
    http_class: ClassVar[type[httpx.Client] | type[httpx.AsyncClient]]

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        timeout: float = 30.0,
        api_key: str | None = None,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = self.http_class(
            base_url=self.base_url, timeout=timeout, headers=headers, transport=transport
        )

    def _unreachable(self, call: Call, error: httpx.HTTPError) -> ContextPilotConnectionError:
        """The error for ``call`` failing before any answer (connection, timeout)."""
        method, path, _ = call
        return ContextPilotConnectionError(f"{method} {self.base_url}{path}: {error}")
