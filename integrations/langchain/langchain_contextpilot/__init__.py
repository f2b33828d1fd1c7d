"""contextpilot for LangChain: reorder (and deduplicate) retrieved documents
so prompts share prefixes with what the inference engine already cached.

    from langchain_contextpilot import ContextPilotReorder
    chain = retriever | ContextPilotReorder() | format_docs | prompt | model

Components: :class:`ContextPilotReorder` (LCEL step),
:class:`ContextPilotCompressor` (``BaseDocumentCompressor``),
:class:`ContextPilotRetriever` (``BaseRetriever`` wrapper). Each plans with
a local ``contextpilot.ContextPilot`` by default, or a server via
``server_url``.
"""

from langchain_contextpilot._documents import DEDUP_KEY, DEFAULT_NOTE, RANK_KEY, REQUEST_KEY, block_key
from langchain_contextpilot.compressor import ContextPilotCompressor
from langchain_contextpilot.reorder import ContextPilotReorder
from langchain_contextpilot.retriever import ContextPilotRetriever

__version__ = "0.1.0"

__all__ = [
    "DEDUP_KEY",
    "DEFAULT_NOTE",
    "RANK_KEY",
    "REQUEST_KEY",
    "ContextPilotCompressor",
    "ContextPilotReorder",
    "ContextPilotRetriever",
    "__version__",
    "block_key",
]
