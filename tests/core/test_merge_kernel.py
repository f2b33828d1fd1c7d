"""The compiled greedy merge (core/merge_kernel.py, core/merge_jit.py) makes
exactly the Python loop's merges: same forests from ``build_forest`` and
same plan digests from the planner, with the kernel forced on
(``kernel_min=0``) or off (``kernel_min`` above the batch size). Also: the
planner falls back to the Python loop, with one warning and the same plan,
where numba cannot be imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contextpilot.bench.scale import plan_digest
from contextpilot.bench.workloads import synthetic_rag
from contextpilot.core import cluster, merge_kernel
from contextpilot.core.blocks import BlockTable
from contextpilot.core.candidates import candidate_edges
from contextpilot.core.clustered import cluster_once
from contextpilot.core.planner import PlanOptions, plan
from contextpilot.core.validation import validate_contexts
from contextpilot.core.workers import WorkerPool

from support.paths import child_pythonpath

OFF = 10**9  # no candidate graph is this big: the Python loop


@pytest.fixture(autouse=True, scope="module")
def _kernel_importable() -> None:
    # numba is a core dependency: a missing one must fail here, not pass vacuously
    assert merge_kernel.available(), "numba must be importable for these tests"


def _forests(sets: list[frozenset[int]], weights: list[int], **kw) -> tuple[cluster.Forest, cluster.Forest]:
    on = cluster.build_forest(sets, weights, kernel_min=0, **kw)
    off = cluster.build_forest(sets, weights, kernel_min=OFF, **kw)
    return on, off


def _assert_same(on: cluster.Forest, off: cluster.Forest) -> None:
    assert on.n_leaves == off.n_leaves
    assert on.left == off.left
    assert on.right == off.right
    assert on.roots == off.roots
    assert on.inter == off.inter


def _synthetic(n: int, **kw) -> tuple[list[frozenset[int]], list[int]]:
    wl = synthetic_rag(n, **kw)
    tokens = [wl.token_counter(b) for b in range(max(max(c) for c in wl.contexts) + 1)]
    return [frozenset(c) for c in wl.contexts], tokens


WORKLOADS = {
    "topics": lambda: _synthetic(3000, n_docs=2000, n_topics=60, topic_size=40, seed=1),
    "noisy": lambda: _synthetic(2000, n_docs=5000, n_topics=40, noise=0.7, shuffle=0.8, seed=2),
    "few_docs": lambda: _synthetic(1500, blocks_per_request=8, n_docs=60, n_topics=10, topic_size=12, seed=3),
    "empty": lambda: ([], []),
    "single": lambda: ([frozenset({0, 1, 2})], [5, 6, 7]),
    "identical": lambda: ([frozenset({0, 1, 2})] * 50, [5, 6, 7]),
    "disjoint": lambda: ([frozenset({2 * i, 2 * i + 1}) for i in range(40)], [3] * 80),
    "empty_sets": lambda: ([frozenset(), frozenset(), frozenset({1})], [4, 4]),
    "zero_weights": lambda: ([frozenset({0, 1}), frozenset({0, 2}), frozenset({1, 2})], [0, 0, 9]),
}


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_kernel_and_loop_make_the_same_forest(name: str) -> None:
    sets, weights = WORKLOADS[name]()
    on, off = _forests(sets, weights)
    _assert_same(on, off)
    if name in ("topics", "noisy", "few_docs"):
        assert len(off.left) > len(sets) // 2  # real merging happened


def test_same_forest_when_candidate_priorities_are_estimates() -> None:
    # one block in every request: its posting list is too long to pair
    # exhaustively, so candidate values are only estimates the merge must
    # make exact (the kernel's other branch)
    sets, weights = _synthetic(3000, n_docs=3000, n_topics=80, topic_size=30, seed=4)
    common = len(weights)
    sets = [s | {common} for s in sets]
    weights = [*weights, 50]
    ea, _, _, exact = candidate_edges(sets, np.asarray(weights, dtype=np.float64), 6, with_exactness=True)
    assert len(ea) and not exact
    for k in (1, 6):
        _assert_same(*_forests(sets, weights, k=k))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(0, 40).flatmap(
        lambda u: st.tuples(
            st.lists(st.frozensets(st.integers(0, max(0, u - 1)), max_size=8), max_size=70),
            st.lists(st.integers(0, 60), min_size=max(1, u), max_size=max(1, u)),
        )
    ),
    st.integers(1, 4),
)
def test_same_forest_on_random_instances(instance, k: int) -> None:
    sets, weights = instance
    on, off = _forests(sets, weights, k=k, max_degree=3)
    _assert_same(on, off)


@pytest.mark.parametrize("workers", [1, 2])
def test_same_plan_digest_through_the_planner(workers: int) -> None:
    wl = synthetic_rag(2400, n_docs=1500, n_topics=50, topic_size=40, seed=5)
    kw = dict(token_counter=wl.token_counter, chunk_size=800, workers=workers)
    on = plan(wl.contexts, kernel_min=0, **kw)
    off = plan(wl.contexts, kernel_min=OFF, **kw)
    assert plan_digest(on.order, on.contexts) == plan_digest(off.order, off.contexts)
    assert on.shared_tokens == off.shared_tokens > 0


def _loaded(name: str) -> bool:
    return name in sys.modules


def test_workers_load_the_kernel_before_their_first_task(monkeypatch) -> None:
    monkeypatch.setenv("PYTHONPATH", child_pythonpath())
    assert merge_kernel.warm_up()
    for warm, expected in ((("contextpilot.core.merge_kernel:warm_up",), True), ((), False)):
        with WorkerPool(1, warm=warm) as pool:
            assert list(pool.map([(_loaded, lambda: ("contextpilot.core.merge_jit",))])) == [expected]


FALLBACK = textwrap.dedent(
    """
    import json, logging, sys
    sys.modules["numba"] = None  # as where numba has no wheels: its import fails
    records = []
    class Keep(logging.Handler):
        def emit(self, record):
            records.append((record.levelname, record.getMessage()))
    logging.getLogger("contextpilot").addHandler(Keep())
    from contextpilot.bench.scale import plan_digest
    from contextpilot.bench.workloads import synthetic_rag
    from contextpilot.core.planner import plan
    wl = synthetic_rag(600, n_docs=500, n_topics=20, topic_size=30, seed=6)
    digests = [plan_digest(p.order, p.contexts) for p in (
        plan(wl.contexts, token_counter=wl.token_counter, kernel_min=km) for km in (0, 0, 10**9))]
    print(json.dumps([digests, [r for r in records if "numba" in r[1]]]))
    """
)


def test_without_numba_the_python_loop_plans_the_same_with_one_warning() -> None:
    wl = synthetic_rag(600, n_docs=500, n_topics=20, topic_size=30, seed=6)
    p = plan(wl.contexts, token_counter=wl.token_counter, kernel_min=0)
    expected = plan_digest(p.order, p.contexts)
    env = {**os.environ, "PYTHONPATH": child_pythonpath()}
    out = subprocess.run(
        [sys.executable, "-c", FALLBACK], capture_output=True, text=True, timeout=300, env=env, check=True
    )
    digests, warnings = json.loads(out.stdout.strip().splitlines()[-1])
    assert digests == [expected] * 3
    assert len(warnings) == 1 and warnings[0][0] == "WARNING", warnings


def test_the_clustering_of_routed_batches_honours_kernel_min(monkeypatch) -> None:
    # cluster_once (routed /reorder) builds its forest and refines big trees: both
    # merges follow PlanOptions.kernel_min as plan() does, with the same groups
    calls: list[int] = []
    real = merge_kernel.greedy_merges

    def counted(reps, *args):  # type: ignore[no-untyped-def]
        calls.append(len(reps))
        return real(reps, *args)

    monkeypatch.setattr(merge_kernel, "greedy_merges", counted)
    wl = synthetic_rag(600, n_docs=500, n_topics=20, topic_size=30, seed=6)
    ctxs = validate_contexts(wl.contexts)
    groups = []
    for km, used in ((0, True), (OFF, False)):
        calls.clear()
        c = cluster_once(ctxs, BlockTable(wl.token_counter), PlanOptions(kernel_min=km), refine_min=20)
        assert c.timings["refined"] > 0  # the refinement ran too
        assert bool(calls) is used and (not used or len(calls) > 1)
        groups.append(sorted(map(sorted, c.groups)))
    assert groups[0] == groups[1]
