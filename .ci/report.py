"""The closing table of .ci/run: per step, status, tests passed / skipped /
failed (from the pytest plugin's per-run records) and the real components
it used; then the cross-step check that every component's tests ran
somewhere: every test a step skipped (as it declared) must have passed in
another step, and each marker's totals are listed. Exit 1 on an unexpected
skip, or a skipped test or component that ran nowhere.

Usage: python .ci/report.py RESULTS_DIR (stdlib only).
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "pytest"))
from contextpilot_ci import registry  # noqa: E402


def main(results: Path) -> int:
    steps = [line.split("\t") for line in (results / "steps.tsv").read_text().splitlines() if line]
    runs: dict[str, list[dict]] = defaultdict(list)
    for f in sorted(results.glob("*.json")):
        rec = json.loads(f.read_text())
        runs[rec["step"]].append(rec)
    comps: dict[str, dict[str, str]] = defaultdict(dict)
    tsv = results / "components.tsv"
    if tsv.is_file():
        for line in tsv.read_text().splitlines():
            step, name, version = (line.split("\t") + ["?", "?"])[:3]
            comps[step][name] = version

    rows = [("step", "status", "time", "passed", "skipped", "failed", "components")]
    per_marker: dict[str, Counter] = defaultdict(Counter)
    unexpected: list[str] = []
    unavailable: set[str] = set()
    skipped_tests: dict[str, tuple[str, list[str]]] = {}  # node id -> (step, markers)
    passed_tests: set[str] = set()
    for name, rc, secs in steps:
        recs = runs.get(name, [])
        c: Counter = Counter()
        expected_here: Counter = Counter()
        for r in recs:
            c.update(r["counts"])
            unexpected += [f"{name}: {nid}" for nid in r["unexpected_skips"]]
            unavailable |= set(r.get("unavailable", []))
            for nid, marks in r.get("skipped_tests", {}).items():
                skipped_tests.setdefault(nid, (name, marks))
            passed_tests.update(r.get("passed_tests", []))
            for m, oc in r["markers"].items():
                per_marker[m].update(oc)
                expected_here[m] += oc.get("skipped", 0)
            for dist, ver in r["components"].items():
                comps[name].setdefault(dist, ver)
        status = "ok" if rc == "0" else f"FAILED ({rc})"
        if recs:
            passed = str(c["passed"] + c["xpassed"])
            skipped = str(c["skipped"] + c["collection_skipped"])
            if any(expected_here.values()):  # a test with two markers is counted under each
                skipped += " (" + ", ".join(f"{m} {n}" for m, n in sorted(expected_here.items()) if n) + ")"
            failed = str(c["failed"])
        else:
            passed = skipped = failed = "-"
        comp = ", ".join(f"{k} {v}" for k, v in comps.get(name, {}).items())
        rows.append((name, status, f"{secs} s", passed, skipped, failed, comp))

    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    for r in rows:
        print("  " + "  ".join(r[i].ljust(widths[i]) for i in range(6)) + "  " + r[6])
    print("  (skipped: the step declared those markers expected to skip; the components ran elsewhere)")

    bad = 0
    if unexpected:
        bad = 1
        print("UNEXPECTED SKIPS (failures):")
        for u in unexpected:
            print("  " + u)
    # each test skipped in one step (as declared) must have passed in another
    ran_nowhere = {
        nid: v for nid, v in skipped_tests.items() if nid not in passed_tests and not set(v[1]) & unavailable
    }
    if ran_nowhere:
        bad = 1
        print(f"SKIPPED WHEREVER THEY WERE COLLECTED, PASSED IN NO STEP ({len(ran_nowhere)}, failures):")
        for nid, (step, marks) in sorted(ran_nowhere.items()):
            print(f"  {nid}  (skipped in {step}; markers {', '.join(marks) or 'none'})")
    print("real components, tests passed / skipped over all steps:")
    for m in registry():
        oc = per_marker.get(m, Counter())
        note = ""
        if m in unavailable:
            note = "  NOT RUN: unavailable to this CI run"
        elif oc["skipped"] and not oc["passed"]:
            bad = 1
            note = "  FAILED: skipped wherever it was collected, ran nowhere"
        counts = f"{oc['passed']:4d} passed  {oc['skipped']:4d} skipped  {oc['failed']:4d} failed"
        print(f"  {m:14s} {counts}{note}")
    return bad


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
