"""Request forwarding and slot accounting for the llama.cpp proxy.

:class:`Forwarder` takes a parsed completion request, sends it to
llama-server's native ``/completion``, answers the client (native bytes
passed through, or translated to OpenAI form) and, when the answer ends,
hands its last native event to :meth:`ProxyState.finish` (slot model,
latency window, request log). Streams are relayed chunk by chunk.

Batches (``prompt`` a list of prompts, non-streamed) are split: one native
request per prompt, sent concurrently, so llama-server schedules each on a
slot as it does its own multi-prompt tasks, and each is tracked under its own
request id (``rid`` a list of ids, one per prompt; or one id ``R`` giving
``R-0``, ``R-1``, ...). The native answer is a JSON array of the per-prompt
answers, each with its ``index`` (llama-server's own shape for a batch); the
OpenAI answer has one choice per prompt and summed usage.

Invariants: every request that reaches :meth:`Forwarder.completion` calls
``finish`` exactly once per prompt (also on engine errors and broken
streams); ``in_flight`` is back where it was when the answer has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from contextpilot.core.ids import new_request_id, normalize_request_id
from contextpilot.llamacpp.state import ProxyState
from contextpilot.llamacpp.translate import (
    FieldError,
    StreamTranslator,
    completion_prompts,
    native_request,
    openai_response,
)
from contextpilot.server.engine_client import HOP_BY_HOP, EngineError

__all__ = ["RID_HEADER", "Forwarder", "engine_headers", "read_json"]

log = logging.getLogger("contextpilot.llamacpp")

RID_HEADER = "X-ContextPilot-Request-Id"
#: an SSE event larger than this is not parsed (still relayed)
MAX_EVENT_BYTES = 8 * 2**20


def _one_id(given: Any, loc: list[str | int]) -> str:
    if isinstance(given, bool) or not isinstance(given, str | int):
        raise FieldError(loc, "must be a string")
    rid = normalize_request_id(str(given))
    if not rid or len(rid) > 256:
        raise FieldError(loc, "must be a non-empty string of at most 256 characters")
    return rid


def request_ids(body: dict[str, Any], request: Request, n: int) -> list[str]:
    """``n`` request ids: ``rid`` / ``request_id`` in the body (popped), else
    ``X-Request-Id``, else a fresh one; for a batch (``n > 1``) either a list
    of ``n`` ids or one id suffixed ``-0 .. -(n-1)``."""
    given = body.pop("rid", None)
    alt = body.pop("request_id", None)
    given = given if given is not None else alt
    if given is None:
        given = request.headers.get("x-request-id")
    if isinstance(given, list):
        if len(given) != n:
            raise FieldError(["rid"], f"a list of request ids must have one per prompt ({n})")
        rids = [_one_id(g, ["rid", i]) for i, g in enumerate(given)]
        if len(set(rids)) != n:
            raise FieldError(["rid"], "request ids in a batch must be distinct")
        return rids
    rid = new_request_id() if given is None or given == "" else _one_id(given, ["rid"])
    return [rid] if n == 1 else [f"{rid}-{i}" for i in range(n)]


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The request body as a JSON object (413 over ``limit`` bytes, 422 otherwise bad)."""
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


def sse_events(buf: bytearray) -> list[dict[str, Any]]:
    """Pop the complete ``data: {...}`` events from ``buf`` (pings and
    non-JSON lines are skipped)."""
    out: list[dict[str, Any]] = []
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


def engine_headers(resp: httpx.Response, rid: str | None = None) -> dict[str, str]:
    """llama-server's response headers minus hop-by-hop ones, plus our request id."""
    out = {k: v for k, v in resp.headers.items() if k.lower() not in HOP_BY_HOP}
    if rid:
        out[RID_HEADER] = rid
    return out


class _Answer:
    """One finished non-streamed native answer."""

    __slots__ = ("error", "raw", "resp", "result")

    def __init__(
        self,
        raw: bytes = b"",
        resp: httpx.Response | None = None,
        result: dict[str, Any] | None = None,
        error: EngineError | None = None,
    ) -> None:
        self.raw, self.resp, self.result, self.error = raw, resp, result, error


class Forwarder:
    """Sends completion requests to llama-server and accounts for their slots."""

    def __init__(self, st: ProxyState) -> None:
        self.st = st

    async def send(self, path: str, body: dict[str, Any]) -> httpx.Response:
        """POST ``body`` to llama-server, response streamed (EngineError: 502/503/504)."""
        client = self.st.engine.client
        req = client.build_request(
            "POST", path, content=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        try:
            return await client.send(req, stream=True)
        except httpx.HTTPError as e:
            raise self.st.engine.error_for(e) from None

    async def completion(self, request: Request, label: str, chat: bool | None) -> Response:
        """Serve one completion request. ``chat``: True for OpenAI chat, False
        for OpenAI completions, None for native passthrough."""
        st = self.st
        started = time.monotonic()
        st.requests[label] += 1
        body = await read_json(request, st.config.max_body_bytes)
        prompts = [None] if chat else completion_prompts(body.get("prompt"))
        rids = request_ids(body, request, len(prompts))
        if len(prompts) > 1:
            if body.get("stream"):
                raise FieldError(["stream"], "a batch of prompts cannot be streamed (send them one by one)")
            return await self._batch(body, rids, prompts, label, chat, started)
        rid = rids[0]
        model = body.get("model") if isinstance(body.get("model"), str) else None
        if chat is None:
            prompt: str | list[int] = prompts[0]  # type: ignore[assignment]
            stream = bool(body.get("stream"))
            native = body
        else:
            native, prompt = native_request(body, chat=chat, fmt=st.config.chat_template_format)
            stream = native["stream"]
            if stream:
                native["timings_per_token"] = True  # a broken-off stream still tells its slot and cache_n
        if not stream:
            ans = await self._run(native, rid, prompt, label, started)
            if ans.error is not None:
                return ans.error.response(headers={RID_HEADER: rid})
            assert ans.resp is not None
            if ans.result is None:
                return Response(
                    ans.raw, status_code=ans.resp.status_code, headers=engine_headers(ans.resp, rid)
                )
            if chat is None:
                return Response(ans.raw, status_code=200, headers=engine_headers(ans.resp, rid))
            out = openai_response(ans.result, chat=chat, rid=rid, model=model)
            return JSONResponse(out, headers={RID_HEADER: rid})
        resp = await self._open(native, rid, prompt, label, started)
        if isinstance(resp, EngineError):
            return resp.response(headers={RID_HEADER: rid})
        if resp.status_code != 200:
            return await self._refused_stream(resp, rid, prompt, label, started)
        translator = None
        if chat is not None:
            opts = body.get("stream_options")
            include_usage = isinstance(opts, dict) and bool(opts.get("include_usage"))
            translator = StreamTranslator(chat=chat, rid=rid, model=model, include_usage=include_usage)
        return StreamingResponse(
            self._relay(resp, rid, prompt, label, started, translator),
            status_code=200,
            headers=engine_headers(resp, rid),
            background=BackgroundTask(resp.aclose),
        )

    async def _open(
        self, native: dict[str, Any], rid: str, prompt: str | list[int], label: str, started: float
    ) -> httpx.Response | EngineError:
        """Send one native request, counted in flight; an engine that cannot be
        reached is accounted for here (in-flight released, error and request
        logged) and returned as the error."""
        st = self.st
        st.in_flight += 1
        try:
            return await self.send("/completion", native)
        except EngineError as e:
            st.in_flight -= 1
            self._failed(e.kind, e.status, rid, prompt, label, started)
            return e

    def _failed(
        self, kind: str, status: int, rid: str, prompt: str | list[int], label: str, started: float
    ) -> None:
        """Account for a request that got no usable answer: the error counted, the request logged."""
        self.st.error(kind)
        self.st.finish(rid, label, prompt, None, started=started, status=status)

    async def _read(
        self, resp: httpx.Response, rid: str, prompt: str | list[int], label: str, started: float
    ) -> bytes | EngineError:
        """The whole body of ``resp``, which is then closed and no longer in
        flight; a read that fails is accounted for and returned as the error."""
        try:
            return await resp.aread()
        except httpx.HTTPError as e:
            err = self.st.engine.error_for(e)
            self._failed(err.kind, err.status, rid, prompt, label, started)
            return err
        finally:
            await resp.aclose()
            self.st.in_flight -= 1

    async def _refused_stream(
        self, resp: httpx.Response, rid: str, prompt: str | list[int], label: str, started: float
    ) -> Response:
        raw = await self._read(resp, rid, prompt, label, started)
        if isinstance(raw, EngineError):
            return raw.response(headers={RID_HEADER: rid})
        self._failed(f"engine_http_{resp.status_code}", resp.status_code, rid, prompt, label, started)
        return Response(raw, status_code=resp.status_code, headers=engine_headers(resp, rid))

    async def _run(
        self, native: dict[str, Any], rid: str, prompt: str | list[int], label: str, started: float
    ) -> _Answer:
        """One non-streamed native request, read whole and accounted for."""
        st = self.st
        resp = await self._open(native, rid, prompt, label, started)
        if isinstance(resp, EngineError):
            return _Answer(error=resp)
        raw = await self._read(resp, rid, prompt, label, started)
        if isinstance(raw, EngineError):
            return _Answer(error=raw)
        result = None
        if resp.status_code == 200:
            with contextlib.suppress(ValueError):
                result = json.loads(raw)
        if not isinstance(result, dict):
            self._failed(f"engine_http_{resp.status_code}", resp.status_code, rid, prompt, label, started)
            return _Answer(raw, resp)
        st.finish(rid, label, prompt, result, started=started, status=200)
        return _Answer(raw, resp, result)

    async def _batch(
        self,
        body: dict[str, Any],
        rids: list[str],
        prompts: list[Any],
        label: str,
        chat: bool | None,
        started: float,
    ) -> Response:
        """A batch of prompts: one native request each, concurrently."""
        natives = []
        for p in prompts:
            sub = {**body, "prompt": p}
            natives.append(
                sub
                if chat is None
                else native_request(sub, chat=False, fmt=self.st.config.chat_template_format)[0]
            )
        answers = await asyncio.gather(
            *(self._run(n, r, p, label, started) for n, r, p in zip(natives, rids, prompts, strict=True))
        )
        headers = {RID_HEADER: ",".join(rids)}
        for ans in answers:  # first failure answers for the batch (every prompt was accounted for)
            if ans.error is not None:
                return ans.error.response(headers=headers)
            if ans.result is None:
                assert ans.resp is not None
                return Response(ans.raw, status_code=ans.resp.status_code, headers=headers)
        results: list[dict[str, Any]] = [a.result for a in answers if a.result is not None]
        if chat is None:
            return JSONResponse([{**r, "index": i} for i, r in enumerate(results)], headers=headers)
        model = body.get("model") if isinstance(body.get("model"), str) else None
        outs = [
            openai_response(r, chat=False, rid=rid, model=model) for r, rid in zip(results, rids, strict=True)
        ]
        merged = outs[0]
        merged["choices"] = [{**o["choices"][0], "index": i} for i, o in enumerate(outs)]
        usage = {
            k: sum(o["usage"][k] for o in outs)
            for k in ("prompt_tokens", "completion_tokens", "total_tokens")
        }
        usage["prompt_tokens_details"] = {
            "cached_tokens": sum(o["usage"]["prompt_tokens_details"]["cached_tokens"] for o in outs)
        }
        merged["usage"] = usage
        merged.pop("timings", None)
        return JSONResponse(merged, headers=headers)

    async def _relay(
        self,
        resp: httpx.Response,
        rid: str,
        prompt: str | list[int],
        label: str,
        started: float,
        translator: StreamTranslator | None,
    ) -> AsyncIterator[bytes]:
        """Relay a native stream (translated when ``translator``), chunk by chunk
        as it arrives; the slot model is updated from the last event, also when
        the stream breaks off or the client goes away."""
        st = self.st
        buf = bytearray()
        last: dict[str, Any] | None = None
        status: int | str = "stream_broken"
        try:
            async for chunk in resp.aiter_raw():
                if translator is None:
                    yield chunk
                buf += chunk
                for event in sse_events(buf):
                    if "id_slot" in event or event.get("stop"):
                        last = event
                    if translator is not None:
                        out = translator.translate(event)
                        if out:
                            yield out
            if translator is not None:
                yield translator.done()
            status = 200
        except httpx.HTTPError as e:
            err = st.engine.error_for(e)
            st.error(err.kind)
            log.warning("stream from llama-server broke: %s", err.message)
            yield f"data: {json.dumps({'error': {'message': err.message, 'type': err.kind}})}\n\n".encode()
        finally:
            st.in_flight -= 1
            st.finish(rid, label, prompt, last, started=started, status=status)
