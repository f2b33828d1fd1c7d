"""Dedup that cannot lie, in LlamaIndex's own chat engines and memory.

A recording LLM keeps every prompt (condense and answer calls alike); each
is run through the checker (``contextpilot.plugins.unseen_notes``): a note
whose passage is not in the same prompt fails the test."""

from __future__ import annotations

import pytest
from li_helpers import CAPITALS, Q1, Q2
from llama_index.core.base.llms.types import CompletionResponse, LLMMetadata
from llama_index.core.bridge.pydantic import Field
from llama_index.core.llms import CustomLLM
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.memory import ChatMemoryBuffer, Memory, StaticMemoryBlock
from llama_index.postprocessor.contextpilot import DEDUP_KEY, DEFAULT_NOTE, ContextPilotNodePostprocessor

from contextpilot.plugins import find_notes, unseen_notes

MODES = ["context", "condense_plus_context"]


class Recorder(CustomLLM):
    """Records each prompt; answers with it (``echo``) or with a fixed text."""

    prompts: list[str] = Field(default_factory=list)
    echo: bool = False

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(context_window=100_000, num_output=256)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs) -> CompletionResponse:  # noqa: ANN003
        self.prompts.append(prompt)
        return CompletionResponse(text=prompt if self.echo else "I do not know.")

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs):  # noqa: ANN003
        yield self.complete(prompt, formatted, **kwargs)


def texts_by_id(index) -> dict[str, str]:
    return {nid: n.get_content() for nid, n in index.docstore.docs.items()}


def chat(index, mode: str, *, echo: bool, memory=None, questions=(Q1, Q2, Q1)):
    llm = Recorder(echo=echo)
    memory = memory if memory is not None else ChatMemoryBuffer.from_defaults(token_limit=100_000)
    post = ContextPilotNodePostprocessor(deduplicate=True, memory=memory)
    engine = index.as_chat_engine(
        chat_mode=mode, llm=llm, memory=memory, node_postprocessors=[post], similarity_top_k=4
    )
    responses = [engine.chat(q) for q in questions]
    return llm, responses


def check(index, prompts: list[str]) -> int:
    known = texts_by_id(index)
    notes = 0
    for i, p in enumerate(prompts):
        assert unseen_notes([p], known, DEFAULT_NOTE) == [], f"prompt {i} has a note without its passage"
        notes += len(find_notes(p, DEFAULT_NOTE))
    return notes


@pytest.mark.parametrize("mode", MODES)
def test_question_answer_memory_holds_no_passages_so_nothing_is_noted(index, mode):
    """The engines' memory keeps questions and answers; the context system
    message is rebuilt every turn. So every turn gets its passages in full
    (the bug this replaces sent 1 passage and 3 notes on turn 2)."""
    llm, responses = chat(index, mode, echo=False)
    assert check(index, llm.prompts) == 0
    for r in responses:
        assert not any(n.node.metadata[DEDUP_KEY] for n in r.source_nodes)
    answer_prompts = [p for p in llm.prompts if "capital of" in p]
    assert all(sum(t in p for t in CAPITALS.values()) >= 4 for p in answer_prompts)


@pytest.mark.parametrize("mode", MODES)
def test_notes_only_for_passages_the_history_shows(index, mode):
    """An echoing model puts the whole previous prompt in its answer, so the
    history does hold earlier passages: notes appear, and each one's passage
    is in the same prompt."""
    llm, responses = chat(index, mode, echo=True)
    assert check(index, llm.prompts) > 0
    assert any(n.node.metadata[DEDUP_KEY] for n in responses[1].source_nodes)
    assert not any(n.node.metadata[DEDUP_KEY] for n in responses[0].source_nodes)
    # scores are kept on the copies, noted or not
    assert all(n.score is not None and n.score > 0 for r in responses for n in r.source_nodes)


def test_a_short_memory_window_still_cannot_mislead(index):
    """With a tiny token limit the buffer keeps only the last message: notes
    may point only into it, whatever older turns held."""
    memory = ChatMemoryBuffer.from_defaults(token_limit=1)
    llm, _ = chat(index, "context", echo=True, memory=memory, questions=(Q1, Q2, Q1, Q2))
    check(index, llm.prompts)  # fails on any note whose passage is not in its prompt


async def test_async_chat(index):
    llm = Recorder(echo=True)
    memory = ChatMemoryBuffer.from_defaults(token_limit=100_000)
    post = ContextPilotNodePostprocessor(deduplicate=True, memory=memory)
    engine = index.as_chat_engine(
        chat_mode="context", llm=llm, memory=memory, node_postprocessors=[post], similarity_top_k=4
    )
    for q in (Q1, Q2):
        await engine.achat(q)
    assert check(index, llm.prompts) > 0


def test_new_style_memory_without_blocks_works_and_with_blocks_is_refused(index):
    llm, _ = chat(index, "context", echo=True, memory=Memory.from_defaults(token_limit=100_000))
    assert check(index, llm.prompts) > 0
    blocks = Memory.from_defaults(memory_blocks=[StaticMemoryBlock(name="core", static_content="x")])
    with pytest.raises(ValueError, match="memory blocks"):
        ContextPilotNodePostprocessor(deduplicate=True, memory=blocks)


def test_the_checker_fails_on_a_note_without_its_passage(index):
    known = texts_by_id(index)
    nid, text = next(iter(known.items()))
    note = DEFAULT_NOTE.format(label=nid, preview=text)  # quotes the short passage in full
    assert unseen_notes([f"context:\n{note}\nuser: q"], known, DEFAULT_NOTE) == [nid]
    assert unseen_notes([f"user: {text}\nassistant: ok\ncontext:\n{note}"], known, DEFAULT_NOTE) == []
