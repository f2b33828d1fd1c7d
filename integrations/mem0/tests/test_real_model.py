"""Real fact extraction: mem0's default ``add`` (infer=True) through Gemma 3
270M on a real llama-server (mem0's ``lmstudio`` provider, any OpenAI-compatible
URL), embeddings from a second llama-server; then ``get_all``, ``search`` with
the contextpilot reranker, and prompts labelled by the mem0 ids the model's
facts received. Also runs the README example as written.

A 270M *base* model copies mem0's few-shot examples when left free, so the
extraction schema here limits the fact text to the conversation's words: the
model still chooses and orders them (it extracts), it just cannot invent a
dog called Poppy. Slow on 2 busy cores (an ~8k-token extraction prompt).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest
from _support import GEMMA_DIMS

from support.readme import run_example  # tests/support (on sys.path: conftest.py)

pytestmark = pytest.mark.real_model

CONVERSATION = [
    {"role": "user", "content": "Hi, I'm Alice. I live in Lisbon and I have a dog called Rex."},
    {"role": "assistant", "content": "Nice to meet you, Alice!"},
]


def _schema(words: list[str]) -> dict:
    word = "(" + "|".join(re.escape(w) for w in sorted(set(words))) + ")"
    text = {"type": "string", "pattern": f"^{word}( {word}){{1,9}}$", "maxLength": 80}
    item = {"type": "object", "properties": {"text": text}, "required": ["text"]}
    return {
        "type": "object",
        "properties": {"memory": {"type": "array", "minItems": 1, "maxItems": 2, "items": item}},
        "required": ["memory"],
    }


def test_fact_extraction_through_a_real_local_model(llama_servers, store_dir):
    import contextpilot_mem0  # noqa: F401  (registers the reranker provider)
    from contextpilot_mem0 import RANK_KEY, chat_messages, labels_of, memory_messages
    from mem0 import Memory

    words = re.findall(r"[A-Za-z]+", CONVERSATION[0]["content"]) + ["User", "user", "is", "named", "the"]
    fmt = {"type": "json_schema", "json_schema": {"name": "facts", "schema": _schema(words)}}
    m = Memory.from_config(
        {
            "llm": {
                "provider": "lmstudio",
                "config": {
                    "lmstudio_base_url": llama_servers.chat_url,
                    "model": "gemma",
                    "temperature": 0.0,
                    "max_tokens": 120,
                    "lmstudio_response_format": fmt,
                },
            },
            "embedder": {
                "provider": "lmstudio",
                "config": {
                    "lmstudio_base_url": llama_servers.embed_url,
                    "model": "gemma",
                    "embedding_dims": GEMMA_DIMS,
                },
            },
            "vector_store": {
                "provider": "qdrant",
                "config": {
                    "path": os.path.join(store_dir, "q"),
                    "embedding_model_dims": GEMMA_DIMS,
                    "on_disk": False,
                },
            },
            "history_db_path": os.path.join(store_dir, "history.db"),
            "reranker": {"provider": "contextpilot"},
        }
    )
    try:
        added = m.add(CONVERSATION, user_id="alice")["results"]
        # the model's facts became mem0 memories, made of the conversation's words
        assert added and all(a["event"] == "ADD" for a in added), added
        vocab = set(words)
        for a in added:
            assert set(a["memory"].split()) <= vocab, a
        stored = m.get_all(filters={"user_id": "alice"})["results"]
        assert sorted(s["id"] for s in stored) == sorted(a["id"] for a in added)
        found = m.search("Where does Alice live?", filters={"user_id": "alice"}, rerank=True, threshold=0.0)
        items = found["results"]
        assert sorted(i["id"] for i in items) == sorted(a["id"] for a in added)
        assert sorted(i[RANK_KEY] for i in items) == list(range(len(items)))
        # prompts label each memory by its mem0 id
        system, user = memory_messages("Where does Alice live?", found)
        for lab, item in zip(labels_of(items), items):
            assert lab == item["id"][:8] and f"[{lab}]\n{item['memory']}" in system["content"]
        turn = chat_messages([], "Where does Alice live?", found)
        assert turn[-1]["content"].count("[") >= len(items)
        print(f"\nextracted by Gemma 3 270M: {[a['memory'] for a in added]}")
    finally:
        m.vector_store.client.close()
        m.close()


def test_readme_example_runs_as_written(llama_servers, store_dir, monkeypatch):
    monkeypatch.setenv("LOCAL_CHAT_URL", llama_servers.chat_url)
    monkeypatch.setenv("LOCAL_EMBED_URL", llama_servers.embed_url)
    monkeypatch.setenv("MEM0_DIR", store_dir)
    monkeypatch.setattr(tempfile, "tempdir", store_dir)
    printed, scope = run_example(Path(__file__).parents[1] / "README.md", "## Example")
    try:
        added = scope["added"]["results"]
        assert added, printed  # the model's answer was parsed into memories
        assert "system: " in printed and "user: " in printed and "Where does Alice live?" in printed
        for a in added:
            assert f"[{a['id'][:8]}]" in printed
    finally:
        scope["memory"].vector_store.client.close()
        scope["memory"].close()
