from __future__ import annotations

import re

import pytest

from contextpilot import ContextPilot
from contextpilot.core.dedup import DedupLedger, chunk_lines, dedup_passages, deduplicate_turn


def _lines(prefix: str, n: int) -> str:
    return "".join(f"{prefix} line {i}: some words to make the passage long enough\n" for i in range(n))


def test_multi_turn_hints_nothing_lost_across_turns():
    pilot = ContextPilot()
    turns = [["A", "B", "C"], ["B", "D", "A"], ["E", "C", "D", "F"], ["A", "F", "G"]]
    sent_before: set[str] = set()
    for docs in turns:
        (res,) = pilot.deduplicate([docs], "conv-1")
        assert len(res.docs_with_hints) == len(docs)
        for pos, doc in enumerate(docs):
            out = res.docs_with_hints[pos]
            if doc in sent_before:
                assert out != doc and pos in res.hinted_positions
                assert doc in out  # the hint quotes the document it stands for
            else:
                assert out == doc  # first occurrences untouched
        assert res.deduplicated_docs == [d for d in docs if d not in sent_before]
        assert len(res.overlapping_docs) + len(res.new_docs) == len(docs)
        sent_before |= set(docs)
    # other conversations are independent
    (other,) = pilot.deduplicate([["A"]], "conv-2")
    assert other.docs_with_hints == ["A"]


def test_repeat_inside_one_context_is_hinted_once_reported():
    (res,) = ContextPilot().deduplicate([["x", "y", "x"]], "c")
    assert res.docs_with_hints[:2] == ["x", "y"] and res.hinted_positions == [2]
    assert res.blocks_deduped == 1 and res.blocks_total == 3


def test_hint_template_validation():
    with pytest.raises(ValueError, match="unknown field"):
        ContextPilot().deduplicate([["a"]], "c", hint_template="see {nope}")
    (r,) = ContextPilot().deduplicate([["a", "a"]], "c", hint_template="<{ref}@{index}>")
    assert re.fullmatch(r"<doc-[0-9a-f]{8}@1>", r.docs_with_hints[1])


def test_conversation_store_is_bounded():
    clock = [0.0]
    store = DedupLedger(max_conversations=3, ttl=10, max_blocks=2, clock=lambda: clock[0])
    for i in range(5):
        deduplicate_turn(store, [["a", "b", "c"]], f"c{i}")
    assert len(store) == 3 and store.info("c4")["blocks"] == 2
    clock[0] = 100
    assert store.expire() == 3 and len(store) == 0


def test_chunking_is_lossless_and_content_defined():
    text = _lines("alpha", 60)
    chunks = chunk_lines(text, modulus=5, min_chars=100, max_chars=600)
    assert "".join(chunks) == text and len(chunks) > 2
    assert all(len(c) <= 600 for c in chunks)
    # the same passage inside other text is cut at the same line boundaries
    shifted = chunk_lines("preface\n" * 3 + text, modulus=5, min_chars=100, max_chars=600)
    assert len(set(chunks[1:-1]) & set(shifted)) >= len(chunks) // 2


def test_passage_dedup_points_back_and_protects():
    shared = _lines("shared", 40)
    texts = [shared, "intro\n" + shared + "outro\n", shared, shared + shared]
    rep = dedup_passages(texts, protected=[2], modulus=7, min_chars=150, max_chars=800)
    assert rep.texts[0] == shared  # first occurrence never changes
    assert rep.texts[2] == shared  # protected (system prompt) never shortened
    assert rep.replaced[1] > 0 and len(rep.texts[1]) < len(texts[1])
    assert rep.texts[1].startswith("intro\n") and rep.texts[1].endswith("outro\n")
    for i in (1, 3):
        assert rep.texts[i].count("[… passage repeated from above") == rep.replaced[i]
    assert rep.chars_saved == sum(map(len, texts)) - sum(map(len, rep.texts))
    # every pointer quotes the first line of the passage it replaced
    for m in re.finditer(r'beginning: "([^"]*)"', rep.texts[1]):
        assert m.group(1).rstrip("…") in shared


def test_passage_dedup_never_within_one_text():
    shared = _lines("solo", 40)
    rep = dedup_passages([shared + shared], modulus=7, min_chars=150, max_chars=800)
    assert rep.texts == [shared + shared] and rep.replaced == [0]
