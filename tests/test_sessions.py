"""BoundedLRU (old name SessionStore): the bounded (LRU cap + idle TTL) map every session store uses."""

from __future__ import annotations

import pytest

from contextpilot.core.lru import BoundedLRU as SessionStore


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


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
    clock, dropped = Clock(), []
    s = SessionStore(10, 60, dropped.append, clock=clock)
    s.get("a", lambda: 1)
    clock.t = 30
    s.get("b", lambda: 2)
    clock.t = 61
    assert s.expire() == 1 and s.ids() == ["b"] and dropped == [1]
    clock.t = 200
    assert s.get("b", lambda: 3) == 3 and dropped == [1, 2]  # expired before the lookup


@pytest.mark.parametrize("cap, ttl", [(0, None), (True, None), (1.5, None), (1, 0), (1, -3), (1, "x")])
def test_bad_bounds_are_value_errors(cap, ttl):
    with pytest.raises(ValueError):
        SessionStore(cap, ttl, lambda _: None)
