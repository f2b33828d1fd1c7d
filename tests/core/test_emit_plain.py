"""The flat layout without live state (``Emitter.emit_plain``) gives the
schedule and sequences of ``Emitter.emit`` exactly, on forests from the
Python loop and from the compiled merge with its rotations; and
``Forest.savings`` sums the same in numpy as in Python."""

from __future__ import annotations

import random

import pytest

from contextpilot.bench.workloads import synthetic_rag
from contextpilot.core.cluster import Forest, build_forest
from contextpilot.core.order import Emitter, PlanItems


def _requests(seed: int, n: int, vocab: int) -> list[list[int]]:
    """Ragged requests; pids are unique within a request (as planning ids are)."""
    rng = random.Random(seed)
    return [rng.sample(range(vocab), rng.randrange(1, 20)) for _ in range(n)]


def _both(reqs: list[list[int]], tokens: list[int], kernel_min: int) -> None:
    forest = build_forest([frozenset(r) for r in reqs], tokens, kernel_min=kernel_min)
    emitter = Emitter(PlanItems([], tokens, reqs))
    order, seqs = emitter.emit(forest, reqs)
    plain_order, flat, lens = emitter.emit_plain(forest, reqs)
    assert plain_order == order
    assert lens == [len(s) for s in seqs]
    assert flat == [p for s in seqs for p in s]
    assert sorted(order) == list(range(len(reqs)))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("kernel_min", [0, 10**9])
def test_same_layout_as_emit_on_random_requests(seed: int, kernel_min: int) -> None:
    vocab = [30, 200, 1000][seed % 3]
    reqs = _requests(seed, 400, vocab)
    tokens = [random.Random(seed + b).randrange(1, 300) for b in range(vocab)]
    _both(reqs, tokens, kernel_min)


@pytest.mark.parametrize("kernel_min", [0, 10**9])
def test_same_layout_as_emit_on_clustered_requests(kernel_min: int) -> None:
    wl = synthetic_rag(3000, n_docs=1500, n_topics=40, topic_size=50, seed=3)
    vocab = max(max(c) for c in wl.contexts) + 1
    _both([list(c) for c in wl.contexts], [wl.token_counter(b) for b in range(vocab)], kernel_min)


def test_emit_plain_refuses_live_state() -> None:
    from contextpilot.core.recent import RecentRequests

    recent = RecentRequests(8)
    recent.add([1, 2])
    forest = Forest(1, [], [], [frozenset({0})], [0])
    with pytest.raises(AssertionError):
        Emitter(PlanItems([1], [1], [[0]]), recent=recent).emit_plain(forest, [[0]])


@pytest.mark.parametrize("n", [50, 3000])  # below and above the numpy path's size
def test_savings_in_numpy_equals_the_python_sum(n: int) -> None:
    reqs = _requests(n, n, 300)
    tokens = [random.Random(b).randrange(1, 10**6) for b in range(300)]
    forest = build_forest([frozenset(r) for r in reqs], tokens)
    assert (len(forest.left) >= 1000) is (n >= 1000)  # each path is taken
    expected = float(sum(sum(tokens[b] for b in s) for s in forest.inter[forest.n_leaves :]))
    assert forest.savings(tokens) == expected
    assert forest.savings([float(t) + 0.5 for t in tokens]) == pytest.approx(
        sum(sum(tokens[b] + 0.5 for b in s) for s in forest.inter[forest.n_leaves :])
    )
