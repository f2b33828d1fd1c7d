"""OpenAI-compatible proxy (``/v1/completions``, ``/v1/chat/completions``)
and ``/warm``.

Each forwarded request carries a request id the engine echoes in its
eviction notices: the client's ``rid``/``request_id`` if given (normalised),
else a fresh ``req-…``; it is set as ``rid`` (SGLang), ``request_id`` and
the ``X-Request-Id`` header (vLLM), and returned in the
``X-ContextPilot-Request-Id`` response header. The engine's response body
is returned unchanged. The request is recorded in the live index (message
contents as blocks) unless the id is already live (e.g. from ``/reorder``),
in which case it is only marked as used.

With several replicas each request goes where the router says
(:mod:`contextpilot.server.router`): a request id already live on a replica
(planned by ``/reorder``, or an earlier turn) stays there (``sticky``);
otherwise its blocks are matched against every replica's index. It is
recorded in the chosen replica's index, counted in flight there until the
engine's answer (or stream) ends, and the replica is named in the
``X-ContextPilot-Replica`` response header.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from contextpilot.core.dedup import dedup_passages
from contextpilot.core.ids import new_request_id, normalize_request_id
from contextpilot.core.validation import ContextError, LimitError, validate_contexts
from contextpilot.server.dispatch import route, send_routed
from contextpilot.server.engine_client import EngineClient, EngineError
from contextpilot.server.limits import Limits, unprocessable
from contextpilot.server.models import (
    ChatCompletionBody,
    CompletionBody,
    WarmFailure,
    WarmRequest,
    WarmResponse,
)
from contextpilot.server.replicas import Replica
from contextpilot.server.router import Lease
from contextpilot.server.state import ServerState, get_state
from contextpilot.server.usage import engine_usage

__all__ = ["router"]

log = logging.getLogger("contextpilot.server")
router = APIRouter()

RID_HEADER = "X-ContextPilot-Request-Id"


def _text(content: Any) -> str | None:
    """Text of a message content (string, or OpenAI content parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return "".join(parts)
    return None


def _blocks(body: dict[str, Any], chat: bool) -> list[str]:
    """What the prompt is made of, as blocks for the index."""
    if chat:
        out = []
        for m in body.get("messages") or []:
            if isinstance(m, dict):
                text = _text(m.get("content"))
                if text is not None:
                    out.append(f"{m.get('role', 'user')}: {text}")
        return out
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        return [json.dumps(prompt)]  # one pre-tokenised prompt
    return []  # batched prompts: forwarded, not recorded


def _dedup_messages(body: dict[str, Any], modulus: int) -> int:
    """Point repeated passages in later messages back to the first copy;
    system messages are never shortened. Returns characters saved."""
    msgs = [
        m for m in body.get("messages") or [] if isinstance(m, dict) and isinstance(m.get("content"), str)
    ]
    if len(msgs) < 2:
        return 0
    rep = dedup_passages(
        [m["content"] for m in msgs],
        protected=[i for i, m in enumerate(msgs) if m.get("role") == "system"],
        modulus=modulus,
    )
    for m, text in zip(msgs, rep.texts):
        m["content"] = text
    return rep.chars_saved


async def _read_json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
        raise HTTPException(400, detail="request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise HTTPException(400, detail="request body must be a JSON object")
    return body


async def _send(
    st: ServerState,
    replica: Replica,
    lease: Lease,
    path: str,
    body: dict[str, Any],
    headers: dict[str, str] | None,
    stream: bool,
    extra: dict[str, str],
    blocks: list[str],
    rid: str | None,
) -> Response:
    async def attempt(client: EngineClient) -> tuple[Response, bytes | None]:
        return await client.post(path, body, headers=headers, stream=stream)

    out = await send_routed(st, replica, lease, attempt, safe=True, blocks=blocks, rid=rid, extra=extra)
    if out.raw is not None and out.replica is not None and not st.config.passthrough:
        _account_usage(st, out.raw, out.replica.name)
    return out.response


def _check_shape(body: dict[str, Any], model: type[BaseModel]) -> None:
    """422 naming the field when the body is not an OpenAI request of its
    kind (the body itself is forwarded unchanged)."""
    try:
        model.model_validate(body)
    except ValidationError as e:
        err = e.errors(include_url=False, include_context=False, include_input=False)[0]
        raise unprocessable(list(err["loc"]), err["msg"], err["type"]) from None


async def _forward(request: Request, st: ServerState, path: str, chat: bool) -> Response:
    body = await _read_json(request)
    _check_shape(body, ChatCompletionBody if chat else CompletionBody)
    stream = bool(body.get("stream"))
    endpoint = path.rsplit("/", 1)[-1]
    st.metrics.proxied.labels(endpoint).inc()
    if st.config.passthrough:
        replica, lease = await run_in_threadpool(route, st, [], None)
        return await _send(st, replica, lease, path, body, None, stream, {}, [], None)
    given = body.get("rid") or body.get("request_id")
    rid = normalize_request_id(str(given)) if given else new_request_id()
    body["rid"] = rid
    body["request_id"] = rid
    headers = {"X-Request-Id": rid}
    saved = _dedup_messages(body, st.config.chunk_modulus) if chat and st.config.dedup_passages else 0
    blocks = _blocks(body, chat)
    replica, lease = await run_in_threadpool(route, st, blocks, rid)
    extra = {RID_HEADER: rid}
    if saved:
        extra["X-ContextPilot-Dedup-Chars-Saved"] = str(saved)
    return await _send(st, replica, lease, path, body, headers, stream, extra, blocks, rid)


def _account_usage(st: ServerState, raw: bytes, replica: str) -> None:
    try:
        usage = json.loads(raw).get("usage") or {}
        prompt = int(usage.get("prompt_tokens") or 0)
        cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    except (ValueError, AttributeError, TypeError):
        return  # not JSON (or not ours to read): the body still passes through
    st.metrics.prompt_tokens.inc(prompt)
    st.metrics.cached_tokens.inc(cached)
    st.metrics.replica_prompt_tokens.labels(replica).inc(prompt)
    st.metrics.replica_cached_tokens.labels(replica).inc(cached)


@router.post("/v1/completions")
async def completions(request: Request, st: ServerState = Depends(get_state)) -> Response:
    """Forwarded to the engine's ``/v1/completions`` (see module docstring)."""
    return await _forward(request, st, "/v1/completions", chat=False)


@router.post("/v1/chat/completions")
async def chat_completions(request: Request, st: ServerState = Depends(get_state)) -> Response:
    """Forwarded to the engine's ``/v1/chat/completions`` (see module docstring)."""
    return await _forward(request, st, "/v1/chat/completions", chat=True)


@router.post(
    "/warm",
    response_model=WarmResponse,
    response_model_exclude_none=True,
    responses={502: {"model": WarmFailure, "description": "nothing was warmed (the report as detail)"}},
)
async def warm(req: WarmRequest, st: ServerState = Depends(get_state)) -> WarmResponse:
    """Pre-fill the engine's cache with hot prefixes (system prompts, popular
    blocks): each is sent with ``max_tokens: 1``, ``concurrency`` at a time.
    With several replicas: to the one named by ``replica``, else to every
    replica (an item succeeds when it succeeded on all of them; per-replica
    results and ids are under ``replicas``).

    ``warmed`` says what each warmed item left in the cache, from the
    engine's usage figures: ``prompt_tokens`` (now cached) and
    ``cached_before`` (already cached; ``None`` when the engine does not
    report it); ``warmed_tokens`` sums the prompt tokens (first replica).
    502 with the same report as ``detail`` when nothing was warmed."""
    limits: Limits = st.limits
    limits.items(req.prefixes, ["prefixes"])
    for i, p in enumerate(req.prefixes or []):
        limits.text(p, ["prefixes", i])
    if req.blocks is not None:  # the limits, in the core's one validation walk
        try:
            validate_contexts(req.blocks, allow_empty_context=True, copy=False, limits=limits.context_limits)
        except LimitError as e:
            raise limits.error(e, "blocks") from None
        except ContextError as e:
            raise unprocessable(["blocks", *e.path], str(e)) from None
    items: list[tuple[str, list[str]]] = [(p, [p]) for p in req.prefixes or []]
    items += [("\n\n".join(b), list(b)) for b in req.blocks or []]
    if not items:
        raise HTTPException(
            422,
            detail=[{"type": "value_error", "loc": ["body", "prefixes"], "msg": "give prefixes or blocks"}],
        )
    if req.replica is not None:
        one_replica = st.replicas.find(req.replica)
        if one_replica is None:
            raise HTTPException(
                422,
                detail=[
                    {
                        "type": "value_error",
                        "loc": ["body", "replica"],
                        "msg": f"no replica named {req.replica!r}; known: {', '.join(st.replicas.names())}",
                    }
                ],
            )
        targets = [one_replica]
    else:
        targets = list(st.replicas)
    sem = asyncio.Semaphore(req.concurrency)
    ok: dict[str, list[int]] = {r.name: [] for r in targets}
    failed: dict[str, list[dict[str, Any]]] = {r.name: [] for r in targets}
    rids: dict[str, list[str | None]] = {r.name: [None] * len(items) for r in targets}
    tokens: dict[str, list[dict[str, Any] | None]] = {r.name: [None] * len(items) for r in targets}

    async def one(replica: Replica, i: int, text: str, blocks: list[str]) -> None:
        rid = new_request_id()
        body: dict[str, Any] = {
            "prompt": text,
            "max_tokens": 1,
            "temperature": 0,
            "rid": rid,
            "request_id": rid,
        }
        if req.model:
            body["model"] = req.model
        async with sem:
            try:
                resp, raw = await replica.proxy.post("/v1/completions", body, headers={"X-Request-Id": rid})
            except EngineError as e:
                st.metrics.engine_errors.labels(e.kind).inc()
                st.metrics.replica_errors.labels(replica.name, e.kind).inc()
                failed[replica.name].append({"index": i, "status": e.status, "error": e.message})
                return
        if resp.status_code >= 400:
            failed[replica.name].append(
                {"index": i, "status": resp.status_code, "error": resp.body[:500].decode(errors="replace")}
            )
            return
        await run_in_threadpool(replica.pilot.record, blocks, rid)
        _, prompt, cached = engine_usage(raw)
        ok[replica.name].append(i)
        rids[replica.name][i] = rid
        tokens[replica.name][i] = {"index": i, "prompt_tokens": prompt, "cached_before": cached}

    await asyncio.gather(*(one(r, i, t, b) for r in targets for i, (t, b) in enumerate(items)))
    good = set(range(len(items)))
    for r in targets:
        good &= set(ok[r.name])
    bad = [f for r in targets for f in failed[r.name]]
    status = "success" if not bad else ("partial" if any(ok.values()) else "failed")
    first = targets[0].name
    per = None
    if st.replicas.multi:
        per = {
            r.name: {
                "succeeded": sorted(ok[r.name]),
                "failed": sorted(failed[r.name], key=lambda f: f["index"]),
                "request_ids": rids[r.name],
                "warmed": [t for t in tokens[r.name] if t is not None],
            }
            for r in targets
        }
    warmed = [t for t in tokens[first] if t is not None]
    out = WarmResponse(
        status=status,
        warmed=warmed,
        warmed_tokens=sum(t["prompt_tokens"] or 0 for t in warmed),
        succeeded=sorted(good),
        failed=sorted(failed[first], key=lambda f: f["index"])
        if len(targets) == 1
        else sorted(
            ({**f, "replica": r.name} for r in targets for f in failed[r.name]), key=lambda f: f["index"]
        ),
        request_ids=rids[first],
        replicas=per,
    )
    if not any(ok.values()):  # nothing reached any engine's cache
        raise HTTPException(502, detail=out.model_dump(exclude_none=True))
    return out
