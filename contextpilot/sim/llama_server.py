"""A small stand-in for llama-server's native protocol (``/completion``,
``/slots``), for the llama.cpp proxy's fast tests and its example.

It behaves like llama.cpp's tools/server for what the proxy
(:mod:`contextpilot.llamacpp.proxy`) reads: ``-np N`` slots, a
slot chosen by prompt similarity (LCP / prompt length > 0.1) else by LRU,
``cache_n`` = LCP with the slot's tokens (one less when the whole prompt is
cached), the slot keeps ``cache_n`` tokens and then holds prompt + output;
answers carry ``id_slot``, ``tokens_evaluated``, ``timings``; streams send
``data:`` events, the last with ``stop: true`` (timings on partial events
only with ``timings_per_token``); ``GET /slots`` reports ``id_task``,
``n_prompt_tokens``, ``n_prompt_tokens_cache``; a request arriving while every
slot is busy waits for one (llama-server defers it). Text is tokenised as UTF-8
bytes + 3 (the tiny GGUF's byte vocabulary); answers are at most 8 letters.
With ``--hold`` a stream stops after its first event until
``POST /debug/release``. State: one token list per slot (bounded by
``n_ctx`` plus 8); each request costs O(slots x prompt length). The real
llama-server is exercised by tests/llamacpp/test_llamacpp_real.py.

    python -m contextpilot.sim.llama_server --port P [--slots N] [--delay-ms MS] [--hold]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

__all__ = ["create_llama_server_app", "main"]


def create_llama_server_app(
    n_slots: int = 1, n_ctx: int = 4096, delay_ms: float = 0.0, hold: bool = False
) -> FastAPI:
    """The app: ``n_slots`` slots of ``n_ctx`` tokens; ``delay_ms`` after each
    answer and between streamed events; ``hold``: streams wait after their
    first event until ``POST /debug/release``."""
    app = FastAPI()
    lock = threading.Lock()
    released = asyncio.Event()
    slots: list[dict[str, Any]] = [
        {"tokens": [], "t_last": 0, "task": None, "cache_n": 0, "busy": False} for _ in range(n_slots)
    ]
    counter = {"task": 0, "clock": 0}

    def lcp(a: list[int], b: list[int]) -> int:
        n = 0
        for x, y in zip(a, b):
            if x != y:
                break
            n += 1
        return n

    def pick(tokens: list[int]) -> int | None:
        best: int | None = None
        best_sim = 0.0
        for i, s in enumerate(slots):
            if s["busy"] or not s["tokens"]:
                continue
            sim = lcp(s["tokens"], tokens) / len(tokens)
            if sim > best_sim and sim > 0.1:
                best, best_sim = i, sim
        if best is None:
            t_last = 0
            for i, s in enumerate(slots):
                if not s["busy"] and (best is None or s["t_last"] <= t_last):
                    best, t_last = i, s["t_last"]
        return best  # None: every slot busy (the caller waits, as llama-server defers the task)

    @app.post("/completion")
    async def completion(request: Request) -> Any:
        body = await request.json()
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            tokens = [3 + b for b in prompt.encode()]
        elif isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
            tokens = list(prompt)
        else:
            return JSONResponse(
                {"error": {"code": 400, "message": "bad prompt", "type": "invalid_request_error"}}, 400
            )
        if len(tokens) >= n_ctx:
            return JSONResponse(
                {"error": {"code": 400, "message": "exceeds context", "type": "exceed_context_size_error"}},
                400,
            )
        n_predict = body.get("n_predict", 4)
        n_predict = 4 if n_predict is None or n_predict < 0 else min(n_predict, 8)
        while True:
            with lock:
                picked = pick(tokens)
                if picked is not None:
                    counter["task"] += 1
                    counter["clock"] += 1
                    i = picked
                    s = slots[i]
                    break
            await asyncio.sleep(0.002)
        with lock:
            cache_n = lcp(s["tokens"], tokens)
            if cache_n == len(tokens):
                cache_n -= 1  # at least one token is evaluated
            out = [3 + ord("a") + k % 26 for k in range(n_predict)]
            s.update(tokens=tokens + out, t_last=counter["clock"], task=counter["task"], cache_n=cache_n)
            s["busy"] = True
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        timings = {
            "cache_n": cache_n,
            "prompt_n": len(tokens) - cache_n,
            "prompt_ms": 1.0,
            "predicted_n": n_predict,
        }
        text = "".join(chr(t - 3) for t in out)
        final: dict[str, Any] = {
            "index": 0,
            "content": "" if body.get("stream") else text,
            "tokens": [],
            "id_slot": i,
            "stop": True,
            "model": "fake",
            "tokens_predicted": n_predict,
            "tokens_evaluated": len(tokens),
            "prompt": "",
            "truncated": False,
            "stop_type": "limit",
            "stopping_word": "",
            "tokens_cached": len(tokens) + n_predict,
            "timings": timings,
        }
        with lock:
            s["busy"] = False
        if not body.get("stream"):
            return JSONResponse(final)

        async def events() -> AsyncIterator[bytes]:
            for n, ch in enumerate(text):
                if hold and n:
                    await released.wait()
                part = {"index": 0, "content": ch, "tokens": [], "stop": False, "id_slot": i}
                part.update(tokens_predicted=1, tokens_evaluated=len(tokens))
                if body.get("timings_per_token"):
                    part["timings"] = timings
                yield f"data: {json.dumps(part)}\n\n".encode()
                if delay_ms:
                    await asyncio.sleep(delay_ms / 1000)
            yield f"data: {json.dumps(final)}\n\n".encode()

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.get("/slots")
    async def get_slots() -> list[dict[str, Any]]:
        with lock:
            out = []
            for i, s in enumerate(slots):
                item: dict[str, Any] = {"id": i, "n_ctx": n_ctx, "is_processing": s["busy"]}
                if s["task"] is not None:
                    # like llama-server: a released slot's stats are reset, so an
                    # idle slot reports no cached count
                    item.update(
                        id_task=s["task"],
                        n_prompt_tokens=len(s["tokens"]),
                        n_prompt_tokens_cache=s["cache_n"] if s["busy"] else 0,
                    )
                out.append(item)
            return out

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/debug/release")
    async def release() -> dict[str, str]:
        released.set()
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "fake", "object": "model", "created": int(time.time())}]}

    return app


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m contextpilot.sim.llama_server",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--slots", type=int, default=1)
    ap.add_argument("--delay-ms", type=float, default=0.0)
    ap.add_argument(
        "--hold", action="store_true", help="streams wait after their first event for POST /debug/release"
    )
    args = ap.parse_args(argv)
    import uvicorn

    uvicorn.run(
        create_llama_server_app(args.slots, delay_ms=args.delay_ms, hold=args.hold),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
