"""contextpilot for mem0: memories ordered for the prefix cache, in mem0's
reranker slot, and prompts that label memories by their mem0 id.

    import contextpilot_mem0  # registers the "contextpilot" reranker provider
    from contextpilot_mem0 import memory_messages
    m = Memory.from_config({..., "reranker": {"provider": "contextpilot"}})
    found = m.search(question, filters={"user_id": "alice"}, rerank=True)
    messages = memory_messages(question, found)
"""

from importlib.metadata import PackageNotFoundError, version

try:
    from contextpilot.plugins import PLUGIN_API
except ImportError as e:  # an unrelated distribution named contextpilot, or none
    try:
        found = f"contextpilot {version('contextpilot')} is installed, but it is not this project's core"
    except PackageNotFoundError:
        found = "contextpilot is not installed"
    raise ImportError(
        f"contextpilot-mem0 needs contextpilot>=0.6 (the core from the same repository): {found}. "
        "From a clone of the repository run: pip install . ./integrations/mem0"
    ) from e
if PLUGIN_API < 1:
    raise ImportError("contextpilot-mem0 needs a newer contextpilot core (>=0.6)")

from mem0.utils.factory import RerankerFactory  # noqa: E402

from contextpilot_mem0.prompts import (  # noqa: E402
    CHAT_SYSTEM,
    DEFAULT_SYSTEM,
    MEMORY_HEADER,
    chat_messages,
    labels_of,
    memory_messages,
)
from contextpilot_mem0.reranker import (  # noqa: E402
    RANK_KEY,
    REQUEST_KEY,
    ContextPilotReranker,
    ContextPilotRerankerConfig,
    memory_key,
)

# mem0's factories have no plugin entry points: register the provider name here
RerankerFactory.provider_to_class.setdefault(
    "contextpilot", ("contextpilot_mem0.reranker.ContextPilotReranker", ContextPilotRerankerConfig)
)

__version__ = "0.6.0"

__all__ = [
    "CHAT_SYSTEM",
    "DEFAULT_SYSTEM",
    "MEMORY_HEADER",
    "RANK_KEY",
    "REQUEST_KEY",
    "ContextPilotReranker",
    "ContextPilotRerankerConfig",
    "__version__",
    "chat_messages",
    "labels_of",
    "memory_messages",
    "memory_key",
]
