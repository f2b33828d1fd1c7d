"""On real LoCoMo workloads the planner must beat the simple orders (by the
simulator, not by timings), and stay near the exact optimum on small
batches."""

from __future__ import annotations

import pytest

from contextpilot.bench import methods
from contextpilot.bench.runner import capacities, oracle_gap, run_batch, run_online
from contextpilot.bench.workloads import locomo_chunks, locomo_mem, synthetic_rag


@pytest.fixture(scope="module", params=["mem", "chunks"])
def workload(request, locomo_path):
    make = {"mem": locomo_mem, "chunks": locomo_chunks}[request.param]
    return make(locomo_path)


@pytest.mark.locomo
def test_batch_beats_retrieval_and_frequency_order(workload):
    caps = capacities(workload)
    rows = {m: run_batch(workload, m, caps)[0] for m in ("retrieval", "frequency", "contextpilot")}
    for label, _ in caps:
        ours = rows["contextpilot"].hit[label]
        assert ours > rows["frequency"].hit[label] + 0.05, label
        assert ours > rows["retrieval"].hit[label] + 0.2, label


@pytest.mark.locomo
def test_online_beats_retrieval_order(workload):
    wl = workload.subset(600)
    caps = capacities(wl)
    base = run_batch(wl, "retrieval", caps)[0]
    online = run_online(wl, caps)[0]
    for label, _ in caps:
        assert online.hit[label] > base.hit[label] + 0.05, label


@pytest.mark.slow
@pytest.mark.parametrize("source", [pytest.param("locomo", marks=pytest.mark.locomo), "synthetic"])
def test_oracle_gap_on_small_batches(source, request):
    """Token savings within 3% of the exact optimum (N <= 12, <= 6 blocks)."""
    if source == "locomo":
        wl = locomo_mem(request.getfixturevalue("locomo_path"))
    else:
        wl = synthetic_rag(3000, n_topics=40, topic_size=16, seed=3)
    gap = oracle_gap(wl, methods.ours_batch, trials=25)
    assert gap["trials"] == 25
    assert gap["ratio"] >= 0.97, gap
