"""The HTTP client to one inference engine (:class:`EngineClient`): forwarding,
byte-transparent, bounded in time.

Only ever talks to the configured engine URL (never a URL from a request).
Responses pass through unchanged (status, body bytes, content headers);
streams are relayed chunk by chunk as they arrive. Failures become JSON
errors: 502 (unreachable or broken), 503 (connect timed out), 504 (no
answer within the timeout). The timeout bounds the *whole* exchange of a
non-streaming request (an engine dripping bytes cannot hold it open) and
the wait for a stream's headers; a stream then runs as long as each chunk
arrives within the timeout. Connections of failed exchanges are closed.
:meth:`EngineClient.send` forwards any method and path (the passthrough);
error answers (5xx) are always read whole so a caller can retry elsewhere
before anything reached its client, and :class:`EngineError` says whether
the request may have reached the engine (``reached``), which decides
whether a retry is safe (see :mod:`contextpilot.server.failover`).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import anyio
import httpx
from starlette.background import BackgroundTask
from starlette.responses import JSONResponse, Response, StreamingResponse

__all__ = ["EngineError", "EngineClient"]

log = logging.getLogger("contextpilot.server")

#: headers that describe one hop, never forwarded
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "host",
    "date",  # our own server sets these two
    "server",
}


#: seconds a health probe may take in all
PROBE_SECONDS = 2.0


class EngineError(Exception):
    """A failed exchange with the engine. ``reached``: whether any byte of
    the request may have reached the engine (False only when the
    connection was never made, so a retry elsewhere cannot run it twice)."""

    def __init__(self, status: int, kind: str, message: str, reached: bool = True) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.reached = status, kind, message, reached

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.kind, "code": self.status}}
        return JSONResponse(body, status_code=self.status, headers=headers)


class EngineClient:
    def __init__(
        self, base_url: str, connect_timeout: float, timeout: float, api_key: str | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = timeout
        self.client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
            headers=headers,
        )
        self._probe: tuple[float, dict[str, Any]] | None = None

    async def close(self) -> None:
        await self.client.aclose()

    def error_for(self, e: httpx.HTTPError) -> EngineError:
        where = self.base_url
        if isinstance(e, httpx.ConnectTimeout):
            return EngineError(
                503, "engine_unavailable", f"engine at {where} did not accept a connection in time", False
            )
        if isinstance(e, httpx.TimeoutException):
            return EngineError(504, "engine_timeout", f"engine at {where} did not answer in time")
        if isinstance(e, httpx.ConnectError):
            return EngineError(502, "engine_unreachable", f"engine at {where} is unreachable", False)
        return EngineError(502, "engine_error", f"engine at {where} failed: {type(e).__name__}")

    async def post(
        self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None, stream: bool = False
    ) -> tuple[Response, bytes | None]:
        """Forward ``body`` to ``path``. Returns the response to send and,
        when not streaming, the raw body (for usage accounting)."""
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        return await self.send("POST", path, json.dumps(body).encode(), hdrs, stream=stream)

    async def send(
        self,
        method: str,
        path: str,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: str | None = None,
        stream: bool | None = False,
    ) -> tuple[Response, bytes | None]:
        """Forward one request as is (``params``: a raw query string).
        ``stream=None`` decides by the answer: an event stream, or a
        chunked body of unknown length, is relayed chunk by chunk; anything
        else is read whole. Error answers (5xx) are always read whole, so a
        caller may drop them and retry elsewhere. Returns the response to
        send and, when read whole, its raw body."""
        url = httpx.URL(path, query=params.encode()) if params else path
        req = self.client.build_request(method, url, content=content, headers=headers or {})
        deadline = anyio.current_time() + self.timeout
        try:
            with anyio.fail_after(self.timeout):
                resp = await self.client.send(req, stream=True)
        except httpx.HTTPError as e:
            raise self.error_for(e) from None
        except TimeoutError:
            raise self.error_for(httpx.ReadTimeout("total timeout")) from None
        out_headers = {k: v for k, v in resp.headers.items() if k.lower() not in HOP_BY_HOP}
        if stream is None:
            ctype = resp.headers.get("content-type", "")
            stream = ctype.startswith("text/event-stream") or "content-length" not in resp.headers
        if stream and resp.status_code < 500:
            return StreamingResponse(
                self.relay(resp),
                status_code=resp.status_code,
                headers=out_headers,
                background=BackgroundTask(resp.aclose),
            ), None
        try:
            with anyio.fail_after(max(0.0, deadline - anyio.current_time())):
                raw = b"".join([chunk async for chunk in resp.aiter_raw()])
        except httpx.HTTPError as e:
            raise self.error_for(e) from None
        except TimeoutError:
            raise self.error_for(httpx.ReadTimeout("total timeout")) from None
        finally:
            await resp.aclose()
        return Response(raw, status_code=resp.status_code, headers=out_headers), raw

    async def relay(self, resp: httpx.Response):
        try:
            async for chunk in resp.aiter_raw():
                yield chunk
        except httpx.HTTPError as e:
            # headers are gone already: end the stream with an SSE error event
            err = self.error_for(e)
            log.warning("stream from engine broke: %s", err.message)
            yield f"data: {json.dumps({'error': {'message': err.message, 'type': err.kind}})}\n\n".encode()

    async def probe(self, max_age: float = 2.0) -> dict[str, Any]:
        """Is the engine answering? (``GET /health``, then ``/v1/models``;
        cached for ``max_age`` seconds so health checks stay cheap; 0: fresh)."""
        now = time.monotonic()
        if self._probe is not None and now - self._probe[0] < max_age:
            return self._probe[1]
        t0 = time.perf_counter()
        result: dict[str, Any] = {"url": self.base_url, "reachable": False}
        for path in ("/health", "/v1/models"):
            try:
                with anyio.fail_after(PROBE_SECONDS):  # whole exchange: a dripping engine cannot hold it
                    r = await self.client.get(path, timeout=httpx.Timeout(PROBE_SECONDS, connect=1.0))
            except httpx.HTTPError as e:
                result["error"] = self.error_for(e).message
                break
            except TimeoutError:
                result["error"] = f"engine at {self.base_url} did not answer {path} in time"
                break
            if r.status_code < 500:
                result.update(reachable=True, status=r.status_code)
                result.pop("error", None)
                break
            result["error"] = f"HTTP {r.status_code} on {path}"
        result["latency_ms"] = round(1000 * (time.perf_counter() - t0), 2)
        self._probe = (now, result)
        return result
