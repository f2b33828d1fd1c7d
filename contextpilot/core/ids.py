"""Request ids: minting ours and normalising what engines send back.

Ours look like ``req-<16 hex>``. Engines decorate the id they were given:
OpenAI-style servers prefix ``cmpl-`` / ``chatcmpl-`` / ``batch-``, vLLM
appends ``-<8 hex>`` (and its OpenAI server ``-<n>`` or ``_<n>`` per
prompt), older vLLM ``-<n>-<8+ hex>``; all are undone here so an eviction
notice finds the request it is about. One of our own ids is recognised
whatever follows it after a ``-`` or ``_``.
"""

from __future__ import annotations

import os
import re
import uuid

__all__ = ["is_health_check", "new_request_id", "new_request_ids", "normalize_request_id"]

_PREFIX = re.compile(r"^(?:cmpl-|chatcmpl-|batch-)+")
_VLLM_SUFFIX = re.compile(r"^(req-[0-9a-zA-Z_]+?)-\d+-[0-9a-f]{8,}$")
_OURS = re.compile(r"^(req-[0-9a-f]{16})(?:[-_][0-9A-Za-z_-]*)?$")


def new_request_id() -> str:
    return f"req-{uuid.uuid4().hex[:16]}"


def new_request_ids(n: int) -> list[str]:
    """``n`` fresh ids like :func:`new_request_id` (64 random bits each),
    minted together: a million in a fraction of a second."""
    h = os.urandom(8 * n).hex()
    return ["req-" + h[i : i + 16] for i in range(0, 16 * n, 16)]


def normalize_request_id(rid: str) -> str:
    """``chatcmpl-req-ab12-0-deadbeef`` -> ``req-ab12``; others unchanged
    but for surrounding whitespace."""
    rid = _PREFIX.sub("", rid.strip())
    m = _OURS.match(rid) or _VLLM_SUFFIX.match(rid)
    return m.group(1) if m else rid


def is_health_check(rid: str) -> bool:
    """Engines' own warm-up and health probes, never ours."""
    return rid.upper().startswith("HEALTH_CHECK")
