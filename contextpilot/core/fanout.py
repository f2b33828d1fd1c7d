"""One ``/reorder`` batch over one or several live indexes (a pilot per engine replica).

What the server's handler calls, so it only translates requests and
responses:

1. check everything once, before any state changes: the contexts
   (:func:`~contextpilot.core.blocks.validate_contexts`), one conversation
   per context and the hint template when deduplicating;
2. place each context on a pilot (``place``: the caller's routing policy;
   by default everything on the first); ``place`` may ask for the batch's
   prefix-sharing groups (one stateless plan, computed only if asked);
3. plan each pilot's share against that pilot's own index, not recorded;
4. deduplicate each planned context, in execution order, against the first
   pilot's conversations (dedup state belongs to conversations, not to
   engines), then record in that pilot's index what is really sent: hints
   in place of repeats, exactly as :meth:`ContextPilot.optimize` does.

Results keep the :meth:`ContextPilot.reorder` contract over the whole batch:
``reordered[j]`` holds exactly the blocks of ``contexts[order[j]]``.
Cost: one validation pass, one plan per pilot with work (plus the grouping
plan when ``place`` asks for it), O(blocks) to deduplicate and record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from contextpilot.core.blocks import Block, BlockTable, validate_contexts
from contextpilot.core.dedup import DedupResult, check_hint_template
from contextpilot.core.pilot import ContextPilot, ReorderResult
from contextpilot.core.planner import plan

__all__ = ["FanoutResult", "FieldError", "Placement", "reorder_over"]

#: ``place(contexts, table, groups)`` -> ``{pilot position: [context index, ...]}``;
#: ``groups()`` gives the batch's prefix-sharing groups (a stateless plan, on demand),
#: ``table`` interns blocks as every pilot's index keys them
Placement = Callable[[list[list[Block]], BlockTable, Callable[[], list[list[int]]]], dict[int, list[int]]]


class FieldError(ValueError):
    """A bad argument, naming it in ``field`` (e.g. ``"conversation_ids"``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass
class FanoutResult:
    result: ReorderResult
    #: position of the pilot each scheduled context went to, aligned with ``result.reordered``
    placed: list[int] = field(default_factory=list)
    #: dedup of each scheduled context (when asked), aligned with ``result.reordered``
    dedup: list[DedupResult] | None = None


def _everything_on_first(
    ctxs: list[list[Block]], table: BlockTable, groups: Callable[[], list[list[int]]]
) -> dict[int, list[int]]:
    return {0: list(range(len(ctxs)))}


def reorder_over(
    pilots: Sequence[ContextPilot],
    contexts: Sequence[Sequence[Block]],
    *,
    place: Placement | None = None,
    stateless: bool | None = None,
    conversations: Sequence[str] | None = None,
    hint_template: str | None = None,
) -> FanoutResult:
    """Plan, deduplicate (with ``conversations``, one per context) and record
    a batch over ``pilots``; see the module docstring. Raises
    :class:`~contextpilot.core.blocks.ContextError` or :class:`FieldError`
    before anything changes."""
    ctxs = validate_contexts(contexts)
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
    table = BlockTable()

    def groups() -> list[list[int]]:
        found = plan(ctxs, table=table).groups
        seen = {i for g in found for i in g}
        return found + [[i] for i in range(len(ctxs)) if i not in seen]

    parts = (
        (place or _everything_on_first)(ctxs, table, groups)
        if len(pilots) > 1
        else {0: list(range(len(ctxs)))}
    )
    ledger = pilots[0]
    out = FanoutResult(ReorderResult(reordered=[], order=[], request_ids=[], groups=[], mode="initial"))
    if conversations is not None:
        out.dedup = []
    modes = []
    for pos in sorted(parts):
        members, pilot = parts[pos], pilots[pos]
        sub = pilot.plan_batch([ctxs[i] for i in members], stateless=stateless)
        modes.append(sub.mode)
        r = out.result
        r.reordered += sub.reordered
        r.order += [members[j] for j in sub.order]
        r.groups += [[members[j] for j in g] for g in sub.groups]
        r.total_tokens += sub.total_tokens
        r.planning_seconds += sub.planning_seconds
        out.placed += [pos] * len(sub.reordered)
        sents: list[Sequence[Block]] = list(sub.reordered)
        if out.dedup is not None and conversations is not None:
            # one lock for the share, in execution order, before anything is recorded
            found = ledger.deduplicate_each(
                sub.reordered, [conversations[members[j]] for j in sub.order], hint_template
            )
            out.dedup += found
            sents = [res.docs_with_hints for res in found]
        for sent in sents:
            if sub.mode != "stateless":
                recorded = pilot.record_sent(*pilot.measure(sent))
                rid, hit = recorded if recorded is not None else ("", 0)
                r.request_ids.append(rid)
                r.cached_tokens.append(hit)
    if len(modes) == 1:
        out.result.mode = modes[0]
    elif "incremental" in modes:
        out.result.mode = "incremental"
    if out.dedup is not None:
        for res, rid in zip(out.dedup, out.result.request_ids):
            res.request_id = rid or None
    return out
