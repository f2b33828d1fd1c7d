"""A small Okapi BM25 retriever (numpy + scipy.sparse), deterministic.

Used to build retrieval workloads without extra dependencies. Lower-cased
words of two or more word characters, Lucene's English stop words removed,
no stemming (the defaults of the popular ``bm25s`` package); Lucene's idf
``log(1 + (N - df + 0.5) / (df + 0.5))``; ``k1 = 1.5``, ``b = 0.75``. Ties
in score go to the lower document index, so results are reproducible.

Why not ``bm25s`` itself: it scores each distinct query word once (this
counts repeats) and breaks ties at the top-k cut its own way, so on LoCoMo
conversation 0 it returns a different top-20 *set* for 112 of 199 questions
(109 of them ties at the cut), which would change every LoCoMo figure of
the benchmark.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

__all__ = ["BM25", "tokenize"]

_WORD = re.compile(r"(?u)\b\w\w+\b")
# Lucene's classic English stop set (33 words).
STOP_WORDS = frozenset(
    """a an and are as at be but by for if in into is it no not of on or such that the
    their then there these they this to was will with""".split()
)


def tokenize(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in STOP_WORDS]


class BM25:
    def __init__(self, corpus: Sequence[str], k1: float = 1.5, b: float = 0.75) -> None:
        if not corpus:
            raise ValueError("BM25 needs at least one document")
        self.vocab: dict[str, int] = {}
        rows, cols, vals = [], [], []
        lengths = np.zeros(len(corpus))
        for d, text in enumerate(corpus):
            terms = tokenize(text)
            lengths[d] = len(terms)
            counts: dict[int, int] = {}
            for term in terms:
                t = self.vocab.setdefault(term, len(self.vocab))
                counts[t] = counts.get(t, 0) + 1
            for t, c in counts.items():
                rows.append(d)
                cols.append(t)
                vals.append(c)
        n_docs, n_terms = len(corpus), max(1, len(self.vocab))
        tf = sp.csr_matrix((vals, (rows, cols)), shape=(n_docs, n_terms), dtype=np.float64)
        df = np.bincount(np.asarray(cols, dtype=np.int64), minlength=n_terms)
        idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))
        avg = lengths.mean() or 1.0
        norm = k1 * (1 - b + b * lengths / avg)
        tf = tf.tocoo()
        weight = tf.data * (k1 + 1) / (tf.data + norm[tf.row]) * idf[tf.col]
        # term x doc, so a query's scores are one sparse row-sum.
        self._w = sp.csr_matrix((weight, (tf.col, tf.row)), shape=(n_terms, n_docs))
        self.n_docs = n_docs

    def scores(self, query: str) -> np.ndarray:
        ids = [self.vocab[t] for t in tokenize(query) if t in self.vocab]
        if not ids:
            return np.zeros(self.n_docs)
        q = np.bincount(ids, minlength=self._w.shape[0]).astype(np.float64)
        return np.asarray(self._w.T @ q).ravel()

    def top_k(self, query: str, k: int) -> list[int]:
        s = self.scores(query)
        k = min(k, self.n_docs)
        # lexsort: last key is primary; ties broken by ascending index.
        order = np.lexsort((np.arange(self.n_docs), -s))
        return order[:k].tolist()
