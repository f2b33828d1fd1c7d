"""Real-engine replay: a tiny model, and llama-server end to end.

The llama-server test (marker ``llama_server``) runs when a built binary is
found (cache folder, ``$LLAMA_SERVER_BIN`` or PATH), or builds one (~7
minutes) when ``CONTEXTPILOT_ENGINE_TESTS=1``; otherwise it is skipped. CI
runs it in ``.ci/steps/31-llama-server.sh``.
"""

from __future__ import annotations

import json
import os

import pytest

from contextpilot.bench.engine import find_llama_server
from contextpilot.bench.tiny_model import BYTE_OFFSET, text_to_tokens


def test_byte_tokens():
    assert text_to_tokens("A é") == [BYTE_OFFSET + b for b in "A é".encode()]


def test_tiny_model_is_a_loadable_gguf(tmp_path):
    gguf = pytest.importorskip("gguf")
    from contextpilot.bench.tiny_model import write_tiny_llama

    path = write_tiny_llama(tmp_path / "m.gguf", n_embd=64, n_layer=2, n_head=2)
    reader = gguf.GGUFReader(str(path))
    names = {t.name for t in reader.tensors}
    assert {"token_embd.weight", "blk.1.ffn_down.weight", "output.weight"} <= names
    arch = reader.fields["general.architecture"]
    assert bytes(arch.parts[arch.data[0]]).decode() == "llama"


@pytest.fixture(scope="module")
def llama_binary():
    binary = find_llama_server(build=os.environ.get("CONTEXTPILOT_ENGINE_TESTS") == "1")
    if binary is None:
        pytest.skip("llama-server not built (scripts/build_llama_server.sh or CONTEXTPILOT_ENGINE_TESTS=1)")
    pytest.importorskip("gguf")
    return binary


@pytest.mark.slow
@pytest.mark.llama_server
def test_llama_server_replay_end_to_end(llama_binary, tmp_path):
    from contextpilot.bench.__main__ import main

    out = tmp_path / "out"
    rc = main(
        [
            "--quick",
            "--no-online",
            "--no-plots",
            "--cache",
            "radix",
            "--oracle-trials",
            "2",
            "--engine",
            "llama-server",
            "--engine-requests",
            "24",
            "--engine-size",
            "64x2",
            "--engine-runs",
            "1",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    engine = json.loads((out / "results.json").read_text())["engine"]
    runs = {r["order"]: r for r in engine["runs"]}
    assert runs["retrieval"]["requests"] == runs["contextpilot"]["requests"] == 24
    # the same tokens are sent in both orders; ours reuses more of them
    assert runs["retrieval"]["prompt_tokens"] == runs["contextpilot"]["prompt_tokens"]
    assert runs["contextpilot"]["reused_tokens"] > runs["retrieval"]["reused_tokens"]
    assert engine["summary"]["64x2"]["contextpilot_reuse"] > engine["summary"]["64x2"]["retrieval_reuse"]
