"""A deterministic offline embedding for the framework tests: a signed
hashed bag of words, unit length.

Texts that share words get a positive cosine, texts without common words
one near 0 (the random signs keep unrelated words from adding up), so a
vector store ranks by word overlap: retrieval the tests can predict without
a model. The same text always gives the same vector (blake2b, not Python's
salted ``hash``). Cost: O(len(text) + dims) per call.

:func:`llamaindex_embedding` and :func:`mem0_embedder` put it behind those
frameworks' embedding interfaces; they import the framework when called,
so this module imports in any virtualenv.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Collection
from typing import Any

__all__ = ["DIMS", "llamaindex_embedding", "mem0_embedder", "word_vector"]

#: the default width; a framework's vector store is configured with it
DIMS = 256
_WORD = re.compile(r"\w+")


def word_vector(text: str, dims: int = DIMS, stop_words: Collection[str] = ()) -> list[float]:
    """``text``'s lower-case words (less ``stop_words``) hashed into ``dims``
    buckets with a sign each, L2-normalised; all zeros when no word is left."""
    v = [0.0] * dims
    for w in _WORD.findall(text.lower()):
        if w in stop_words:
            continue
        h = int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little")
        v[h % dims] += 1.0 if (h >> 40) & 1 else -1.0
    n = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / n for x in v]


def llamaindex_embedding(dims: int = DIMS, stop_words: Collection[str] = ()) -> Any:
    """A LlamaIndex ``BaseEmbedding`` that embeds with :func:`word_vector`."""
    from llama_index.core.embeddings import BaseEmbedding

    class WordVectorEmbedding(BaseEmbedding):
        def _get_query_embedding(self, query: str) -> list[float]:
            return word_vector(query, dims, stop_words)

        def _get_text_embedding(self, text: str) -> list[float]:
            return word_vector(text, dims, stop_words)

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return word_vector(query, dims, stop_words)

    return WordVectorEmbedding()


def mem0_embedder(dims: int = DIMS, stop_words: Collection[str] = ()) -> Any:
    """A mem0 ``EmbeddingBase`` that embeds with :func:`word_vector` (set it
    as ``memory.embedding_model``; the vector store takes ``dims``)."""
    from mem0.embeddings.base import EmbeddingBase

    class WordVectorEmbedder(EmbeddingBase):
        def embed(self, text: Any, memory_action: Any = None) -> list[float]:
            # mem0 may pass a message list: its JSON holds the words
            return word_vector(text if isinstance(text, str) else json.dumps(text), dims, stop_words)

    return WordVectorEmbedder()
