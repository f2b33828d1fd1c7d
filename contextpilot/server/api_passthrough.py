"""OpenAI passthrough: every other ``/v1/*`` path (``GET /v1/models``,
``POST /v1/embeddings``, ...) is forwarded to an engine replica as is.

What is forwarded: the method, path, query string, body bytes and the
client's headers except hop-by-hop ones, ``Authorization`` and ``Cookie``
(the server's API key is checked by the guard before anything is read;
the engine gets the configured engine key instead). Nothing in the body is
changed (the reference forced ``temperature=0`` here; we do not), nothing
is recorded in an index. The answer comes back unchanged: an event stream
or a chunked body of unknown length is relayed chunk by chunk as it
arrives, anything else read whole. A replica is chosen by load among the
replicas up (``X-ContextPilot-Replica`` names it when there are several),
with the same failover as the proxy routes (see
:mod:`contextpilot.server.failover`; only ``GET``/``HEAD``/``OPTIONS`` and
``POST /v1/embeddings`` count as safe to repeat after the engine may have
seen them).

This router must be included after every other ``/v1`` route, so that
specific routes (``/v1/completions``, ``/v1/chat/completions``) win.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from contextpilot.server import failover
from contextpilot.server.dispatch import route, send_routed
from contextpilot.server.engine_client import HOP_BY_HOP, EngineClient
from contextpilot.server.state import ServerState, get_state

__all__ = ["router"]

router = APIRouter()

#: client headers never forwarded (besides hop-by-hop ones)
PRIVATE = frozenset({"authorization", "cookie"})
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


@router.api_route("/v1/{path:path}", methods=METHODS, include_in_schema=False)
async def passthrough(path: str, request: Request, st: ServerState = Depends(get_state)) -> Response:
    """Forward any other ``/v1/*`` request to an engine (see the module docstring)."""
    full = "/v1/" + path
    method = request.method
    body = await request.body()
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP | PRIVATE}
    query = request.url.query or None
    st.metrics.proxied.labels("passthrough").inc()
    replica, lease = await run_in_threadpool(route, st, [], None)

    async def attempt(client: EngineClient) -> tuple[Response, bytes | None]:
        return await client.send(method, full, body or None, headers, params=query, stream=None)

    safe = failover.is_safe(method, full)
    out = await send_routed(st, replica, lease, attempt, safe=safe, blocks=[], rid=None, extra={})
    return out.response
