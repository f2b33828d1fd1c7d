"""The interned batch: what the planner plans, as lists or flat arrays.

Interning gives each block of the batch a dense id; a block repeated within
one request gets one *planning id* (pid) per copy, so a request is a set of
pids. Small batches stay lists of pids (numpy's fixed costs would dominate);
big ones are one flat pid array with row offsets, so interning, the chunk
sort, what goes to worker processes and the plan's assembly are array work,
O(total blocks) with a small constant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate, chain
from typing import Any

import numpy as np

from contextpilot.core.blocks import Block, BlockTable
from contextpilot.core.candidates import popular_rank

__all__ = ["FLAT_MIN_BLOCKS", "Batch", "as_objects", "chunk_indices", "intern_batch", "split"]

#: Batches with at least this many blocks are interned and chunked as flat
#: numpy arrays; smaller ones stay lists.
FLAT_MIN_BLOCKS = 2048


@dataclass
class Batch:
    """The interned batch: request ``i`` is ``rows[i]`` (list form) or
    ``pids[starts[i]:starts[i + 1]]`` (flat form).

    Planning ids: the first copy of a block in a request is the block's
    dense id; a k-th copy gets an id of its own (shared across requests).
    ``tokens``/``values``/``keys`` are indexed by planning id."""

    tokens: list[int]
    values: list[Block]
    keys: list[int]
    rows: list[list[int]] | None = None
    pids: np.ndarray | None = None
    starts: np.ndarray | None = None

    def lists(self, idx: np.ndarray | None = None) -> list[list[int]]:
        """Requests (all, or those at ``idx``) as lists of pids."""
        if self.rows is not None:
            return self.rows if idx is None else [self.rows[i] for i in idx.tolist()]
        assert self.pids is not None and self.starts is not None
        pids, lens = (self.pids, np.diff(self.starts)) if idx is None else self.gather(idx)
        return split(pids.tolist(), lens)

    def gather(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flat form: pids of the requests at ``idx``, concatenated, and
        their lengths."""
        assert self.pids is not None and self.starts is not None
        lens = self.starts[idx + 1] - self.starts[idx]
        offs = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(lens, out=offs[1:])
        pos = np.repeat(self.starts[idx] - offs[:-1], lens) + np.arange(offs[-1], dtype=np.int64)
        return self.pids[pos], lens

    def total_tokens(self) -> int:
        if self.rows is not None:
            return sum(map(self.tokens.__getitem__, chain.from_iterable(self.rows)))
        assert self.pids is not None
        freq = np.bincount(self.pids, minlength=len(self.tokens)).tolist()
        return sum(map(int.__mul__, freq, self.tokens))


def split(flat: Any, lens: np.ndarray) -> list[Any]:
    """``flat`` cut into consecutive pieces of lengths ``lens``."""
    ls = lens.tolist()
    if ls and ls.count(ls[0]) == len(ls):
        step = ls[0]
        if step:
            return [flat[i : i + step] for i in range(0, step * len(ls), step)]
        return [flat[:0] for _ in ls]
    ends = list(accumulate(ls))
    return [flat[a:b] for a, b in zip([0, *ends[:-1]], ends)]


def intern_batch(
    contexts: Sequence[Sequence[Block]], table: BlockTable, with_keys: bool, flat: bool
) -> Batch:
    """Intern the batch and number its planning ids (see :class:`Batch`).
    Flat: O(total blocks) numpy work, Python work only per distinct block
    and per request that repeats a block."""
    if flat:
        pids, starts = table.intern_flat(contexts)
        if len(table) + len(pids) < 2**31:  # room for every extra copy: half the memory
            pids = pids.astype(np.int32)
        batch = Batch([], [], [], pids=pids, starts=starts)
        repeats = rows_with_repeats(pids, starts)
    else:
        rows = table.intern_many(contexts)
        batch = Batch([], [], [], rows=rows)
        repeats = [r for r, row in enumerate(rows) if len(set(row)) != len(row)]
    n = len(table)
    values = batch.values = list(table.block_list)
    tokens = batch.tokens = list(table.token_list)
    base = None  # pid -> dense block id, once there are extra copies
    extra: dict[tuple[int, int], int] = {}
    for r in repeats:
        row = rows[r] if not flat else pids[starts[r] : starts[r + 1]].tolist()
        seen: dict[int, int] = {}
        for j, i in enumerate(row):
            o = seen.get(i, 0)
            seen[i] = o + 1
            if o:
                p = extra.get((i, o))
                if p is None:
                    if base is None:
                        base = list(range(n))
                    p = extra[(i, o)] = len(values)
                    values.append(values[i])
                    tokens.append(tokens[i])
                    base.append(i)
                row[j] = p
        if flat:
            pids[starts[r] : starts[r + 1]] = row
    if with_keys:
        batch.keys = [table.key(i) for i in (range(n) if base is None else base)]
    return batch


def rows_with_repeats(ids: np.ndarray, starts: np.ndarray) -> list[int]:
    """Indices (ascending) of the rows holding some id more than once."""
    lens = np.diff(starts)
    n = len(lens)
    width = int(lens.max(initial=0))
    if width < 2:
        return []
    if n * width > 2 * len(ids) + 1024:  # too ragged to pad: row by row
        return [r for r, row in enumerate(split(ids.tolist(), lens)) if len(set(row)) != len(row)]
    if (lens == width).all():
        table = np.sort(ids.reshape(n, width), axis=1)
    else:
        # pad with distinct negatives, which never equal an id or each other
        table = np.empty((n, width), dtype=ids.dtype)
        table[:] = -1 - np.arange(width, dtype=ids.dtype)
        shift = np.arange(0, n * width, width, dtype=np.int64) - starts[:-1]
        table.reshape(-1)[np.arange(len(ids), dtype=np.int64) + np.repeat(shift, lens)] = ids
        table.sort(axis=1)
    return np.flatnonzero((table[:, 1:] == table[:, :-1]).any(axis=1)).tolist()


def chunk_indices(batch: Batch, chunk_size: int) -> list[np.ndarray]:
    """Request indices of each chunk: consecutive runs of ``chunk_size`` in
    a sort by each request's most frequent blocks."""
    if batch.rows is not None:
        n = len(batch.rows)
    else:
        assert batch.starts is not None
        n = len(batch.starts) - 1
    if n <= chunk_size:
        return [np.arange(n, dtype=np.int64)]
    assert batch.pids is not None and batch.starts is not None
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(batch.starts))
    freq = np.bincount(batch.pids, minlength=len(batch.tokens))
    order = np.argsort(popular_rank(rows, batch.pids, n, freq), kind="stable")
    return [order[i : i + chunk_size] for i in range(0, n, chunk_size)]


def as_objects(xs: list) -> np.ndarray:
    """``xs`` as an object array: fancy indexing then ``tolist`` hands out
    references to the same objects, at C speed."""
    out = np.empty(len(xs), dtype=object)
    out[:] = xs
    return out
