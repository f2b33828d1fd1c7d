"""The server's outer ASGI layer: API key, body size cap, request metrics.

Order matters and is fixed here: the key is checked before any body byte is
read (an unauthorised caller cannot make the server buffer anything), then
the body is capped *as it streams in*, whether or not the client sent a
``Content-Length`` (chunked bodies are counted, not trusted), and only then
does the app run. A rejected request gets a JSON 401 or 413 and never
reaches a handler, so nothing is applied to the index.

Memory: at most ``max_body_bytes`` buffered per request in flight (the
handlers parse whole JSON bodies anyway). Cost: O(body) per request.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["Guard", "authorised"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def authorised(headers: list[tuple[bytes, bytes]] | Any, key: str) -> bool:
    """Does an ``Authorization: Bearer <key>`` header carry ``key``?
    Constant-time comparison. ``headers``: ASGI raw headers or a mapping."""
    if isinstance(headers, list):
        value = next((v.decode("latin-1") for k, v in headers if k.lower() == b"authorization"), "")
    else:
        value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())


class _TooLarge(Exception):
    pass


class Guard:
    """ASGI middleware; see the module docstring.

    ``observe(path, status, seconds)`` is called once per HTTP request
    (including rejected ones) for metrics.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        api_key: str | None,
        max_body_bytes: int,
        open_paths: frozenset[str],
        observe: Callable[[str, int, float], None],
    ) -> None:
        self.app = app
        self.api_key = api_key
        self.max_body_bytes = max_body_bytes
        self.open_paths = open_paths
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [500]

        async def send_seen(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self._handle(scope, receive, send_seen)
        finally:
            self.observe(scope["path"], status[0], time.perf_counter() - t0)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = scope.get("headers") or []
        if self.api_key and scope["path"] not in self.open_paths and not authorised(headers, self.api_key):
            await _json(
                send,
                401,
                {"detail": "missing or wrong API key (Authorization: Bearer …)"},
                [(b"www-authenticate", b"Bearer")],
            )
            return
        too_large = {"detail": f"request body over {self.max_body_bytes} bytes (--max-body-bytes)"}
        length = next((v for k, v in headers if k.lower() == b"content-length"), None)
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await _json(send, 400, {"detail": "invalid content-length"})
                return
            if declared > self.max_body_bytes:
                await _json(send, 413, too_large)
                return
        try:
            body, extra = await self._read_body(receive)
        except _TooLarge:
            await _json(send, 413, too_large)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            if extra is not None:  # the client went away while we read
                return extra
            return await receive()

        await self.app(scope, replay, send)

    async def _read_body(self, receive: Receive) -> tuple[bytes, Message | None]:
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(parts), message  # http.disconnect
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _TooLarge
            if chunk:
                parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts), None


async def _json(
    send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    raw = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(raw)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": raw})
