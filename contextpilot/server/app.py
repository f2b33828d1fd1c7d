"""The FastAPI application: wiring, auth, limits, health, stats, metrics.

``create_app(config)`` builds everything from the config object; nothing is
read from the environment here, so what the CLI parsed is what runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from contextpilot import __version__
from contextpilot.server import api_index, api_passthrough, api_proxy, api_sessions, failover, openapi
from contextpilot.server.config import ServerConfig
from contextpilot.server.guard import Guard, authorised
from contextpilot.server.metrics import CONTENT_TYPE_LATEST
from contextpilot.server.models import HealthResponse, RootResponse, StatsResponse
from contextpilot.server.replicas import build_replicas
from contextpilot.server.state import ServerState, get_state

__all__ = ["create_app"]

log = logging.getLogger("contextpilot.server")

#: paths open without the API key
OPEN_PATHS = {"/health"}
CLEANUP_SECONDS = 30.0


def create_app(config: ServerConfig) -> FastAPI:
    # one live index and engine proxy per replica; with one, today's server
    replicas = build_replicas(config)
    state = ServerState(config, replicas.primary.pilot, replicas.primary.proxy, replicas=replicas)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        snapshots = state.state_file
        if snapshots is not None:
            await asyncio.to_thread(snapshots.restore)
        tasks = [
            asyncio.create_task(_cleanup(state)),
            asyncio.create_task(failover.watch(state, config.health_interval)),
        ]
        if snapshots is not None:
            tasks.append(asyncio.create_task(snapshots.run_periodic()))
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
            for task in tasks:
                task.cancel()
            if snapshots is not None:
                await asyncio.to_thread(snapshots.save)
            await replicas.close()

    app = FastAPI(
        title="contextpilot",
        version=__version__,
        description="Reorders and deduplicates context blocks for KV-cache reuse; "
        "keeps a live index of what the engine holds; OpenAI-compatible proxy.",
        lifespan=lifespan,
    )
    app.state.cp = state

    # metric labels: the app's own routes (filled once they are all added, below);
    # any other path is "other", so the label set stays bounded
    exact: set[str] = set()
    templated: list[tuple[str, str]] = []

    def observe(path: str, status: int, seconds: float) -> None:
        label = path if path in exact else next((t for p, t in templated if path.startswith(p)), "other")
        state.metrics.requests.labels(label, f"{status // 100}xx").inc()
        state.metrics.latency.labels(label).observe(seconds)

    # outermost: key first, then the body cap, then the app (see guard.py)
    app.add_middleware(
        Guard,
        api_key=config.api_key,
        max_body_bytes=config.max_body_bytes,
        open_paths=frozenset(OPEN_PATHS),
        observe=observe,
    )
    openapi.install(app, config, OPEN_PATHS)

    app.include_router(api_index.router)
    app.include_router(api_proxy.router)
    app.include_router(api_sessions.router)
    app.include_router(api_passthrough.router)  # last: any other /v1/* path

    @app.get("/", response_model=RootResponse)
    async def root(st: ServerState = Depends(get_state)) -> dict[str, Any]:
        return {
            "service": "contextpilot",
            "version": __version__,
            "status": "running",
            "mode": "stateless" if st.config.stateless else "live",
            "index_initialized": any(len(r.pilot.index) > 0 for r in st.replicas),
        }

    @app.get("/health", response_model=HealthResponse, response_model_exclude_none=True)
    async def health(request: Request, st: ServerState = Depends(get_state)) -> dict[str, Any]:
        """Always 200 while the server runs. ``status`` is ``ready`` when every
        engine answers and none is marked down, else ``degraded``; index
        readiness and engine reachability are separate fields. ``engine``:
        the first replica; ``replicas``: each, when several. Open without
        the API key; then engine addresses and error texts are left out for
        callers not holding the key."""
        anonymous = bool(st.config.api_key) and not authorised(request.headers, st.config.api_key)

        def shown(probe: dict[str, Any]) -> dict[str, Any]:
            probe = dict(probe)
            if anonymous:
                probe.pop("url", None)
                probe.pop("error", None)
            return probe

        reps, router = st.replicas, st.replicas.router
        fallback = reps.fallback
        probes = await asyncio.gather(*(r.proxy.probe() for r in reps))
        fb = await fallback.probe() if fallback is not None else None
        down = [r.name for r, p in zip(reps, probes) if router.is_down(r.position) or not p["reachable"]]
        totals = await run_in_threadpool(reps.totals)
        cap = totals.capacity_tokens
        out: dict[str, Any] = {
            "status": "degraded" if down else "ready",
            "mode": "stateless" if st.config.stateless else "live",
            "eviction_enabled": not st.config.stateless,
            "uptime_seconds": round(time.time() - st.started, 1),
            "index_ready": True,
            "index_initialized": totals.requests > 0,
            "engine_reachable": len(down) < len(reps) or bool(fb and fb["reachable"]),
            "replicas_down": down,
            "max_tokens": cap,
            "current_tokens": totals.tokens,
            "utilization_pct": round(100.0 * totals.tokens / cap, 2) if cap else 0.0,
            "engine": shown(probes[0]),
            "fallback": shown(fb) if fb is not None else None,
        }
        if reps.multi:
            out["replicas"] = [
                {"name": r.name, "down": router.is_down(r.position), **shown(p)} for r, p in zip(reps, probes)
            ]
        return out

    @app.get("/stats", response_model=StatsResponse)
    async def stats(
        check: bool = Query(False, description="also verify the live index's invariants (O(index size))"),
        st: ServerState = Depends(get_state),
    ) -> dict[str, Any]:
        server: dict[str, Any] = {
            "planned_requests": st.metrics.read(st.metrics.planned),
            "engine_prompt_tokens": st.metrics.read(st.metrics.prompt_tokens),
            "engine_cached_tokens": st.metrics.read(st.metrics.cached_tokens),
            "engine_hit_ratio": st.metrics.engine_hit_ratio(),
            "uptime_seconds": round(time.time() - st.started, 1),
        }
        if st.state_file is not None:
            server["state_file"] = st.state_file.status
        index_stats = await run_in_threadpool(st.replicas.index_stats)
        # the 0.5.0 names beside ours, for its clients and dashboards
        index_stats.setdefault("num_requests", index_stats["live_requests"])
        index_stats.setdefault("num_nodes", index_stats["index_nodes"])
        index_stats.setdefault("total_tokens", int(index_stats["index_tokens"]))
        return {
            "status": "success",
            "index_check": await run_in_threadpool(_check_index, st) if check else None,
            "index_stats": index_stats,
            "replicas": st.replica_stats(),
            "routing": {"policy": st.config.routing, "replicas": len(st.replicas)},
            "server": server,
            "config": st.config.public(),
            "timestamp": time.time(),
        }

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics(st: ServerState = Depends(get_state)) -> Response:
        """Prometheus text exposition (with the standard process metrics)."""
        return Response(st.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    for path in _route_paths(app.routes):
        if "{" in path:  # e.g. /sessions/{conversation_id} -> "/sessions/{id}"
            templated.append((path.split("{", 1)[0], path.split("{", 1)[0] + "{id}"))
        elif path:
            exact.add(path)
    return app


def _route_paths(routes: Sequence[Any]) -> list[str]:
    """Every path the app serves, routers included without a prefix followed
    into (FastAPI may keep them as one entry holding the original router)."""
    out: list[str] = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            out += _route_paths(inner.routes)
        elif isinstance(getattr(route, "path", None), str):
            out.append(route.path)
    return out


def _check_index(st: ServerState) -> str:
    """'ok', or the first broken invariant of a replica's live index."""
    for r in st.replicas:
        try:
            r.pilot.index.check()
        except AssertionError as e:
            where = f" (replica {r.name})" if st.replicas.multi else ""
            log.error("live index invariant broken%s: %s", where, e)
            return f"broken{where}: {e}"
    return "ok"


async def _cleanup(state: ServerState) -> None:
    """Drop expired index entries and stale sessions in the background."""
    while True:
        await asyncio.sleep(CLEANUP_SECONDS)
        try:
            for r in state.replicas:
                await asyncio.to_thread(r.pilot.index.expire)
            await asyncio.to_thread(state.pilot.sessions)
            await asyncio.to_thread(state.pilot.chat_sessions)  # drops idle chat sessions too
        except Exception:  # never let housekeeping kill the server
            log.exception("cleanup failed")
