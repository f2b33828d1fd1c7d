"""The core service behind /reorder: validate once, place, plan per pilot,
dedup before recording (as optimize() does), record what is sent."""

from __future__ import annotations

from collections import Counter

import pytest

from contextpilot import ContextPilot
from contextpilot.core.blocks import ContextError
from contextpilot.core.fanout import FieldError, reorder_over

A = "Alice moved to Lisbon in 2019 and opened a bakery near the river. " * 6
B = "Bob plays the cello in a string quartet every Thursday evening. " * 6
C = "Carol keeps bees on the roof of the library where she works. " * 6


def test_dedup_before_recording_like_optimize() -> None:
    pilot = ContextPilot()
    first = reorder_over([pilot], [[A, B]], conversations=["c"])
    assert first.dedup is not None and first.dedup[0].hinted_positions == []
    out = reorder_over([pilot], [[A, C]], conversations=["c"])
    assert out.dedup is not None
    (res,) = out.dedup
    assert res.overlapping_docs == [A] and res.request_id == out.result.request_ids[0]
    sent_keys, sent_tokens = pilot.measure(res.docs_with_hints)
    planned_keys, planned_tokens = pilot.measure(out.result.reordered[0])
    # the index holds what was sent (the hint), not the repeated document
    assert pilot.index.match(sent_keys) == sum(sent_tokens)
    assert pilot.index.match(planned_keys) < sum(planned_tokens)
    # optimize() records the same way: its hinted turn is a cached path too
    other = ContextPilot()
    other.optimize([A, B], "q1", conversation_id="c")
    other.optimize([A, C], "q2", conversation_id="c")
    assert len(other.index) == len(pilot.index) == 2


def test_placement_splits_and_keeps_the_contract() -> None:
    pilots = [ContextPilot(), ContextPilot()]
    contexts = [[1, 2, 3], [7, 8, 9], [1, 2, 4], [7, 8]]

    def place(ctxs, table, groups):  # type: ignore[no-untyped-def]
        return {0: [0, 2], 1: [1, 3]}

    out = reorder_over(pilots, contexts, place=place)
    r = out.result
    assert sorted(r.order) == [0, 1, 2, 3] and len(r.request_ids) == 4
    for j, i in enumerate(r.order):
        assert Counter(r.reordered[j]) == Counter(contexts[i])
        assert (i in (0, 2)) == (out.placed[j] == 0)
    assert len(pilots[0].index) == 2 and len(pilots[1].index) == 2
    assert all(rid in pilots[p].index for rid, p in zip(r.request_ids, out.placed))


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"conversations": ["a"]}, "conversation_ids"),
        ({"conversations": ["a", ""]}, "conversation_ids"),
        ({"conversations": ["a", "b"], "hint_template": "{nope}"}, "hint_template"),
    ],
)
def test_bad_arguments_change_nothing(kwargs, field) -> None:  # type: ignore[no-untyped-def]
    pilot = ContextPilot()
    with pytest.raises(FieldError) as e:
        reorder_over([pilot], [[1, 2], [2, 3]], **kwargs)
    assert e.value.field == field
    with pytest.raises(ContextError):
        reorder_over([pilot], [[1, 2], ["x"]])
    assert len(pilot.index) == 0 and len(pilot.conversations) == 0 and pilot.stats()["calls"] == 0
