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
- ``POST /v1/completions``: a prompt (text or token ids), same way; a
  batch (list of prompts, not streamed) is split into one native request per
  prompt, each tracked under its own id (see :mod:`.forward`);
- ``POST /completion`` (and ``/completions``): native, passed through byte
  for byte (streams unbuffered); batches split the same way;
- ``GET /stats``: per-slot state, counts, reuse (``cache_n`` totals),
  evictions reported, latency p50/p95/p99 overall and per slot over the last
  requests; ``POST /reset``: forget the slot model and counters, reporting
  every tracked request id evicted (returned in the answer);
- ``GET /health``: llama-server's health, relayed (503 when unreachable);
- anything else under ``/v1/``: forwarded unchanged, untracked.

Request ids: ``rid`` or ``request_id`` in the body, else the ``X-Request-Id``
header (the contextpilot server's proxy sets all three), else a fresh one;
normalised, stripped from the body sent on, returned as
``X-ContextPilot-Request-Id``. A request that fails or breaks off before its
slot is known is reported evicted at once (it never got cached), unless a
slot still holds an earlier run of the same id.

``LOG_FILE``: a JSONL request log, one object per request
(:mod:`.reqlog`); Python's log messages go to stderr.

Only ever talks to ``LLAMA_SERVER_URL``. Bad input: 422 naming the field;
llama-server down: 502 (unreachable), 503 (connect timeout), 504 (no answer
within ``LLAMA_TIMEOUT``), as JSON.

Modules: :mod:`.app` (routes), :mod:`.forward` (forwarding and slot
accounting), :mod:`.state`, :mod:`.slots` (slot model), :mod:`.stats`,
:mod:`.latency`, :mod:`.reqlog`, :mod:`.poll`, :mod:`.translate`,
:mod:`.config`; this module is the entry point.

Run llama-server with ``--cache-ram 0``: with its host-memory prompt cache
on (the default), a replaced slot's content is parked in RAM and may come
back, so what this proxy reports is "left the slot", not "left the engine".
"""

from __future__ import annotations

import logging

from contextpilot.llamacpp.app import create_proxy_app
from contextpilot.llamacpp.config import ENV, ProxyConfig, parse_config
from contextpilot.llamacpp.forward import RID_HEADER

__all__ = ["ENV", "RID_HEADER", "ProxyConfig", "create_proxy_app", "main", "parse_config"]


def main(argv: list[str] | None = None) -> int:
    """Parse flags/env, log to stderr, serve with uvicorn until stopped."""
    config = parse_config(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import uvicorn

    uvicorn.run(create_proxy_app(config), host=config.host, port=config.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
