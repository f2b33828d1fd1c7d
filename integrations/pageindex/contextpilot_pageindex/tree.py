"""PageIndex trees and pages as contextpilot blocks.

A *ref* names one unit of a registered document: ``(doc_id, node_id)`` with
``node_id`` a string (``"0003"``) for a tree node, or ``(doc_id, page)``
with ``page`` an int (1-based) for a page's content. ``node_id`` values are
only unique per document, hence the pair.

A unit is labelled ``doc:node`` (``handbook:0006``) or ``doc:p<page>``
(``report:p5``); its text starts with a one-line header (document, title
path, page or line range), rendered the same way every time so it has the
same tokens in every prompt; in a prompt it appears as ``[label]`` then the
text (:func:`contextpilot.plugins.render_block`). A node without text expands into its
pages when the document's pages are registered (``start_index`` ..
``end_index``), else into its summary; otherwise it is an error naming the
ref. :meth:`DocumentStore.select` keeps each node and each page once per
request (a parent and a child covering the same pages send those pages
once) and reports what it dropped.

Accepted tree shapes: ``md_to_tree`` output (``{"doc_name", "structure":
[...]}``), ``get_tree`` output (``{"doc_id", "result": [...]}``), or a list
of nodes (``get_document_structure``). Accepted page shapes:
``get_page_content`` (``[{"page_index", "markdown"}]``) and the agent
tool's ``content`` (``[{"page", "text"}]``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from contextpilot.plugins import clean_label, render_block

__all__ = ["DocumentStore", "Ref", "Selection"]

Ref = tuple[str, str | int]
_STRUCTURE_KEYS = ("title", "node_id", "start_index", "end_index", "line_num", "summary", "prefix_summary")


@dataclass
class _Node:
    node_id: str
    path: list[str]
    text: str | None
    summary: str | None
    start: int | None
    end: int | None
    line: int | None


@dataclass
class _Document:
    doc_id: str
    name: str
    nodes: dict[str, _Node] = field(default_factory=dict)
    pages: dict[int, str] = field(default_factory=dict)
    structure: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Selection:
    """Units for one request, in the order the refs were given."""

    #: ``doc:node`` / ``doc:p<page>`` of each unit
    labels: list[str]
    #: each unit's text (header line, then content)
    texts: list[str]
    #: the unit each text came from (a page ref when a node expanded into pages)
    refs: list[Ref]
    #: refs (or pages of expanded nodes) dropped because already selected
    duplicates: list[Ref]

    @property
    def blocks(self) -> list[str]:
        """Each unit as it appears in a prompt: ``[label]`` line, then its text."""
        return [render_block(lab, t) for lab, t in zip(self.labels, self.texts)]


def _nodes_of(tree: Any) -> tuple[list[Any], str | None]:
    if isinstance(tree, Mapping):
        for key in ("structure", "result"):
            if key in tree:
                return tree[key], tree.get("doc_name")
        raise ValueError("tree must be md_to_tree/get_tree output (a 'structure' or 'result' list) or a list")
    if isinstance(tree, (str, bytes)) or not isinstance(tree, Sequence):
        raise ValueError("tree must be md_to_tree/get_tree output or a list of nodes")
    return list(tree), None


def _opt_int(node: Mapping[str, Any], key: str, where: str) -> int | None:
    v = node.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"{where}.{key} must be an int, got {v!r}")
    return v


def _opt_str(node: Mapping[str, Any], key: str, where: str) -> str | None:
    v = node.get(key)
    if v is not None and not isinstance(v, str):
        raise ValueError(f"{where}.{key} must be a string, got {type(v).__name__}")
    return v


class DocumentStore:
    """Registered documents, least recently used dropped beyond ``max_documents``.

    Not thread-safe: the owner locks. Memory: the registered texts.
    """

    def __init__(self, max_documents: int = 1_000) -> None:
        if isinstance(max_documents, bool) or not isinstance(max_documents, int) or max_documents < 1:
            raise ValueError(f"max_documents must be an int >= 1, got {max_documents!r}")
        self.max_documents = max_documents
        self._docs: OrderedDict[str, _Document] = OrderedDict()

    def __len__(self) -> int:
        return len(self._docs)

    def ids(self) -> list[str]:
        return list(self._docs)

    def remove(self, doc_id: str) -> bool:
        return self._docs.pop(doc_id, None) is not None

    def _doc(self, doc_id: Any, create: bool = False) -> _Document:
        if not isinstance(doc_id, str) or not doc_id:
            raise ValueError(f"doc_id must be a non-empty string, got {doc_id!r}")
        doc = self._docs.get(doc_id)
        if doc is None:
            if not create:
                raise ValueError(f"unknown document {doc_id!r}: register it with add_tree() first")
            doc = self._docs[doc_id] = _Document(doc_id, doc_id)
            while len(self._docs) > self.max_documents:
                self._docs.popitem(last=False)
        self._docs.move_to_end(doc_id)
        return doc

    # -- registration ---------------------------------------------------------------

    def add_tree(self, doc_id: str, tree: Any) -> int:
        """Register (or replace) a document's tree; returns its node count. O(nodes)."""
        roots, name = _nodes_of(tree)
        nodes: dict[str, _Node] = {}
        structure: list[dict[str, Any]] = []

        def walk(items: Any, path: list[str], where: str, out: list[dict[str, Any]]) -> None:
            if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
                raise ValueError(f"{where} must be a list of nodes")
            for i, node in enumerate(items):
                w = f"{where}[{i}]"
                if not isinstance(node, Mapping):
                    raise ValueError(f"{w} must be a node dict")
                nid = node.get("node_id")
                if not isinstance(nid, str) or not nid:
                    raise ValueError(
                        f"{w} has no node_id (build the tree with node ids, e.g. if_add_node_id='yes')"
                    )
                if nid in nodes:
                    raise ValueError(f"{w}: node_id {nid!r} appears twice in document {doc_id!r}")
                title = _opt_str(node, "title", w) or ""
                here = [*path, title]
                nodes[nid] = _Node(
                    nid,
                    here,
                    _opt_str(node, "text", w),
                    _opt_str(node, "summary", w) or _opt_str(node, "prefix_summary", w),
                    _opt_int(node, "start_index", w),
                    _opt_int(node, "end_index", w),
                    _opt_int(node, "line_num", w),
                )
                entry = {k: node[k] for k in _STRUCTURE_KEYS if node.get(k) is not None}
                out.append(entry)
                children = node.get("nodes")
                if children:
                    entry["nodes"] = []
                    walk(children, here, f"{w}.nodes", entry["nodes"])

        walk(roots, [], "tree", structure)
        doc = self._doc(doc_id, create=True)
        doc.name = name if isinstance(name, str) and name else doc_id
        doc.nodes, doc.structure = nodes, structure
        return len(nodes)

    def add_pages(self, doc_id: str, pages: Any) -> int:
        """Register page contents (merged with earlier ones); returns how many were given."""
        items = pages.get("content") if isinstance(pages, Mapping) else pages
        if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
            raise ValueError("pages must be get_page_content output or a list of {'page', 'text'}")
        parsed: dict[int, str] = {}
        for i, p in enumerate(items):
            if not isinstance(p, Mapping):
                raise ValueError(f"pages[{i}] must be a dict")
            num = p.get("page_index", p.get("page"))
            text = p.get("markdown", p.get("text"))
            if isinstance(num, bool) or not isinstance(num, int) or num < 1:
                raise ValueError(f"pages[{i}] needs an int page number >= 1 ('page_index' or 'page')")
            if not isinstance(text, str):
                raise ValueError(f"pages[{i}] needs a string 'markdown' or 'text'")
            parsed[num] = text
        doc = self._doc(doc_id, create=True)
        doc.pages.update(parsed)
        return len(parsed)

    # -- blocks ------------------------------------------------------------------------

    @staticmethod
    def _header(doc: _Document, node: _Node) -> str:
        where = ""
        if node.start is not None:
            end = node.end if node.end is not None else node.start
            where = f" (page {node.start})" if end == node.start else f" (pages {node.start}-{end})"
        elif node.line is not None:
            where = f" (line {node.line})"
        return f"{doc.name}: {' > '.join(t for t in node.path if t)}{where}"

    @staticmethod
    def _label(doc_id: str, unit: str | int) -> str:
        return clean_label(f"{doc_id}:{unit}" if isinstance(unit, str) else f"{doc_id}:p{unit}")

    def _page(self, doc: _Document, page: int) -> tuple[Ref, str, str]:
        return (
            (doc.doc_id, page),
            self._label(doc.doc_id, page),
            f"{doc.name}: page {page}\n{doc.pages[page]}",
        )

    def _units(self, ref: Any) -> list[tuple[Ref, str, str]]:
        if not isinstance(ref, (tuple, list)) or len(ref) != 2:
            raise ValueError(f"ref must be a (doc_id, node_id) or (doc_id, page) pair, got {ref!r}")
        doc_id, unit = ref
        doc = self._doc(doc_id)
        if isinstance(unit, str):
            node = doc.nodes.get(unit)
            if node is None:
                raise ValueError(f"unknown node {unit!r} in document {doc_id!r}")
            label = self._label(doc_id, unit)
            if node.text is not None:
                return [((doc_id, unit), label, f"{self._header(doc, node)}\n{node.text}")]
            if node.start is not None and doc.pages:
                end = node.end if node.end is not None else node.start
                missing = [p for p in range(node.start, end + 1) if p not in doc.pages]
                if missing:
                    raise ValueError(
                        f"node ({doc_id!r}, {unit!r}) needs pages {missing} of {doc_id!r}: add_pages()"
                    )
                return [self._page(doc, p) for p in range(node.start, end + 1)]
            if node.summary is not None:
                return [((doc_id, unit), label, f"{self._header(doc, node)}, summary\n{node.summary}")]
            raise ValueError(
                f"node ({doc_id!r}, {unit!r}) has no text, pages or summary: build the tree with text "
                "(md_to_tree if_add_node_text='yes', get_tree include_text=True) or add_pages()"
            )
        if isinstance(unit, bool) or not isinstance(unit, int):
            raise ValueError(f"ref {ref!r}: the second item must be a node_id string or a page int")
        if unit not in doc.pages:
            raise ValueError(f"page {unit} of document {doc_id!r} is not registered: add_pages()")
        return [self._page(doc, unit)]

    def select(self, refs: Any) -> Selection:
        """Blocks for ``refs`` (relevance order kept), each node and page once. O(units)."""
        if isinstance(refs, (str, bytes)) or not isinstance(refs, Iterable):
            raise ValueError("refs must be a list of (doc_id, node_id) or (doc_id, page) pairs")
        sel = Selection([], [], [], [])
        seen: set[Ref] = set()
        for ref in refs:
            for key, label, text in self._units(ref):
                if key in seen:
                    sel.duplicates.append(key)
                    continue
                seen.add(key)
                sel.labels.append(label)
                sel.texts.append(text)
                sel.refs.append(key)
        return sel
