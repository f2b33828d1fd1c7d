"""``ContextPilotNodePostprocessor``: reorder retrieved nodes so prompts share
prefixes with what the engine cached, and, given the chat engine's memory,
replace a node the chat history already holds by a note pointing at it.

    engine = index.as_query_engine(node_postprocessors=[ContextPilotNodePostprocessor()])

Node identity is ``node_id`` (stable for the life of an index). Output nodes
are always copies (``model_copy`` with new metadata), so nodes shared with
the docstore and the caller's lists are never changed; scores are kept.

Dedup (``deduplicate=True``) needs ``memory``: the chat engine's own memory
(the object passed as ``memory=`` to the engine). A node is noted only when
its text is in a message of ``memory.get(input=query)``, which is the history
LlamaIndex's context and condense-plus-context chat engines put in the same
prompt (notes in it are stripped first, so a quoting note never counts).
Without a memory the postprocessor cannot know what the model sees (query
engines send no history; a context engine's system message is rebuilt every
turn), so ``deduplicate=True`` alone is refused. Memories whose ``get``
depends on the input (memory blocks) are refused too: condense-plus-context
retrieves with the condensed question, not the message the engine reads
memory with.

Metadata on each output node (excluded from what the LLM and the embedder
see, so it never changes the prompt): ``contextpilot_rank`` (relevance
rank: the position it had in the input, 0 = most relevant),
``contextpilot_deduplicated``, ``contextpilot_request_id``.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.bridge.pydantic import ConfigDict, Field, PrivateAttr, SecretStr
from llama_index.core.memory.types import BaseMemory
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import BaseNode, NodeWithScore, QueryBundle

from contextpilot.plugins import (
    History,
    Item,
    Placement,
    Planner,
    check_note_template,
    clean_label,
    estimate_tokens,
    make_planner,
    preview,
    stable_key,
)

__all__ = [
    "DEDUP_KEY",
    "DEFAULT_NOTE",
    "RANK_KEY",
    "REQUEST_KEY",
    "ContextPilotNodePostprocessor",
    "node_key",
]

RANK_KEY = "contextpilot_rank"
DEDUP_KEY = "contextpilot_deduplicated"
REQUEST_KEY = "contextpilot_request_id"
_OUR_KEYS = (RANK_KEY, DEDUP_KEY, REQUEST_KEY)

#: Text of a repeated node; fields ``{label}`` (its node id) and ``{preview}``
#: (its first non-empty line, so the model finds the copy in the history).
#: Never its position, so a note is the same text wherever it lands.
DEFAULT_NOTE = '[Passage {label}, given earlier in this conversation; it begins: "{preview}"]'


def node_key(node: BaseNode) -> int:
    """Stable identity of a node: its ``node_id``."""
    return stable_key("\x00node-id\x00" + node.node_id)


def _text(node: BaseNode) -> str:
    return node.get_content()  # MetadataMode.NONE: the node's own text


class ContextPilotNodePostprocessor(BaseNodePostprocessor):
    """Node postprocessor planning with contextpilot (local or server).

    ``pilot``: a ``contextpilot.ContextPilot`` to share (default: a fresh
    local one per postprocessor, sized by ``capacity_tokens``, the engine's
    KV cache in tokens, if given); ``server_url``: a contextpilot server
    instead (``api_key``, ``timeout``); ``deduplicate`` with ``memory`` (the
    chat engine's memory): replace nodes that history holds by a note;
    ``note_template``: the note's text. Stateless between queries apart
    from the pilot's live index: each query's dedup reads that query's
    history, so one postprocessor serves any number of conversations as
    long as each engine passes its own memory.
    """

    # a misspelt option must fail, not be ignored
    model_config = ConfigDict(extra="forbid")

    pilot: Any = Field(default=None, exclude=True, description="contextpilot.ContextPilot to share")
    server_url: str | None = Field(
        default=None, description="contextpilot server URL (instead of a local pilot)"
    )
    api_key: SecretStr | None = Field(default=None, exclude=True, repr=False)
    timeout: float = Field(default=30.0, gt=0)
    capacity_tokens: float | None = Field(default=None, gt=0, description="engine KV cache size (own pilot)")
    deduplicate: bool = Field(default=False, description="note nodes the chat memory already holds")
    memory: Any = Field(default=None, exclude=True, description="the chat engine's memory (for dedup)")
    note_template: str = DEFAULT_NOTE

    _planner: Planner = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        super().model_post_init(context)
        self.note_template = check_note_template(self.note_template)
        if self.memory is not None and not isinstance(self.memory, BaseMemory):
            raise ValueError(f"memory must be a LlamaIndex BaseMemory, got {type(self.memory).__name__}")
        if self.deduplicate and self.memory is None:
            raise ValueError(
                "deduplicate=True needs memory=<the chat engine's memory>: without the history the "
                "model receives, a note could point at a node it never sees (query engines send no "
                "history; context chat engines rebuild the context every turn)"
            )
        if self.deduplicate and getattr(self.memory, "memory_blocks", None):
            raise ValueError(
                "deduplicate=True cannot use a memory with memory blocks: what it returns depends on the "
                "input, which differs between this postprocessor and the chat engine"
            )
        self._planner = make_planner(self)
        self.pilot = self._planner.pilot

    @classmethod
    def class_name(cls) -> str:
        return "ContextPilotNodePostprocessor"

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        nodes = _check_nodes(nodes)
        noted: frozenset[int] = frozenset()
        if self.deduplicate and nodes:
            history = self.memory.get(input=_query(query_bundle))
            noted = self._noted(nodes, history)
        (placement,) = self._planner.plan([self._items(nodes, noted)], [None], False)
        return self._apply(nodes, placement, noted)

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        nodes = _check_nodes(nodes)
        noted: frozenset[int] = frozenset()
        if self.deduplicate and nodes:
            history = await self.memory.aget(input=_query(query_bundle))
            noted = self._noted(nodes, history)
        (placement,) = await self._planner.aplan([self._items(nodes, noted)], [None], False)
        return self._apply(nodes, placement, noted)

    def _noted(self, nodes: list[NodeWithScore], history: list[Any]) -> frozenset[int]:
        """Positions whose text the history holds, or an earlier node of this query has."""
        held = History([m.content or "" for m in history], self.note_template)
        out, here = set(), set()
        for p, n in enumerate(nodes):
            text = _text(n.node)
            if text in here or held.holds(text):
                out.add(p)
            here.add(text)
        return frozenset(out)

    def close(self) -> None:
        """Close the server connection, if any."""
        self._planner.close()

    def _note(self, node: BaseNode) -> str:
        return self.note_template.format(label=clean_label(node.node_id), preview=preview(_text(node)))

    def _items(self, nodes: list[NodeWithScore], noted: frozenset[int]) -> list[Item]:
        """What each position really sends (its node, or its note), for planning."""
        items = []
        for p, n in enumerate(nodes):
            if p in noted:
                note = self._note(n.node)
                items.append(Item(stable_key(note), estimate_tokens(note)))
            else:
                items.append(Item(node_key(n.node), estimate_tokens(_text(n.node))))
        return items

    def _apply(
        self, nodes: list[NodeWithScore], placement: Placement, noted: frozenset[int]
    ) -> list[NodeWithScore]:
        out = []
        for p in placement.order:
            src = nodes[p].node
            meta = {**src.metadata, RANK_KEY: p, DEDUP_KEY: p in noted}
            if placement.request_id is not None:
                meta[REQUEST_KEY] = placement.request_id
            # new containers for every field we change: the copy is shallow
            node = src.model_copy(
                update={
                    "metadata": meta,
                    "excluded_llm_metadata_keys": _plus_ours(src.excluded_llm_metadata_keys),
                    "excluded_embed_metadata_keys": _plus_ours(src.excluded_embed_metadata_keys),
                }
            )
            if p in noted:
                node.set_content(self._note(src))
            out.append(NodeWithScore(node=node, score=nodes[p].score))
        return out


def _query(bundle: QueryBundle | None) -> str | None:
    return bundle.query_str if bundle is not None else None


def _plus_ours(keys: list[str]) -> list[str]:
    return [*keys, *(k for k in _OUR_KEYS if k not in keys)]


def _check_nodes(nodes: Any) -> list[NodeWithScore]:
    if isinstance(nodes, (str, bytes)) or not isinstance(nodes, (list, tuple)):
        raise ValueError(f"nodes must be a list of NodeWithScore, got {type(nodes).__name__}")
    for i, n in enumerate(nodes):
        if not isinstance(n, NodeWithScore):
            raise ValueError(f"nodes[{i}] must be a NodeWithScore, got {type(n).__name__}")
    return list(nodes)
