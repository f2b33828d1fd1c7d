"""Block identity, interning and token-length estimation (checking a
batch of contexts: :mod:`contextpilot.core.validation`).

A *block* is one unit of context: an ``int`` (a document id) or a ``str``
(a document's text). Blocks are compared by value and type: ``5`` and
``"5"`` are different blocks.

Invariants of :class:`BlockTable`:

* every interned block has a dense id ``0 <= i < len(table)``; ids are never
  reused while the table lives (``clear()`` starts over);
* ``key(i)`` is a stable 64-bit content hash (BLAKE2b, never Python's salted
  ``hash()``), identical across processes and runs;
* ``tokens(i)`` is the block's estimated token length, computed once.

Interning costs O(len(text)) per new string (hashing) and O(1) per repeat;
:meth:`BlockTable.intern_flat` interns a whole batch of int blocks with
numpy, in O(total blocks) array work plus O(distinct blocks) dict work.
"""

from __future__ import annotations

import array
import hashlib
import math
import numbers
from collections.abc import Callable, Iterable, Sequence
from itertools import chain
from typing import Any

import numpy as np

Block = int | str
Context = Sequence[Block]

__all__ = [
    "Block",
    "BlockTable",
    "Context",
    "TokenCounter",
    "default_token_counter",
    "make_token_counter",
    "stable_key",
]

TokenCounter = Callable[[Block], int]


#: Token length assumed for an id block when the caller gives no estimator.
DEFAULT_ID_TOKENS = 64


def default_token_counter(block: Block) -> int:
    """Cheap token estimate: about four UTF-8 bytes per token for text.

    Integer ids carry no text, so they all weigh ``DEFAULT_ID_TOKENS``; pass
    a counter that knows your documents' lengths for better plans.
    """
    if isinstance(block, str):
        return max(1, math.ceil(len(block.encode("utf-8", "surrogatepass")) / 4))
    return DEFAULT_ID_TOKENS


def make_token_counter(counter: Any = None) -> TokenCounter:
    """Turn ``counter`` into a ``Block -> int`` function.

    Accepts ``None`` (the cheap default), a callable taking a block, a
    tokenizer object with ``encode(text)`` (tiktoken, Hugging Face), or a
    mapping from block to length. The result is validated lazily: a
    negative or non-integral length raises ``ValueError`` when seen.
    """
    if counter is None:
        return default_token_counter
    if hasattr(counter, "encode") and callable(counter.encode):
        enc = counter.encode

        def by_tokenizer(block: Block) -> int:
            if isinstance(block, str):
                return len(enc(block))
            return DEFAULT_ID_TOKENS

        return by_tokenizer
    if hasattr(counter, "__getitem__") and not callable(counter):
        table = counter

        def by_mapping(block: Block) -> int:
            return table[block] if block in table else default_token_counter(block)

        return by_mapping
    if callable(counter):
        return counter
    raise ValueError("token_counter must be None, a callable, a tokenizer with encode(), or a mapping")


def stable_key(block: Block) -> int:
    """64-bit content hash of a block, stable across runs and processes."""
    if isinstance(block, str):
        data = b"s" + block.encode("utf-8", "surrogatepass")
    else:
        data = b"i" + str(int(block)).encode("ascii")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


#: Batches with fewer blocks than this are interned with dict lookups only
#: (cheaper than numpy's fixed costs).
_SMALL = 2048


def _as_int64(contexts: Sequence[Sequence[Block]], total: int) -> np.ndarray | None:
    """All blocks as one int64 array, or ``None`` unless they are ints (or
    int-likes, which a dict equates with ints) fitting int64: text, floats
    and None raise TypeError, bigger ints OverflowError."""
    try:
        # str blocks make array() raise TypeError: that is the test
        flat = np.frombuffer(array.array("q", chain.from_iterable(contexts)), dtype=np.int64)  # type: ignore[type-var]
    except (TypeError, OverflowError):
        return None
    return flat if len(flat) == total else None


class BlockTable:
    """Interns blocks to dense ids and remembers their key and token length.

    Not thread-safe by itself; owners serialise access (the live index and
    the facade hold a lock). Memory is O(distinct blocks); owners that live
    long bound it with ``max_blocks`` and ``clear()`` when full.
    """

    __slots__ = ("_ids", "_blocks", "_tokens", "_keys", "_count_tokens")

    def __init__(self, token_counter: Any = None) -> None:
        self._count_tokens = make_token_counter(token_counter)
        # keyed by the block itself: an int never equals a str, and bools and
        # floats (which equal ints) never get here
        self._ids: dict[Block, int] = {}
        self._blocks: list[Block] = []
        self._tokens: list[int] = []
        self._keys: list[int | None] = []

    def __len__(self) -> int:
        return len(self._blocks)

    def intern(self, block: Block) -> int:
        """Dense id of ``block``, adding it on first sight."""
        i = self._ids.get(block)
        if i is None:
            n = self._count_tokens(block)
            if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
                raise ValueError(f"token counter returned {n!r} for block {block!r}; expected an int >= 0")
            i = len(self._blocks)
            self._ids[block] = i
            self._blocks.append(block)
            self._tokens.append(int(n))
            self._keys.append(None)
        return i

    def intern_many(self, contexts: Iterable[Iterable[Block]]) -> list[list[int]]:
        get = self._ids.get
        out = []
        for ctx in contexts:
            row = [get(b) for b in ctx]
            if None in row:  # intern the new blocks (a block may repeat in a row)
                row = [self.intern(b) if i is None else i for i, b in zip(row, ctx)]
            out.append(row)
        return out  # type: ignore[return-value]  # every None was replaced above

    def intern_flat(self, contexts: Sequence[Sequence[Block]]) -> tuple[np.ndarray, np.ndarray]:
        """Batch form of :meth:`intern_many`: ``(ids, starts)`` with
        ``ids[starts[i]:starts[i + 1]]`` the ids of ``contexts[i]`` (int64
        arrays). Same ids, and the token counter is called on the same new
        blocks in the same order (first sight, row-major), as ``intern_many``.

        Batches of ints take a vectorised path: O(total) numpy work and dict
        lookups per *distinct* block only (instead of one per block); new
        blocks are still interned as the caller's objects.
        """
        n = len(contexts)
        starts = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, contexts), dtype=np.int64, count=n), out=starts[1:])
        total = int(starts[-1])
        ids = None
        flat = _as_int64(contexts, total) if total >= _SMALL else None
        if flat is not None:
            ids = self._intern_int_array(flat, contexts, starts)
        if ids is None:
            get = self._ids.get
            found = list(map(get, chain.from_iterable(contexts)))
            if None in found:
                blocks = list(chain.from_iterable(contexts))
                found = [self.intern(b) if i is None else i for i, b in zip(found, blocks)]
            ids = np.fromiter(found, dtype=np.int64, count=total)
        return ids, starts

    def _intern_int_array(
        self, flat: np.ndarray, contexts: Sequence[Sequence[Block]], starts: np.ndarray
    ) -> np.ndarray:
        """Ids of the blocks ``flat`` (``contexts`` as int64, row-major;
        new ones interned in order of first sight, as the caller's objects).
        Distinct values come from a presence map when their span is small
        (the usual document ids), else from a sort."""
        lo, hi = int(flat.min()), int(flat.max())
        if lo >= 0 and hi < len(flat) + (1 << 20):
            present = np.zeros(hi + 1, dtype=bool)
            present[flat] = True
            distinct = np.flatnonzero(present)
            del present
            slot = np.empty(hi + 1, dtype=np.int32 if len(distinct) < 2**31 else np.int64)
            slot[distinct] = np.arange(len(distinct))
            inverse = slot[flat]
            del slot
        else:
            distinct = np.unique(flat)
            inverse = np.searchsorted(distinct, flat)
        values = distinct.tolist()
        get = self._ids.get
        found = [get(v) for v in values]
        new = [u for u, i in enumerate(found) if i is None]
        if new:
            first = np.full(len(values), len(flat), dtype=np.int64)
            np.minimum.at(first, inverse, np.arange(len(flat), dtype=np.int64))
            order = np.asarray(new)[np.argsort(first[new], kind="stable")]
            pos = first[order]
            rows = np.searchsorted(starts, pos, side="right") - 1
            cols = pos - starts[rows]
            new = order.tolist()
            base = len(self._blocks)
            self._add_new([contexts[r][c] for r, c in zip(rows.tolist(), cols.tolist())])
            for j, u in enumerate(new):
                found[u] = base + j
        return np.asarray(found, dtype=np.int64)[inverse]

    def _add_new(self, blocks: list[Block]) -> None:
        """Intern ``blocks`` (distinct, none interned yet) in order. Equivalent
        to ``intern`` on each; counts them in one pass when the counter gives
        plain ints, else (or on an error) falls back to ``intern``, which
        validates and leaves the blocks before a bad one interned."""
        try:
            toks = list(map(self._count_tokens, blocks))
        except Exception:
            toks = None
        if toks is None or not all(type(t) is int and t >= 0 for t in toks):
            for b in blocks:
                self.intern(b)
            return
        base = len(self._blocks)
        self._ids.update(zip(blocks, range(base, base + len(blocks))))
        self._blocks.extend(blocks)
        self._tokens.extend(toks)
        self._keys.extend([None] * len(blocks))

    def lookup(self, block: Block) -> int | None:
        """Dense id of ``block`` if interned, else ``None`` (never adds)."""
        return self._ids.get(block)

    def block(self, i: int) -> Block:
        return self._blocks[i]

    def tokens(self, i: int) -> int:
        return self._tokens[i]

    @property
    def block_list(self) -> list[Block]:
        """Block of every id, indexable by id (read-only by contract)."""
        return self._blocks

    @property
    def token_list(self) -> list[int]:
        """Token length of every id, indexable by id (read-only by contract)."""
        return self._tokens

    def key(self, i: int) -> int:
        k = self._keys[i]
        if k is None:
            k = self._keys[i] = stable_key(self._blocks[i])
        return k

    def measure(self, blocks: Iterable[Block]) -> tuple[list[int], list[int]]:
        """Stable keys and token lengths of ``blocks``, in order (interned
        on the way): what the live index records for one request. O(len)."""
        ids = [self.intern(b) for b in blocks]
        return [self.key(i) for i in ids], [self._tokens[i] for i in ids]

    def clear(self) -> None:
        self._ids.clear()
        self._blocks.clear()
        self._tokens.clear()
        self._keys.clear()
