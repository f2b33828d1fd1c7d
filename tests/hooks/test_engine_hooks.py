"""Real engines, real evictions, a real contextpilot server.

For each engine: a contextpilot server process learns a batch of requests
(``POST /reorder`` mints their ids); the engine's own cache classes, in the
engine's virtualenv (scripts/make_engine_venvs.sh), serve those requests
under those ids until they evict, in a process started with
CONTEXTPILOT_INDEX_URL set so the ``.pth`` turns the hooks on, exactly as a
user would. The engine process then reports, from the cache itself, which
requests have nothing cached any more; the server's index must have dropped
exactly those and kept every other.

These take minutes (engine imports alone are 5-20 s) and need the engine
venvs, so they run in CI step .ci/steps/30-engine-hooks-sglang-vllm.sh
(CONTEXTPILOT_HOOK_ENGINE_TESTS=1), where a missing engine venv fails;
elsewhere they skip and say why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from support.procs import server

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
VENVS = Path(
    os.environ.get("CONTEXTPILOT_ENGINE_VENVS")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "contextpilot" / "venvs"
)
ENGINES = {"sglang": VENVS / "sglang-0.5.23", "vllm": VENVS / "vllm-0.33.0"}
DEAD_ENGINE = "http://127.0.0.1:9"
TOKENS_PER_BLOCK = 8


def engine_python(engine: str) -> str:
    if os.environ.get("CONTEXTPILOT_HOOK_ENGINE_TESTS") != "1":
        pytest.skip(
            f"{engine} hook tests run in CI step 30 (set CONTEXTPILOT_HOOK_ENGINE_TESTS=1; "
            "engine venvs from scripts/make_engine_venvs.sh)"
        )
    py = ENGINES[engine] / "bin" / "python"
    if not py.exists():
        # asked to run (CI step 30) but the engine is missing: a failure, not a skip
        pytest.fail(
            f"NO {engine.upper()} VENV at {ENGINES[engine]}: run scripts/make_engine_venvs.sh {engine}"
        )
    # what a user does once per engine environment
    subprocess.run([str(py), "-m", "contextpilot.install_hook"], check=True, capture_output=True, cwd=REPO)
    return str(py)


def mint(url: str, groups: int, per_group: int, seed: int) -> list[tuple[str, list[int]]]:
    """Requests the index now holds: (rid, prompt tokens) in run order.
    Each group shares three leading blocks; each request adds two of its own."""
    contexts = []
    for g in range(groups):
        shared = [seed * 1000 + g * 10 + i for i in range(3)]
        for k in range(per_group):
            own = [seed * 1000 + 500 + g * 10 + k * 2, seed * 1000 + 501 + g * 10 + k * 2]
            contexts.append(shared + own)
    r = httpx.post(url + "/reorder", json={"contexts": contexts}, timeout=30)
    r.raise_for_status()
    body = r.json()
    out = []
    for rid, blocks in zip(body["request_ids"], body["reordered_contexts"]):
        tokens = [b * TOKENS_PER_BLOCK + j for b in blocks for j in range(TOKENS_PER_BLOCK)]
        out.append((rid, tokens))
    return out


def live(url: str) -> set[str]:
    return set(httpx.get(url + "/requests", params={"limit": 100_000}, timeout=10).json()["request_ids"])


def drive(py: str, script: str, runs: list[dict], url: str, tmp_path: Path) -> list[dict]:
    spec = tmp_path / f"{script}.json"
    spec.write_text(json.dumps({"runs": runs}))
    env = {**os.environ, "CONTEXTPILOT_INDEX_URL": url}
    for k in ("PYTHONPATH", "VIRTUAL_ENV"):
        env.pop(k, None)
    t0 = time.perf_counter()
    p = subprocess.run(
        [py, str(HERE / script), str(spec)], env=env, capture_output=True, text=True, timeout=900
    )
    assert p.returncode == 0, f"{script} failed:\n{p.stdout[-3000:]}\n{p.stderr[-6000:]}"
    results = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    assert len(results) == len(runs), p.stdout[-3000:]
    for r in results:
        r["_stderr"] = p.stderr[-3000:]
    print(f"{script}: {len(runs)} runs in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return results


def assert_run(minted: list[tuple[str, list[int]]], result: dict) -> set[str]:
    """The engine evicted some (not all) of ``minted`` and the hook delivered."""
    rids = {rid for rid, _ in minted}
    evicted = set(result["evicted"])
    assert result["hooked"], f"the .pth did not hook the cache:\n{result['_stderr']}"
    # the test means something only if the engine evicted some, not all
    assert evicted and evicted < rids, f"engine evicted {len(evicted)} of {len(rids)}"
    assert result["hook"]["delivered"] and result["hook"]["notifier"]["failed"] == 0
    return evicted


def assert_index(url: str, expected: set[str], runs: list[tuple[set[str], set[str]]]) -> None:
    """The index holds exactly ``expected``; per run, the kept and dropped ids."""
    deadline = time.monotonic() + 10
    while live(url) != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    now = live(url)
    for rids, evicted in runs:
        assert not now & evicted, f"index kept {sorted(now & evicted)} that the engine evicted"
        assert rids - evicted <= now, f"index dropped {sorted(rids - evicted - now)} the engine still caches"
    assert now == expected


@pytest.mark.sglang
def test_sglang_unified_and_radix_caches_sync_the_index(tmp_path):
    py = engine_python("sglang")
    variants = [
        ("unified-rust", 1),  # what the server builds by default
        ("unified-python", 1),
        ("unified-rust", 4),
        ("radix", 1),
    ]
    with server(DEAD_ENGINE) as srv:
        minted = [mint(srv.url, groups=4, per_group=3, seed=i + 1) for i in range(len(variants))]
        reset_reqs = mint(srv.url, groups=2, per_group=3, seed=9)
        before = live(srv.url)
        # 4 groups x (24 shared + 3 x 16 own tokens) = 288 tokens into 152 slots
        runs = [
            {
                "variant": v,
                "page_size": page,
                "kv_size": 152,
                "requests": [{"rid": r, "tokens": t} for r, t in m],
            }
            for (v, page), m in zip(variants, minted)
        ]
        # room for all: nothing is evicted until reset() drops everything
        runs.append(
            {
                "variant": "unified-rust",
                "page_size": 1,
                "kv_size": 1024,
                "reset_at_end": True,
                "requests": [{"rid": r, "tokens": t} for r, t in reset_reqs],
            }
        )
        results = drive(py, "drive_sglang.py", runs, srv.url, tmp_path)
        checked, ran = [], []
        for (variant, page), m, res in zip(variants, minted, results):
            assert res["cache_class"] == ("RadixCache" if variant == "radix" else "UnifiedRadixCache")
            if variant == "unified-rust":
                assert res["tree_core"] == "RustUnifiedTreeCore"
            checked.append(({r for r, _ in m}, assert_run(m, res)))
            ran.append(f"{variant}/page{page}: {len(res['evicted'])}/{len(m)} evicted")
        reset = results[-1]
        assert reset["evicted"] == [] and reset["hooked"]
        dropped = set().union(*(e for _, e in checked)) | {r for r, _ in reset_reqs}
        assert_index(srv.url, before - dropped, checked)
        print("SGLANG RAN: " + "; ".join(ran) + "; reset: all dropped", file=sys.stderr)


@pytest.mark.vllm
def test_vllm_block_pool_syncs_the_index(tmp_path):
    py = engine_python("vllm")
    with server(DEAD_ENGINE) as srv:
        reqs = mint(srv.url, groups=4, per_group=3, seed=21)
        reset_reqs = mint(srv.url, groups=2, per_group=3, seed=22)
        before = live(srv.url)
        runs = [
            # 4 groups x (3 shared + 3 x 2 own) blocks of 8 tokens = 36 blocks into 24
            {"block_size": 8, "num_blocks": 24, "requests": [{"rid": r, "tokens": t} for r, t in reqs]},
            {
                "block_size": 8,
                "num_blocks": 64,
                "reset_at_end": True,
                "requests": [{"rid": r, "tokens": t} for r, t in reset_reqs],
            },
        ]
        results = drive(py, "drive_vllm.py", runs, srv.url, tmp_path)
        res = results[0]
        # the engine saw its own suffixed ids; the index got the ones it minted
        assert all(eid.startswith(rid + "-") and eid != rid for rid, eid in res["engine_ids"].items())
        evicted = assert_run(reqs, res)
        reset = results[1]
        assert reset["evicted"] == [] and reset["reset_ok"] is True
        assert_index(
            srv.url, before - evicted - {r for r, _ in reset_reqs}, [({r for r, _ in reqs}, evicted)]
        )
        print(f"VLLM RAN: BlockPool {len(evicted)}/{len(reqs)} evicted; reset: all dropped", file=sys.stderr)


@pytest.mark.vllm
def test_engine_process_without_the_variable_is_untouched(tmp_path):
    py = engine_python("vllm")
    spec = tmp_path / "noenv.json"
    reqs = [{"rid": f"req-{i:016x}", "tokens": list(range(i * 100, i * 100 + 40))} for i in range(6)]
    spec.write_text(json.dumps({"runs": [{"block_size": 8, "num_blocks": 16, "requests": reqs}]}))
    env = {k: v for k, v in os.environ.items() if k != "CONTEXTPILOT_INDEX_URL"}
    p = subprocess.run(
        [py, str(HERE / "drive_vllm.py"), str(spec)], env=env, capture_output=True, text=True, timeout=600
    )
    assert p.returncode == 0, p.stderr[-4000:]
    res = json.loads(p.stdout.splitlines()[-1])
    assert res["evicted"], "the engine should still evict"
    assert not res["hooked"] and res["contextpilot_modules"] == []
