"""The memory-bound benchmark, small: its state stays within the bounds
(capacity in tokens, conversation caps) and it reports RSS figures. The
full run (1,000,000 requests) is ``python -m contextpilot.bench --memory``."""

from __future__ import annotations

from contextpilot.bench import memory


def test_memory_bench_small_run_stays_bounded():
    res = memory.run(2_000, capacity_tokens=20_000, samples=4)
    assert res["requests"] == 2_000 and len(res["curve"]) == 4
    for row in res["curve"]:
        assert row["index_tokens"] <= 20_000
        assert row["index_nodes"] <= 20_000 // 64  # id blocks weigh 64 tokens each
        assert row["conversations"] <= 10_000 and row["dedup_blocks"] <= 1_000_000
    assert res["peak_rss_mib"] >= res["curve"][-1]["rss_mib"] > 0
    text = memory.table(res)
    assert "peak RSS" in text and "2,000 requests" in text
