"""Test doubles that keep mem0 real but offline, the LoCoMo conversation as
mem0 input, and Gemma 3 270M on two real llama-servers.

* the embedder: the shared hashed bag of words (``support.embedding``);
* :class:`NoCallLLM`: mem0 needs an LLM object; with ``infer=False`` it must
  never be called, and this one fails the test if it is;
* :func:`llama_servers`: chat and embeddings servers for the real-model tests.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mem0 import AsyncMemory, Memory
from mem0.llms.base import LLMBase

from contextpilot.bench.workloads import observation_facts

from support.embedding import DIMS, mem0_embedder
from support.locomo import locomo_sample


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
    m.embedding_model = mem0_embedder(DIMS)
    m.llm = NoCallLLM()
    return m


def as_messages(facts: Sequence[str]) -> list[dict[str, str]]:
    return [{"role": "user", "content": f} for f in facts]


def locomo_conversation(path: Path, index: int = 0) -> tuple[str, list[str], list[tuple[str, str]]]:
    """(sample id, observation facts in session order, (question, gold answer) in order)."""
    sample = locomo_sample(path, index)
    qa = [(str(q["question"]), str(q.get("answer", q.get("adversarial_answer", "")))) for q in sample["qa"]]
    return str(sample["sample_id"]), observation_facts(sample), qa


# -- a real local model: Gemma 3 270M on two llama-servers (chat, embeddings) ------------

GEMMA = "gemma3-270m"  # contextpilot.bench.real_models' name
GEMMA_DIMS = 640  # Gemma 3 270M hidden size: the mean-pooled embedding width


@dataclass(frozen=True)
class ModelUrls:
    """OpenAI-compatible base URLs (``.../v1``) of the two servers."""

    chat_url: str
    embed_url: str


@contextlib.contextmanager
def llama_servers() -> Iterator[ModelUrls]:
    """Gemma 3 270M on two llama-servers on 127.0.0.1: chat completions and
    mean-pooled embeddings. Skips (loudly) without the binary or the model;
    under ``CONTEXTPILOT_ENGINE_TESTS=1`` (CI step 21) it makes them or fails."""
    from contextpilot.bench.engine import LlamaServer

    from support.llamacpp_chain import real_model_files

    binary, model = real_model_files(GEMMA)
    # mem0's extraction prompt alone is ~8k tokens
    with (
        LlamaServer(binary, model, ctx=16384) as chat,
        LlamaServer(binary, model, ctx=2048, extra=("--embeddings", "--pooling", "mean")) as embed,
    ):
        yield ModelUrls(f"{chat.url}/v1", f"{embed.url}/v1")
