"""Configurable size limits of request bodies, checked before any state
changes, each violation a 422 naming the field path (``["body",
"contexts", 3, 7]``), never a truncation.

The same limits are written into the OpenAPI schema (``maxItems`` /
``maxLength``), so what the schema calls valid is what the server takes.
Costs: O(items) per check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException

from contextpilot.core.validation import ContextLimits, LimitError
from contextpilot.server.config import ServerConfig

__all__ = ["BLOCK_ID_RANGE", "Limits", "contexts_schema", "unprocessable"]

#: integer blocks are 64-bit ids, signed or unsigned (content hashes are often uint64);
#: bounded, so a body can never carry arbitrarily large numbers
BLOCK_ID_RANGE = (-(2**63), 2**64 - 1)


def unprocessable(loc: Sequence[Any], msg: str, kind: str = "value_error") -> HTTPException:
    """A 422 in FastAPI's own shape, naming the field."""
    return HTTPException(422, detail=[{"type": kind, "loc": ["body", *loc], "msg": msg}])


@dataclass(frozen=True)
class Limits:
    max_contexts: int = 100_000
    max_blocks_per_context: int = 10_000
    max_block_chars: int = 1_000_000

    @classmethod
    def from_config(cls, config: ServerConfig) -> Limits:
        return cls(config.max_contexts, config.max_blocks_per_context, config.max_block_chars)

    @property
    def context_limits(self) -> ContextLimits:
        """The same limits for :func:`~contextpilot.core.validation.validate_contexts`,
        which checks them in its one walk over a batch (see :meth:`error`)."""
        return ContextLimits(self.max_contexts, self.max_blocks_per_context, self.max_block_chars)

    def error(self, e: LimitError, field: str = "contexts") -> HTTPException:
        """The 422 of a limit the core's validation found exceeded."""
        loc = [field, *e.path]
        if e.limit == "max_contexts":
            return self._too_many(e.found, loc)
        if e.limit == "max_blocks_per_context":
            return self._too_long(e.found, loc)
        return self._too_many_chars(e.found, loc)

    def _too_many(self, n: int, loc: Sequence[Any]) -> HTTPException:
        msg = f"at most {self.max_contexts} items per request (--max-contexts), got {n}"
        return unprocessable(loc, msg, "too_long")

    def _too_long(self, n: int, loc: Sequence[Any]) -> HTTPException:
        msg = f"at most {self.max_blocks_per_context} blocks per context (--max-blocks-per-context), got {n}"
        return unprocessable(loc, msg, "too_long")

    def _too_many_chars(self, n: int, loc: Sequence[Any]) -> HTTPException:
        msg = f"at most {self.max_block_chars} characters per block (--max-block-chars), got {n}"
        return unprocessable(loc, msg, "string_too_long")

    def items(self, values: Sequence[Any] | None, loc: Sequence[Any]) -> None:
        """At most ``max_contexts`` items in one list field."""
        if values is not None and len(values) > self.max_contexts:
            raise self._too_many(len(values), loc)

    def text(self, value: str, loc: Sequence[Any]) -> None:
        if len(value) > self.max_block_chars:
            raise self._too_many_chars(len(value), loc)


def _block_schema(kind: str, limits: Limits) -> dict[str, Any]:
    if kind == "integer":
        return {"type": "integer", "minimum": BLOCK_ID_RANGE[0], "maximum": BLOCK_ID_RANGE[1]}
    return {"type": "string", "maxLength": limits.max_block_chars}


def contexts_schema(limits: Limits, min_blocks: int) -> dict[str, Any]:
    """JSON schema of a batch: all-integer or all-string blocks (never mixed
    in one batch), within the limits; ``min_blocks`` per context."""

    def batch(kind: str) -> dict[str, Any]:
        return {
            "type": "array",
            "title": f"{kind} blocks",
            "minItems": 1,
            "maxItems": limits.max_contexts,
            "items": {
                "type": "array",
                "minItems": min_blocks,
                "maxItems": limits.max_blocks_per_context,
                "items": _block_schema(kind, limits),
            },
        }

    return {
        "description": "one list of blocks per request; blocks are all ints (ids) or all strings (texts)",
        "anyOf": [batch("integer"), batch("string")],
    }
