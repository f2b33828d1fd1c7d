"""Compact per-request signatures for sharding a huge batch.

A signature is what the partitioner needs to know about a request, small
enough to ship from many workers to one driver: the request's total tokens
and a *consistent weighted sample* of at most ``m`` of its distinct blocks,
each as a stable 64-bit key (:func:`contextpilot.core.blocks.stable_key`,
identical in every process) with its token length.

The sample ranks block ``b`` by ``-ln(u(b)) / w(b)``, ``u(b)`` a uniform
number drawn from the block's key, and keeps each request's ``m`` lowest:
heavy blocks are kept preferentially, and two requests holding the same
block rank it the same, so near-duplicate requests keep near-identical
samples. A request with at most ``m`` distinct blocks keeps them all (the
signature is then exact).

Signatures of consecutive chunks concatenate (:meth:`Signatures.concat`);
request ``i`` of the result is the ``i``-th request over all chunks.

Cost: O(blocks) dictionary work per chunk plus one hash per distinct block
of the chunk, then O(E log E) numpy work for E sampled entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from contextpilot.core.blocks import Block, BlockTable
from contextpilot.core.validation import ContextError, validate_contexts

__all__ = ["DEFAULT_SKETCH", "Signatures", "signatures", "validate_chunk"]

#: Blocks kept per request; retrieval batches rarely exceed it (exact then).
DEFAULT_SKETCH = 32


@dataclass
class Signatures:
    """Ragged rows: request ``i`` holds ``keys[indptr[i]:indptr[i+1]]``."""

    indptr: np.ndarray  # int64, n + 1
    keys: np.ndarray  # uint64 stable block keys
    weights: np.ndarray  # int64 token length of each sampled block
    tokens: np.ndarray  # int64 total tokens of each request (all its blocks)
    #: "int" or "str": the block type of the chunk (None when it holds no block)
    kind: str | None = None

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.indptr, self.keys, self.weights, self.tokens))

    @staticmethod
    def empty() -> Signatures:
        z = np.zeros(0, dtype=np.int64)
        return Signatures(np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.uint64), z, z)

    @staticmethod
    def concat(parts: Sequence[Signatures]) -> Signatures:
        """Signatures of the chunks' requests, in chunk order. Raises
        ``ValueError`` if chunks disagree on the block type."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return Signatures.empty()
        kinds = {p.kind for p in parts} - {None}
        if len(kinds) > 1:
            raise ValueError("mixed block types across the batch (int and str); use all ints or all strings")
        offsets = np.cumsum([0] + [int(p.indptr[-1]) for p in parts[:-1]])
        indptr = np.concatenate([parts[0].indptr[:1]] + [p.indptr[1:] + o for p, o in zip(parts, offsets)])
        return Signatures(
            indptr=indptr,
            keys=np.concatenate([p.keys for p in parts]),
            weights=np.concatenate([p.weights for p in parts]),
            tokens=np.concatenate([p.tokens for p in parts]),
            kind=kinds.pop() if kinds else None,
        )


def validate_chunk(contexts: object, offset: int = 0) -> list[list[Block]]:
    """``validate_contexts`` for a chunk starting at request ``offset``:
    errors name the position in the whole batch."""
    try:
        return validate_contexts(contexts)
    except ContextError as e:
        if not e.path or not offset:
            raise
        i = e.path[0]
        msg = str(e).replace(f"contexts[{i}]", f"contexts[{i + offset}]", 1)
        raise ContextError(msg, (i + offset, *e.path[1:])) from None


def _uniform(keys: np.ndarray) -> np.ndarray:
    """A number in (0, 1) from each 64-bit key (its top 53 bits)."""
    return ((keys >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)


def signatures(
    contexts: Sequence[Sequence[Block]],
    token_counter: object = None,
    m: int = DEFAULT_SKETCH,
) -> Signatures:
    """Signatures of already-validated contexts (see :func:`validate_chunk`).

    ``token_counter``: as for the planner (None, a callable, a tokenizer, a
    mapping); it must be the one the shards are planned with.
    """
    if m < 1:
        raise ValueError(f"sketch size m must be >= 1, got {m}")
    n = len(contexts)
    if not n:
        return Signatures.empty()
    table = BlockTable(token_counter)
    ids = table.intern_many(contexts)
    nb = len(table)
    bkeys = np.fromiter((table.key(i) for i in range(nb)), dtype=np.uint64, count=nb)
    btok = np.asarray(table.token_list, dtype=np.int64)
    lens = np.fromiter(map(len, ids), dtype=np.int64, count=n)
    rows = np.repeat(np.arange(n, dtype=np.int64), lens)
    cols = np.fromiter((b for r in ids for b in r), dtype=np.int64, count=int(lens.sum()))
    tokens = np.bincount(rows, weights=btok[cols], minlength=n).astype(np.int64)
    # distinct blocks per request, then each request's m lowest ranks
    flat = np.sort(rows * nb + cols)  # (np.unique may hash: slower here)
    flat = flat[np.r_[True, flat[1:] != flat[:-1]]]
    rows, cols = flat // nb, flat % nb
    w = btok[cols]
    # zero-token blocks rank last (finite, so ties still follow the key)
    rank = -np.log(_uniform(bkeys[cols])) / np.maximum(w, 1e-9)
    # each request's blocks by rank: a stable sort by rank, then by request
    order = np.argsort(rank, kind="stable")
    order = order[np.argsort(rows[order], kind="stable")]
    rows, cols = rows[order], cols[order]
    starts = np.searchsorted(rows, np.arange(n))
    keep = np.arange(len(rows)) - starts[rows] < m
    rows, cols = rows[keep], cols[keep]
    indptr = np.zeros(n + 1, dtype=np.int64)
    indptr[1:] = np.cumsum(np.bincount(rows, minlength=n))
    first = next((c[0] for c in contexts if len(c)), None)
    kind = None if first is None else ("str" if isinstance(first, str) else "int")
    return Signatures(indptr, bkeys[cols], btok[cols], tokens, kind)
