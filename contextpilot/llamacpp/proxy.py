"""Slot-tracking proxy in front of llama-server: eviction sync for llama.cpp.

llama.cpp has no in-process hook, so this proxy sits between clients (or the
contextpilot server's own proxy) and ``llama-server``, learns from each
answer which slot served the request (``id_slot``) and how many tokens the
slot kept (``timings.cache_n``), models what every slot holds
(:mod:`contextpilot.llamacpp.slots`) and reports the requests whose
cache was overwritten to the contextpilot index (``POST /evict`` through the
shared notifier). Without ``CONTEXTPILOT_INDEX_URL`` it is a plain metrics
proxy.

    LLAMA_SERVER_URL=http://127.0.0.1:8080 CONTEXTPILOT_INDEX_URL=http://127.0.0.1:8765 \\
        python -m contextpilot.llamacpp.proxy          # listens on 127.0.0.1:8081

Endpoints:
- ``POST /v1/chat/completions``: messages rendered with ``CHAT_TEMPLATE_FORMAT``
  (llama3 | chatml), sent to native ``/completion``, answered in OpenAI
  format (streamed too);
- ``POST /v1/completions``: one prompt (text or token ids), same way;
- ``POST /completion`` (and ``/completions``): native, passed through byte
  for byte (streams unbuffered);
- ``GET /stats``: per-slot state, counts, reuse (``cache_n`` totals),
  evictions reported; ``POST /reset``: forget the slot model and counters;
- ``GET /health``: llama-server's health, relayed (503 when unreachable);
- anything else under ``/v1/``: forwarded unchanged, untracked.

Request ids: ``rid`` or ``request_id`` in the body, else the ``X-Request-Id``
header (the contextpilot server's proxy sets all three), else a fresh one;
normalised, stripped from the body sent on, returned as
``X-ContextPilot-Request-Id``. A request that fails or breaks off before its
slot is known is reported evicted at once (it never got cached), unless a
slot still holds an earlier run of the same id.

Only ever talks to ``LLAMA_SERVER_URL``. Bad input: 422 naming the field;
llama-server down: 502 (unreachable), 503 (connect timeout), 504 (no answer
within ``LLAMA_TIMEOUT``), as JSON.

Run llama-server with ``--cache-ram 0``: with its host-memory prompt cache
on (the default), a replaced slot's content is parked in RAM and may come
back, so what this proxy reports is "left the slot", not "left the engine".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from contextpilot.core.ids import new_request_id, normalize_request_id
from contextpilot.hooks.notifier import ENV_INDEX_URL, EvictionNotifier, get_notifier
from contextpilot.llamacpp.config import ENV, ProxyConfig, parse_config
from contextpilot.llamacpp.state import ProxyState
from contextpilot.llamacpp.translate import (
    FieldError,
    StreamTranslator,
    completion_prompt,
    native_request,
    openai_response,
)
from contextpilot.server.engine_client import HOP_BY_HOP, EngineError

__all__ = ["ENV", "ProxyConfig", "create_proxy_app", "main", "parse_config"]

log = logging.getLogger("contextpilot.llamacpp")

RID_HEADER = "X-ContextPilot-Request-Id"
#: an SSE event larger than this is not parsed (still relayed)
MAX_EVENT_BYTES = 8 * 2**20


def _request_id(body: dict[str, Any], request: Request) -> str:
    given = body.pop("rid", None)
    alt = body.pop("request_id", None)
    given = given if given is not None else alt
    if given is None:
        given = request.headers.get("x-request-id")
    if given is None or given == "":
        return new_request_id()
    if isinstance(given, bool) or not isinstance(given, str | int):
        raise FieldError(["rid"], "must be a string")
    rid = normalize_request_id(str(given))
    if not rid or len(rid) > 256:
        raise FieldError(["rid"], "must be a non-empty string of at most 256 characters")
    return rid


async def _read_json(request: Request, limit: int) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > limit:
        raise HTTPException(413, detail=f"request body over {limit} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise FieldError([], "request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise FieldError([], "request body must be a JSON object")
    return body


def _sse_events(buf: bytearray) -> list[dict[str, Any]]:
    """Pop the complete ``data: {...}`` events from ``buf`` (pings and
    non-JSON lines are skipped)."""
    out = []
    while True:
        cut = buf.find(b"\n\n")
        if cut < 0:
            if len(buf) > MAX_EVENT_BYTES:
                del buf[:]
            return out
        event = bytes(buf[:cut])
        del buf[: cut + 2]
        for line in event.splitlines():
            if line.startswith(b"data:"):
                try:
                    obj = json.loads(line[5:].strip())
                except ValueError:
                    continue
                if isinstance(obj, dict):
                    out.append(obj)


def _headers(resp: httpx.Response, rid: str | None = None) -> dict[str, str]:
    out = {k: v for k, v in resp.headers.items() if k.lower() not in HOP_BY_HOP}
    if rid:
        out[RID_HEADER] = rid
    return out


def create_proxy_app(config: ProxyConfig, notifier: EvictionNotifier | None = None) -> FastAPI:
    """The proxy app. ``notifier`` defaults to the process-wide one for
    ``config.index_url`` (none when it is unset)."""
    if notifier is None and config.index_url:
        notifier = get_notifier({**os.environ, ENV_INDEX_URL: config.index_url})
    st = ProxyState(config, notifier)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        poller = asyncio.create_task(_poll_slots(st)) if config.slots_poll_interval > 0 else None
        log.info(
            "llama.cpp proxy on %s:%d -> %s; evictions -> %s; chat template %s; /slots poll %s",
            config.host,
            config.port,
            config.llama_server_url,
            config.index_url or "(off: metrics only)",
            config.chat_template_format,
            f"every {config.slots_poll_interval:g}s" if poller else "off",
        )
        try:
            yield
        finally:
            if poller is not None:
                poller.cancel()
            await st.engine.close()
            if st.notifier is not None:
                await asyncio.to_thread(st.notifier.flush, 5.0)

    app = FastAPI(title="contextpilot llama.cpp proxy", lifespan=lifespan)
    app.state.proxy = st

    @app.exception_handler(FieldError)
    async def field_error(request: Request, exc: FieldError) -> JSONResponse:
        st.error("bad_request")
        return JSONResponse({"detail": exc.detail()}, status_code=422)

    async def send(path: str, body: dict[str, Any]) -> httpx.Response:
        req = st.engine.client.build_request(
            "POST", path, content=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        try:
            return await st.engine.client.send(req, stream=True)
        except httpx.HTTPError as e:
            raise st.engine.error_for(e) from None  # the contextpilot server's mapping: 502/503/504

    async def tracked(
        request: Request, label: str, chat: bool | None
    ) -> Response:  # chat None: native passthrough
        st.requests[label] += 1
        body = await _read_json(request, config.max_body_bytes)
        rid = _request_id(body, request)
        model = body.get("model") if isinstance(body.get("model"), str) else None
        if chat is None:
            prompt = completion_prompt(body.get("prompt"))
            stream = bool(body.get("stream"))
            native = body
        else:
            native, prompt = native_request(body, chat=chat, fmt=config.chat_template_format)
            stream = native["stream"]
            if stream:
                native["timings_per_token"] = True  # a broken-off stream still tells its slot and cache_n
        st.in_flight += 1
        try:
            resp = await send("/completion", native)
        except EngineError as e:
            st.in_flight -= 1
            st.error(e.kind)
            st.settle(rid, prompt, None)
            return e.response(headers={RID_HEADER: rid})
        if resp.status_code != 200 or not stream:
            try:
                raw = await resp.aread()
            except httpx.HTTPError as e:
                err = st.engine.error_for(e)
                st.error(err.kind)
                st.settle(rid, prompt, None)
                return err.response(headers={RID_HEADER: rid})
            finally:
                await resp.aclose()
                st.in_flight -= 1
            result = None
            if resp.status_code == 200:
                with contextlib.suppress(ValueError):
                    result = json.loads(raw)
            if not isinstance(result, dict):
                st.error(f"engine_http_{resp.status_code}")
                st.settle(rid, prompt, None)
                return Response(raw, status_code=resp.status_code, headers=_headers(resp, rid))
            st.settle(rid, prompt, result)
            if chat is None:
                return Response(raw, status_code=200, headers=_headers(resp, rid))
            out = openai_response(result, chat=chat, rid=rid, model=model)
            return JSONResponse(out, headers={RID_HEADER: rid})
        translator = None
        if chat is not None:
            opts = body.get("stream_options")
            include_usage = isinstance(opts, dict) and bool(opts.get("include_usage"))
            translator = StreamTranslator(chat=chat, rid=rid, model=model, include_usage=include_usage)
        return StreamingResponse(
            _relay(st, resp, rid, prompt, translator),
            status_code=200,
            headers=_headers(resp, rid),
            background=BackgroundTask(resp.aclose),
        )

    @app.post("/completion")
    async def completion(request: Request) -> Response:
        """Native completion, passed through; the slot model learns from the answer."""
        return await tracked(request, "/completion", None)

    @app.post("/completions")
    async def completions_alias(request: Request) -> Response:
        """llama-server's alias of ``/completion``."""
        return await tracked(request, "/completion", None)

    @app.post("/v1/completions")
    async def v1_completions(request: Request) -> Response:
        """OpenAI completions, served by native ``/completion``."""
        return await tracked(request, "/v1/completions", False)

    @app.post("/v1/chat/completions")
    async def v1_chat(request: Request) -> Response:
        """OpenAI chat completions, rendered with the configured template."""
        return await tracked(request, "/v1/chat/completions", True)

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        tracker = st.tracker.stats()
        return {
            "engine": config.llama_server_url,
            "index_url": config.index_url,
            "tracking": st.notifier is not None,
            "chat_template_format": config.chat_template_format,
            "uptime_seconds": round(time.time() - st.started, 1),
            "in_flight": st.in_flight,
            "requests": dict(st.requests),
            "errors": dict(st.errors),
            "reuse": {
                "prompt_tokens": tracker["prompt_tokens"],
                "reused_tokens": tracker["reused_tokens"],
                "ratio": tracker["reuse_ratio"],
            },
            "evictions": {
                "reported": st.evictions_reported,
                "by_poll": tracker["evicted_by_poll"],
                "notifier": st.notifier.stats() if st.notifier is not None else None,
            },
            "tracker": {k: v for k, v in tracker.items() if k != "slots"},
            "slots": tracker["slots"],
            "poll": dict(st.poll),
        }

    @app.post("/reset")
    async def reset() -> dict[str, str]:
        """Forget the slot model and counters (llama-server's cache is untouched)."""
        st.tracker.reset()
        st.reset_counts()
        return {"status": "success", "message": "slot model and counters cleared"}

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
            headers=_headers(resp),
            background=BackgroundTask(resp.aclose),
        )

    return app


async def _relay(
    st: ProxyState,
    resp: httpx.Response,
    rid: str,
    prompt: str | list[int],
    translator: StreamTranslator | None,
) -> AsyncIterator[bytes]:
    """Relay a native stream (translated when ``translator``), chunk by chunk
    as it arrives; the slot model is updated from the last event, also when
    the stream breaks off or the client goes away."""
    buf = bytearray()
    last: dict[str, Any] | None = None
    try:
        async for chunk in resp.aiter_raw():
            if translator is None:
                yield chunk
            buf += chunk
            for event in _sse_events(buf):
                if "id_slot" in event or event.get("stop"):
                    last = event
                if translator is not None:
                    out = translator.translate(event)
                    if out:
                        yield out
        if translator is not None:
            yield translator.done()
    except httpx.HTTPError as e:
        err = st.engine.error_for(e)
        st.error(err.kind)
        log.warning("stream from llama-server broke: %s", err.message)
        yield f"data: {json.dumps({'error': {'message': err.message, 'type': err.kind}})}\n\n".encode()
    finally:
        st.in_flight -= 1
        st.settle(rid, prompt, last)


async def _poll_slots(st: ProxyState) -> None:
    """Reconcile the slot model with ``GET /slots`` every interval."""
    interval = st.config.slots_poll_interval
    while True:
        await asyncio.sleep(interval)
        token = st.tracker.poll_token()
        try:
            r = await st.engine.client.get(
                "/slots", timeout=httpx.Timeout(10.0, connect=st.config.connect_timeout)
            )
        except httpx.HTTPError as e:
            st.poll["last_error"] = st.engine.error_for(e).message
            continue
        if r.status_code in (404, 501):
            st.poll["last_error"] = f"GET /slots answered {r.status_code}: polling stopped"
            log.warning("llama-server has no /slots endpoint (HTTP %d): polling stopped", r.status_code)
            return
        try:
            slots = r.json()
        except ValueError:
            slots = None
        if r.status_code != 200 or not isinstance(slots, list):
            st.poll["last_error"] = f"GET /slots answered {r.status_code}"
            continue
        st.poll["polls"] += 1
        st.poll["last_error"] = None
        st.report(st.tracker.reconcile(token, slots))


def main(argv: list[str] | None = None) -> int:
    config = parse_config(argv)
    logging.basicConfig(
        level=logging.INFO,
        filename=config.log_file,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    import uvicorn

    uvicorn.run(create_proxy_app(config), host=config.host, port=config.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
