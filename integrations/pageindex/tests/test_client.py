"""Through the real PageIndex client, offline: a PDF is indexed by the local
client (litellm's ``mock_response`` stands in for the summary model), its
tree and pages come into the plugin with ``add_document``, retrieval is
PageIndex's own agent tool ``get_page_content`` (run for real by
``call_tool``) and the answer's citations, and each chat turn goes to the
client's ``chat`` (mocked model) as built by the plugin, labels ``doc:node``
and ``doc:p<page>``."""

from __future__ import annotations

import pytest
from _pdf import write_pdf
from contextpilot_pageindex import ContextPilotPageIndex, refs_from_citations, refs_from_tool_result

from contextpilot.plugins import DEFAULT_NOTE, find_notes, unseen_notes

PAGES = [
    ["Annual report 2026", "Revenue grew by 12 percent to 4.2 million euros."],
    ["Outlook", "The company expects growth of 8 percent next year."],
    ["Risks", "Currency risk and supplier delays are the main risks."],
]


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    from pageindex import PageIndexClient

    d = tmp_path_factory.mktemp("pageindex")
    write_pdf(d / "report.pdf", PAGES)
    client = PageIndexClient(
        index={
            "model": "gpt-4o-mini",
            "backend": {"mock_response": "Mock summary.", "api_key": "sk-offline"},
            "optimize": "merge",
            "storage_path": str(d / "store"),
        },
        chat="gpt-4o-mini",
    )
    doc = client.submit_document(str(d / "report.pdf"), wait=True)
    return client, doc["doc_id"], doc["name"]


def test_pdf_through_the_client_tools_and_chat(indexed):
    from pageindex.agent_tools import call_tool

    client, doc_id, name = indexed
    cpi = ContextPilotPageIndex(client)
    assert cpi.add_document(doc_id) == 3
    sel = cpi.select([(doc_id, "0001"), (doc_id, 1)])
    assert sel.labels == [f"{doc_id}:0001", f"{doc_id}:p1"]
    assert "Revenue grew by 12 percent" in sel.texts[1]

    # retrieval the way PageIndex's agent does it: its get_page_content tool
    result, is_error = call_tool(client, "get_page_content", {"doc_name": name, "pages": "2-3"})
    assert not is_error
    refs1 = refs_from_tool_result(doc_id, result)
    assert refs1 == [(doc_id, 2), (doc_id, 3)]
    history: list[dict[str, str]] = []
    prompt1 = cpi.chat_messages(history, "What are the risks?", refs1)
    answer1 = client.chat(prompt1[1:], doc_id=doc_id, backend={"mock_response": "Currency and suppliers."})
    assert answer1 == "Currency and suppliers."
    history = [*prompt1[1:], {"role": "assistant", "content": answer1}]

    # the second turn's pages come from the answer's citations; page 2 is in the history already
    cited = (
        f'Growth of 8 percent <cite doc="{name}" page="2"/> after 12 percent <cite doc="{name}" page="1"/>'
    )
    refs2 = refs_from_citations(client.get_citations(cited, doc_id=doc_id))
    assert refs2 == [(doc_id, 2), (doc_id, 1)]
    prompt2 = cpi.chat_messages(history, "How does growth compare?", refs2)
    assert find_notes(prompt2[-1]["content"], DEFAULT_NOTE) == [f"{doc_id}:p2"]
    known = dict(
        zip(
            *[
                cpi.select([(doc_id, p) for p in (1, 2, 3)]).labels,
                cpi.select([(doc_id, p) for p in (1, 2, 3)]).blocks,
            ]
        )
    )
    for p in (prompt1, prompt2):
        assert unseen_notes([m["content"] for m in p], known, DEFAULT_NOTE) == []
    assert client.chat(prompt2[1:], doc_id=doc_id, backend={"mock_response": "8 vs 12."}) == "8 vs 12."
    # one question at a time: the same sections, ordered for the cache
    one = cpi.messages("Risks?", refs1)
    assert f"[{doc_id}:p2]" in one[0]["content"] and one[1]["content"].endswith("Risks?")
