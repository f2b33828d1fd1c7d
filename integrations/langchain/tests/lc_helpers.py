"""Shared by the tests: the corpus, the LCEL chain ending in a fake chat
model that echoes its prompt, and readers of what the model received."""

from __future__ import annotations

import re

from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import ParrotFakeChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableLambda, RunnablePassthrough

# the repository's tests/ is on pytest's pythonpath (pyproject.toml): shared helpers as support.*
from support.chat_scoring import common_prefix, shareable_prefix  # noqa: F401  (re-exported)

CAPITALS = {
    "fr": "Paris is the capital of France.",
    "de": "Berlin is the capital of Germany.",
    "es": "Madrid is the capital of Spain.",
    "it": "Rome is the capital of Italy.",
    "pt": "Lisbon is the capital of Portugal.",
    "at": "Vienna is the capital of Austria.",
}
# With DeterministicFakeEmbedding(size=32) and k=4 these retrieve
# Q1 -> pt, it, at, de and Q2 -> es, pt, it, de (asserted in the tests).
Q1, Q2 = "q1", "q2"

PROMPT = ChatPromptTemplate.from_messages(
    [("system", "Answer from the context."), ("human", "Context:\n{context}\n\nQuestion: {question}")]
)


def format_docs(docs: list[Document]) -> str:
    return "\n".join(f"[{d.id}] {d.page_content}" for d in docs)


def ids_of(prompt: str) -> list[str]:
    """Document ids of the context lines the model received, in order."""
    body = prompt.split("Context:\n", 1)[1].split("\n\nQuestion:", 1)[0]
    out = []
    for line in body.splitlines():
        m = re.match(r"\[(\w+)\] (.*)", line)
        assert m, f"unexpected context line {line!r}"
        out.append(m.group(1))
    return out


def make_chain(retriever: Runnable) -> Runnable:
    """question -> the prompt text the chat model received (Parrot echoes
    the last message, the human one holding the context)."""
    return (
        {"context": retriever | format_docs, "question": RunnablePassthrough()}
        | PROMPT
        | ParrotFakeChatModel()
        | StrOutputParser()
    )


def make_docs_chain(docs_step: Runnable, question: str = "?") -> Runnable:
    """A chain that is one RunnableSequence from the retriever on, so
    ``batch`` reaches every step as a batch (a RunnableParallel at the top,
    as in :func:`make_chain`, runs its branches one input at a time)."""
    to_prompt = RunnableLambda(lambda docs: {"context": format_docs(docs), "question": question})
    return docs_step | to_prompt | PROMPT | ParrotFakeChatModel() | StrOutputParser()
