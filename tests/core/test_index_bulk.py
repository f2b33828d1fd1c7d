"""Bulk recording of a batch (``PrefixIndex.insert_batch``) against
recording its requests one by one with ``insert``.

When the batch fits the caps, the two give the same index (paths, tokens,
refs, ticks, request ends and order, counters). When it does not, bulk
recording equals one-by-one recording with the caps applied once after the
batch (the oracle: the same real index with its caps lifted for the batch,
then restored), i.e. LRU-order eviction; on a batch that never sends
evicted content again, it equals one-by-one recording with the caps on.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from contextpilot.core.blocks import BlockTable
from contextpilot.core.index import PrefixIndex
from contextpilot.core.pilot import ContextPilot
from contextpilot.core.planner import plan


def _tok(k: int) -> int:
    return k % 7 + 1


def _content(ix: PrefixIndex):
    nodes = {}
    stack = [(ix.root, ())]
    while stack:
        v, path = stack.pop()
        for k, c in v.children.items():
            p = (*path, k)
            nodes[p] = (c.tokens, c.refs, c.tick, sorted(c.ends or ()))
            stack.append((c, p))
    s = ix.stats()
    counters = (s.requests, s.nodes, s.tokens, s.inserted, s.hit_tokens, s.sent_tokens, s.evicted_by_capacity)
    return nodes, ix.request_ids(), counters


def _rows(rng: random.Random, n: int, vocab: int = 30) -> list[list[int]]:
    """Requests extending earlier ones (shared prefixes), fresh ones, repeats."""
    out: list[list[int]] = []
    for _ in range(n):
        if out and rng.random() < 0.5:
            base = rng.choice(out)
            row = base[: rng.randrange(len(base) + 1)] + [
                rng.randrange(vocab) for _ in range(rng.randrange(4))
            ]
        else:
            row = [rng.randrange(vocab) for _ in range(rng.randrange(1, 9))]
        out.append(row or [1])
    return out


def _bulk(ix: PrefixIndex, rows: list[list[int]], prefix: str = "b") -> list[int]:
    flat = [k for r in rows for k in r]
    hits = ix.insert_batch(
        np.asarray(flat, dtype=np.uint64),
        np.asarray([_tok(k) for k in flat], dtype=np.int64),
        np.asarray([len(r) for r in rows], dtype=np.int64),
        [f"{prefix}{i}" for i in range(len(rows))],
    )
    return hits.tolist()


def _one_by_one(ix: PrefixIndex, rows: list[list[int]], prefix: str = "b") -> list[int]:
    return [ix.insert(r, [_tok(k) for k in r], f"{prefix}{i}") for i, r in enumerate(rows)]


def _pair(caps: dict, pre: list[list[int]]) -> tuple[PrefixIndex, PrefixIndex]:
    a, b = PrefixIndex(clock=lambda: 0.0, **caps), PrefixIndex(clock=lambda: 0.0, **caps)
    _one_by_one(a, pre, "p")
    _one_by_one(b, pre, "p")
    return a, b


def _caps_after(a: PrefixIndex, caps: dict, batch: list[list[int]]) -> list[int]:
    """The oracle: record ``batch`` one by one on ``a`` with its caps lifted,
    then restore ``caps`` and apply them once; the hits per request."""
    a.max_nodes, a.max_requests, a.capacity_tokens = 10**9, 10**9, None
    hits = _one_by_one(a, batch)
    a.max_nodes, a.max_requests, a.capacity_tokens = (
        caps["max_nodes"],
        caps["max_requests"],
        caps["capacity_tokens"],
    )
    a.expire()
    return hits


@pytest.mark.parametrize("seed", range(60))
def test_same_index_as_one_by_one_when_the_batch_fits(seed):
    rng = random.Random(seed)
    pre, batch = _rows(rng, rng.randrange(30)), _rows(rng, rng.randrange(1, 80))
    a, b = _pair({}, pre)
    assert _bulk(b, batch) == _one_by_one(a, batch)
    a.check(), b.check()
    assert _content(b) == _content(a)


@pytest.mark.parametrize("seed", range(120))
def test_lru_eviction_when_the_batch_does_not_fit(seed):
    rng = random.Random(seed)
    caps = {
        "max_nodes": rng.choice([10**6, 40, 12]),
        "max_requests": rng.choice([10**6, 25, 6]),
        "capacity_tokens": rng.choice([None, 70.0, 20.0]),
    }
    pre, batch = _rows(rng, rng.randrange(30)), _rows(rng, rng.randrange(1, 80))
    a, b = _pair(caps, pre)
    want_hits = _caps_after(a, caps, batch)
    assert _bulk(b, batch) == want_hits
    a.check(), b.check()
    assert _content(b) == _content(a)


def test_a_batch_that_sends_nothing_evicted_again_matches_one_by_one_with_caps():
    # disjoint requests: the caps evict the oldest requests' blocks, deepest first
    rng = random.Random(3)
    rows = [[1000 * i + j for j in range(rng.randrange(1, 6))] for i in range(60)]
    for caps in ({"max_nodes": 25}, {"capacity_tokens": 40.0}, {"max_requests": 7}):
        a, b = _pair(caps, _rows(rng, 10))
        want = _one_by_one(a, rows)
        assert _bulk(b, rows) == want
        b.check()
        assert _content(b) == _content(a)
        assert b.stats().evicted_by_capacity > 0


def test_bad_batches_are_refused_and_change_nothing():
    ix = PrefixIndex()
    _bulk(ix, [[1, 2], [1, 3]])
    before = _content(ix)
    with pytest.raises(ValueError, match="already live"):
        _bulk(ix, [[4]])  # b0 is live
    with pytest.raises(ValueError, match="line up"):
        ix.insert_batch(np.asarray([1, 2], dtype=np.uint64), np.asarray([1, 1]), np.asarray([3]), ["x"])
    assert _content(ix) == before


def test_pilot_records_a_batch_as_one_by_one_recording_would():
    rng = random.Random(5)
    warm = [[f"doc {rng.randrange(200)}" for _ in range(rng.randrange(1, 12))] for _ in range(300)]
    batch = [[f"doc {rng.randrange(200)}" for _ in range(rng.randrange(1, 12))] for _ in range(3000)]
    pilot = ContextPilot(max_nodes=5000)
    pilot.reorder(warm)
    # the one-by-one recording of the same plan, on an index with the same history
    ref = ContextPilot(max_nodes=5000)
    ref.reorder(warm)
    p = plan(batch, table=BlockTable(), index=ref.index, recent=ref._recent, with_keys=True)
    r = pilot.reorder_detailed(batch)
    assert (r.order, r.reordered) == (p.order, p.contexts)
    ix = ref.index
    ix.max_nodes = 10**9
    hits = [ix.insert(k, t, rid) for k, t, rid in zip(p.keys, p.tokens, r.request_ids)]
    ix.max_nodes = 5000
    ix.expire()
    assert r.cached_tokens == hits and sum(hits) > 0
    pilot.index.check()
    got, want = _content(pilot.index), _content(ix)
    assert got[0].keys() == want[0].keys()
    mine = set(r.request_ids)  # warm-up ids differ between the two pilots
    assert [x if x in mine else "warm" for x in got[1]] == [x if x in mine else "warm" for x in want[1]]
    assert pilot.index.stats().nodes == 5000


# -- the exported state (what a snapshot holds) -------------------------------


@pytest.mark.parametrize("seed", range(40))
def test_export_matches_one_by_one_when_the_batch_fits(seed):
    rng = random.Random(1000 + seed)
    pre, batch = _rows(rng, rng.randrange(30)), _rows(rng, rng.randrange(1, 80))
    a, b = _pair({}, pre)
    assert _bulk(b, batch) == _one_by_one(a, batch)
    assert b.export() == a.export()


@pytest.mark.parametrize("seed", range(60))
def test_export_matches_one_by_one_with_the_caps_applied_after_the_batch(seed):
    rng = random.Random(2000 + seed)
    caps = {
        "max_nodes": rng.choice([40, 12, 5]),
        "max_requests": rng.choice([10**6, 25, 6]),
        "capacity_tokens": rng.choice([None, 70.0, 20.0]),
    }
    pre, batch = _rows(rng, rng.randrange(30)), _rows(rng, rng.randrange(20, 80))
    a, b = _pair(caps, pre)
    want_hits = _caps_after(a, caps, batch)
    assert _bulk(b, batch) == want_hits
    assert b.stats().evicted_by_capacity > 0  # the caps did evict
    assert b.export() == a.export()


@pytest.mark.parametrize("caps", [{"max_nodes": 25}, {"capacity_tokens": 40.0}, {"max_requests": 7}])
def test_export_matches_plain_one_by_one_when_evicted_content_is_not_resent(caps):
    rng = random.Random(7)
    rows = [[1000 * i + j for j in range(rng.randrange(1, 6))] for i in range(60)]
    a, b = _pair(caps, _rows(rng, 10))
    want = _one_by_one(a, rows)
    assert _bulk(b, rows) == want
    assert b.stats().evicted_by_capacity > 0
    assert b.export() == a.export()
    # and a restored copy of the bulk-recorded index is the same index
    c = PrefixIndex(clock=lambda: 0.0, **caps)
    c.load(b.export())
    c.check()
    assert c.export() == a.export()
