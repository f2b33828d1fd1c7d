"""What one llama.cpp proxy process holds: the slot model, counters, the
latency window, the JSONL request log, the engine client and the eviction
notifier; all of it bounded."""

from __future__ import annotations

import logging
import time
from typing import Any

from contextpilot.hooks.notifier import EvictionNotifier
from contextpilot.llamacpp.config import ProxyConfig
from contextpilot.llamacpp.latency import LatencyWindow
from contextpilot.llamacpp.reqlog import RequestLog, entry
from contextpilot.llamacpp.slots import SlotTracker
from contextpilot.server.engine_client import EngineClient

__all__ = ["LABELS", "ProxyState"]

log = logging.getLogger("contextpilot.llamacpp")

#: endpoint labels for the counters (anything else is "other": the map stays bounded)
LABELS = ("/completion", "/v1/completions", "/v1/chat/completions", "/v1/*", "/health", "other")


class ProxyState:
    """Everything one proxy process holds; all of it bounded."""

    def __init__(self, config: ProxyConfig, notifier: EvictionNotifier | None) -> None:
        self.config = config
        self.notifier = notifier
        self.tracker = SlotTracker()
        self.engine = EngineClient(
            config.llama_server_url, config.connect_timeout, config.timeout, config.llama_api_key
        )
        self.latency = LatencyWindow()
        self.reqlog = RequestLog(config.log_file)
        self.started = time.time()
        self.in_flight = 0
        self.poll: dict[str, Any] = {"interval": config.slots_poll_interval, "polls": 0, "last_error": None}
        self.reset_counts()

    def reset_counts(self) -> None:
        self.requests = dict.fromkeys(LABELS, 0)
        self.errors: dict[str, int] = {}
        self.evictions_reported = 0

    def reset(self) -> list[str]:
        """Forget the slot model, counters and latencies; every request id
        the model held is reported evicted (the index must not keep ids the
        proxy no longer vouches for) and returned."""
        held = self.tracker.reset()
        self.reset_counts()
        self.latency.clear()
        self.report(held)  # counted in the fresh counters: evictions.reported == len(held)
        return held

    def finish(
        self,
        rid: str,
        endpoint: str,
        prompt: str | list[int] | None,
        result: dict[str, Any] | None,
        *,
        started: float,
        status: int | str,
    ) -> None:
        """A request ended: update the slot model (:meth:`settle`), the
        latency window and the request log. ``started``: ``time.monotonic()``
        when the request arrived."""
        self.settle(rid, prompt, result)
        try:
            record = entry(rid, endpoint, status, result, time.monotonic() - started)
            if status == 200:
                self.latency.add(record["latency_ms"], record["slot"])
            self.reqlog.write(record)
        except Exception:  # accounting must never break the answer
            log.exception("llama.cpp proxy: request record failed for %s", rid)

    def error(self, kind: str) -> None:
        if kind in self.errors or len(self.errors) < 64:
            self.errors[kind] = self.errors.get(kind, 0) + 1

    def report(self, rids: list[str]) -> None:
        """Evicted request ids -> the index (no-op without one)."""
        if not rids:
            return
        self.evictions_reported += len(rids)
        log.debug("evicted: %s", rids)
        if self.notifier is not None:
            self.notifier.notify(rids)

    def settle(self, rid: str, prompt: str | list[int] | None, result: dict[str, Any] | None) -> None:
        """Update the slot model from a request's last native event (the
        final one, or the last partial one if the answer broke off)."""
        try:
            slot = result.get("id_slot") if result else None
            timings = result.get("timings") if result else None
            if not isinstance(slot, int) or slot < 0 or not isinstance(timings, dict):
                self.report(self.tracker.forget(rid))
                return
            cache_n = _nonneg(timings.get("cache_n"))
            n_prompt = _nonneg(result.get("tokens_evaluated")) or cache_n + _nonneg(timings.get("prompt_n"))
            complete = bool(result.get("stop"))
            settings = result.get("generation_settings")
            # a client that turned prompt caching off expects no reuse
            expect_reuse = not (isinstance(settings, dict) and settings.get("cache_prompt") is False)
            misses = self.tracker.prefix_misses()
            evicted = self.tracker.observe(
                slot,
                rid,
                prompt,
                n_prompt,
                cache_n,
                truncated=bool(result.get("truncated")),
                complete=complete,
                expect_reuse=expect_reuse,
            )
            if misses == 0 and self.tracker.prefix_misses():
                log.warning(
                    "llama-server reused %s of ~%s tokens this request shares with the previous prompt on "
                    "its slot: if the model uses sliding-window attention (Gemma 2/3, Mistral-style "
                    "windows, gpt-oss), start llama-server with --swa-full, or partial prefixes are not "
                    "reused and reordering gains little (counted as prefix_not_reused in /stats)",
                    *(
                        (self.tracker.last_prefix_miss or {}).get(k)
                        for k in ("cache_n", "shared_tokens_estimate")
                    ),
                )
            self.report(evicted)
        except Exception:  # accounting must never break the answer
            log.exception("llama.cpp proxy: slot update failed for %s", rid)


def _nonneg(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 0
