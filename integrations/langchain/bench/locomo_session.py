"""Prefix-cache hit ratio of the documents ``retriever | ContextPilotReorder()``
hands on, against retrieval order, on LoCoMo (see ``contextpilot.plugins.bench``).

    python integrations/langchain/bench/locomo_session.py [--limit N] [--capacity X]
"""

from __future__ import annotations

import sys

from langchain_contextpilot import ContextPilotReorder
from langchain_core.documents import Document

from contextpilot.plugins.bench import Step, run_locomo_session


def make_step(capacity: float | None) -> Step:
    reorder = ContextPilotReorder(capacity_tokens=capacity)
    return lambda docs, _query: [d.page_content for d in reorder.invoke([Document(t) for t in docs])]


if __name__ == "__main__":
    sys.exit(run_locomo_session("ContextPilotReorder", make_step))
