"""The flat-array batch planner matches the straightforward one exactly.

The oracle (``support.planner_reference.reference_plan``) is the planner as it was
before interning, chunking and assembly went to numpy arrays; both call the
same clustering and layout code, so any difference is the planner's own.
"""

from __future__ import annotations

import random
from itertools import chain

import numpy as np
import pytest

from contextpilot.bench.scale import plan_digest
from contextpilot.bench.workloads import synthetic_rag
from contextpilot.core.blocks import BlockTable
from contextpilot.core.index import PrefixIndex
from contextpilot.core.planner import plan
from contextpilot.core.recent import RecentRequests

from support.planner_reference import reference_plan


@pytest.fixture(scope="module")
def synthetic():
    return synthetic_rag(4000, n_docs=2000, n_topics=60, topic_size=60, seed=11)


def _messy(seed: int, n: int = 700, vocab: int = 400) -> list[list[int]]:
    """Ragged requests with blocks repeated within a request."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        row = [rng.randrange(vocab) for _ in range(rng.randrange(1, 25))]
        if rng.random() < 0.2:
            row += rng.sample(row, min(3, len(row)))
        out.append(row)
    return out


@pytest.mark.parametrize("chunk_size", [100_000, 1100])
def test_matches_reference_on_synthetic(synthetic, chunk_size):
    kw = dict(token_counter=synthetic.token_counter, chunk_size=chunk_size)
    got = plan(synthetic.contexts, **kw)
    want = reference_plan(synthetic.contexts, **kw)
    assert got == want
    assert len(got.groups) > 1 and sorted(chain.from_iterable(got.groups)) == list(range(4000))


def test_workers_do_not_change_the_plan(synthetic):
    kw = dict(token_counter=synthetic.token_counter, chunk_size=1000)
    one = plan(synthetic.contexts, **kw)
    two = plan(synthetic.contexts, workers=2, **kw)
    assert two == one
    assert plan_digest(two.order, two.contexts) == plan_digest(one.order, one.contexts)


def test_workers_do_not_change_a_plan_following_live_state():
    contexts = _messy(4, n=400)
    warm = plan(_messy(9, n=50), with_keys=True)

    def live(workers: int):
        index, recent = PrefixIndex(), RecentRequests()
        for i, (keys, toks) in enumerate(zip(warm.keys, warm.tokens)):
            index.insert(keys, toks, f"r{i}")
            recent.add(keys)
        return plan(contexts, index=index, recent=recent, chunk_size=150, workers=workers)

    assert live(2) == live(1)


@pytest.mark.parametrize(
    "make",
    [
        lambda rows: rows,  # small dense ids
        lambda rows: [[b * 7_919_993 - 2**40 for b in r] for r in rows],  # sparse, negative: sort path
        lambda rows: [[b + 2**64 for b in r] for r in rows],  # beyond int64: dict path
        lambda rows: [[f"doc {b}" for b in r] for r in rows],  # text blocks
    ],
    ids=["dense", "sparse", "huge", "str"],
)
@pytest.mark.parametrize("n", [90, 700], ids=["lists", "flat"])
def test_matches_reference_with_repeats_and_ragged_rows(make, n):
    contexts = make(_messy(5, n=n))
    for chunk_size in (100_000, 150):
        got = plan(contexts, chunk_size=chunk_size, with_keys=True)
        want = reference_plan(contexts, chunk_size=chunk_size, with_keys=True)
        assert got == want
        assert got.keys and got.tokens


@pytest.mark.parametrize("n", [60, 300], ids=["lists", "flat"])
def test_matches_reference_with_live_state_and_a_used_table(n):
    contexts = _messy(8, n=n)
    counter = {b: 10 + b % 50 for b in range(400)}

    def state():
        table, index, recent = BlockTable(counter), PrefixIndex(), RecentRequests()
        table.intern_many([[399, 398], [5]])  # ids already taken before the batch
        warm = plan(_messy(9, n=50), table=BlockTable(counter), with_keys=True)
        for i, (keys, toks) in enumerate(zip(warm.keys, warm.tokens)):
            index.insert(keys, toks, f"r{i}")
            recent.add(keys)
        return table, index, recent

    t1, i1, r1 = state()
    t2, i2, r2 = state()
    for chunk_size in (100_000, n // 4):
        got = plan(contexts, table=t1, index=i1, recent=r1, chunk_size=chunk_size)
        want = reference_plan(contexts, table=t2, index=i2, recent=r2, chunk_size=chunk_size)
        assert got == want
        assert t1.block_list == t2.block_list and t1.token_list == t2.token_list


def test_empty_batch_and_empty_rows():
    assert plan([]) == reference_plan([])
    contexts = [[1, 2], [], [2, 3, 3], []]
    assert plan(contexts, chunk_size=2) == reference_plan(contexts, chunk_size=2)


@pytest.mark.parametrize(
    "contexts",
    [
        [[5, 3, 5, 9], [9, 3], [12, 5]],
        [[2**70, 1], [1, 2**70, 2**70]],
        [[-4, 10**12], [10**12, 7]],
        [["b", "a", "b"], ["c"]],
        [[], [1]],
        [[np.int64(3), 3, True], [1, 7]],  # int-likes: the first one seen is kept
        [[np.int64(3), 3, True], [1, 2.0, 2]],  # a float equal to an int: dict path
    ],
)
def test_intern_flat_equals_intern_many(contexts):
    calls_flat, calls_many = [], []
    a = BlockTable(lambda b: calls_flat.append(b) or 3)
    b = BlockTable(lambda b: calls_many.append(b) or 3)
    a.intern(1), b.intern(1)  # an id taken before
    ids, starts = a.intern_flat(contexts)
    rows = b.intern_many(contexts)
    assert ids.tolist() == list(chain.from_iterable(rows))
    assert np.diff(starts).tolist() == [len(r) for r in rows]
    assert calls_flat == calls_many and a.block_list == b.block_list
    assert list(map(type, a.block_list)) == list(map(type, b.block_list))


def test_intern_flat_keeps_earlier_blocks_when_the_counter_fails():
    def counter(b):
        if b == 7:
            raise ValueError("no length for 7")
        return 1

    a, b = BlockTable(counter), BlockTable(counter)
    contexts = [[3, 4], [4, 7, 9]]
    with pytest.raises(ValueError, match="no length for 7"):
        a.intern_flat(contexts)
    with pytest.raises(ValueError, match="no length for 7"):
        b.intern_many(contexts)
    assert a.block_list == b.block_list == [3, 4]

    bad = BlockTable(lambda blk: -1 if blk == 9 else 1)
    with pytest.raises(ValueError, match="expected an int >= 0"):
        bad.intern_flat(contexts)
    assert bad.block_list == [3, 4, 7]


def test_popular_rank_partition_path_matches_the_full_sort(monkeypatch):
    from contextpilot.core import candidates

    rng = np.random.default_rng(1)
    cases = []
    for _ in range(200):
        n, nb = int(rng.integers(1, 60)), int(rng.integers(1, 80))
        sizes = rng.integers(0, min(nb, 12) + 1, size=n)
        cases.append((n, nb, [frozenset(rng.choice(nb, size=int(s), replace=False).tolist()) for s in sizes]))
    fast = []
    for n, nb, sets in cases:
        rows, cols = candidates.incidence(sets)
        assert candidates._three_smallest(rows, cols, n, nb) is not None
        fast.append(candidates.popular_rank(rows, cols, n, np.bincount(cols, minlength=nb)))
    monkeypatch.setattr(candidates, "_three_smallest", lambda *a: None)
    for (n, nb, sets), got in zip(cases, fast):
        rows, cols = candidates.incidence(sets)
        assert (got == candidates.popular_rank(rows, cols, n, np.bincount(cols, minlength=nb))).all()
