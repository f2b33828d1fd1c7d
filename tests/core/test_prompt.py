from __future__ import annotations

from contextpilot import ContextPilot, build_messages
from contextpilot.core.dedup import doc_ref


def test_labels_are_content_based_and_relevance_line_keeps_original_order():
    docs = ["first doc", "second doc", "third doc"]
    ordered = [docs[2], docs[0], docs[1]]
    msgs = build_messages(ordered, "the question?", original=docs)
    system, user = msgs[0]["content"], msgs[1]["content"]
    labels = [doc_ref(d) for d in docs]
    assert system.index(labels[2]) < system.index(labels[0]) < system.index(labels[1])
    line = user.splitlines()[0]
    assert line.index(labels[0]) < line.index(labels[1]) < line.index(labels[2])
    assert user.endswith("the question?")


def test_shared_documents_render_identically_whatever_their_rank():
    a = build_messages(["x", "y"], "q1", original=["y", "x"])[0]["content"]
    b = build_messages(["x", "y", "z"], "q2", original=["z", "x", "y"])[0]["content"]
    assert b.startswith(a)  # the prefix the engine can reuse


def test_optimize_reuses_cached_order_and_hints_repeats():
    pilot = ContextPilot()
    m1 = pilot.optimize(["d1", "d2", "d3"], "q1", conversation_id="c")
    m2 = pilot.optimize(["d4", "d2", "d1"], "q2", conversation_id="c")
    s2 = m2[0]["content"]
    assert s2.index(doc_ref("d1")) < s2.index(doc_ref("d4"))  # cached path first
    assert "appeared earlier in this conversation" in s2
    assert "\nd4" in s2 and "\nd1" not in s2  # d1 hinted, d4 sent in full
    assert m1[0]["content"].count("appeared earlier") == 0
