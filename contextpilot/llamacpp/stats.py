"""The llama.cpp proxy's ``GET /stats`` body, built from :class:`ProxyState`.

Sections: config echo, uptime, in-flight count, requests and errors by kind,
prompt-cache reuse (``cache_n`` totals), evictions reported, latency
(p50/p95/p99 over the last requests, overall and per slot, from
:mod:`contextpilot.llamacpp.latency`), the slot model's counters and per-slot
state (each slot also carries its own latency figures), and ``GET /slots``
polling. O(slots + latency window).
"""

from __future__ import annotations

import time
from typing import Any

from contextpilot.llamacpp.state import ProxyState

__all__ = ["proxy_stats"]


def proxy_stats(st: ProxyState) -> dict[str, Any]:
    config = st.config
    tracker = st.tracker.stats()
    latency = st.latency.summary()
    slots = tracker["slots"]
    for slot, figures in latency["by_slot"].items():
        if slot in slots:
            slots[slot]["latency"] = figures
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
        "latency": latency,
        "request_log": {"path": st.reqlog.path, "written": st.reqlog.written},
        "tracker": {k: v for k, v in tracker.items() if k != "slots"},
        "slots": slots,
        "poll": dict(st.poll),
    }
