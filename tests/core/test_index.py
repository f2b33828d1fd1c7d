from __future__ import annotations

import random
from collections import Counter

import pytest

from contextpilot.core.index import PrefixIndex
from contextpilot.sim import RadixCacheSim

from support.clock import ManualClock


def test_insert_match_and_hits():
    ix = PrefixIndex()
    assert ix.insert([1, 2, 3], [10, 10, 10], "req-a") == 0
    assert ix.insert([1, 2, 4], [10, 10, 5], "req-b") == 20
    assert ix.match([1, 2, 3, 9]) == 30
    assert ix.tokens == 35 and ix.nodes == 4
    ix.check()


def test_evict_drops_only_unshared_blocks():
    ix = PrefixIndex()
    ix.insert([1, 2, 3], [1, 1, 1], "req-a")
    ix.insert([1, 2, 4], [1, 1, 1], "req-b")
    rep = ix.evict(["req-a", "req-zzz"])
    assert rep.removed == ["req-a"] and rep.not_found == ["req-zzz"]
    assert rep.nodes_removed == 1
    assert ix.match([1, 2, 3]) == 2 and ix.match([1, 2, 4]) == 3
    ix.evict(["req-b"])
    assert ix.nodes == 0 and len(ix) == 0
    ix.check()


def test_reinsert_same_id_replaces_path():
    ix = PrefixIndex()
    ix.insert([1, 2], [1, 1], "req-a")
    ix.insert([3], [1], "req-a")
    assert ix.match([1]) == 0 and len(ix) == 1
    ix.check()


def test_capacity_lru_mirrors_the_simulator():
    """With the same capacity, the index predicts exactly the engine's hits."""
    rnd = random.Random(7)
    weight = {b: rnd.randint(1, 20) for b in range(40)}
    ix, sim = PrefixIndex(capacity_tokens=300), RadixCacheSim(capacity=300)
    for i in range(2000):
        keys = rnd.sample(range(40), rnd.randint(1, 6)) if rnd.random() < 0.5 else [0, 1, rnd.randrange(40)]
        keys = list(dict.fromkeys(keys))
        w = [weight[k] for k in keys]
        assert ix.insert(keys, w, f"req-{i}") == sim.serve(keys, w)
        assert ix.tokens == sim.used
    ix.check()


def test_ttl_expires_unused_content():
    clock = ManualClock()
    ix = PrefixIndex(ttl=10, clock=clock)
    ix.insert([1, 2], [1, 1], "req-old")
    clock.now = 5
    ix.insert([1, 3], [1, 1], "req-new")  # touches block 1
    clock.now = 12
    assert ix.expire() == 0  # block 2 expired; req-old keeps shared block 1
    assert ix.match([1, 2]) == 1 and ix.match([1, 3]) == 2
    assert "req-old" in ix and "req-new" in ix
    clock.now = 100
    assert ix.expire() == 2
    assert len(ix) == 0 and ix.nodes == 0 and ix.stats().evicted_by_ttl == 2
    ix.check()


def test_capacity_eviction_moves_requests_up_then_drops():
    ix = PrefixIndex(capacity_tokens=3)
    ix.insert([1, 2], [1, 1], "req-a")
    ix.insert([5, 6], [1, 1], "req-b")  # over: a's leaf (2) goes, a keeps block 1
    assert "req-a" in ix and ix.match([1, 2]) == 1
    ix.insert([7], [1], "req-c")  # evicts block 1: req-a has nothing left
    assert "req-a" not in ix
    ix.check()
    assert ix.stats().evicted_by_capacity == 1


def test_request_and_node_caps():
    ix = PrefixIndex(max_requests=5, max_nodes=8)
    for i in range(50):
        ix.insert([i, i + 1000], [1, 1], f"req-{i}")
        ix.check()
    assert len(ix) <= 5 and ix.nodes <= 8


def test_node_with_thousands_of_children():
    ix = PrefixIndex()
    for i in range(3000):
        ix.insert([0, i + 1], [1, 1], f"req-{i}")
    path, node = ix.heaviest_path(Counter({0: 1, 2999: 1}))
    assert path == [0, 2999]
    ix.check()


def test_heaviest_path_prefers_weight_and_respects_multiset():
    ix = PrefixIndex()
    ix.insert([1, 2, 3], [1, 1, 1], "req-a")
    ix.insert([4, 5], [10, 1], "req-b")
    ix.insert([7, 7, 8], [2, 2, 2], "req-c")
    assert ix.heaviest_path(Counter({1: 1, 2: 1, 3: 1, 4: 1}))[0] == [4]
    assert ix.heaviest_path(Counter({1: 1, 2: 1, 3: 1}))[0] == [1, 2, 3]
    assert ix.heaviest_path(Counter({7: 1, 8: 1}))[0] == [7]
    assert ix.heaviest_path(Counter({7: 2, 8: 1}))[0] == [7, 7, 8]


def test_bad_arguments():
    with pytest.raises(ValueError):
        PrefixIndex(capacity_tokens=-1)
    with pytest.raises(ValueError):
        PrefixIndex(ttl=0)
    with pytest.raises(ValueError):
        PrefixIndex().insert([1], [1, 2], "req-x")
