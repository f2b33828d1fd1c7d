"""contextpilot for LangChain: reorder retrieved documents so prompts share
prefixes with what the inference engine already cached, and, in chats,
replace repeats by notes that point at text the prompt really carries.

    from langchain_contextpilot import ContextPilotReorder
    chain = retriever | ContextPilotReorder() | format_docs | prompt | model

Components: :class:`ContextPilotReorder` (LCEL step),
:class:`ContextPilotCompressor` (``BaseDocumentCompressor``),
:class:`ContextPilotRetriever` (``BaseRetriever`` wrapper) reorder;
:class:`ContextPilotChatPrompt` builds a chat turn with history-checked
dedup, :class:`ContextPilotChatHistory` keeps each turn's documents in the
session history. Each plans with a local ``contextpilot.ContextPilot`` by
default, or a server via ``server_url`` (``CONTEXTPILOT_URL``).
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
        f"langchain-contextpilot needs contextpilot>=0.6 (the core from the same repository): {found}. "
        "From a clone of the repository run: pip install . ./integrations/langchain"
    ) from e
if PLUGIN_API < 1:
    raise ImportError("langchain-contextpilot needs a newer contextpilot core (>=0.6): pip install -U <repo>")

from langchain_contextpilot._documents import RANK_KEY, REQUEST_KEY, block_key, label_of  # noqa: E402
from langchain_contextpilot.compressor import ContextPilotCompressor  # noqa: E402
from langchain_contextpilot.history import ContextPilotChatHistory  # noqa: E402
from langchain_contextpilot.prompt import ContextPilotChatPrompt  # noqa: E402
from langchain_contextpilot.reorder import ContextPilotReorder  # noqa: E402
from langchain_contextpilot.retriever import ContextPilotRetriever  # noqa: E402

__version__ = "0.6.0"

__all__ = [
    "RANK_KEY",
    "REQUEST_KEY",
    "ContextPilotChatHistory",
    "ContextPilotChatPrompt",
    "ContextPilotCompressor",
    "ContextPilotReorder",
    "ContextPilotRetriever",
    "__version__",
    "block_key",
    "label_of",
]
