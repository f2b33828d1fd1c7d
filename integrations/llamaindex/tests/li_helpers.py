"""Shared by the tests: the corpus (embedded with the shared deterministic
embedding, support.embedding), the echoing LLM, and a reader of the context the (echoing) MockLLM received."""

from __future__ import annotations

from llama_index.core import Document, VectorStoreIndex
from llama_index.core.llms import MockLLM

# the repository's tests/ is on pytest's pythonpath (pyproject.toml): shared helpers as support.*
from support.chat_scoring import common_prefix, shareable_prefix  # noqa: F401  (re-exported)
from support.embedding import llamaindex_embedding

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


def make_index() -> VectorStoreIndex:
    docs = [Document(text=t, doc_id=k) for k, t in CAPITALS.items()]
    return VectorStoreIndex.from_documents(docs, embed_model=llamaindex_embedding())


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
