"""Router policy, engines files and routing flags, in process, on real
live indexes (no mocks of our own code)."""

from __future__ import annotations

import json

import pytest

from contextpilot.bench import workloads as W
from contextpilot.bench.routing import interleave, replay_routed
from contextpilot.core.index import PrefixIndex
from contextpilot.server.config import ServerConfig, parse_config
from contextpilot.server.engine_specs import MAX_REPLICAS, load_engines_file, specs_from_urls
from contextpilot.server.router import Router


def _indexes(n, **kw):
    return [PrefixIndex(**kw) for _ in range(n)]


def test_cache_aware_follows_the_longest_cached_prefix():
    ix = _indexes(3)
    ix[1].insert([1, 2, 3], [10, 10, 10], "a")
    ix[2].insert([1, 9], [10, 10], "b")
    r = Router(ix, max_imbalance=None)
    assert r.sequence_hits([1, 2, 3, 4]) == [0, 30, 10]
    d, lease = r.route(r.sequence_hits([1, 2, 3, 4]), 40)
    assert (d.replica, d.reason) == (1, "cache")
    lease.release()
    lease.release()  # idempotent
    assert r.loads[1].inflight == 0 and r.loads[1].inflight_tokens == 0
    # a reorderable set: the heaviest cached path of its blocks, whatever the order
    assert r.set_hits([3, 2, 1, 7], [10, 10, 10, 5]) == [0, 30, 10]


def test_ties_and_cold_requests_go_to_the_least_loaded():
    ix = _indexes(3)
    ix[0].insert([5], [100], "x")  # replica 0 holds more: a cold request avoids it
    r = Router(ix, max_imbalance=None)
    _, hold = r.route([0, 0, 0], 10)  # cold: least loaded, then emptiest cache -> 1
    assert hold.replica == 1
    d, _ = r.route([0, 0, 0], 10)
    assert (d.replica, d.reason) == (2, "balance")
    ix[1].insert([5, 6], [100, 50], "y")
    ix[2].insert([5], [100], "z")
    d, _ = r.route(r.sequence_hits([5, 6, 7]), 160)  # 150 on 1, 100 on 0 and 2: 1 wins
    assert (d.replica, d.reason) == (1, "cache")
    d, _ = r.route(r.sequence_hits([5, 8]), 110)  # every warm replica holds [5]: a tie, 0 is idle
    assert (d.replica, d.reason) == (0, "balance")


def test_a_prefix_held_by_the_only_warm_replica_spreads_work_to_cold_ones():
    ix = _indexes(3)
    r = Router(ix, max_imbalance=None)
    ix[0].insert([1], [70], "sys")  # a shared system prompt, on replica 0 only
    d, _ = r.route(r.sequence_hits([1, 2]), 100)
    assert (d.replica, d.reason) == (1, "balance")  # not piled onto replica 0
    ix[1].insert([1, 2], [70, 30], "a")
    d, _ = r.route(r.sequence_hits([1, 2, 3]), 130)  # 100 on 1 vs 70 on 0: 1 has the affinity
    assert (d.replica, d.reason) == (1, "cache")


def test_overloaded_replica_is_skipped_then_least_loaded():
    ix = _indexes(2)
    r = Router(ix, max_inflight=[2, 2], max_imbalance=None)
    leases = [r.route([50, 0], 10)[1] for _ in range(2)]
    assert [x.replica for x in leases] == [0, 0]
    d, l3 = r.route([50, 0], 10)  # 0 is full: spill to 1
    assert (d.replica, d.reason) == (1, "balance")
    d, l4 = r.route([50, 20], 10)
    assert (d.replica, d.reason) == (1, "spill")
    d, _ = r.route([50, 20], 10)  # both full: least loaded of all
    assert d.reason == "overload"
    for x in leases:
        x.release()
    d, _ = r.route([50, 20], 10)
    assert (d.replica, d.reason) == (0, "cache")
    snap = r.snapshot()
    assert snap[0]["reasons"]["cache"] == 3 and snap[1]["reasons"]["spill"] == 1


def test_token_limit_imbalance_and_min_match():
    r = Router(_indexes(2), max_inflight_tokens=[100, 100], max_imbalance=None)
    r.route([9, 0], 100)  # fills replica 0's token budget
    assert r.route([9, 0], 1)[0].replica == 1
    r = Router(_indexes(2), max_imbalance=2)
    assert [r.route([9, 0], 1)[0].replica for _ in range(3)] == [0, 0, 1]  # 2 ahead of replica 1: overloaded
    r = Router(_indexes(2), min_match=0.5, max_imbalance=None)
    assert r.route([40, 0], 100)[0].reason == "balance"  # 40% cached: not enough to decide
    assert r.route([60, 0], 100)[0].reason == "cache"


def test_round_robin_random_least_loaded_and_bad_settings():
    rr = Router(_indexes(3), "round-robin")
    assert [rr.route([99, 0, 0], 1)[0].replica for _ in range(6)] == [0, 1, 2, 0, 1, 2]

    # random: the same seed replays the same sequence of draws; it spreads over
    # the replicas, and another seed gives another sequence
    def draws(seed: int) -> list[int]:
        r = Router(_indexes(4), "random", seed=seed)
        return [r.route(None, 1)[0].replica for _ in range(40)]

    a = draws(3)
    assert a == draws(3) and set(a) == {0, 1, 2, 3} and a != draws(4)
    ll = Router(_indexes(2), "least-loaded")
    assert [ll.route([99, 0], 1)[0].replica for _ in range(2)] == [0, 1]
    assert Router(_indexes(1)).route([5], 5)[0].reason == "single"
    for kw in ({"policy": "fastest"}, {"min_match": 2.0}, {"max_imbalance": 0}, {"max_inflight": [0, 1]}):
        with pytest.raises(ValueError):
            Router(_indexes(2), **kw)
    with pytest.raises(ValueError):
        Router([])


def test_assign_groups_keeps_affinity_within_a_fair_share():
    r = Router(_indexes(2), batch_slack=0.25)
    # four equal groups; replica 0 holds groups 0..2, nobody holds group 3
    hits = [[50, 0], [50, 0], [50, 0], [0, 0]]
    out = r.assign_groups(hits, [100, 100, 100, 100])
    assert out[:2] == [0, 0] and sorted(out).count(0) == 2  # cap 250 tokens: 2 groups on 0
    assert out.count(1) == 2
    rr = Router(_indexes(3), "round-robin")
    assert rr.assign_groups([[0] * 3] * 4, [1] * 4) == [0, 1, 2, 0]


def test_engine_specs_from_urls_and_files(tmp_path):
    specs = specs_from_urls(["http://127.0.0.1:30000/", "http://127.0.0.1:30001"], max_inflight=8)
    assert [s.name for s in specs] == ["127.0.0.1:30000", "127.0.0.1:30001"]
    assert specs[0].url == "http://127.0.0.1:30000" and specs[1].max_inflight == 8
    with pytest.raises(ValueError, match="duplicate url"):
        specs_from_urls(["http://a:1", "http://a:1/"])
    with pytest.raises(ValueError, match="at most"):
        specs_from_urls([f"http://h:{i}" for i in range(MAX_REPLICAS + 1)])
    js = tmp_path / "engines.json"
    js.write_text(json.dumps({"engines": [{"name": "gpu-a", "url": "http://a:1", "max_inflight": 4}]}))
    (s,) = load_engines_file(js, api_key="k", max_inflight=16, capacity_tokens=1000.0)
    assert (s.name, s.max_inflight, s.api_key, s.capacity_tokens) == ("gpu-a", 4, "k", 1000.0)
    assert s.public()["api_key"] == "***"
    tm = tmp_path / "engines.toml"
    tm.write_text('[[engines]]\nname = "a"\nurl = "http://a:1"\n\n[[engines]]\nurl = "http://b:2"\n')
    assert [x.name for x in load_engines_file(tm)] == ["a", "b:2"]
    for bad, msg in (
        ([{"url": "http://a:1", "max_inflite": 3}], r"engines\[0\]: unknown key\(s\) max_inflite"),
        ([{"url": "ftp://a"}], r"engines\[0\]: url must be"),
        ([{"url": "http://a:1", "name": "a b"}], "name must match"),
        ([{"url": "http://a:1", "max_inflight": 0}], "max_inflight must be > 0"),
        ([{"url": "http://a:1", "name": "x"}, {"url": "http://b:1", "name": "x"}], "duplicate name"),
        ([], "no engines"),
        ({"servers": []}, "expected a list"),
    ):
        js.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=msg):
            load_engines_file(js)
    js.write_text("{not json")
    with pytest.raises(ValueError, match="not valid"):
        load_engines_file(js)
    with pytest.raises(ValueError, match="engines file"):
        load_engines_file(tmp_path / "missing.json")


def test_routing_flags_and_environment(tmp_path):
    one = parse_config([], {})
    assert one.engine_urls == ["http://localhost:30000"] and one.routing == "cache-aware"
    many = parse_config(["--infer-api-url", "http://a:1/", "--infer-api-url", "http://b:2"], {})
    assert many.engine_urls == ["http://a:1", "http://b:2"]
    env = {"CONTEXTPILOT_INFER_API_URL": "http://a:1,http://b:2", "CONTEXTPILOT_ROUTING": "round-robin"}
    cfg = parse_config([], env)
    assert cfg.engine_urls == ["http://a:1", "http://b:2"] and cfg.routing == "round-robin"
    assert parse_config(["--infer-api-url", "http://c:3"], env).engine_urls == ["http://c:3"]  # flag wins
    assert parse_config(["--routing", "random"], env).routing == "random"
    cfg = parse_config(
        [],
        {
            "CONTEXTPILOT_ROUTE_MAX_INFLIGHT": "8",
            "CONTEXTPILOT_ROUTE_MAX_INFLIGHT_TOKENS": "5000",
            "CONTEXTPILOT_ROUTE_MAX_IMBALANCE": "none",
            "CONTEXTPILOT_ROUTE_MIN_MATCH": "0.25",
        },
    )
    assert (cfg.route_max_inflight, cfg.route_max_inflight_tokens) == (8, 5000)
    assert cfg.route_max_imbalance is None and cfg.route_min_match == 0.25
    for argv in (
        ["--routing", "fastest"],
        ["--route-max-inflight", "0"],
        ["--route-min-match", "1.5"],
        ["--infer-api-url", "http://a:1", "--infer-api-url", "ftp://b"],
        ["--engines-file", str(tmp_path / "missing.json")],
    ):
        with pytest.raises(SystemExit):
            parse_config(argv, {})
    with pytest.raises(ValueError):
        ServerConfig(routing="nope")


def test_bench_cache_aware_beats_round_robin_on_a_synthetic_stream():
    wl = W.synthetic_rag(240, blocks_per_request=10, n_docs=3000, n_topics=12, topic_size=30, seed=2)
    order = interleave(wl)
    assert sorted(order) == list(range(len(wl)))
    mean = 120 + sum(sum(map(wl.token_counter, c)) for c in wl.contexts) / len(wl)
    ca = replay_routed(wl, order, 3, "cache-aware", 8 * mean)
    rr = replay_routed(wl, order, 3, "round-robin", 8 * mean)
    assert ca["hit_ratio"] > rr["hit_ratio"] + 0.05, (ca, rr)
    assert sum(ca["requests"]) == len(wl) and ca["balance"] < 1.5
