"""contextpilot for PageIndex: tree-search and answer prompts that share
prefixes in the KV cache, each node and page sent once.

    from pageindex import md_to_tree
    from contextpilot_pageindex import ContextPilotPageIndex

    cpi = ContextPilotPageIndex()
    cpi.add_tree("handbook", asyncio.run(md_to_tree("handbook.md", if_add_node_text="yes")))
    messages = cpi.messages("How many days of leave?", [("handbook", "0001"), ("handbook", "0002")])
"""

from contextpilot.core.sessions import SessionStore
from contextpilot_pageindex.context import (
    CHAT_SYSTEM,
    DEFAULT_SYSTEM,
    TREE_SEARCH_SYSTEM,
    ContextPilotPageIndex,
    PageIndexChat,
    parse_node_list,
)
from contextpilot_pageindex.tree import DocumentStore, Ref, Selection

__version__ = "0.1.0"

__all__ = [
    "CHAT_SYSTEM",
    "DEFAULT_SYSTEM",
    "TREE_SEARCH_SYSTEM",
    "ContextPilotPageIndex",
    "DocumentStore",
    "PageIndexChat",
    "Ref",
    "Selection",
    "SessionStore",
    "__version__",
    "parse_node_list",
]
