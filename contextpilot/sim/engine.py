"""A small OpenAI-compatible engine backed by the prefix-cache simulator.

For tests and demos without a GPU: ``/v1/completions`` and
``/v1/chat/completions`` tokenise the prompt (words and punctuation), run
it through :class:`contextpilot.sim.RadixCacheSim` (token-level radix tree,
LRU, optional capacity) and answer with ``usage.prompt_tokens_details.
cached_tokens``, like vLLM and SGLang do. Optional delays make it slow in a
controlled way (per uncached prompt token, per streamed chunk). It records
the request ids it was given (``GET /debug/requests``). With
``--stream-hold`` a stream stops after its first chunk until
``POST /debug/release``: a test then knows, without timing anything, that
a relay which delivered that chunk did not buffer the stream.
``/v1/embeddings`` answers deterministic fake embeddings (a hash of the
text's tokens, unit length) and ``/v1/responses`` a minimal Responses API
(streamed on request), for passthrough tests. ``POST /debug/fail``
``{"status": 503, "count": 2}`` makes the next ``count`` completion,
embedding and responses requests answer that status (to test failover on 5xx).

    python -m contextpilot.sim.engine --port 30000 [--capacity-tokens N]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse

from contextpilot.sim.radix import RadixCacheSim

__all__ = ["create_engine_app", "fake_embedding", "main", "render_chat", "tokenize"]

_TOKEN = re.compile(r"\w+|[^\w\s]")


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text)


def render_chat(messages: list[dict[str, Any]]) -> str:
    """A plain chat template: ``<role>: content`` per message."""
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        out.append(f"<{m.get('role', 'user')}>: {content or ''}\n")
    return "".join(out) + "<assistant>:"


def fake_embedding(text: str, dims: int = 8) -> list[float]:
    """A deterministic unit vector for ``text``: each token adds a
    hash-chosen +-1 to one coordinate. Same text, same vector. O(tokens + dims)."""
    vec = [0.0] * dims
    for tok in tokenize(text) or [""]:
        h = hashlib.blake2b(tok.encode(), digest_size=8).digest()
        vec[int.from_bytes(h[:4], "little") % dims] += 1.0 if h[4] & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vec)) or 1.0
    return [round(x / norm, 6) for x in vec]


def create_engine_app(
    capacity_tokens: float | None = None,
    prefill_ms_per_token: float = 0.0,
    stream_chunks: int = 4,
    stream_chunk_ms: float = 0.0,
    model: str = "sim-engine",
    stream_hold: bool = False,
) -> FastAPI:
    sim = RadixCacheSim(capacity_tokens)
    lock = threading.Lock()
    released = asyncio.Event()  # --stream-hold: set by POST /debug/release, for good
    seen: deque[dict[str, Any]] = deque(maxlen=10_000)
    app = FastAPI(title="contextpilot simulated engine")
    failing = {"status": 0, "count": 0}

    def injected_failure() -> JSONResponse | None:
        with lock:
            if failing["count"] <= 0:
                return None
            failing["count"] -= 1
            status = failing["status"]
        return JSONResponse({"error": {"message": "injected failure", "code": status}}, status_code=status)

    def run(prompt_tokens: list[str]) -> int:
        with lock:
            return sim.serve(prompt_tokens, [1] * len(prompt_tokens))

    async def read_body(request: Request) -> Any:
        """The request's JSON body; HTTP 400 when it is not JSON."""
        try:
            return await request.json()
        except ValueError:
            raise HTTPException(400, "body must be JSON") from None

    async def complete(request: Request, chat: bool) -> Any:
        failed = injected_failure()
        if failed is not None:
            return failed
        body = await read_body(request)
        if chat:
            if not isinstance(body.get("messages"), list):
                raise HTTPException(400, "messages must be a list")
            text = render_chat(body["messages"])
        else:
            prompt = body.get("prompt")
            if isinstance(prompt, list):
                text = " ".join(map(str, prompt))
            elif isinstance(prompt, str):
                text = prompt
            else:
                raise HTTPException(400, "prompt must be a string or a list")
        seen.append(
            {
                "path": request.url.path,
                "rid": body.get("rid"),
                "request_id": body.get("request_id"),
                "x_request_id": request.headers.get("x-request-id"),
                "authorization": request.headers.get("authorization"),
                "prompt_chars": len(text),
                "time": time.time(),
            }
        )
        tokens = tokenize(text)
        cached = run(tokens)
        if prefill_ms_per_token:
            await asyncio.sleep(prefill_ms_per_token * (len(tokens) - cached) / 1000)
        rid = body.get("rid") or uuid.uuid4().hex
        usage = {
            "prompt_tokens": len(tokens),
            "completion_tokens": 1,
            "total_tokens": len(tokens) + 1,
            "prompt_tokens_details": {"cached_tokens": cached},
        }
        kind = "chat.completion" if chat else "text_completion"
        ident = f"{'chatcmpl' if chat else 'cmpl'}-{rid}"
        if body.get("stream"):
            return StreamingResponse(_stream(ident, kind, chat, usage), media_type="text/event-stream")
        choice: dict[str, Any] = {"index": 0, "finish_reason": "length"}
        if chat:
            choice["message"] = {"role": "assistant", "content": "ok"}
        else:
            choice["text"] = "ok"
        return JSONResponse(
            {
                "id": ident,
                "object": kind,
                "created": int(time.time()),
                "model": body.get("model", model),
                "choices": [choice],
                "usage": usage,
            }
        )

    async def _stream(ident: str, kind: str, chat: bool, usage: dict[str, Any]) -> AsyncIterator[bytes]:
        for i in range(stream_chunks):
            if stream_hold and i:
                await released.wait()
            if stream_chunk_ms and i:
                await asyncio.sleep(stream_chunk_ms / 1000)
            delta = {"delta": {"content": f"t{i}"}} if chat else {"text": f"t{i}"}
            chunk = {"id": ident, "object": kind + ".chunk", "choices": [{"index": 0, **delta}]}
            yield f"data: {json.dumps(chunk)}\n\n".encode()
        yield f"data: {json.dumps({'id': ident, 'choices': [], 'usage': usage})}\n\n".encode()
        yield b"data: [DONE]\n\n"

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        return await complete(request, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        return await complete(request, chat=True)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model, "object": "model"}]}

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Any:
        failed = injected_failure()
        if failed is not None:
            return failed
        body = await read_body(request)
        texts = body.get("input") if isinstance(body, dict) else None
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise HTTPException(400, "input must be a string or a non-empty list of strings")
        seen.append(
            {
                "path": request.url.path,
                "authorization": request.headers.get("authorization"),
                "query": request.url.query,
                "time": time.time(),
            }
        )
        dims = body.get("dimensions", 8)
        if not isinstance(dims, int) or not 1 <= dims <= 4096:
            raise HTTPException(400, "dimensions must be an integer in 1..4096")
        data = [
            {"object": "embedding", "index": i, "embedding": fake_embedding(t, dims)}
            for i, t in enumerate(texts)
        ]
        n = sum(len(tokenize(t)) for t in texts)
        return {
            "object": "list",
            "data": data,
            "model": body.get("model", model),
            "usage": {"prompt_tokens": n, "total_tokens": n},
        }

    @app.post("/v1/responses")
    async def responses(request: Request) -> Any:
        """A minimal Responses API: ``input`` text in, ``ok`` out; with
        ``stream`` the text comes as ``stream_chunks`` SSE delta events."""
        failed = injected_failure()
        if failed is not None:
            return failed
        body = await read_body(request)
        text = body.get("input") if isinstance(body, dict) else None
        if not isinstance(text, str):
            raise HTTPException(400, "input must be a string")
        ident = f"resp-{uuid.uuid4().hex}"
        if not body.get("stream"):
            return {"id": ident, "object": "response", "status": "completed", "output_text": "ok"}

        async def events() -> AsyncIterator[bytes]:
            for i in range(stream_chunks):
                if stream_chunk_ms and i:
                    await asyncio.sleep(stream_chunk_ms / 1000)
                delta = {"type": "response.output_text.delta", "delta": f"t{i}"}
                yield f"event: response.output_text.delta\ndata: {json.dumps(delta)}\n\n".encode()
            done = {"type": "response.completed", "response": {"id": ident, "status": "completed"}}
            yield f"event: response.completed\ndata: {json.dumps(done)}\n\n".encode()

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/debug/fail")
    async def fail(request: Request) -> dict[str, int]:
        body = await read_body(request)
        status, count = body.get("status", 503), body.get("count", 1)
        if not isinstance(status, int) or not 400 <= status <= 599 or not isinstance(count, int) or count < 0:
            raise HTTPException(400, "status must be 400..599 and count >= 0")
        with lock:
            failing.update(status=status, count=count)
        return dict(failing)

    @app.get("/debug/requests")
    async def requests() -> dict[str, Any]:
        with lock:
            return {
                "requests": list(seen),
                "hit_ratio": sim.hit_ratio,
                "cached_tokens": sim.hit_tokens,
                "prompt_tokens": sim.total_tokens,
            }

    @app.post("/debug/release")
    async def release() -> dict[str, str]:
        released.set()
        return {"status": "ok"}

    @app.post("/flush_cache")
    async def flush() -> dict[str, str]:
        nonlocal sim
        with lock:
            sim = RadixCacheSim(capacity_tokens)
        return {"status": "ok"}

    return app


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m contextpilot.sim.engine",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=30000)
    ap.add_argument("--capacity-tokens", type=float, default=None)
    ap.add_argument("--prefill-ms-per-token", type=float, default=0.0)
    ap.add_argument("--stream-chunks", type=int, default=4)
    ap.add_argument("--stream-chunk-ms", type=float, default=0.0)
    ap.add_argument(
        "--stream-hold",
        action="store_true",
        help="hold each stream after its first chunk until POST /debug/release",
    )
    args = ap.parse_args(argv)
    import uvicorn

    app = create_engine_app(
        args.capacity_tokens,
        args.prefill_ms_per_token,
        args.stream_chunks,
        args.stream_chunk_ms,
        stream_hold=args.stream_hold,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
