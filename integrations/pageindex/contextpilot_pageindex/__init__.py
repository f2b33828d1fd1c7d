"""contextpilot for PageIndex: retrieved nodes and pages, labelled ``doc:node``,
in prompts that share prefixes in the KV cache, each node and page sent once.

    from contextpilot_pageindex import ContextPilotPageIndex
    cpi = ContextPilotPageIndex(client)          # a pageindex.PageIndexClient
    cpi.add_document(doc_id)                     # its tree and pages
    messages = cpi.messages(question, [(doc_id, "0006"), (doc_id, 5)])
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
        f"contextpilot-pageindex needs contextpilot>=0.6 (the core from the same repository): {found}. "
        "From a clone of the repository run: pip install . ./integrations/pageindex"
    ) from e
if PLUGIN_API < 1:
    raise ImportError("contextpilot-pageindex needs a newer contextpilot core (>=0.6)")

from contextpilot_pageindex.context import (  # noqa: E402
    CHAT_SYSTEM,
    DEFAULT_SYSTEM,
    SECTIONS_HEADER,
    ContextPilotPageIndex,
    refs_from_citations,
    refs_from_tool_result,
)
from contextpilot_pageindex.tree import DocumentStore, Ref, Selection  # noqa: E402

__version__ = "0.6.0"

__all__ = [
    "CHAT_SYSTEM",
    "DEFAULT_SYSTEM",
    "SECTIONS_HEADER",
    "ContextPilotPageIndex",
    "DocumentStore",
    "Ref",
    "Selection",
    "__version__",
    "refs_from_citations",
    "refs_from_tool_result",
]
