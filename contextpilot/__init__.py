"""contextpilot: make RAG and memory prompts KV-cache friendly.

Reorders context blocks so requests share prompt prefixes, schedules
requests so similar ones run back to back, deduplicates repeats, and keeps
a live index of what the inference engine has cached.

    import contextpilot as cp
    pilot = cp.ContextPilot()
    reordered, order = pilot.reorder([[3, 1, 2], [2, 3, 9]])
    chat = pilot.chat("user-42")           # multi-turn, append-only history
    messages = chat.messages(docs, query)  # whole conversation + this turn
    chat.reply(answer)
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from contextpilot.core.blocks import Block, stable_key
    from contextpilot.core.chat import ChatSession, ChatStore
    from contextpilot.core.dedup import DEFAULT_HINT, DedupResult
    from contextpilot.core.index import EvictionReport
    from contextpilot.core.pilot import ContextPilot, ReorderResult
    from contextpilot.core.prompt import build_messages

#: The public surface: the front object, what its methods return, the chat
#: sessions, and the few helpers plugins build prompts with. Everything else
#: (planner, index, stores, simulators, server) is imported from its own
#: module, e.g. ``from contextpilot.core.planner import plan``; pinned by
#: tests/test_public_api.py.
#:
#: public name -> defining module. Loaded on first use (PEP 562) so that
#: light submodules (``contextpilot.core.ids``, ``contextpilot.hooks``) can be
#: imported inside engine processes without pulling in numpy and scipy.
_LAZY = {
    "Block": "contextpilot.core.blocks",
    "stable_key": "contextpilot.core.blocks",
    "ChatSession": "contextpilot.core.chat",
    "ChatStore": "contextpilot.core.chat",
    "DEFAULT_HINT": "contextpilot.core.dedup",
    "DedupResult": "contextpilot.core.dedup",
    "EvictionReport": "contextpilot.core.index",
    "ContextPilot": "contextpilot.core.pilot",
    "ReorderResult": "contextpilot.core.pilot",
    "build_messages": "contextpilot.core.prompt",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'contextpilot' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.6.0"

__all__ = [
    "DEFAULT_HINT",
    "Block",
    "ChatSession",
    "ChatStore",
    "ContextPilot",
    "DedupResult",
    "EvictionReport",
    "ReorderResult",
    "__version__",
    "build_messages",
    "default_pilot",
    "optimize",
    "optimize_batch",
    "reset",
    "stable_key",
]

_default: ContextPilot | None = None
_default_lock = threading.Lock()


def default_pilot() -> ContextPilot:
    """The process-wide instance behind :func:`optimize` (bounded state)."""
    global _default
    with _default_lock:
        if _default is None:
            from contextpilot.core.pilot import ContextPilot

            _default = ContextPilot()
        return _default


def optimize(
    docs: Sequence[str],
    query: str,
    *,
    conversation_id: str | None = None,
    system_instruction: str | None = None,
) -> list[dict[str, str]]:
    """One online turn on the default instance (see ``ContextPilot.optimize``)."""
    return default_pilot().optimize(
        docs, query, conversation_id=conversation_id, system_instruction=system_instruction
    )


def optimize_batch(
    all_docs: Sequence[Sequence[str]],
    all_queries: Sequence[str],
    *,
    system_instruction: str | None = None,
) -> tuple[list[list[dict[str, str]]], list[int]]:
    """A batch on the default instance; ``messages[j]`` answers ``all_queries[order[j]]``."""
    return default_pilot().optimize_batch(all_docs, all_queries, system_instruction=system_instruction)


def reset() -> None:
    """Forget the default instance's state."""
    default_pilot().reset()
