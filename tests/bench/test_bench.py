"""The benchmark CLI end to end (small sizes), its protocol and helpers."""

from __future__ import annotations

import argparse
import io
import json
import sys
import textwrap

import pytest

from contextpilot.bench import report
from contextpilot.bench.__main__ import main
from contextpilot.bench.methods import External
from contextpilot.bench.options import parse_capacities
from contextpilot.bench.progress import progress
from contextpilot.bench.scale import MODES, WORKLOADS, fit_exponent, measure, text_vs_ids
from contextpilot.cli import main as cli_main

REVERSE = textwrap.dedent(
    """
    import json, sys
    req = json.load(sys.stdin)
    ctxs = req["contexts"]
    if req["mode"] == "online":
        order = list(range(len(ctxs)))
    else:
        order = list(reversed(range(len(ctxs))))
    json.dump({"order": order, "contexts": [list(reversed(ctxs[i])) for i in order]}, sys.stdout)
    """
)


@pytest.fixture()
def reverse_planner(tmp_path):
    script = tmp_path / "reverse.py"
    script.write_text(REVERSE)
    return f"{sys.executable} {script}"


def test_quick_run_writes_results_and_compares_externals(tmp_path, reverse_planner, capsys):
    out = tmp_path / "out"
    rc = main(
        [
            "--quick",
            "--no-locomo",
            "--out",
            str(out),
            "--external",
            f"rev={reverse_planner}",
            "--oracle-trials",
            "4",
        ]
    )
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    (wl,) = res["workloads"]
    assert wl["name"] == "synthetic" and wl["requests"] == 400
    keys = {(r["method"], r["mode"], r["cache"]) for r in wl["rows"]}
    for m in ("retrieval", "frequency", "contextpilot", "rev"):
        for cache in ("radix", "paged"):
            assert (m, "batch", cache) in keys
    assert ("contextpilot", "online", "radix") in keys and ("rev", "online", "paged") in keys
    hit = {(r["method"], r["mode"], r["cache"]): r["hit"] for r in wl["rows"]}
    for label in ("inf", "64x", "16x"):
        assert hit[("contextpilot", "batch", "radix")][label] > hit[("retrieval", "batch", "radix")][label]
        assert hit[("contextpilot", "batch", "radix")][label] >= hit[("rev", "batch", "radix")][label]
    assert wl["oracle_gap"]["trials"] == 4 and 0 < wl["oracle_gap"]["ratio"] <= 1
    assert set(wl["bounds"]) == {"trie_bound_as_given", "dedup_ceiling"}
    assert res["machine"]["cpus"] >= 1
    printed = capsys.readouterr().out
    assert "contextpilot" in printed and "oracle" in printed and "results.json" in printed
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert (out / "hit_ratio_radix.png").stat().st_size > 1000


def test_external_failures_are_reported(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import sys; sys.exit(3)")
    ext = External("bad", f"{sys.executable} {bad}")
    with pytest.raises(RuntimeError, match="bad.*failed"):
        ext([[1, 2]])
    junk = tmp_path / "junk.py"
    junk.write_text("print('not json')")
    with pytest.raises(RuntimeError, match="no valid JSON"):
        External("junk", f"{sys.executable} {junk}")([[1]])
    with pytest.raises(ValueError):
        External.parse("no-equals-sign")


def test_capacity_parsing():
    assert parse_capacities("inf,64x,16") == [None, 64.0, 16.0]
    for bad in ("zero", "-1"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_capacities(bad)


def test_scale_measure_through_the_front_object_and_fit():
    rows = [measure(1000, None, name, mode) for name in WORKLOADS for mode in MODES]
    for r in rows:
        assert r["requests"] == 1000 and r["seconds"] > 0 and r["peak_rss_bytes"] > 10 * 2**20
        assert {"interning", "candidates", "merging", "emission"} <= r["phases"].keys()
    by = {(r["workload"], r["mode"]): r for r in rows}
    for name in WORKLOADS:  # one plan whichever way it is asked for
        assert len({by[name, m]["digest"] for m in MODES}) == 1
        assert "recording" in by[name, "stateful"]["phases"] and by[name, "stateful"]["live_requests"] == 1000
    assert by["synthetic", "planner"]["digest"] != by["noisy", "planner"]["digest"]
    table = report.scale_table({"rows": rows, "modes": list(MODES), "exponents": {}})
    assert table.count("yes") == 2 and "NO" not in table
    assert fit_exponent([(10, 1.0), (100, 10.0), (1000, 100.0)]) == pytest.approx(1.0)
    assert fit_exponent([(10, 1.0), (100, 100.0)]) == pytest.approx(2.0)


@pytest.mark.locomo
def test_locomo_from_text_and_from_ids_plan_alike(locomo_path):
    rows = text_vs_ids(locomo_path, repeats=1)
    assert len(rows) == 4 and all(r["same_plan"] for r in rows)
    assert all(r["text_seconds"] > 0 and r["ids_seconds"] > 0 for r in rows)
    assert "text/ids" in report.text_ids_table(rows)


def test_progress_prints_lines_when_not_a_terminal():
    buf = io.StringIO()
    with progress(10, "job", after=0, stream=buf) as p:
        for _ in range(10):
            p.update()
    # off a terminal: few updates (at most one per 10 s, plus the final one), ending at 10/10
    updates = [u for u in buf.getvalue().replace("\n", "\r").split("\r") if u.strip()]
    assert updates[-1].startswith("job: 100%") and "10/10" in updates[-1] and len(updates) <= 3


def test_cli_entry_point(capsys):
    assert cli_main(["--help"]) == 0
    assert cli_main(["nope"]) == 2
    with pytest.raises(SystemExit):
        cli_main(["bench", "--help"])
    assert "--engine-url" in capsys.readouterr().out


def test_latency_mode_fills_the_index_and_times_requests(tmp_path):
    from contextpilot.bench import latency

    r = latency.run(2_000, probes=200)
    # every recorded request stays live (no capacity): fill + probes
    assert r["live_requests"] == 2_200 and r["index_nodes"] > 2_000
    assert 0 < r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]
    assert "p99" in latency.table(r)
    with pytest.raises(ValueError):
        latency.run(10, probes=0)
