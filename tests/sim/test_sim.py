from __future__ import annotations

import itertools
import random

import pytest

from contextpilot.sim import PagedCacheSim, RadixCacheSim
from contextpilot.sim.bounds import dedup_ceiling, trie_bound, trie_tokens
from contextpilot.sim.oracle import optimal_orders, optimal_savings


def test_radix_hits_and_lru_eviction():
    sim = RadixCacheSim(capacity=10)
    assert sim.serve([1, 2], [3, 3]) == 0
    assert sim.serve([1, 2, 3], [3, 3, 3]) == 6
    assert sim.used == 9
    assert sim.serve([4], [3]) == 0  # over capacity: LRU leaf (block 3) goes
    assert sim.used <= 10
    assert sim.match([1, 2, 3], [3, 3, 3]) == 6
    assert sim.hit_ratio == pytest.approx(6 / 18)


def test_radix_unbounded_equals_trie_savings():
    rnd = random.Random(1)
    weight = {b: rnd.randint(1, 9) for b in range(6)}
    keys = [[rnd.randrange(6) for _ in range(4)] for _ in range(50)]
    prompts = [(k, [weight[b] for b in k]) for k in keys]
    sim = RadixCacheSim()
    for k, w in prompts:
        sim.serve(k, w)
    total = sum(sum(w) for _, w in prompts)
    assert sim.hit_tokens == total - trie_tokens(prompts)
    assert trie_bound(prompts) == pytest.approx(sim.hit_ratio)


def test_paged_counts_whole_leading_pages():
    sim = PagedCacheSim(page_tokens=4)
    assert sim.serve([1, 2], [6, 6]) == 0
    assert sim.serve([1, 2], [6, 6]) == 12
    # same first block, different second: only the first full page matches
    assert sim.serve([1, 3], [6, 6]) == 4
    small = PagedCacheSim(capacity=8, page_tokens=4)
    small.serve([1], [8])
    small.serve([2], [8])
    assert small.serve([1], [8]) == 0  # evicted by LRU
    assert len(small.pages) <= 2


def test_bounds_order():
    prompts = [([0, 1, 2], [5, 3, 3]), ([0, 2, 1], [5, 3, 3])]
    assert trie_bound(prompts) == pytest.approx(5 / 22)
    assert dedup_ceiling(prompts) == pytest.approx(1 - 11 / 22)


def _savings(orders, w):
    prompts = [(o, [w[b] for b in o]) for o in orders]
    return sum(sum(p[1]) for p in prompts) - trie_tokens(prompts)


def test_oracle_matches_brute_force():
    rnd = random.Random(0)
    for _ in range(150):
        n, u = rnd.randint(1, 4), rnd.randint(2, 6)
        sets = [rnd.sample(range(u), rnd.randint(1, min(4, u))) for _ in range(n)]
        w = [rnd.randint(1, 5) for _ in range(u)]
        brute = max(
            _savings(list(c), w) for c in itertools.product(*[itertools.permutations(s) for s in sets])
        )
        assert optimal_savings(sets, w) == brute
        orders = optimal_orders(sets, w)
        assert [sorted(o) for o in orders] == [sorted(s) for s in sets]
        assert _savings(orders, w) == brute


def test_oracle_guards_size():
    with pytest.raises(ValueError):
        optimal_savings([[1]] * 13, [1] * 2)
    with pytest.raises(ValueError):
        optimal_savings([[1, 1]], [1] * 2)
