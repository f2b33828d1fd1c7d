"""Checking a batch of contexts: types, shape and size limits, in one walk.

:func:`validate_contexts` is the one check every entry point runs on a
batch (the library's ``reorder``/``optimize``/``deduplicate``, the server's
``/reorder``, ``/deduplicate`` and ``/warm``, the distributed planners):
blocks are ints or strs, never mixed in one batch, contexts non-empty
unless allowed, and, with :class:`ContextLimits`, the batch, each context
and each text block within their sizes. A violation is a
:class:`ContextError` (a ``ValueError``) naming its position; a size limit
a :class:`LimitError`. Cost: O(total blocks), one pass on valid input.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sized
from dataclasses import dataclass
from itertools import chain
from typing import Any

from contextpilot.core.blocks import Block

__all__ = ["ContextError", "ContextLimits", "LimitError", "validate_contexts"]


class ContextError(ValueError):
    """Bad input, with ``path``: the position it was found at, e.g.
    ``(2, 5)`` for ``contexts[2][5]`` or ``(1,)`` for ``contexts[1]``."""

    def __init__(self, message: str, path: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.path = path


class LimitError(ContextError):
    """A size limit of :class:`ContextLimits` exceeded: ``limit`` names the
    field (``"max_contexts"``, ``"max_blocks_per_context"``,
    ``"max_block_chars"``), ``allowed`` its value, ``found`` what was seen."""

    def __init__(self, limit: str, allowed: int, found: int, path: tuple[int, ...] = ()) -> None:
        where = "contexts" + "".join(f"[{i}]" for i in path)
        super().__init__(f"{where}: {limit} is {allowed}, got {found}", path)
        self.limit, self.allowed, self.found = limit, allowed, found


@dataclass(frozen=True)
class ContextLimits:
    """Size limits :func:`validate_contexts` checks in its one walk (``None``: no limit)."""

    max_contexts: int | None = None
    max_blocks_per_context: int | None = None
    max_block_chars: int | None = None

    def check_row(self, row: list[Any], i: int) -> None:
        """One context: its block count, and the length of its text blocks."""
        cap, chars = self.max_blocks_per_context, self.max_block_chars
        if cap is not None and len(row) > cap:
            raise LimitError("max_blocks_per_context", cap, len(row), (i,))
        if chars is not None:
            for j, b in enumerate(row):
                if isinstance(b, str) and len(b) > chars:
                    raise LimitError("max_block_chars", chars, len(b), (i, j))


def _check_block(block: Any, where: str, path: tuple[int, ...] = ()) -> Block:
    # bool is an int subclass but never a document id.
    if isinstance(block, bool):
        raise ContextError(f"{where}: block must be int or str, got bool {block!r}", path)
    if isinstance(block, str):
        return block
    if isinstance(block, numbers.Integral):
        return int(block)
    kind = "None" if block is None else type(block).__name__
    raise ContextError(f"{where}: block must be int or str, got {kind} {block!r}", path)


def validate_contexts(
    contexts: Any,
    *,
    allow_empty_context: bool = False,
    copy: bool = True,
    limits: ContextLimits | None = None,
) -> list[list[Block]]:
    """Check a batch of contexts and return it as a list of lists.

    Raises ``ValueError`` naming the first offending position
    (``contexts[i][j]``) for: a non-list batch or context, ``None``,
    floats, bools or other types, a batch mixing ints and strings, and
    (unless allowed) an empty context; with ``limits``, a
    :class:`LimitError` for a batch, context or text block over its limit,
    in the same walk. An empty batch is valid. O(total blocks).
    ``copy=False``: contexts that are lists already are returned as they
    are (for callers that only read them: a million-request batch is not
    held twice).
    """
    if isinstance(contexts, (str, bytes)) or not isinstance(contexts, Iterable):
        raise ValueError("contexts must be a list of lists of blocks (int or str)")
    most = limits.max_contexts if limits is not None else None
    if most is not None and isinstance(contexts, Sized) and len(contexts) > most:
        raise LimitError("max_contexts", most, len(contexts))
    chars = limits.max_block_chars if limits is not None else None
    out: list[list[Block]] = []
    kinds: set[type] = set()
    rest = iter(contexts)
    for i, ctx in enumerate(rest):
        if isinstance(ctx, (str, bytes)) or not isinstance(ctx, Iterable):
            raise ContextError(f"contexts[{i}] must be a list of blocks, got {type(ctx).__name__}", (i,))
        row = ctx if not copy and type(ctx) is list else list(ctx)
        if not row and not allow_empty_context:
            raise ContextError(f"contexts[{i}] is empty; every context needs at least one block", (i,))
        kinds.update(map(type, row))
        if not (kinds <= {int} or kinds <= {str}):
            break  # the slow path below names the position
        if limits is not None:
            if most is not None and i >= most:
                raise LimitError("max_contexts", most, i + 1)
            cap = limits.max_blocks_per_context
            if (cap is not None and len(row) > cap) or (
                chars is not None and kinds <= {str} and max(map(len, row), default=0) > chars
            ):
                limits.check_row(row, i)
        out.append(row)
    else:
        return out
    # what was read goes again, as read: the batch or its rows may be one-shot iterators
    return _validate_slowly(chain(out, [row], rest), allow_empty_context, limits)


def _validate_slowly(
    contexts: Iterable, allow_empty_context: bool, limits: ContextLimits | None
) -> list[list[Block]]:
    out: list[list[Block]] = []
    kind: type | None = None
    first_at = ""
    for i, ctx in enumerate(contexts):
        if isinstance(ctx, (str, bytes)) or not isinstance(ctx, Iterable):
            raise ContextError(f"contexts[{i}] must be a list of blocks, got {type(ctx).__name__}", (i,))
        row: list[Block] = []
        for j, block in enumerate(ctx):
            where = f"contexts[{i}][{j}]"
            b = _check_block(block, where, (i, j))
            t = str if isinstance(b, str) else int
            if kind is None:
                kind, first_at = t, where
            elif t is not kind:
                raise ContextError(
                    f"{where}: mixed block types in one batch ({t.__name__} here, "
                    f"{kind.__name__} at {first_at}); use all ints or all strings",
                    (i, j),
                )
            row.append(b)
        if not row and not allow_empty_context:
            raise ContextError(f"contexts[{i}] is empty; every context needs at least one block", (i,))
        if limits is not None:
            if limits.max_contexts is not None and i >= limits.max_contexts:
                raise LimitError("max_contexts", limits.max_contexts, i + 1)
            limits.check_row(row, i)
        out.append(row)
    return out
