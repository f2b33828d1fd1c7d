"""Chat sessions over HTTP (``/chat/sessions``): multi-turn conversations
whose history the server keeps.

Not to be confused with ``GET /sessions`` and ``DELETE /sessions/{id}``
(:mod:`contextpilot.server.api_index`): those list and forget the *dedup
conversations* of ``/reorder`` and ``/deduplicate`` (which blocks a
``conversation_id`` has sent), and hold no history. A chat session here
holds its whole history, builds each turn's prompt from it and sends the
prompt to the engine itself; its dedup conversation (``chat-<hex>``) also
shows up in ``GET /sessions``.

* ``POST /chat/sessions``: create one (system prompt, ``max_turns``); its
  system prompt is sent to the engine once (``max_tokens: 1``) so its
  prefix is cached before the first turn; 502 if that fails (the new
  session is then dropped again).
* ``POST /chat/sessions/{id}/turns``: one turn (documents + question). The
  prompt is the whole history plus this turn (documents the history holds
  become short hints), sent to the first replica's ``/v1/chat/completions``
  under the request id the live index recorded it with, so eviction
  notices reach it; the answer is appended to the history.
* ``GET /chat/sessions``, ``GET /chat/sessions/{id}`` (with history),
  ``DELETE /chat/sessions/{id}``: 404 for an id that is not live.

The history store is the pilot's :class:`~contextpilot.core.chat.ChatStore`
(the one :meth:`ContextPilot.chat` uses): bounded by its session cap (least
recently used dropped) and idle TTL (expired on every listing and by the
server's cleanup task), saved and restored with ``--state-file``. Sessions
belong to the first replica's pilot; their turns go to that replica.

Turns of one session are serialised (a fixed pool of 64 locks, picked by
the id's hash: bounded, never cleaned); different sessions run in parallel.
If the engine fails, the turn's question stays pending (``pending: true``)
and the next turn follows it (the history then holds two user messages in
a row, as the engine saw them).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import zlib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path
from starlette.concurrency import run_in_threadpool

from contextpilot.core.ids import new_request_id
from contextpilot.server.engine_client import EngineError
from contextpilot.server.limits import unprocessable
from contextpilot.server.models import ErrorBody
from contextpilot.server.session_models import (
    SESSION_ID_PATTERN,
    ChatSessionDetail,
    ChatSessionInfo,
    ChatSessionList,
    ChatTurn,
    ChatTurnResponse,
    CreateChatSession,
    CreateChatSessionResponse,
    DeletedChatSession,
    EngineFailure,
    WarmedPrefix,
)
from contextpilot.server.state import ServerState, get_state
from contextpilot.server.usage import engine_usage

__all__ = ["router"]

log = logging.getLogger("contextpilot.server")
router = APIRouter(prefix="/chat/sessions", tags=["chat sessions"])

_NOT_LIVE = {404: {"model": ErrorBody, "description": "no live chat session of this id"}}
_ENGINE_FAILED = {502: {"model": EngineFailure, "description": "the engine failed (status and message)"}}
_LOCKS = [asyncio.Lock() for _ in range(64)]
SessionId = Annotated[str, Path(min_length=1, max_length=256, pattern=SESSION_ID_PATTERN)]


def _lock(session_id: str) -> asyncio.Lock:
    return _LOCKS[zlib.crc32(session_id.encode()) % len(_LOCKS)]


def _count(st: ServerState, prompt: int | None, cached: int | None) -> None:
    name = st.replicas.primary.name
    st.metrics.replica_proxied.labels(name).inc()
    st.metrics.prompt_tokens.inc(prompt or 0)
    st.metrics.cached_tokens.inc(cached or 0)
    st.metrics.replica_prompt_tokens.labels(name).inc(prompt or 0)
    st.metrics.replica_cached_tokens.labels(name).inc(cached or 0)


async def _engine_chat(
    st: ServerState, body: dict[str, Any], rid: str
) -> tuple[dict[str, Any], int | None, int | None]:
    """Send one chat completion to the first replica; 502 (engine's status
    and message in ``detail``) when it fails or answers with an error."""
    body = {**body, "rid": rid, "request_id": rid}
    replica = st.replicas.primary
    try:
        resp, raw = await replica.proxy.post("/v1/chat/completions", body, headers={"X-Request-Id": rid})
    except EngineError as e:
        st.metrics.engine_errors.labels(e.kind).inc()
        st.metrics.replica_errors.labels(replica.name, e.kind).inc()
        raise HTTPException(502, detail={"engine_status": e.status, "error": e.message}) from None
    if resp.status_code >= 400:
        text = (raw or b"")[:500].decode(errors="replace")
        raise HTTPException(502, detail={"engine_status": resp.status_code, "error": text})
    payload, prompt, cached = engine_usage(raw)
    if payload is None:
        raise HTTPException(502, detail={"engine_status": resp.status_code, "error": "answer is not JSON"})
    _count(st, prompt, cached)
    return payload, prompt, cached


def _info(st: ServerState, session_id: str) -> dict[str, Any] | None:
    return st.pilot.chats.describe(session_id)


def _live_or_404(st: ServerState, session_id: str) -> dict[str, Any]:
    info = _info(st, session_id)
    if info is None:
        raise HTTPException(
            404, detail=f"no live chat session {session_id!r} (never created, deleted or expired)"
        )
    return info


@router.post(
    "",
    response_model=CreateChatSessionResponse,
    response_model_exclude_none=True,
    responses={
        409: {"model": ErrorBody, "description": "the id is live with other settings"},
        **_ENGINE_FAILED,
    },
)
async def create_session(
    req: CreateChatSession, st: ServerState = Depends(get_state)
) -> CreateChatSessionResponse:
    """Create a chat session (or reuse a live one with the same settings;
    409 if its settings differ) and warm its system prompt on the engine."""
    sid = req.session_id or f"cs-{uuid.uuid4().hex}"
    async with _lock(sid):
        existed = _info(st, sid) is not None
        try:
            session = st.pilot.chat(sid, system_instruction=req.system_prompt, max_turns=req.max_turns)
        except ValueError as e:
            raise HTTPException(409, detail=str(e)) from None
        warmed = None
        if req.warm and not existed and session.system_instruction:
            rid = new_request_id()
            body: dict[str, Any] = {
                "messages": [{"role": "system", "content": session.system_instruction}],
                "max_tokens": 1,
                "temperature": 0,
            }
            if req.model:
                body["model"] = req.model
            try:
                _, prompt, cached = await _engine_chat(st, body, rid)
            except HTTPException:
                st.pilot.chats.end(sid)
                raise
            warmed = WarmedPrefix(request_id=rid, prompt_tokens=prompt, cached_tokens=cached)
        info = _info(st, sid)
        assert info is not None
    return CreateChatSessionResponse(
        session=ChatSessionInfo(**info),
        created=not existed,
        system_prompt=session.system_instruction,
        max_turns=session.max_turns,
        warmed=warmed,
    )


@router.get("", response_model=ChatSessionList)
async def list_sessions(st: ServerState = Depends(get_state)) -> ChatSessionList:
    """The live chat sessions (idle ones past the TTL are dropped first)."""
    infos = await run_in_threadpool(st.pilot.chat_sessions)
    return ChatSessionList(count=len(infos), sessions=[ChatSessionInfo(**i) for i in infos])


@router.get("/{session_id}", response_model=ChatSessionDetail, responses=_NOT_LIVE)
async def get_session(session_id: SessionId, st: ServerState = Depends(get_state)) -> ChatSessionDetail:
    info = _live_or_404(st, session_id)
    session = st.pilot.chat(session_id)
    return ChatSessionDetail(
        **info,
        system_prompt=session.system_instruction,
        max_turns=session.max_turns,
        history=session.history,
    )


@router.delete("/{session_id}", response_model=DeletedChatSession, responses=_NOT_LIVE)
async def delete_session(session_id: SessionId, st: ServerState = Depends(get_state)) -> DeletedChatSession:
    """Forget the session: history and dedup conversation."""
    async with _lock(session_id):
        if not st.pilot.chats.end(session_id):
            raise HTTPException(404, detail=f"no live chat session {session_id!r}")
    return DeletedChatSession(session_id=session_id)


@router.post(
    "/{session_id}/turns",
    response_model=ChatTurnResponse,
    response_model_exclude_none=True,
    responses={**_NOT_LIVE, **_ENGINE_FAILED},
)
async def turn(
    req: ChatTurn, session_id: SessionId, st: ServerState = Depends(get_state)
) -> ChatTurnResponse:
    """One turn: the whole history plus this turn's documents and question
    go to the engine; its answer joins the history."""
    limits = st.limits
    limits.items(req.docs, ["docs"])
    for i, d in enumerate(req.docs):
        limits.text(d, ["docs", i])
    async with _lock(session_id):
        _live_or_404(st, session_id)
        session = st.pilot.chat(session_id)
        try:
            messages = await run_in_threadpool(session.messages, req.docs, req.query)
        except ValueError as e:
            raise unprocessable(["query" if "query" in str(e) else "docs"], str(e)) from None
        rid = session.last_request_id or new_request_id()
        body: dict[str, Any] = {"messages": messages}
        for name in ("model", "max_tokens", "temperature"):
            value = getattr(req, name)
            if value is not None:
                body[name] = value
        payload, prompt, cached = await _engine_chat(st, body, rid)
        answer = _answer(payload)
        if answer is None:
            raise HTTPException(
                502, detail={"error": "the engine's answer has no choices[0].message.content"}
            )
        await run_in_threadpool(session.reply, answer)
        return ChatTurnResponse(
            session_id=session_id,
            turn=session.turns,
            answer=answer,
            request_id=rid,
            prompt_tokens=prompt,
            cached_tokens=cached,
            messages_sent=len(messages),
            usage=payload.get("usage") if isinstance(payload.get("usage"), dict) else None,
        )


def _answer(payload: dict[str, Any]) -> str | None:
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else None
