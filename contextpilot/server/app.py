"""The FastAPI application: wiring, auth, limits, health, stats, metrics.

``create_app(config)`` builds everything from the config object; nothing is
read from the environment here, so what the CLI parsed is what runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from contextpilot import __version__
from contextpilot.server import api_index, api_proxy
from contextpilot.server.config import ServerConfig
from contextpilot.server.replicas import build_replicas
from contextpilot.server.state import ServerState, get_state

__all__ = ["create_app"]

log = logging.getLogger("contextpilot.server")

#: paths open without the API key
OPEN_PATHS = {"/health"}
#: metric label for paths outside the API (keeps label sets bounded)
KNOWN_PATHS = {
    "/",
    "/reorder",
    "/build",
    "/schedule",
    "/deduplicate",
    "/evict",
    "/reset",
    "/stats",
    "/health",
    "/metrics",
    "/sessions",
    "/requests",
    "/warm",
    "/v1/completions",
    "/v1/chat/completions",
    "/docs",
    "/openapi.json",
}
CLEANUP_SECONDS = 30.0


def create_app(config: ServerConfig) -> FastAPI:
    # one live index and engine proxy per replica; with one, today's server
    replicas = build_replicas(config)
    state = ServerState(config, replicas.primary.pilot, replicas.primary.proxy, replicas=replicas)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_cleanup(state))
        log.info(
            "contextpilot %s serving on %s:%d (%s), engine %s",
            __version__,
            config.host,
            config.port,
            "stateless" if config.stateless else "stateful",
            ", ".join(f"{r.name}={r.url}" for r in replicas),
        )
        if replicas.multi:
            log.info("routing %s over %d replicas", config.routing, len(replicas))
        try:
            yield
        finally:
            task.cancel()
            await replicas.close()

    app = FastAPI(
        title="contextpilot",
        version=__version__,
        description="Reorders and deduplicates context blocks for KV-cache reuse; "
        "keeps a live index of what the engine holds; OpenAI-compatible proxy.",
        lifespan=lifespan,
    )
    app.state.cp = state

    @app.middleware("http")
    async def guard(request: Request, call_next):  # type: ignore[no-untyped-def]
        path = request.url.path
        label = (
            path if path in KNOWN_PATHS else ("/sessions/{id}" if path.startswith("/sessions/") else "other")
        )
        t0 = time.perf_counter()
        if config.api_key and path not in OPEN_PATHS and not _authorised(request, config.api_key):
            response: Any = JSONResponse(
                {"detail": "missing or wrong API key (Authorization: Bearer …)"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        elif _too_large(request, config.max_body_bytes):
            response = JSONResponse(
                {"detail": f"request body over {config.max_body_bytes} bytes"}, status_code=413
            )
        else:
            response = await call_next(request)
        state.requests.inc(1, label, f"{response.status_code // 100}xx")
        state.latency.observe(time.perf_counter() - t0, label)
        return response

    app.include_router(api_index.router)
    app.include_router(api_proxy.router)

    @app.get("/")
    async def root(st: ServerState = Depends(get_state)) -> dict[str, Any]:
        return {
            "service": "contextpilot",
            "version": __version__,
            "status": "running",
            "mode": "stateless" if st.config.stateless else "live",
            "index_initialized": any(len(r.pilot.index) > 0 for r in st.replicas),
        }

    @app.get("/health")
    async def health(st: ServerState = Depends(get_state)) -> dict[str, Any]:
        """Always 200 while the server runs; says whether the engine answers
        (``engine``: the first replica; ``replicas``: each, when several)."""
        out = {
            "status": "ready",
            "mode": "stateless" if st.config.stateless else "live",
            "eviction_enabled": not st.config.stateless,
            "uptime_seconds": round(time.time() - st.started, 1),
            "engine": await st.proxy.probe(),
        }
        if st.replicas.multi:
            probes = await asyncio.gather(*(r.proxy.probe() for r in st.replicas))
            out["replicas"] = [{"name": r.name, **p} for r, p in zip(st.replicas, probes)]
        return out

    @app.get("/stats")
    async def stats(st: ServerState = Depends(get_state)) -> dict[str, Any]:
        return {
            "index_stats": st.replicas.index_stats(),
            "replicas": st.replica_stats(),
            "routing": {"policy": st.config.routing, "replicas": len(st.replicas)},
            "server": {
                "planned_requests": st.planned.value(),
                "engine_prompt_tokens": st.prompt_tokens.value(),
                "engine_cached_tokens": st.cached_tokens.value(),
                "engine_hit_ratio": st.engine_hit_ratio(),
                "uptime_seconds": round(time.time() - st.started, 1),
            },
            "config": st.config.public(),
            "timestamp": time.time(),
        }

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics(st: ServerState = Depends(get_state)) -> PlainTextResponse:
        """Prometheus text exposition."""
        return PlainTextResponse(st.registry.render(), media_type="text/plain; version=0.0.4")

    return app


def _authorised(request: Request, key: str) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())


def _too_large(request: Request, limit: int) -> bool:
    length = request.headers.get("content-length")
    try:
        return length is not None and int(length) > limit
    except ValueError:
        return True


async def _cleanup(state: ServerState) -> None:
    """Drop expired index entries and stale sessions in the background."""
    while True:
        await asyncio.sleep(CLEANUP_SECONDS)
        try:
            for r in state.replicas:
                await asyncio.to_thread(r.pilot.index.expire)
            await asyncio.to_thread(state.pilot.sessions)
        except Exception:  # never let housekeeping kill the server
            log.exception("cleanup failed")
