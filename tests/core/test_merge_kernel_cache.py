"""The compiled merge kernel is compiled once per machine, not per process:
with the installed package not writable (a system or site-packages
install), numba caches it in the user's cache directory and a second
process (a planning worker, say) loads it from there instead of compiling.
Checked through numba's own per-function cache counters, in child
processes that cannot write the package directory."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from contextpilot.core import cluster

from support.paths import REPO

SETS = [frozenset({1, 2, 3}), frozenset({1, 2}), frozenset({2, 3}), frozenset({1, 2, 3, 4})]

PROGRAM = textwrap.dedent(
    """
    import json
    from contextpilot.core import cluster, merge_jit
    sets = [frozenset({1, 2, 3}), frozenset({1, 2}), frozenset({2, 3}), frozenset({1, 2, 3, 4})]
    f = cluster.build_forest(sets, [5] * 5, kernel_min=0)
    s = merge_jit.merge_pass.stats
    print(json.dumps([f.left, f.right, s.cache_hits.total(), s.cache_misses.total(), merge_jit.__file__]))
    """
)


def _read_only(root: Path) -> None:
    for p in [root, *root.rglob("*")]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _run(pkg: Path, home: Path) -> tuple[list, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
    env.update(HOME=str(home), PYTHONPATH=os.pathsep.join(filter(None, [str(pkg), env.get("PYTHONPATH")])))
    cmd = [sys.executable, "-c", PROGRAM]
    if os.geteuid() == 0:  # root writes anywhere: drop the capability that lets it
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=home, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


@pytest.mark.slow
def test_kernel_cache_survives_a_read_only_package(tmp_path: Path) -> None:
    pkg, home = tmp_path / "site", tmp_path / "home"
    home.mkdir()
    shutil.copytree(REPO / "contextpilot", pkg / "contextpilot", ignore=shutil.ignore_patterns("__pycache__"))
    _read_only(pkg)
    try:
        first, _ = _run(pkg, home)
        second, _ = _run(pkg, home)
    finally:
        for p in [pkg, *pkg.rglob("*")]:
            p.chmod(p.stat().st_mode | stat.S_IWUSR)
    assert first[4] == str(pkg / "contextpilot" / "core" / "merge_jit.py")  # the read-only copy ran
    loop = cluster.build_forest(SETS, [5] * 5, kernel_min=10**9)
    assert first[:2] == second[:2] == [loop.left, loop.right]
    assert first[3] >= 1 and first[2] == 0  # compiled in the first process
    assert second[2] >= 1 and second[3] == 0  # loaded, not compiled, in the second
    assert not list(pkg.rglob("*.nbi"))  # nothing written into the package
    assert list((home / ".cache").rglob("merge_jit.merge_pass*.nbi"))


@pytest.mark.slow
def test_with_nowhere_to_cache_it_compiles_per_process_with_one_warning(tmp_path: Path) -> None:
    pkg, home = tmp_path / "site", tmp_path / "home"
    home.mkdir()
    shutil.copytree(REPO / "contextpilot", pkg / "contextpilot", ignore=shutil.ignore_patterns("__pycache__"))
    _read_only(pkg)
    _read_only(home)
    try:
        got, stderr = _run(pkg, home)
    finally:
        for p in [home, pkg, *pkg.rglob("*")]:
            p.chmod(p.stat().st_mode | stat.S_IWUSR)
    loop = cluster.build_forest(SETS, [5] * 5, kernel_min=10**9)
    assert got[:2] == [loop.left, loop.right]
    assert got[2] == 0 and got[3] >= 1  # compiled here, nothing cached
    assert stderr.count("numba cannot cache") == 1, stderr
    assert not list(tmp_path.rglob("*.nbi"))
