"""contextpilot for LlamaIndex: a node postprocessor that reorders (and
optionally deduplicates) retrieved nodes for KV prefix-cache reuse.

    from llama_index.postprocessor.contextpilot import ContextPilotNodePostprocessor
    engine = index.as_query_engine(node_postprocessors=[ContextPilotNodePostprocessor()])
"""

from llama_index.postprocessor.contextpilot.base import (
    DEDUP_KEY,
    DEFAULT_NOTE,
    RANK_KEY,
    REQUEST_KEY,
    ContextPilotNodePostprocessor,
    node_key,
)

__version__ = "0.1.0"

__all__ = [
    "DEDUP_KEY",
    "DEFAULT_NOTE",
    "RANK_KEY",
    "REQUEST_KEY",
    "ContextPilotNodePostprocessor",
    "__version__",
    "node_key",
]
