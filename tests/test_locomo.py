"""On real LoCoMo workloads the planner must beat the simple orders (by the
simulator, not by timings), and stay near the exact optimum on small
batches."""

from __future__ import annotations

import random

import pytest

from contextpilot.bench import methods
from contextpilot.bench.runner import capacities, run_batch, run_online
from contextpilot.bench.workloads import locomo_chunks, locomo_mem, synthetic_rag
from contextpilot.core.blocks import BlockTable
from contextpilot.sim.bounds import trie_tokens
from contextpilot.sim.oracle import optimal_savings


@pytest.fixture(scope="module", params=["mem", "chunks"])
def workload(request, locomo_path):
    make = {"mem": locomo_mem, "chunks": locomo_chunks}[request.param]
    return make(locomo_path)


def test_batch_beats_retrieval_and_frequency_order(workload):
    caps = capacities(workload)
    rows = {m: run_batch(workload, m, caps) for m in ("retrieval", "frequency", "contextpilot")}
    for label, _ in caps:
        ours = rows["contextpilot"].hit[label]
        assert ours > rows["frequency"].hit[label] + 0.05, label
        assert ours > rows["retrieval"].hit[label] + 0.2, label


def test_online_beats_retrieval_order(workload):
    wl = workload.subset(600)
    caps = capacities(wl)
    base = run_batch(wl, "retrieval", caps)
    online = run_online(wl, caps)
    for label, _ in caps:
        assert online.hit[label] > base.hit[label] + 0.05, label


def _planned_savings(sets, w):
    order, seqs = methods.ours_batch(sets, lambda b: w[b])
    prompts = [(s, [w[b] for b in s]) for s in seqs]
    return sum(sum(p[1]) for p in prompts) - trie_tokens(prompts)


@pytest.mark.parametrize("source", ["locomo", "synthetic"])
def test_oracle_gap_on_small_batches(source, request):
    """Token savings within 3% of the exact optimum (N <= 12, <= 6 blocks)."""
    rnd = random.Random(0)
    if source == "locomo":
        wl = locomo_mem(request.getfixturevalue("locomo_path"))
    else:
        wl = synthetic_rag(3000, n_topics=40, topic_size=16, seed=3)
    table = BlockTable(wl.token_counter)
    ids = table.intern_many(wl.contexts)
    w = table.token_list
    by_group: dict[int, list[int]] = {}
    for i, g in enumerate(wl.groups):
        by_group.setdefault(g, []).append(i)
    groups = [g for g in by_group.values() if len(g) >= 12]
    got = best = 0.0
    for _ in range(25):
        pick = rnd.sample(rnd.choice(groups), rnd.randint(6, 12))
        sets = [list(dict.fromkeys(ids[i]))[:6] for i in pick]
        best += optimal_savings(sets, w)
        got += _planned_savings(sets, w)
    assert best > 0
    assert got >= 0.97 * best, (got, best)
