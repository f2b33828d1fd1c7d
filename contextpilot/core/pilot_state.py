"""The live state one :class:`~contextpilot.core.pilot.ContextPilot` owns
(chat sessions apart), exported and loaded all or nothing.

Parts: the live index (what the engine is believed to hold), the recent
requests ring (ordering hints), the dedup ledger (blocks each conversation
was sent), the request lineage (which conversation a request id belongs
to) and the planning counters. Each store exports and loads itself; this
class only checks every part into fresh stores before swapping any in, so
a bad snapshot leaves the state unchanged.

Not thread-safe by itself: the pilot calls it under its lock (and, for
:meth:`PilotState.load`, under the chat store's lock too, taken first).
Costs: O(state) for export, load and stats' index walk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from contextpilot.core.dedup import DedupLedger
from contextpilot.core.index import PrefixIndex
from contextpilot.core.lineage import RequestLineage
from contextpilot.core.persist import as_dict, as_int
from contextpilot.core.recent import RecentRequests

__all__ = ["PilotState"]


class PilotState:
    """The stores and counters (see the module docstring); bounds are the
    pilot constructor's."""

    def __init__(
        self,
        *,
        capacity_tokens: float | None,
        ttl: float | None,
        max_requests: int,
        max_nodes: int,
        max_conversations: int,
        conversation_ttl: float | None,
        recent_requests: int,
        clock: Callable[[], float],
    ) -> None:
        self.index = PrefixIndex(
            capacity_tokens, ttl, max_nodes=max_nodes, max_requests=max_requests, clock=clock
        )
        self.recent = RecentRequests(recent_requests)
        self.conversations = DedupLedger(max_conversations, conversation_ttl, clock=clock)
        # parent-chain conversations: as many ids as requests, same idle TTL as conversations
        self.lineage = RequestLineage(
            max(max_conversations, min(max_requests, 100_000)), conversation_ttl, clock=clock
        )
        #: planning calls, requests planned, worker processes of the last plan
        self.calls = 0
        self.planned = 0
        self.last_workers = 0

    def reset(self) -> None:
        self.index.reset()
        self.recent.clear()
        self.conversations.clear()
        self.lineage.clear()

    def export(self) -> dict[str, Any]:
        """``{"index", "conversations", "lineage", "recent", "pilot": {"calls", "planned"}}``,
        each part its store's ``export()``; blocks only as stable keys."""
        return {
            "index": self.index.export(),
            "conversations": self.conversations.export(),
            "lineage": self.lineage.export(),
            "recent": self.recent.export(),
            "pilot": {"calls": self.calls, "planned": self.planned},
        }

    def load(self, data: Any, *, downtime: float = 0.0) -> dict[str, int]:
        """Replace the state by :meth:`export` data (a dict, already
        checked to be one), all or nothing: a bad part raises
        :class:`~contextpilot.core.persist.SnapshotError` naming the field
        before anything changes. Returns what was kept: requests, nodes,
        conversations, recent, dropped_by_bounds."""
        data = as_dict(data, "state")
        convs = self.conversations.empty_like()
        index_data = as_dict(data.get("index"), "index")
        convs.load(data.get("conversations"), downtime=downtime)
        lineage = self.lineage.empty_like()
        lineage.load(data.get("lineage"), downtime=downtime)
        recent = RecentRequests(self.recent.capacity, self.recent.max_posting)
        recent.load(data.get("recent"))
        counters = as_dict(data.get("pilot"), "pilot")
        calls = as_int(counters.get("calls"), "pilot.calls", 0)
        planned = as_int(counters.get("planned"), "pilot.planned", 0)
        dropped = self.index.load(index_data, downtime=downtime)  # the last step that can fail
        self.conversations.replace_with(convs)
        self.lineage = lineage
        self.recent = recent
        self.calls, self.planned = calls, planned
        return {
            "requests": len(self.index),
            "nodes": self.index.nodes,
            "conversations": len(self.conversations),
            "recent": len(self.recent),
            "dropped_by_bounds": dropped,
        }

    def stats(self, stateless: bool) -> dict[str, Any]:
        """The pilot's ``stats()`` figures, chat sessions apart."""
        s = self.index.stats()
        return {
            "mode": "stateless" if stateless else "live",
            "calls": self.calls,
            "requests_planned": self.planned,
            "last_plan_workers": self.last_workers,
            "live_requests": s.requests,
            "index_nodes": s.nodes,
            "index_tokens": s.tokens,
            "capacity_tokens": s.capacity_tokens,
            "predicted_hit_ratio": round(s.hit_ratio, 6),
            "evicted_requests": s.evicted_requests,
            "evicted_by_engine": s.evicted_by_engine,
            "evicted_by_capacity": s.evicted_by_capacity,
            "evicted_by_ttl": s.evicted_by_ttl,
            "conversations": len(self.conversations),
        }
