"""One ``/reorder`` batch over one or several live indexes (a pilot per engine replica).

What the server's handler calls, so it only translates requests and
responses:

1. check everything once, before any state changes: the contexts, in one
   walk (:func:`~contextpilot.core.validation.validate_contexts`, with the
   caller's size limits), one conversation per context and the hint
   template when deduplicating;
2. place each context on a pilot (``place``: the caller's routing policy;
   by default everything on the first); ``place`` may ask for the batch's
   prefix-sharing groups: the batch is then clustered once
   (:func:`~contextpilot.core.clustered.cluster_once`, with the first
   pilot's token counter and options; its trees of ``REFINE_MIN`` requests
   or more are clustered again alone, the one deliberate second clustering:
   +0.7 hit points for ~10% more planning time on 5000-request batches);
3. plan each pilot's share against that pilot's own index: after a
   clustering, each share is only laid out along its part of that one
   forest (:meth:`ContextPilot.plan_share`: each label's cached path on
   that replica first, no second clustering); without one (one pilot, a
   pinned replica, a single context), the share is planned as
   :meth:`ContextPilot.plan_batch` plans a batch, as before;
4. deduplicate each planned context, in execution order, against the first
   pilot's conversations (dedup state belongs to conversations, not to
   engines), then record in that pilot's index what is really sent: hints
   in place of repeats, exactly as :meth:`ContextPilot.optimize` does.

Results keep the :meth:`ContextPilot.reorder` contract over the whole batch:
``reordered[j]`` holds exactly the blocks of ``contexts[order[j]]``.
Cost: one validation pass, one clustering (a plan per pilot with work when
nothing asked for groups), O(blocks) to deduplicate and record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from contextpilot.core.blocks import Block, BlockTable
from contextpilot.core.clustered import REFINE_MIN, Clustered, cluster_once
from contextpilot.core.dedup import DedupResult, check_hint_template
from contextpilot.core.pilot import ContextPilot, ReorderResult
from contextpilot.core.validation import ContextLimits, validate_contexts

__all__ = ["BatchView", "FanoutResult", "FieldError", "Placement", "reorder_over"]


class FieldError(ValueError):
    """A bad argument, naming it in ``field`` (e.g. ``"conversation_ids"``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class BatchView:
    """What a placement sees of a validated batch: its contexts, their
    blocks' stable keys and token lengths (the first pilot's counter, as
    every pilot's index keys them), and, on demand, its prefix-sharing
    groups (the one clustering of this call)."""

    def __init__(self, contexts: list[list[Block]], pilot: ContextPilot) -> None:
        self.contexts = contexts
        self._pilot = pilot
        self._table: BlockTable | None = None
        self.clustered: Clustered | None = None

    def __len__(self) -> int:
        return len(self.contexts)

    def groups(self) -> list[list[int]]:
        """Input indices of each prefix-sharing group (every context in one)."""
        if self.clustered is None:
            # one forest; its trees of REFINE_MIN+ requests clustered again alone (the measured
            # trade-off is in core.clustered's docstring)
            self.clustered = cluster_once(
                self.contexts, self._pilot.block_table(), self._pilot.plan_options, refine_min=REFINE_MIN
            )
        return self.clustered.groups

    def blocks(self, members: Sequence[int]) -> tuple[list[int], list[int]]:
        """Stable keys and token lengths of all blocks of these contexts, concatenated."""
        if self.clustered is not None:
            return self.clustered.blocks_of(members)
        if self._table is None:
            self._table = self._pilot.block_table()
        keys: list[int] = []
        tokens: list[int] = []
        for i in members:
            k, t = self._table.measure(self.contexts[i])
            keys += k
            tokens += t
        return keys, tokens


@dataclass
class FanoutResult:
    result: ReorderResult
    #: position of the pilot each scheduled context went to, aligned with ``result.reordered``
    placed: list[int] = field(default_factory=list)
    #: dedup of each scheduled context (when asked), aligned with ``result.reordered``
    dedup: list[DedupResult] | None = None


#: ``place(batch)`` -> ``{pilot position: [context index, ...]}``, every context once
Placement = Callable[[BatchView], dict[int, list[int]]]


def _check_parts(parts: dict[int, list[int]], n: int, pilots: int) -> None:
    seen = sorted(i for members in parts.values() for i in members)
    if seen != list(range(n)) or any(not 0 <= p < pilots for p in parts):
        raise ValueError("placement must put every context on exactly one of the pilots")


def reorder_over(
    pilots: Sequence[ContextPilot],
    contexts: Sequence[Sequence[Block]],
    *,
    place: Placement | None = None,
    stateless: bool | None = None,
    conversations: Sequence[str] | None = None,
    hint_template: str | None = None,
    limits: ContextLimits | None = None,
) -> FanoutResult:
    """Plan, deduplicate (with ``conversations``, one per context) and record
    a batch over ``pilots``; see the module docstring. ``limits``: size
    limits checked in the validation walk. Raises
    :class:`~contextpilot.core.validation.ContextError` (a
    :class:`~contextpilot.core.validation.LimitError` for a size limit) or
    :class:`FieldError` before anything changes."""
    ctxs = validate_contexts(contexts, copy=False, limits=limits)  # planning only reads them
    if conversations is not None:
        if isinstance(conversations, str) or len(conversations) != len(ctxs):
            raise FieldError("conversation_ids", "needs one conversation id per context")
        for i, c in enumerate(conversations):
            if not isinstance(c, str) or not c:
                raise FieldError("conversation_ids", f"conversation id {i} must be a non-empty string")
    if hint_template is not None:
        try:
            check_hint_template(hint_template)
        except ValueError as e:
            raise FieldError("hint_template", str(e)) from None
    view = BatchView(ctxs, pilots[0])
    if len(pilots) > 1 and place is not None:
        parts = place(view)
        _check_parts(parts, len(ctxs), len(pilots))
    else:
        parts = {0: list(range(len(ctxs)))}
    clustered = view.clustered
    ledger = pilots[0]
    out = FanoutResult(ReorderResult(reordered=[], order=[], request_ids=[], groups=[], mode="initial"))
    r = out.result
    if clustered is not None:
        r.planning_seconds += clustered.timings["wall"]
    if conversations is not None:
        out.dedup = []
    modes = []
    for pos in sorted(parts):
        members, pilot = parts[pos], pilots[pos]
        measured: tuple[list[list[int]], list[list[int]]] | None = None
        if clustered is not None:
            if not members:
                continue
            share = pilot.plan_share(clustered, members, stateless=stateless)
            sub = ReorderResult(
                share.contexts, share.order, [], share.groups, share.mode, total_tokens=share.total_tokens
            )
            sub.planning_seconds = share.seconds
            if pilot.token_counter is ledger.token_counter:  # measured as this index counts
                measured = share.keys, share.tokens
        else:
            # nothing to hint: the pilot records its plan as sent, in bulk (4-5x less CPU than
            # one record_sent per request)
            bulk = conversations is None
            sub = pilot.plan_batch([ctxs[i] for i in members], stateless=stateless, record=bulk)
            sub.order = [members[j] for j in sub.order]
            sub.groups = [[members[j] for j in g] for g in sub.groups]
        modes.append(sub.mode)
        r.reordered += sub.reordered
        r.order += sub.order
        r.groups += sub.groups
        r.total_tokens += sub.total_tokens
        r.planning_seconds += sub.planning_seconds
        out.placed += [pos] * len(sub.reordered)
        hinted: list[DedupResult | None] = [None] * len(sub.reordered)
        if out.dedup is not None and conversations is not None:
            # one lock for the share, in execution order, before anything is recorded
            found = ledger.deduplicate_each(
                sub.reordered, [conversations[i] for i in sub.order], hint_template
            )
            out.dedup += found
            hinted = [res if res.hinted_positions else None for res in found]
        if sub.mode == "stateless":  # nothing recorded; placeholders keep the lists aligned
            r.request_ids += [""] * len(sub.reordered)
            r.cached_tokens += [0] * len(sub.reordered)
            continue
        if sub.request_ids:  # recorded by the pilot already
            r.request_ids += sub.request_ids
            r.cached_tokens += sub.cached_tokens
            continue
        for j, res in enumerate(hinted):
            # what is really sent: hints in place of repeats (measured again only then)
            if res is None and measured is not None:
                recorded = pilot.record_sent(measured[0][j], measured[1][j])
            else:
                recorded = pilot.record_sent(
                    *pilot.measure(sub.reordered[j] if res is None else res.docs_with_hints)
                )
            rid, hit = recorded if recorded is not None else ("", 0)
            r.request_ids.append(rid)
            r.cached_tokens.append(hit)
    if modes and all(m == "stateless" for m in modes):
        r.request_ids, r.cached_tokens = [], []  # as a stateless pilot returns them
    if len(modes) == 1:
        r.mode = modes[0]
    elif "incremental" in modes:
        r.mode = "incremental"
    if out.dedup is not None:
        for res, rid in zip(out.dedup, r.request_ids):
            res.request_id = rid or None
    return out
