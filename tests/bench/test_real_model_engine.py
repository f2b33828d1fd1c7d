"""The real model on the real engine: Gemma 3 270M base (Q4_K_M) on llama-server
(``-np 1 --cache-ram 0 -t 2``), driven the way the real-model benchmark drives it.

* Sliding-window attention: without ``--swa-full`` llama.cpp reuses no partial
  prefix of this model; the benchmark reads the window from the GGUF header and
  the server's set-up from its log, and the llama.cpp proxy notices the missed
  reuse from outside (``prefix_not_reused`` in its ``/stats``).
* The gold-answer score is the raw model's probability: the first forced
  token's log-probability equals the one the unconstrained model reports.
* The product path online (contextpilot server -> llama.cpp proxy ->
  llama-server) reuses more tokens than retrieval order on the same LoCoMo
  requests, and the engine's evictions reach the live index.

Figures are the engine's own (``timings.cache_n``), compared with a baseline
measured in the same test; never times. Skips when the binary or the model is
missing, and fails instead with ``CONTEXTPILOT_REAL_MODEL_TESTS=1`` (CI step 32);
without that variable it skips (minutes of prefill do not belong in the root suite).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from contextpilot.bench import workloads as W
from contextpilot.bench.engine import LlamaServer
from contextpilot.bench.llama_client import get_json, post_json, score_gold, serve, swa_status
from contextpilot.bench.methods import retrieval_order
from contextpilot.bench.product_path import ProductPath
from contextpilot.bench.real_model_cases import Case, Condition, prompt_text
from contextpilot.bench.real_model_replay import Engine
from contextpilot.bench.real_models import MODELS

from support.llamacpp_chain import real_model_files

pytestmark = pytest.mark.real_model
REQUIRED = os.environ.get("CONTEXTPILOT_REAL_MODEL_TESTS") == "1"
SPEC = MODELS["gemma3-270m"]


@pytest.fixture(scope="module")
def engine_parts() -> tuple[Path, Path]:
    if not REQUIRED:
        pytest.skip("REAL MODEL TEST NOT RUN: set CONTEXTPILOT_REAL_MODEL_TESTS=1 (CI step 32)")
    return real_model_files(SPEC.name, required_by="CONTEXTPILOT_REAL_MODEL_TESTS")


CHUNKS = [
    f"Chunk {i}: " + " ".join(f"fact {i}.{j} about the garden and the lake" for j in range(12))
    for i in range(6)
]


def _shared_half(engine: str, url: str) -> tuple[int, int]:
    """Serve A B C D E F, then A B C X Y Z: (tokens shared, cache_n of the second)."""
    first = "\n\n".join(CHUNKS)
    second = "\n\n".join(CHUNKS[:3] + [c.replace("garden", "harbour") for c in CHUNKS[3:]])
    shared = len(post_json(engine + "/tokenize", {"content": "\n\n".join(CHUNKS[:3])})["tokens"])
    serve(url, first, 1)
    return shared, serve(url, second, 1)["cache_n"]


def test_sliding_window_needs_swa_full_and_the_proxy_says_so(engine_parts) -> None:
    binary, model = engine_parts
    reused = {}
    for flags in ((), SPEC.flags):
        with LlamaServer(binary, model, ctx=4096, extra=flags) as srv:
            swa = swa_status(srv)
            assert swa["sliding_window"] == 512 and swa["swa_full"] == bool(flags)
            with tempfile.TemporaryDirectory() as tmp, ProductPath(srv.url, Path(tmp)) as path:
                shared, cache_n = _shared_half(srv.url, path.proxy_url)
                stats = get_json(path.proxy_url + "/stats")["tracker"]
            reused[bool(flags)] = (shared, cache_n, stats["prefix_not_reused"])
    shared, without, flagged = reused[False]
    _, with_full, clean = reused[True]
    # the full-size SWA cache reuses the whole shared prefix; without it llama.cpp falls back to
    # its context checkpoints (this build) or to nothing (older ones), never more
    assert with_full >= shared * 3 // 4 and with_full >= without
    # the proxy flags a shared prefix the engine did not give back, and only then
    assert flagged == int(4 * without < shared) and clean == 0


def test_gold_score_is_the_raw_model_probability(engine_parts) -> None:
    binary, model = engine_parts
    prompt = (
        "Melanie painted a sunrise in 2022.\n\nQuestion: When did Melanie paint a sunrise?\nShort answer:"
    )
    with LlamaServer(binary, model, ctx=4096, extra=SPEC.flags) as srv:
        free = post_json(
            srv.url + "/completion", {"prompt": prompt, "n_predict": 1, "n_probs": 20, "temperature": 0}
        )
        top = {p["token"]: p["logprob"] for p in free["completion_probabilities"][0]["top_logprobs"]}
        forced = post_json(
            srv.url + "/completion",
            {"prompt": prompt, "n_predict": 3, "n_probs": 1, "temperature": 0, "grammar": 'root ::= " 2"'},
        )["completion_probabilities"][0]
        assert forced["logprob"] == pytest.approx(top[forced["token"]], abs=1e-3)
        with_context, n = score_gold(srv.url, prompt, "2022")
        without, _ = score_gold(srv.url, "Question: When did Melanie paint a sunrise?\nShort answer:", "2022")
    assert n >= 1 and with_context > without  # the context makes the gold answer likelier


@pytest.mark.locomo
def test_product_path_online_reuses_more_than_retrieval_order(engine_parts, locomo_path, tmp_path) -> None:
    binary, model = engine_parts
    wl = W.locomo_mem(locomo_path).subset(10)
    case = Case("locomo-mem", [list(c) for c in wl.contexts], wl.queries, [None] * 10, wl.description)
    engine = Engine(SPEC, binary, model, tmp_path)

    class Bar:
        def update(self, n: int = 1) -> None:
            pass

    cond = Condition("x", "x")
    base = engine.replay(case, cond, retrieval_order(case.contexts), 0, False, Bar())
    online = engine.replay(case, Condition("contextpilot-online", "x"), None, 0, False, Bar())
    b, o = base.summary(), online.summary()
    assert b["prompt_tokens"] == o["prompt_tokens"]  # the same blocks, only their order differs
    assert o["reused_tokens"] > b["reused_tokens"]
    # one slot: each request overwrote the previous one; the index heard of it and dropped them
    assert o["evictions_reported_by_proxy"] >= 8
    assert o["index_evicted_by_engine"] >= 8 and o["index_live_requests"] <= 2
    assert prompt_text(["a"], "q", ["a"], cond).endswith("Question: q\nShort answer:")
