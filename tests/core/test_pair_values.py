"""Compact (int32) incidence arrays in the candidate search: the same
candidates as int64 arrays, int64 when an id does not fit, and no wrapped
product where request counts, block ids or pair codes pass 2**31 (crafted
cases at those sizes, checked against int64 inputs or a brute force)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import scipy.sparse as sp

import contextpilot.core.candidates as candidates_mod
from contextpilot.bench.workloads import synthetic_rag
from contextpilot.core.candidates import candidate_edges, incidence, popular_rank
from contextpilot.core.pair_values import with_long_blocks


def _sets(seed: int, n: int, vocab: int, per: int) -> list[frozenset[int]]:
    rng = random.Random(seed)
    return [frozenset(rng.sample(range(vocab), rng.randrange(1, per))) for _ in range(n)]


def _clustered(n: int) -> list[frozenset[int]]:
    wl = synthetic_rag(n, n_docs=n // 2, n_topics=40, topic_size=50, seed=4)
    return [frozenset(c) for c in wl.contexts]


def test_compact_incidence_is_int32_with_the_same_entries() -> None:
    sets = _sets(0, 500, 3000, 25)
    rows, cols = incidence(sets)
    crows, ccols = incidence(sets, compact=True)
    assert rows.dtype == cols.dtype == np.int64
    assert crows.dtype == ccols.dtype == np.int32
    assert (crows == rows).all() and (ccols == cols).all()


@pytest.mark.parametrize(("top", "dtype"), [(2**31 - 1, np.int32), (2**31, np.int64), (2**40, np.int64)])
def test_compact_incidence_widens_when_an_id_does_not_fit(top: int, dtype: type) -> None:
    sets = [frozenset({0, 5}), frozenset({top, 7}), frozenset({3})]
    rows, cols = incidence(sets, compact=True)
    assert rows.dtype == cols.dtype == dtype
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(0, 0), (0, 5), (1, 7), (1, top), (2, 3)]


@pytest.mark.parametrize(
    "make",
    [
        # long posting lists: windows, rarest blocks, exact values (<= 20k requests)
        lambda: _clustered(3000),
        lambda: _sets(1, 2000, 400, 30),
        lambda: _sets(2, 1500, 50_000, 12),
    ],
)
def test_compact_candidates_equal_the_wide_ones(monkeypatch, make) -> None:
    sets = make()
    weights = np.asarray([1 + (b * 7919) % 300 for b in range(max(map(max, sets)) + 1)], dtype=np.int64)
    for kw in ({}, {"budget": 5000}, {"budget": 5000, "exact_max": 0}):
        compact = candidate_edges(sets, weights, 6, with_exactness=True, **kw)
        with monkeypatch.context() as m:
            m.setattr(candidates_mod, "incidence", lambda s, compact=False: incidence(s))
            wide_ = candidate_edges(sets, weights, 6, with_exactness=True, **kw)
        assert compact[3] == wide_[3]
        for x, y in zip(compact[:3], wide_[:3]):
            assert x.dtype == y.dtype and np.array_equal(x, y)


def test_posting_pairs_sort_key_does_not_wrap() -> None:
    # block ids x (largest key + 1) passes 2**31: int32 inputs must give the int64 result
    rng = np.random.default_rng(0)
    rows = np.repeat(np.arange(3000, dtype=np.int64), 4)
    cols = rng.integers(0, 100_000, len(rows)) // 200 * 200  # 500 lists of ~24 holders
    key = rng.permutation(100_000)[:3000].astype(np.int64) + 90_000
    assert int(cols.max()) * int(key.max() + 1) >= 2**31
    got = candidates_mod._posting_pairs(rows.astype(np.int32), cols.astype(np.int32), key, 3)
    want = candidates_mod._posting_pairs(rows, cols, key, 3)
    for x, y in zip(got, want):
        assert np.array_equal(x, y)


def test_rarest_and_popular_rank_do_not_wrap() -> None:
    # rows x (max frequency + 1) x blocks, and rows x blocks, pass 2**31
    rng = np.random.default_rng(1)
    n, nb = 60_000, 60_000
    lens = rng.integers(1, 6, n)  # ragged: popular_rank takes its full sort
    rows = np.repeat(np.arange(n, dtype=np.int64), lens)
    cols = rng.integers(0, nb, len(rows))
    cols[::3] = 7  # one block held by many
    freq = np.bincount(cols, minlength=nb)
    assert n * nb >= 2**31
    r32, c32 = rows.astype(np.int32), cols.astype(np.int32)
    assert (candidates_mod._rarest(r32, c32, freq, 2) == candidates_mod._rarest(rows, cols, freq, 2)).all()
    assert (popular_rank(r32, c32, n, freq) == popular_rank(rows, cols, n, freq)).all()


def test_long_block_values_with_pair_codes_past_int32() -> None:
    # n * n > 2**31: the pair code lo * n + hi must not wrap for int32 pairs
    n = 50_000
    held = {49_990: [1, 2, 3], 49_997: [2, 3, 9], 49_998: [1, 2, 3, 4], 49_999: [3, 4, 9]}
    lr = np.repeat(np.fromiter(held, dtype=np.int64), [len(v) for v in held.values()])
    lc = np.fromiter((c for v in held.values() for c in v), dtype=np.int64)
    weights = np.arange(10, dtype=np.float64) * 10 + 1
    wa = np.array([49_998, 49_999, 49_990, 49_997], dtype=np.int32)
    wb = np.array([49_999, 49_990, 49_998, 49_998], dtype=np.int32)
    short = sp.csr_matrix((n, n))
    got = with_long_blocks(short, lr.astype(np.int32), lc.astype(np.int32), weights, n, wa, wb)
    for a, b in zip(wa.tolist(), wb.tolist()):
        expected = sum(weights[c] for c in set(held[a]) & set(held[b]))
        assert got[a, b] == expected and got[b, a] == expected
    assert got.nnz == 2 * len({(min(a, b), max(a, b)) for a, b in zip(wa.tolist(), wb.tolist())})
