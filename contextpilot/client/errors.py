"""The errors the clients raise, and reading a server's answer.

:func:`parse_answer` turns a response into parsed JSON or raises the
:class:`ContextPilotError` subclass its status calls for (422 names the
field; a route the server does not have is
:class:`ContextPilotNotSupportedError`); :func:`parse_health` is its
``/health`` variant. Both O(body).
"""

from __future__ import annotations

from typing import Any

import httpx

__all__ = [
    "ContextPilotAuthError",
    "ContextPilotConnectionError",
    "ContextPilotError",
    "ContextPilotHTTPError",
    "ContextPilotNotSupportedError",
    "ContextPilotValidationError",
    "is_up",
    "parse_answer",
    "parse_health",
]


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


def parse_answer(resp: httpx.Response) -> Any:
    """The response's JSON body, or the matching :class:`ContextPilotError`."""
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


def parse_health(resp: httpx.Response) -> dict[str, Any]:
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
    result: dict[str, Any] = parse_answer(resp)
    return result


def is_up(health: dict[str, Any]) -> bool:
    """Whether a :func:`parse_health` body says the server serves requests."""
    return health.get("status") == "ready" or bool(health.get("index_empty"))
