"""Quality of the batch planner's forest: structure, the rotation sweep, the
loss-aware priority, and the hit ratios it reaches on LoCoMo and synthetic
batches (the simulator is deterministic, so figures are exact)."""

from __future__ import annotations

import json
import random

import pytest

from contextpilot.bench import methods
from contextpilot.bench.runner import capacities, oracle_gap, run_batch
from contextpilot.bench.workloads import locomo_chunks, locomo_mem, synthetic_rag
from contextpilot.core import cluster, rotations
from contextpilot.core.order import Emitter, PlanItems
from contextpilot.sim.bounds import trie_tokens

from support.paths import REPO

RESULTS = REPO / "docs" / "results" / "results.json"


def _instance(rnd: random.Random, n: int, universe: int, size: int) -> tuple[list[list[int]], list[int]]:
    """Requests drawn around a few themes, so they overlap unevenly."""
    weights = [rnd.randint(1, 50) for _ in range(universe)]
    themes = [rnd.sample(range(universe), min(universe, 2 * size)) for _ in range(3)]
    reqs = []
    for _ in range(n):
        pool = rnd.choice(themes) + rnd.sample(range(universe), 3)
        reqs.append(list(dict.fromkeys(rnd.sample(pool, size))))
    return reqs, weights


def _shared(reqs: list[list[int]], weights: list[int], forest: cluster.Forest) -> int:
    """Tokens the emitted plan shares at an unbounded cache (trie savings)."""
    _, seqs = Emitter(PlanItems([], weights, reqs)).emit(forest, reqs)
    prompts = [(s, [weights[b] for b in s]) for s in seqs]
    return sum(sum(w) for _, w in prompts) - trie_tokens(prompts)


def _check_forest(reqs: list[list[int]], forest: cluster.Forest) -> None:
    n = forest.n_leaves
    seen: list[int] = []
    for root in forest.roots:
        stack = [root]
        while stack:
            v = stack.pop()
            ch = forest.children(v)
            if ch is None:
                seen.append(v)
                continue
            for c in ch:
                assert c < v, "a merge must be numbered after its children"
                assert forest.inter[v] <= forest.inter[c]
            stack.extend(ch)
    assert sorted(seen) == list(range(n)), "every request in exactly one tree"
    for j in range(len(forest.left)):
        leaves, stack = [], [n + j]
        while stack:
            v = stack.pop()
            ch = forest.children(v)
            leaves.extend([v] if ch is None else [])
            stack.extend(ch or ())
        assert forest.inter[n + j] == frozenset.intersection(*(frozenset(reqs[i]) for i in leaves))


def test_forest_invariants_and_savings_match_the_emitted_plan():
    rnd = random.Random(7)
    for _ in range(30):
        reqs, w = _instance(rnd, rnd.randint(2, 60), rnd.randint(8, 40), rnd.randint(2, 8))
        forest = cluster.build_forest([frozenset(r) for r in reqs], w)
        _check_forest(reqs, forest)
        # the forest's own account equals what the emitted prompts share
        assert forest.savings(w) == _shared(reqs, w, forest)


def test_rotation_sweep_never_loses_and_sometimes_gains(monkeypatch):
    rnd = random.Random(11)
    cases = [_instance(rnd, rnd.randint(10, 80), rnd.randint(10, 40), rnd.randint(3, 8)) for _ in range(30)]
    with_rot = [cluster.build_forest([frozenset(r) for r in q], w) for q, w in cases]
    monkeypatch.setattr(rotations, "REBRACKET_ROUNDS", 0)
    without = [cluster.build_forest([frozenset(r) for r in q], w) for q, w in cases]
    gains = [a.savings(w) - b.savings(w) for a, b, (_, w) in zip(with_rot, without, cases)]
    assert min(gains) >= 0
    assert sum(g > 0 for g in gains) >= 3, gains


def test_rebracket_picks_the_heavier_inner_pair():
    # (b, c) merge first on their shared block 10; x, seen later, shares the
    # much heavier blocks 20, 21 with b: the rotation makes (x, b) the pair.
    sets = [frozenset({1, 20, 21, 2}), frozenset({1, 10, 20, 21}), frozenset({1, 10, 3})]
    w = [0] * 30
    w[1], w[10], w[20], w[21] = 5, 30, 20, 20
    n = 3
    left, right = [1, 0], [2, 3]  # node 3 = (b, c), node 4 = (x, node 3)
    inter = list(sets) + [sets[1] & sets[2]]
    inter.append(sets[0] & inter[3])
    gained = rotations.rebracket(n, left, right, inter, w)
    assert gained == 45 - 35
    forest = cluster.Forest(n, *rotations.renumbered(n, left, right, inter, [4]))
    _check_forest([sorted(s) for s in sets], forest)
    assert forest.savings(w) == 5 + 45


@pytest.fixture(scope="module", params=["mem", "chunks"])
def locomo(request, locomo_path):
    return {"mem": locomo_mem, "chunks": locomo_chunks}[request.param](locomo_path)


def _reference_published(workload: str) -> dict[str, float]:
    """The reference release's (PyPI contextpilot 0.5.0) batch hit ratios per
    capacity, as measured by the benchmark on the same simulator and workload
    and published in docs/results/results.json (it runs in its own
    virtualenv, so not inside this test)."""
    data = json.loads(RESULTS.read_text())
    wl = next(w for w in data["workloads"] if w["name"] == workload)
    key = ("reference", "batch", "radix")
    row = next(r for r in wl["rows"] if (r["method"], r["mode"], r["cache"]) == key)
    return row["hit"]


#: REGRESSION RATCHETS, not claims: (floor, measured) for the batch hit ratio at
#: an unbounded radix cache. Reason: the loss-aware priority and the rotation
#: sweep lifted mem from .6096 and chunks from .5565; a change that gives part of
#: that back should be noticed and argued. The figure is the same at 64x and 16x
#: (the plan keeps each group's prefix together), so one capacity is checked.
#: Measured on the main branch's planner (docs/results/results.json).
RATCHET = {"locomo-mem": (0.6105, 0.6107), "locomo-chunks": (0.5595, 0.5600), "synthetic": (0.64, 0.6444)}


@pytest.mark.locomo
def test_locomo_batch_beats_the_reference_at_every_capacity(locomo):
    """The design target: at least the reference's hit ratio at each capacity
    (its figures differ by capacity, so each one is a separate check)."""
    caps = capacities(locomo)
    ours = run_batch(locomo, "contextpilot", caps)[0].hit
    ref = _reference_published(locomo.name)
    assert set(ref) == {label for label, _ in caps}
    for label, _ in caps:
        assert ours[label] >= ref[label], (label, ours, ref)
    floor, measured = RATCHET[locomo.name]
    assert ours["inf"] >= floor, f"regression ratchet: {ours['inf']:.4f} < {floor} (measured {measured})"


@pytest.mark.locomo
def test_locomo_small_batches_near_optimum(locomo):
    """Within 1.5% of the exact optimum overall, and no small batch worse
    than 80% of it (the previous planner had batches at 66-75%)."""
    gap = oracle_gap(locomo, methods.ours_batch, trials=60)
    assert gap["ratio"] >= 0.985, gap
    assert gap["worst"] >= 0.8, gap


def test_synthetic_batch_beats_frequency_order_and_the_reference():
    wl = synthetic_rag(2000)
    caps = capacities(wl)
    ours = run_batch(wl, "contextpilot", caps)[0].hit
    freq = run_batch(wl, "frequency", caps)[0].hit  # the strongest simple baseline, same run
    ref = _reference_published(wl.name)
    for label, _ in caps:
        assert ours[label] > freq[label] + 0.1, (label, ours, freq)  # .644 vs .491 when measured
        assert ours[label] >= ref[label], (label, ours, ref)
    floor, measured = RATCHET["synthetic"]
    assert ours["inf"] >= floor, f"regression ratchet: {ours['inf']:.4f} < {floor} (measured {measured})"
