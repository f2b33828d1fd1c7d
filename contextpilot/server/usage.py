"""Reading an engine's usage figures out of its JSON answer."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["engine_usage"]


def engine_usage(raw: bytes | None) -> tuple[dict[str, Any] | None, int | None, int | None]:
    """``(payload, prompt_tokens, cached_tokens)`` of an engine's JSON
    answer (``usage.prompt_tokens_details.cached_tokens``, as vLLM, SGLang
    and llama.cpp report it); ``None`` for what it does not say."""
    try:
        payload = json.loads(raw or b"")
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None, None, None
    if not isinstance(payload, dict):
        return None, None, None
    usage = payload.get("usage")
    if not isinstance(usage, dict):
        return payload, None, None
    prompt = usage.get("prompt_tokens")
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return (
        payload,
        prompt if isinstance(prompt, int) else None,
        cached if isinstance(cached, int) else None,
    )
