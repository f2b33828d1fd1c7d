"""Prefix-cache hit ratio of the nodes ``ContextPilotNodePostprocessor``
returns, against retrieval order, on LoCoMo (see ``contextpilot.plugins.bench``).

    python integrations/llamaindex/bench/locomo_session.py [--limit N] [--capacity X]
"""

from __future__ import annotations

import sys

from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from llama_index.postprocessor.contextpilot import ContextPilotNodePostprocessor

from contextpilot.plugins import stable_key
from contextpilot.plugins.bench import Step, run_locomo_session


def make_step(capacity: float | None) -> Step:
    post = ContextPilotNodePostprocessor(capacity_tokens=capacity)
    nodes: dict[str, TextNode] = {}  # one node per distinct memory, as an index would hold it

    def step(docs: list[str], query: str) -> list[str]:
        retrieved = []
        for r, t in enumerate(docs):
            node = nodes.setdefault(t, TextNode(text=t, id_=f"m{stable_key(t):016x}"))
            retrieved.append(NodeWithScore(node=node, score=1.0 - r / len(docs)))
        return [n.node.get_content() for n in post.postprocess_nodes(retrieved, QueryBundle(query))]

    return step


if __name__ == "__main__":
    sys.exit(run_locomo_session("ContextPilotNodePostprocessor", make_step))
