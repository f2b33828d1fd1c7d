"""Conversations named by request chains (0.5.0 ``parent_request_ids``): bounds and snapshots."""

from __future__ import annotations

import pytest

from contextpilot import ContextPilot
from contextpilot.core.lineage import RequestLineage
from contextpilot.core.persist import SnapshotError

from support.clock import ManualClock


def test_parent_resolves_to_its_chain_and_none_starts_one():
    lin = RequestLineage(10, None)
    a, b = lin.resolve([None, None])
    assert a != b and a.startswith("conv-")
    lin.link(["req-1", "req-2"], [a, b])
    lin.link(["req-3"], lin.resolve(["req-1"]))
    assert lin.resolve(["req-3", "req-2", "req-unknown"])[:2] == [a, b]
    assert lin.resolve(["req-unknown"])[0] not in (a, b)  # unknown parent: a new conversation


def test_cap_and_ttl_bound_the_map():
    clock = ManualClock()
    lin = RequestLineage(3, 10.0, clock)
    lin.link([f"req-{i}" for i in range(5)], ["c"] * 5)
    assert len(lin) == 3 and lin.conversation_of("req-0") is None and lin.conversation_of("req-4") == "c"
    clock.now = 5.0
    assert lin.conversation_of("req-4") == "c"  # a lookup marks it used
    clock.now = 12.0
    assert lin.conversation_of("req-3") is None  # idle 12 s > 10 s
    assert lin.conversation_of("req-4") == "c" and len(lin) == 1


def test_chain_dedup_through_the_pilot_and_its_snapshot():
    p = ContextPilot()
    (c1,) = p.conversations_for([None])
    (r1,) = p.deduplicate_each([["doc a", "doc b"]], [c1])
    p.link_requests(["req-aaaa"], [c1])
    q = ContextPilot()
    q.load(p.export())
    (c2,) = q.conversations_for(["req-aaaa"])
    assert c2 == c1
    (r2,) = q.deduplicate_each([["doc b", "doc c"]], [c2])
    assert r1.overlapping_docs == [] and r2.overlapping_docs == ["doc b"]
    bad = p.export()
    bad["lineage"] = [["req-x", "", 1.0]]
    with pytest.raises(SnapshotError, match="lineage"):
        q.load(bad)
    assert q.conversations_for(["req-aaaa"]) == [c1]  # a refused snapshot changes nothing
