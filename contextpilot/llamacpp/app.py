"""The llama.cpp proxy's FastAPI app: lifespan (``/slots`` poller, engine
client, notifier flush, request log) and routes. Handlers only translate
HTTP to :class:`~contextpilot.llamacpp.forward.Forwarder`,
:class:`~contextpilot.llamacpp.state.ProxyState` and
:func:`~contextpilot.llamacpp.stats.proxy_stats` calls; the endpoints are
listed in :mod:`contextpilot.llamacpp.proxy`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from contextpilot.hooks.notifier import ENV_INDEX_URL, EvictionNotifier, get_notifier
from contextpilot.llamacpp.config import ProxyConfig
from contextpilot.llamacpp.forward import Forwarder, engine_headers
from contextpilot.llamacpp.poll import poll_slots
from contextpilot.llamacpp.state import ProxyState
from contextpilot.llamacpp.stats import proxy_stats
from contextpilot.llamacpp.translate import FieldError

__all__ = ["create_proxy_app"]

log = logging.getLogger("contextpilot.llamacpp")


def create_proxy_app(config: ProxyConfig, notifier: EvictionNotifier | None = None) -> FastAPI:
    """The proxy app. ``notifier`` defaults to the process-wide one for
    ``config.index_url`` (none when it is unset)."""
    if notifier is None and config.index_url:
        notifier = get_notifier({**os.environ, ENV_INDEX_URL: config.index_url})
    st = ProxyState(config, notifier)
    fwd = Forwarder(st)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        poller = asyncio.create_task(poll_slots(st)) if config.slots_poll_interval > 0 else None
        log.info(
            "llama.cpp proxy on %s:%d -> %s; evictions -> %s; chat template %s; /slots poll %s; "
            "request log %s",
            config.host,
            config.port,
            config.llama_server_url,
            config.index_url or "(off: metrics only)",
            config.chat_template_format,
            f"every {config.slots_poll_interval:g}s" if poller else "off",
            config.log_file or "off",
        )
        try:
            yield
        finally:
            if poller is not None:
                poller.cancel()
            await st.engine.close()
            if st.notifier is not None:
                await asyncio.to_thread(st.notifier.flush, 5.0)
            st.reqlog.close()

    app = FastAPI(title="contextpilot llama.cpp proxy", lifespan=lifespan)
    app.state.proxy = st

    @app.exception_handler(FieldError)
    async def field_error(request: Request, exc: FieldError) -> JSONResponse:
        st.error("bad_request")
        return JSONResponse({"detail": exc.detail()}, status_code=422)

    @app.post("/completion")
    @app.post("/completions")  # llama-server's alias
    async def completion(request: Request) -> Response:
        """Native completion, passed through; the slot model learns from the answer."""
        return await fwd.completion(request, "/completion", None)

    @app.post("/v1/completions")
    async def v1_completions(request: Request) -> Response:
        """OpenAI completions, served by native ``/completion``."""
        return await fwd.completion(request, "/v1/completions", False)

    @app.post("/v1/chat/completions")
    async def v1_chat(request: Request) -> Response:
        """OpenAI chat completions, rendered with the configured template."""
        return await fwd.completion(request, "/v1/chat/completions", True)

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        return proxy_stats(st)

    @app.post("/reset")
    async def reset() -> dict[str, Any]:
        """Forget the slot model, counters and latencies (llama-server's cache
        is untouched); every tracked request id is reported evicted."""
        evicted = st.reset()
        return {
            "status": "success",
            "message": "slot model and counters cleared; tracked request ids reported evicted",
            "evicted": evicted,
            "evicted_count": len(evicted),
        }

    @app.get("/health")
    async def health() -> Response:
        st.requests["/health"] += 1
        probe = await st.engine.probe(max_age=0.5)
        body = {"status": "ok" if probe.get("reachable") else "engine_unreachable", "engine": probe}
        return JSONResponse(body, status_code=200 if probe.get("reachable") else 503)

    @app.api_route("/v1/{path:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    async def passthrough(path: str, request: Request) -> Response:
        """Anything else under /v1/: forwarded unchanged, untracked."""
        st.requests["/v1/*"] += 1
        raw = await request.body()
        if len(raw) > config.max_body_bytes:
            raise HTTPException(413, detail=f"request body over {config.max_body_bytes} bytes")
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type", "accept")}
        req = st.engine.client.build_request(
            request.method, "/v1/" + path, params=request.query_params, content=raw, headers=headers
        )
        try:
            resp = await st.engine.client.send(req, stream=True)
        except httpx.HTTPError as e:
            err = st.engine.error_for(e)
            st.error(err.kind)
            return err.response()
        return StreamingResponse(
            st.engine.relay(resp),
            status_code=resp.status_code,
            headers=engine_headers(resp),
            background=BackgroundTask(resp.aclose),
        )

    return app
