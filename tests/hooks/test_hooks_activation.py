"""Activation without engines: the .pth in real interpreters, the import
hook, defensive patching, the standalone file, the request map bounds."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import sysconfig
import textwrap
import time
import venv
from pathlib import Path

import httpx
import pytest

from contextpilot.hooks import activation
from contextpilot.hooks.notifier import EvictionNotifier
from contextpilot.hooks.patching import MARK, patch_class
from contextpilot.hooks.pth import PTH_NAME, assemble_standalone, install, pth_line, uninstall
from contextpilot.hooks.tracker import RequestEntries
from contextpilot.hooks.vllm import external_request_id

from support.procs import server

REPO = Path(__file__).resolve().parents[2]
DEAD_ENGINE = "http://127.0.0.1:9"


def make_venv(path: Path) -> tuple[str, Path]:
    venv.EnvBuilder(with_pip=False).create(path)
    py = path / "bin" / "python"
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return str(py), Path(site)


def py_home(py: str) -> str:
    return str(Path(py).parents[2])


def run(py: str, code: str, env: dict[str, str]) -> str:
    # cwd away from the checkout: `-c` puts the cwd on sys.path
    p = subprocess.run([py, "-c", code], capture_output=True, text=True, env=env, timeout=60, cwd=py_home(py))
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("CONTEXTPILOT_", "PYTHON", "VIRTUAL_ENV"))
    }
    return {**env, **extra}


PROBE = (
    "import sys, json; print(json.dumps({"
    "'cp': sorted(m for m in sys.modules if m.startswith('contextpilot')),"
    "'finders': [type(f).__name__ for f in sys.meta_path],"
    "'engines': sorted(m for m in ('sglang', 'vllm', 'torch', 'numpy', 'httpx') if m in sys.modules)}))"
)


def test_pth_imports_nothing_unless_the_variable_is_set(tmp_path):
    py, site = make_venv(tmp_path / "v")
    # contextpilot importable the way an editable install makes it: a path .pth
    (site / "zz-contextpilot-src.pth").write_text(str(REPO) + "\n")
    assert (
        subprocess.run(
            [py, "-m", "contextpilot.install_hook"],
            capture_output=True,
            text=True,
            env=clean_env(),
            cwd=py_home(py),
        ).returncode
        == 0
    )
    assert (site / PTH_NAME).read_text() == pth_line("contextpilot.hooks.activation")

    off = json.loads(run(py, PROBE, clean_env()))
    assert off["cp"] == [] and "PostImportPatcher" not in off["finders"]
    off_empty = json.loads(run(py, PROBE, clean_env(CONTEXTPILOT_INDEX_URL="")))
    assert off_empty["cp"] == []

    on = json.loads(run(py, PROBE, clean_env(CONTEXTPILOT_INDEX_URL="http://127.0.0.1:1")))
    assert on["finders"][0] == "PostImportPatcher"
    assert "contextpilot.hooks.activation" in on["cp"]
    assert on["engines"] == []  # nothing heavy, no engine imported eagerly

    # a bad URL must not stop the interpreter: one logged error, no hook
    p = subprocess.run(
        [py, "-c", PROBE],
        capture_output=True,
        text=True,
        env=clean_env(CONTEXTPILOT_INDEX_URL="nope"),
        cwd=py_home(py),
    )
    assert p.returncode == 0 and "PostImportPatcher" not in json.loads(p.stdout)["finders"]

    assert (
        subprocess.run(
            [py, "-m", "contextpilot.install_hook", "--uninstall"],
            capture_output=True,
            env=clean_env(),
            cwd=py_home(py),
        ).returncode
        == 0
    )
    assert not (site / PTH_NAME).exists()
    assert json.loads(run(py, PROBE, clean_env(CONTEXTPILOT_INDEX_URL="http://127.0.0.1:1")))["cp"] == []


def test_import_hook_patches_a_target_when_the_engine_imports_it(tmp_path, monkeypatch):
    pkg = tmp_path / "fake_engine_cp_test"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "cache.py").write_text("class Cache:\n    def evict(self, n):\n        return n\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    seen = []

    def patch(module, notifier):
        seen.append((module.__name__, module.Cache.evict(None, 3), notifier))
        return True

    monkeypatch.setitem(activation.TARGETS, "fake_engine_cp_test.cache", patch)
    notifier = EvictionNotifier("http://127.0.0.1:1")
    finder = activation.PostImportPatcher(notifier)
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    try:
        import fake_engine_cp_test.cache as mod  # noqa: F401  (the engine's own import)

        assert seen == [("fake_engine_cp_test.cache", 3, notifier)]
        import fake_engine_cp_test  # noqa: F401  (non-targets pass through)

        assert len(seen) == 1
    finally:
        for m in ("fake_engine_cp_test.cache", "fake_engine_cp_test"):
            sys.modules.pop(m, None)
        notifier.close()


def test_patch_class_leaves_a_drifted_engine_untouched(caplog):
    class Pool:
        def evict(self, block):
            return block

        def reset(self, everything):  # drifted signature
            return everything

    wrap = {
        "evict": (("self", "block"), lambda orig: lambda self, block: ("wrapped", orig(self, block))),
        "reset": (("self",), lambda orig: lambda self: orig(self, True)),
    }
    with caplog.at_level(logging.WARNING, logger="contextpilot.hooks"):
        assert not patch_class(Pool, wrap, "test pool")
    assert Pool().evict(1) == 1 and not hasattr(Pool, MARK)
    assert len([r for r in caplog.records if "Pool.reset" in r.getMessage()]) == 1

    class Pool2:
        def evict(self, block):
            return block

    ok = {"evict": wrap["evict"], "gone": (("self",), wrap["reset"][1])}
    assert not patch_class(Pool2, ok, "test pool")  # a required method is missing
    assert patch_class(Pool2, ok, "test pool", optional=frozenset({"gone"}))
    assert Pool2().evict(1) == ("wrapped", 1)
    assert patch_class(Pool2, ok, "test pool")  # twice: no double wrap
    assert Pool2().evict(2) == ("wrapped", 2)


def test_request_entries_evict_when_the_last_entry_goes_and_stay_bounded():
    t = RequestEntries(max_requests=3, max_refs=100)
    t.add("a", [1, 2])
    t.add("b", [2, 3])
    assert t.remove_entries([1]) == []
    assert t.remove_entries([2]) == ["a"]  # a had 1, 2; b still holds 3
    t.move_entry(3, 4)
    assert t.remove_entries([3]) == []
    assert t.remove_entries([4]) == ["b"]
    for r in "cdef":
        t.add(r, [ord(r)])
    s = t.stats()
    assert s["requests"] == 3 and s["pruned"] == 1 and "c" not in t  # oldest first, never reported
    assert sorted(t.clear()) == ["d", "e", "f"] and len(t) == 0
    small = RequestEntries(max_requests=10, max_refs=5)
    small.add("x", range(4))
    small.add("y", range(4, 8))  # 8 refs > 5: x goes
    assert "x" not in small and small.stats()["refs"] == 4
    with pytest.raises(ValueError):
        RequestEntries(max_requests=0)


def test_vllm_engine_ids_map_back_to_the_minted_ones():
    assert external_request_id("req-00ff00ff00ff00ff-1a2b3c4d", True) == "req-00ff00ff00ff00ff"
    assert external_request_id("cmpl-req-ab-0-1a2b3c4d", True) == "cmpl-req-ab"
    assert external_request_id("chatcmpl-req-ab-1a2b3c4d", True) == "chatcmpl-req-ab"
    assert external_request_id("chatcmpl-req-ab_2-1a2b3c4d", True) == "chatcmpl-req-ab"
    assert external_request_id("req-00ff00ff00ff00ff", False) == "req-00ff00ff00ff00ff"


def test_standalone_file_works_where_contextpilot_is_not_installed(tmp_path):
    out = tmp_path / "contextpilot_hooks.py"
    p = subprocess.run(
        [sys.executable, "-m", "contextpilot.install_hook", "--standalone", str(out)],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    assert out.read_text() == assemble_standalone()  # generated from the package's sources
    py, site = make_venv(tmp_path / "bare")
    assert "contextpilot" in run(
        py,
        "import importlib.util as u; print(u.find_spec('contextpilot') is None and 'no contextpilot')",
        clean_env(),
    )
    p = subprocess.run(
        [py, str(out), "--site", str(site)], capture_output=True, text=True, env=clean_env(), cwd=py_home(py)
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(run(py, PROBE, clean_env()))["cp"] == []

    with server(DEAD_ENGINE) as srv:
        r = httpx.post(srv.url + "/reorder", json={"contexts": [[1, 2, 3], [1, 2, 4], [7, 8]]}, timeout=10)
        ids = r.json()["request_ids"]
        code = textwrap.dedent(
            f"""
            import sys, json
            assert type(sys.meta_path[0]).__name__ == "PostImportPatcher"
            import contextpilot_hooks as h
            assert h.is_active() and "contextpilot" not in sys.modules
            n = h.get_notifier()
            n.notify({ids[:2]!r})
            print(json.dumps({{"flushed": n.flush(10), "stats": n.stats()}}))
            """
        )
        res = json.loads(run(py, code, clean_env(CONTEXTPILOT_INDEX_URL=srv.url)))
        assert res["flushed"] and res["stats"]["sent"] == 2
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            left = httpx.get(srv.url + "/requests", timeout=5).json()["request_ids"]
            if left == ids[2:]:
                break
            time.sleep(0.1)
        assert left == ids[2:]

    p = subprocess.run(
        [py, str(site / "contextpilot_hooks.py"), "--uninstall", "--site", str(site)],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=py_home(py),
    )
    assert p.returncode == 0, p.stderr
    assert not (site / PTH_NAME).exists() and not (site / "contextpilot_hooks.py").exists()


def test_install_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        install(tmp_path / "missing")
    bogus = tmp_path / "x.py"
    bogus.write_text("print('hi')\n")
    with pytest.raises(ValueError, match="not a generated"):
        install(tmp_path, bogus)
    assert uninstall(tmp_path) == []
    assert Path(sysconfig.get_paths()["purelib"]).is_dir()
