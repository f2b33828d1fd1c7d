"""A clock the test sets by hand, for the stores that take ``clock=``: TTLs
and idle times are tested by moving ``now``, never by sleeping."""

from __future__ import annotations


class ManualClock:
    """Returns ``now`` when called; the test assigns or advances ``now``."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
