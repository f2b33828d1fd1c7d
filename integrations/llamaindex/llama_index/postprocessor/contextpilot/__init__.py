"""contextpilot for LlamaIndex: a node postprocessor that reorders retrieved
nodes for KV prefix-cache reuse and, given a chat engine's memory, notes
nodes that history already holds.

    from llama_index.postprocessor.contextpilot import ContextPilotNodePostprocessor
    engine = index.as_query_engine(node_postprocessors=[ContextPilotNodePostprocessor()])
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
        f"llama-index-postprocessor-contextpilot needs contextpilot>=0.6 (the core from the same "
        f"repository): {found}. From a clone of the repository run: pip install . ./integrations/llamaindex"
    ) from e
if PLUGIN_API < 1:
    raise ImportError("llama-index-postprocessor-contextpilot needs a newer contextpilot core (>=0.6)")

from llama_index.postprocessor.contextpilot.base import (  # noqa: E402
    DEDUP_KEY,
    DEFAULT_NOTE,
    RANK_KEY,
    REQUEST_KEY,
    ContextPilotNodePostprocessor,
    node_key,
)

__version__ = "0.6.0"

__all__ = [
    "DEDUP_KEY",
    "DEFAULT_NOTE",
    "RANK_KEY",
    "REQUEST_KEY",
    "ContextPilotNodePostprocessor",
    "__version__",
    "node_key",
]
