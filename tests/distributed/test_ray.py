"""Sharded planning on a real local Ray instance (2 CPUs).

Marked ``ray``: skipped when Ray is not installed (the root suite); CI runs
it from ``.ci/steps/50-ray.sh`` in a virtualenv with ``contextpilot[ray,test]``.
"""

from __future__ import annotations

import logging

import pytest

from contextpilot.bench.workloads import synthetic_rag
from contextpilot.distributed import RayExecutor, plan_shards

# per test, not at collection: under CI=true a skip of a `ray` test fails unless the run expects it
pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray", reason="Ray not installed: pip install 'contextpilot[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    ctx = pytest.importorskip("ray.data").DataContext.get_current()
    ctx.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def batch():
    return synthetic_rag(1500, seed=4)


def _check(sp, contexts):
    seen = sorted(i for s in sp.streams for i in s.indices)
    assert seen == list(range(len(contexts)))
    for s in sp.streams:
        for i, c in zip(s.indices, s.contexts):
            assert sorted(map(repr, c)) == sorted(map(repr, contexts[i]))


def _same(a, b):
    assert [s.indices for s in a.streams] == [s.indices for s in b.streams]
    assert [s.contexts for s in a.streams] == [s.contexts for s in b.streams]
    assert [s.shared_tokens for s in a.streams] == [s.shared_tokens for s in b.streams]


def test_ray_tasks_match_the_local_plan(ray_local, batch):
    local = plan_shards(batch.contexts, 4, token_counter=batch.token_counter, chunk_rows=400)
    on_ray = plan_shards(batch.contexts, 4, token_counter=batch.token_counter, chunk_rows=400, executor="ray")
    _check(on_ray, batch.contexts)
    _same(local, on_ray)
    assert on_ray.imbalance <= 1.05 + 1e-9


def test_ray_tasks_run_in_worker_processes(ray_local):
    import os

    def pid() -> int:  # nested: Ray ships it by value
        return os.getpid()

    pids = RayExecutor().map(pid, [()] * 4)
    assert os.getpid() not in pids


def test_ray_dataset_matches_the_list_plan(ray_local, batch):
    ds = ray_local.data.from_items([{"context": c} for c in batch.contexts], override_num_blocks=5)
    from_ds = plan_shards(ds, 4, token_counter=batch.token_counter, chunk_rows=400)
    local = plan_shards(batch.contexts, 4, token_counter=batch.token_counter, chunk_rows=400)
    _check(from_ds, batch.contexts)
    _same(local, from_ds)
    assert from_ds.partition is not None and from_ds.partition.imbalance <= 1.05 + 1e-9
    assert ds.context.execution_options.preserve_order is False  # the caller's setting is back


def test_ray_dataset_with_text_blocks_and_own_column(ray_local):
    docs = [f"document {i} " * (1 + i % 5) for i in range(40)]
    contexts = [[docs[(g * 7 + j) % 40] for j in range(5)] for g in range(60)]
    ds = ray_local.data.from_items([{"docs": c, "q": f"q{i}"} for i, c in enumerate(contexts)])
    sp = plan_shards(ds, 3, column="docs")
    _check(sp, contexts)
    assert all(isinstance(b, str) for s in sp.streams for c in s.contexts for b in c)


def test_ray_dataset_bad_rows_are_named(ray_local):
    ds = ray_local.data.from_items([{"context": [1, 2]}, {"context": []}])
    with pytest.raises(Exception, match="empty"):
        plan_shards(ds, 2)
    with pytest.raises(Exception, match="no column 'docs'"):
        plan_shards(ray_local.data.from_items([{"context": [1]}]), 2, column="docs")
    with pytest.raises(ValueError, match="executor='ray'"):
        plan_shards(ds, 2, executor="local")
