"""Planning against one pilot's live state, and recording what is sent.

:class:`LivePlanner` is the part of :class:`~contextpilot.core.pilot.ContextPilot`
that plans: a whole batch (:meth:`LivePlanner.plan`: one
:func:`~contextpilot.core.planner.plan`, recorded in bulk unless the
caller records what it finally sends), or one share of a batch clustered
once for several pilots (:meth:`LivePlanner.plan_share`, see
:mod:`contextpilot.core.clustered`); and the index learns each sent
request under a fresh id (:meth:`LivePlanner.record`).

Not thread-safe by itself: the pilot calls it under its lock. Reads the
stores through the :class:`~contextpilot.core.pilot_state.PilotState` on
every call, so a snapshot load that swaps a store in is seen at once.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from contextpilot.core.batch import split
from contextpilot.core.blocks import Block, BlockTable, make_token_counter
from contextpilot.core.clustered import Clustered, Share
from contextpilot.core.gcpause import gc_paused
from contextpilot.core.ids import new_request_id, new_request_ids
from contextpilot.core.pilot_state import PilotState
from contextpilot.core.planner import FlatSchedule, PlanOptions, plan
from contextpilot.core.workers import available_cpus

__all__ = ["LivePlanner", "ReorderResult"]


@dataclass
class ReorderResult:
    """What :meth:`ContextPilot.reorder_detailed` planned: ``reordered[j]``
    holds exactly the blocks of ``contexts[order[j]]``; run in that order."""

    reordered: list[list[Block]]
    order: list[int]
    #: request id of each scheduled request (stateful mode), aligned with ``reordered``
    request_ids: list[str]
    groups: list[list[int]]
    mode: str
    #: tokens of each scheduled request's blocks the index says are cached
    cached_tokens: list[int] = field(default_factory=list)
    total_tokens: int = 0
    planning_seconds: float = 0.0
    #: where the time went: the planner's phases (CPU seconds, see
    #: ``Plan.timings``), ``recording`` (CPU) and ``wall``
    timings: dict[str, float] = field(default_factory=dict)


class LivePlanner:
    """Plans against ``state`` (see the module docstring). ``workers``:
    planning processes (``None``: one per available CPU)."""

    def __init__(
        self, state: PilotState, options: PlanOptions, token_counter: Any, workers: int | None
    ) -> None:
        self.state = state
        self.options = options
        self.counter = make_token_counter(token_counter)
        self.workers = workers

    def table(self) -> BlockTable:
        """A fresh block table with this pilot's token counter."""
        return BlockTable(self.counter)

    def _mode(self, use_state: bool) -> str:
        self.state.index.expire()
        if not use_state:
            return "stateless"
        return "incremental" if len(self.state.index) else "initial"

    def _count(self, requests: int, workers: int) -> None:
        self.state.calls += 1
        self.state.planned += requests
        self.state.last_workers = workers

    def plan(self, ctxs: list[list[Block]], use_state: bool, record: bool = True) -> ReorderResult:
        """One plan of already-validated ``ctxs``, following the live state
        if ``use_state``; with ``record`` too, the index learns the whole
        schedule at once (request ids and hits in the result)."""
        t0 = time.perf_counter()
        mode = self._mode(use_state)
        st = self.state
        bulk = use_state and record
        workers = self.workers if self.workers is not None else available_cpus()
        p = plan(
            ctxs,
            table=self.table(),
            index=st.index if use_state else None,
            recent=st.recent if use_state else None,
            options=dataclasses.replace(
                self.options, workers=workers, with_keys=use_state and not bulk, flat=bulk
            ),
        )
        timings = dict(p.timings)
        rids: list[str] = []
        cached: list[int] = []
        if bulk and p.flat is not None:
            c0 = time.thread_time()
            rids, cached = self.record_flat(p.flat)
            timings["recording"] = time.thread_time() - c0
        self._count(len(ctxs), int(timings.get("workers", 0)))
        timings["wall"] = time.perf_counter() - t0
        return ReorderResult(
            reordered=p.contexts,
            order=p.order,
            request_ids=rids,
            groups=p.groups,
            mode=mode,
            cached_tokens=cached,
            total_tokens=p.total_tokens,
            planning_seconds=timings["wall"],
            timings=timings,
        )

    def plan_share(self, clustered: Clustered, members: Sequence[int], use_state: bool) -> Share:
        """The requests ``members`` of a batch clustered once (input
        indices, distinct), laid out along their part of its forest against
        this live state (if ``use_state``); nothing recorded."""
        mode = self._mode(use_state)
        st = self.state
        share = clustered.lay_out(members, st.index if use_state else None, st.recent if use_state else None)
        share.mode = mode
        self._count(len(members), 0)
        return share

    def record(self, keys: list[int], tokens: list[int], rid: str | None = None) -> tuple[str, int]:
        """The index learns what one request sent; returns its id and hit."""
        rid = rid or new_request_id()
        hit = self.state.index.insert(keys, tokens, rid)
        self.state.recent.add(keys)
        return rid, hit

    def record_flat(self, flat: FlatSchedule) -> tuple[list[str], list[int]]:
        """The index learns a whole planned batch at once (see
        ``PrefixIndex.insert_batch_ids``); returns the ids and hits."""
        with gc_paused(long_lived=True):  # the index's new nodes and the ring's rows stay
            rids = new_request_ids(len(flat.lens))
            ukeys, of_pid = np.unique(flat.keys, return_inverse=True)  # per pid: small
            kid = of_pid.reshape(-1)[flat.pids]
            hits = self.state.index.insert_batch_ids(kid, ukeys, flat.tokens[flat.pids], flat.lens, rids)
            # only the last ``capacity`` requests stay in the recent ring
            recent = self.state.recent
            n = len(flat.lens)
            tail = min(n, recent.capacity)
            if tail:
                offs = np.zeros(n + 1, dtype=np.int64)
                np.cumsum(flat.lens, out=offs[1:])
                for row in split(ukeys[kid[offs[n - tail] :]].tolist(), flat.lens[n - tail :]):
                    recent.add(row)
            return rids, hits.tolist()
