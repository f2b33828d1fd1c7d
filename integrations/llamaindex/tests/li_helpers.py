"""Shared by the tests: a small deterministic embedding, the corpus, and a
reader of the context the (echoing) MockLLM received."""

from __future__ import annotations

import hashlib
import math
import re
import sys
from pathlib import Path

from llama_index.core import Document, VectorStoreIndex
from llama_index.core.embeddings import BaseEmbedding
from llama_index.core.llms import MockLLM

REPO = Path(__file__).resolve().parents[3]
# the repository's tests/ on sys.path: this suite shares its helpers (support.*)
sys.path.insert(0, str(REPO / "tests"))
from support.chat_scoring import common_prefix, shareable_prefix  # noqa: E402,F401  (re-exported)

CAPITALS = {
    "fr": "Paris is the capital of France, on the Seine.",
    "de": "Berlin is the capital of Germany, on the Spree.",
    "es": "Madrid is the capital of Spain, on the Manzanares.",
    "it": "Rome is the capital of Italy, on the Tiber.",
    "pt": "Lisbon is the capital of Portugal, on the Tagus.",
    "at": "Vienna is the capital of Austria, on the Danube.",
}
# With similarity_top_k=4 these retrieve Q1 -> it, pt, fr, de and
# Q2 -> es, de, pt, it (asserted in the tests).
Q1 = "Rome Rome Rome Rome Lisbon Lisbon Lisbon Paris Paris Berlin"
Q2 = "Madrid Madrid Madrid Madrid Berlin Berlin Berlin Lisbon Lisbon Rome"


class BagOfWords(BaseEmbedding):
    """Hashed bag of lower-case words, L2-normalised: cosine = word overlap."""

    dim: int = 256

    def _vec(self, text: str) -> list[float]:
        v = [0.0] * self.dim
        for w in re.findall(r"[a-z]+", text.lower()):
            v[int(hashlib.blake2b(w.encode(), digest_size=4).hexdigest(), 16) % self.dim] += 1.0
        n = math.sqrt(sum(x * x for x in v)) or 1.0
        return [x / n for x in v]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._vec(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._vec(text)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._vec(query)


def make_index() -> VectorStoreIndex:
    docs = [Document(text=t, doc_id=k) for k, t in CAPITALS.items()]
    return VectorStoreIndex.from_documents(docs, embed_model=BagOfWords())


def echo_llm() -> MockLLM:
    """MockLLM with max_tokens=None answers with the prompt it was given."""
    return MockLLM(max_tokens=None)


def ids_of(prompt: str) -> list[str]:
    """Document keys of the context passages the LLM received, in order."""
    body = prompt.split("---------------------\n", 1)[1].split("\n---------------------", 1)[0]
    out = []
    for passage in body.split("\n\n"):
        passage = passage.strip()
        if passage:
            keys = [k for k, t in CAPITALS.items() if passage == t]
            assert len(keys) == 1, f"unexpected passage {passage!r}"
            out.append(keys[0])
    return out
