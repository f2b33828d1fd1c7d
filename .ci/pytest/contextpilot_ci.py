"""pytest plugin: skip accounting and per-run counts for CI.

Loaded by ``tests/conftest.py`` (the root suite) and by every pytest that
``.ci/run`` starts, in any virtualenv (``PYTEST_PLUGINS=contextpilot_ci`` with
this folder on ``PYTHONPATH``); pytest registers it once per run.

Registry: the markers in the repository's ``pyproject.toml``
(``[tool.pytest.ini_options] markers``). Each names a real component a test
needs (an engine, Ray, torch, the LoCoMo data ...). They are registered in
every run, also in the plugins' suites that have their own pytest config.

Under ``CI=true``:

* a test that skips FAILS, unless it carries a registry marker that the run
  declares expected to skip: ``CP_CI_EXPECT_SKIP="ray llama_server"`` (space
  or comma separated), i.e. "this component is not in this step; another
  step runs those tests";
* a module skipped at collection fails the same way (only markers on its
  parents can excuse it, so marked modules must skip per test, not at import);
* ``CP_CI_UNAVAILABLE`` (set by ``.ci/run`` for what the whole run lacks,
  e.g. ``locomo`` when the data is absent) excuses those markers everywhere.

With ``CP_CI_RESULTS`` set (a folder), each run writes
``<step>.<pid>.json``: counts, per-marker outcomes, unexpected skips and the
versions of the real components installed in this interpreter, which
``.ci/report.py`` turns into the closing table. Cost: O(tests).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections import Counter, defaultdict
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: distributions whose versions the table shows when a run has them installed
COMPONENT_DISTS = ("torch", "ray", "fastapi", "langchain-core", "llama-index-core", "mem0ai", "litellm")


def registry(path: Path = REPO / "pyproject.toml") -> dict[str, str]:
    """Marker name -> description, from the repository's pyproject.toml."""
    if not path.is_file():
        return {}
    try:
        import tomllib
    except ImportError:  # Python 3.10: a plain parse of the one list we need
        text = path.read_text(encoding="utf-8")
        block = re.search(r"^markers\s*=\s*\[(.*?)^\]", text, re.S | re.M)
        lines = re.findall(r'"([^"]+)"', block.group(1)) if block else []
    else:
        with open(path, "rb") as f:
            ini = tomllib.load(f).get("tool", {}).get("pytest", {}).get("ini_options", {})
        lines = ini.get("markers", [])
    out = {}
    for line in lines:
        name, _, desc = line.partition(":")
        out[name.strip()] = desc.strip()
    return out


def _on_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _names(var: str) -> set[str]:
    return {m for m in re.split(r"[\s,]+", os.environ.get(var, "")) if m}


def _skip_reason(rep) -> str:
    lr = rep.longrepr
    if isinstance(lr, tuple) and len(lr) == 3:
        return str(lr[2])
    return str(lr)


class _Accounting:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.markers = registry()
        # this run's declaration, plus what the whole CI run lacks (set by .ci/run, e.g. no LoCoMo data)
        self.unavailable = _names("CP_CI_UNAVAILABLE")
        self.expected = _names("CP_CI_EXPECT_SKIP") | self.unavailable
        unknown = self.expected - set(self.markers)
        if unknown:
            raise pytest.UsageError(
                f"CP_CI_EXPECT_SKIP / CP_CI_UNAVAILABLE name unregistered markers: {sorted(unknown)}"
            )
        self.ci = _on_ci()
        self.outcome: dict[str, str] = {}  # nodeid -> passed / failed / skipped / xfailed / xpassed
        self.marks: dict[str, set[str]] = {}
        self.unexpected: list[str] = []
        self.collect_skips: list[str] = []
        self.t0 = time.time()

    def _marks(self, node) -> set[str]:
        return {m.name for m in node.iter_markers()} & set(self.markers)

    def _excused(self, marks: set[str]) -> bool:
        return bool(marks & self.expected)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_make_collect_report(self, collector):
        outcome = yield
        rep = outcome.get_result()
        if not rep.skipped:
            return
        self.collect_skips.append(rep.nodeid)
        if self.ci and not self._excused(self._marks(collector)):
            self.unexpected.append(rep.nodeid)
            rep.outcome = "failed"
            rep.longrepr = (
                f"CI=true: {rep.nodeid} was skipped at collection ({_skip_reason(rep)}). "
                "A module that needs a real component carries a registry marker and skips per "
                "test; a step that lacks the component lists the marker in CP_CI_EXPECT_SKIP."
            )

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        rep = outcome.get_result()
        marks = self._marks(item)
        self.marks[item.nodeid] = marks
        if not rep.skipped or hasattr(rep, "wasxfail") or not self.ci or self._excused(marks):
            return
        self.unexpected.append(item.nodeid)
        why = _skip_reason(rep)
        hint = (
            f"its markers {sorted(marks)} are not in CP_CI_EXPECT_SKIP={sorted(self.expected)}"
            if marks
            else "it carries no registry marker (pyproject.toml [tool.pytest.ini_options] markers)"
        )
        rep.outcome = "failed"
        rep.longrepr = f"CI=true: this test skipped ({why}) and {hint}; a skip is not a pass."

    def pytest_runtest_logreport(self, report) -> None:
        nid = report.nodeid
        prev = self.outcome.get(nid)
        if report.failed:
            new = "failed"
        elif report.skipped:
            new = "xfailed" if hasattr(report, "wasxfail") else "skipped"
        elif report.when == "call":
            new = "xpassed" if hasattr(report, "wasxfail") else "passed"
        else:
            return
        if prev != "failed":  # a teardown error after a pass still fails the test
            self.outcome[nid] = new

    def pytest_sessionfinish(self, session, exitstatus) -> None:
        out_dir = os.environ.get("CP_CI_RESULTS")
        if not out_dir:
            return
        counts = Counter(self.outcome.values())
        counts["collection_skipped"] = len(self.collect_skips)
        per_marker: dict[str, Counter] = defaultdict(Counter)
        for nid, oc in self.outcome.items():
            for m in self.marks.get(nid, ()):
                per_marker[m][oc] += 1
        components = {}
        for dist in COMPONENT_DISTS:
            try:
                components[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                pass
        step = os.environ.get("CP_CI_STEP", "pytest")
        record = {
            "step": step,
            "args": list(self.config.invocation_params.args),
            "exitstatus": int(exitstatus),
            "seconds": round(time.time() - self.t0, 1),
            "python": sys.version.split()[0],
            "counts": dict(counts),
            "markers": {m: dict(c) for m, c in sorted(per_marker.items())},
            "expected_skip": sorted(self.expected),
            "unavailable": sorted(self.unavailable),
            "unexpected_skips": self.unexpected,
            # per test, so .ci/report.py can check each skipped test passed in some other step
            "skipped_tests": {
                n: sorted(self.marks.get(n, ())) for n, oc in self.outcome.items() if oc == "skipped"
            },
            "passed_tests": sorted(n for n, oc in self.outcome.items() if oc in ("passed", "xpassed")),
            "components": components,
        }
        path = Path(out_dir) / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', step)}.{os.getpid()}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=1))


def pytest_configure(config: pytest.Config) -> None:
    if config.inipath != REPO / "pyproject.toml":  # e.g. a plugin's suite with its own config
        for name, desc in registry().items():
            config.addinivalue_line("markers", f"{name}: {desc}")
    config.pluginmanager.register(_Accounting(config), "contextpilot_ci_accounting")
