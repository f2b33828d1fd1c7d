"""Request ids: minting ours and normalising what engines send back.

Ours look like ``req-<16 hex>``. Engines decorate the id they were given:
OpenAI-style servers prefix ``cmpl-`` / ``chatcmpl-`` / ``batch-``, and vLLM
v1 appends ``-<n>-<8+ hex>`` to ids it was handed; both are undone here so
an eviction notice finds the request it is about.
"""

from __future__ import annotations

import re
import uuid

__all__ = ["is_health_check", "new_request_id", "normalize_request_id"]

_PREFIX = re.compile(r"^(?:cmpl-|chatcmpl-|batch-)+")
_VLLM_SUFFIX = re.compile(r"^(req-[0-9a-zA-Z_]+?)-\d+-[0-9a-f]{8,}$")


def new_request_id() -> str:
    return f"req-{uuid.uuid4().hex[:16]}"


def normalize_request_id(rid: str) -> str:
    """``chatcmpl-req-ab12-0-deadbeef`` -> ``req-ab12``; others unchanged
    but for surrounding whitespace."""
    rid = _PREFIX.sub("", rid.strip())
    m = _VLLM_SUFFIX.match(rid)
    return m.group(1) if m else rid


def is_health_check(rid: str) -> bool:
    """Engines' own warm-up and health probes, never ours."""
    return rid.upper().startswith("HEALTH_CHECK")
