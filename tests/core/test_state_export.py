"""Each store exports and loads its own state; the pilot's load is all or nothing."""

from __future__ import annotations

import copy

import pytest

from contextpilot import ContextPilot
from contextpilot.core.dedup import DedupLedger, deduplicate_turn
from contextpilot.core.index import PrefixIndex
from contextpilot.core.persist import SnapshotError
from contextpilot.core.recent import RecentRequests


def _busy() -> ContextPilot:
    p = ContextPilot()
    for i in range(30):
        p.reorder([[i % 7, (i + 1) % 7, 100 + i], [3, 4, 200 + i]])
        p.deduplicate([[i % 5, 50 + i]], conversation_id=f"c{i % 4}")
    return p


def test_index_round_trip_and_bad_data_leaves_it_unchanged() -> None:
    a = PrefixIndex()
    for i in range(50):
        a.insert([i % 5, i % 11, i], [10, 20, 30], f"r{i}")
    b = PrefixIndex()
    b.insert([9, 9, 9], [1, 1, 1], "keep")
    bad = a.export()
    bad["nodes"][3][2] = -1
    with pytest.raises(SnapshotError, match=r"index.nodes\[3\].tokens"):
        b.load(bad)
    assert b.request_ids() == ["keep"]
    assert b.load(a.export()) == 0
    b.check()
    assert b.request_ids() == a.request_ids() and b.tokens == a.tokens and b.nodes == a.nodes
    assert b.stats() == a.stats()


def test_conversations_and_recent_round_trip() -> None:
    s = DedupLedger()
    for i in range(10):
        deduplicate_turn(s, [[i, i + 1, "x"]], f"c{i % 3}")
    t = DedupLedger()
    t.load(s.export())
    assert [r[::3] for r in t.export()] == [r[::3] for r in s.export()]
    r = RecentRequests(capacity=4)
    for i in range(9):
        r.add([i, i + 1])
    q = RecentRequests(capacity=4)
    q.load(r.export())
    assert q.export() == r.export() == [[5, 6], [6, 7], [7, 8], [8, 9]]


def test_pilot_load_is_all_or_nothing() -> None:
    src = _busy()
    data = src.export()
    dst = _busy()
    dst.reorder([[999, 998]])
    before = dst.export()
    for part, breaker in [
        ("conversations", lambda d: d["conversations"][0].__setitem__(1, "x")),
        ("recent", lambda d: d["recent"].append(["k"])),
        ("pilot", lambda d: d["pilot"].__setitem__("calls", -1)),
        ("index", lambda d: d["index"]["requests"].append(["r", 10**9])),
    ]:
        bad = copy.deepcopy(data)
        breaker(bad)
        with pytest.raises(SnapshotError, match=part):
            dst.load(bad)
        after = dst.export()
        assert after["index"]["requests"] == before["index"]["requests"], part
        assert [r[0] for r in after["conversations"]] == [r[0] for r in before["conversations"]], part
        assert after["recent"] == before["recent"] and after["pilot"] == before["pilot"], part
    kept = dst.load(data)
    assert kept["requests"] == len(src.index) and kept["dropped_by_bounds"] == 0
    again = dst.export()
    assert again["index"]["requests"] == data["index"]["requests"]
    assert again["recent"] == data["recent"] and again["pilot"] == data["pilot"]
    # the loaded pilot plans like the one it came from
    assert dst.reorder([[1, 2, 3, 4]]) == src.reorder([[1, 2, 3, 4]])
