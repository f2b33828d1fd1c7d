"""The sharding benchmark at small scale, local executor (root suite)."""

from __future__ import annotations

import json

from contextpilot.bench import shards
from contextpilot.bench.__main__ import main
from contextpilot.distributed import plan_shards
from contextpilot.sim.replay import build_prompts, replay


def test_replica_hits_equal_separate_replays():
    wl = shards.workload(600)
    sp = plan_shards(wl.contexts, 3, token_counter=wl.token_counter)
    (h, t), (h16, t16) = shards.replica_hits(sp.streams, wl, [None, 16 * 4000.0])
    hit = tot = 0.0
    for s in sp.streams:
        prompts = build_prompts(s.contexts, [wl.queries[i] for i in s.indices], wl.token_counter)
        ratio = replay(prompts, None)
        n = sum(sum(w) for _, w in prompts)
        hit, tot = hit + ratio * n, tot + n
    assert t == t16 == tot
    assert abs(h - hit) < 1e-6 * tot
    assert h16 <= h


def test_bench_shards_cli_writes_its_key(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"workloads": ["kept"]}))
    rc = main(
        ["--shards", "2", "--shard-requests", "1200", "--shard-executor", "local", "--out", str(tmp_path)]
    )
    assert rc == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["workloads"] == ["kept"]  # other keys are merged, not replaced
    sh = res["shards"]
    assert sh["requests"] == 1200 and [r["replicas"] for r in sh["replicas"]] == [2]
    methods = sh["replicas"][0]["methods"]
    assert set(methods) == {"contextpilot", "random", "round-robin"}
    for m in methods.values():
        assert set(m["hit"]) == {"inf", "16x"} and 0 < m["hit"]["inf"] < 1
    assert methods["contextpilot"]["hit"]["inf"] > methods["random"]["hit"]["inf"]
    assert methods["contextpilot"]["imbalance"] <= 1.05 + 1e-9
    assert sh["single"]["plan_seconds"] > 0 and sh["peak_rss_bytes"] > 0
