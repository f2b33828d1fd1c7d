"""BoundedLRU (old name SessionStore): the bounded (LRU cap + idle TTL) map every session store uses."""

from __future__ import annotations

import pytest

from contextpilot.core.lru import BoundedLRU as SessionStore

from support.clock import ManualClock


def test_cap_drops_least_recently_used_and_reports_every_drop():
    dropped: list[str] = []
    s = SessionStore(2, None, dropped.append)
    a = s.get("a", lambda: "A")
    s.get("b", lambda: "B")
    assert s.get("a", lambda: "new") is a  # marks a used
    s.get("c", lambda: "C")  # evicts b, the least recently used
    assert s.ids() == ["a", "c"] and dropped == ["B"]
    assert s.drop("a") and not s.drop("a") and dropped == ["B", "A"]
    s.clear()
    assert len(s) == 0 and dropped == ["B", "A", "C"]


def test_ttl_expires_idle_sessions():
    clock, dropped = ManualClock(), []
    s = SessionStore(10, 60, dropped.append, clock=clock)
    s.get("a", lambda: 1)
    clock.now = 30
    s.get("b", lambda: 2)
    clock.now = 61
    assert s.expire() == 1 and s.ids() == ["b"] and dropped == [1]
    clock.now = 200
    assert s.get("b", lambda: 3) == 3 and dropped == [1, 2]  # expired before the lookup


@pytest.mark.parametrize("cap, ttl", [(0, None), (True, None), (1.5, None), (1, 0), (1, -3), (1, "x")])
def test_bad_bounds_are_value_errors(cap, ttl):
    with pytest.raises(ValueError):
        SessionStore(cap, ttl, lambda _: None)


def test_one_injected_clock_drives_every_ttl_of_a_pilot():
    # index entries, dedup conversations and chat sessions all expire on the
    # pilot's clock: just before the ttl everything is live, just after only
    # what was used later ("late", at t=30) is
    from contextpilot import ContextPilot

    clock = ManualClock()
    pilot = ContextPilot(ttl=60, conversation_ttl=60, chat_ttl=60, clock=clock)
    first = pilot.reorder_detailed([["a", "b", "c"]]).request_ids
    pilot.deduplicate([["doc1"]], "conv")
    pilot.chat("s").messages(["doc1"], "q?")
    clock.now = 30.0
    pilot.deduplicate([["doc1"]], "late")
    clock.now = 59.9
    assert pilot.index.expire() == 0  # the index expires lazily: ask it now
    live = pilot.index.request_ids()
    assert set(first) < set(live)  # the reorder's request and the chat turn's
    assert {"conv", "late"} <= {s["conversation_id"] for s in pilot.sessions()}
    assert [s["session_id"] for s in pilot.chat_sessions()] == ["s"]
    clock.now = 60.1  # idle past the ttl since the last use at 0.0 (reading does not touch)
    assert pilot.index.expire() == len(live) and pilot.index.request_ids() == []
    assert [s["conversation_id"] for s in pilot.sessions()] == ["late"] and pilot.chat_sessions() == []
    # an expired conversation seen again is new; the late one still remembers
    assert pilot.deduplicate([["doc1"]], "conv")[0].overlapping_docs == []
    assert pilot.deduplicate([["doc1"]], "late")[0].overlapping_docs == ["doc1"]
