"""Trees and pages into blocks: shapes, per-request dedup, errors, bounds."""

from __future__ import annotations

import pytest
from _support import build_tree, handbook_markdown
from contextpilot_pageindex import (
    ContextPilotPageIndex,
    DocumentStore,
    refs_from_citations,
    refs_from_tool_result,
)

# get_tree(include_text=False) shape for a PDF: page ranges nest, no text
PDF_TREE = {
    "doc_id": "pi-abc",
    "status": "completed",
    "result": [
        {
            "title": "Annual report",
            "node_id": "0000",
            "start_index": 1,
            "end_index": 4,
            "nodes": [
                {"title": "Revenue", "node_id": "0001", "start_index": 2, "end_index": 3},
                {"title": "Outlook", "node_id": "0002", "start_index": 4, "end_index": 4},
            ],
        }
    ],
}
# get_page_content shape
PAGES = [{"page_index": i, "markdown": f"Page {i} of the report: figures for part {i}."} for i in range(1, 5)]


@pytest.fixture
def handbook(tmp_path):
    return build_tree(tmp_path / "handbook.md", handbook_markdown())


def test_md_tree_nodes_become_labelled_blocks(handbook):
    cpi = ContextPilotPageIndex()
    assert cpi.add_tree("hb", handbook) == 22
    sel = cpi.select([("hb", "0006"), ("hb", "0007")])
    assert sel.refs == [("hb", "0006"), ("hb", "0007")]
    first = sel.blocks[0]
    assert sel.labels == ["hb:0006", "hb:0007"]
    assert first.startswith("[hb:0006]\nhandbook: Staff handbook > Leave > Annual leave (line ")
    assert "Employees get 25 days of annual leave" in first
    # rendering is stable: the same node gives the same block (same tokens) every time
    assert cpi.select([("hb", "0006")]).blocks[0] == first


def test_duplicates_in_one_request_are_sent_once_and_reported(handbook):
    cpi = ContextPilotPageIndex()
    cpi.add_tree("hb", handbook)
    sel = cpi.select([("hb", "0006"), ("hb", "0007"), ("hb", "0006")])
    assert sel.refs == [("hb", "0006"), ("hb", "0007")] and sel.duplicates == [("hb", "0006")]


def test_pdf_nodes_expand_into_pages_each_page_once():
    cpi = ContextPilotPageIndex()
    assert cpi.add_tree("report", PDF_TREE) == 3
    with pytest.raises(ValueError, match="no text, pages or summary"):
        cpi.select([("report", "0001")])
    cpi.add_pages("report", PAGES)
    # the parent covers pages 1-4; the child's pages 2-3 are not sent twice
    sel = cpi.select([("report", "0001"), ("report", "0000"), ("report", 4)])
    assert sel.refs == [("report", 2), ("report", 3), ("report", 1), ("report", 4)]
    assert sel.duplicates == [("report", 2), ("report", 3), ("report", 4)]
    assert sel.blocks[0] == "[report:p2]\nreport: page 2\nPage 2 of the report: figures for part 2."
    # agent tool shape ({"content": [{"page", "text"}]}) merges in
    cpi.add_pages("report", {"content": [{"page": 5, "text": "Appendix."}]})
    assert cpi.select([("report", 5)]).blocks == ["[report:p5]\nreport: page 5\nAppendix."]


def test_summary_is_the_fallback_for_nodes_without_text():
    cpi = ContextPilotPageIndex()
    cpi.add_tree("d", [{"title": "Intro", "node_id": "0000", "summary": "What the paper claims."}])
    assert cpi.select([("d", "0000")]).blocks == ["[d:0000]\nd: Intro, summary\nWhat the paper claims."]


def test_bad_trees_and_refs_name_the_problem(tmp_path, handbook):
    cpi = ContextPilotPageIndex()
    cpi.add_tree("hb", handbook)
    no_text = build_tree(tmp_path / "bare.md", handbook_markdown(), if_add_node_text="no")
    cpi.add_tree("bare", no_text)
    with pytest.raises(ValueError, match="if_add_node_text"):
        cpi.select([("bare", "0001")])
    with pytest.raises(ValueError, match="unknown document 'nope'"):
        cpi.select([("nope", "0001")])
    with pytest.raises(ValueError, match="unknown node '9999'"):
        cpi.select([("hb", "9999")])
    with pytest.raises(ValueError, match="pair"):
        cpi.select([("hb",)])
    with pytest.raises(ValueError, match="page 7"):
        cpi.select([("hb", 7)])
    with pytest.raises(ValueError, match="node_id"):
        cpi.add_tree("x", [{"title": "no id"}])
    with pytest.raises(ValueError, match="appears twice"):
        cpi.add_tree("x", [{"node_id": "1"}, {"node_id": "1"}])
    with pytest.raises(ValueError, match=r"pages\[0\]"):
        cpi.add_pages("hb", [{"page_index": 0, "markdown": "x"}])
    with pytest.raises(ValueError, match="structure"):
        cpi.add_tree("x", {"doc_name": "y"})
    assert "x" not in cpi.documents()  # a rejected tree registers nothing
    with pytest.raises(ValueError, match="query"):
        cpi.messages("", [])


def test_documents_are_bounded():
    store = DocumentStore(max_documents=2)
    for d in ("a", "b", "c"):
        store.add_tree(d, [{"node_id": "0", "title": d, "text": d}])
    assert store.ids() == ["b", "c"]
    with pytest.raises(ValueError, match="max_documents"):
        DocumentStore(max_documents=0)


def test_refs_from_pageindex_retrieval_outputs():
    cites = [
        {"document": "r.pdf", "doc_id": "pi-1", "page": 3},
        {"doc_id": "pi-1", "page": 3},
        {"doc_id": "pi-1", "page": 1},
    ]
    assert refs_from_citations(cites) == [("pi-1", 3), ("pi-1", 1)]
    tool = '{"success": true, "content": [{"page": 2, "text": "x"}, {"page": 3, "text": "y"}]}'
    assert refs_from_tool_result("pi-1", tool) == [("pi-1", 2), ("pi-1", 3)]
    with pytest.raises(ValueError, match="citations"):
        refs_from_citations([{"doc_id": "x"}])
    with pytest.raises(ValueError, match="content"):
        refs_from_tool_result("d", {"success": False})
