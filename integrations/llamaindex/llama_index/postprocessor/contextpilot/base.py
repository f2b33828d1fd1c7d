"""``ContextPilotNodePostprocessor``: reorder (and optionally deduplicate)
retrieved nodes so prompts share prefixes with what the engine cached.

    engine = index.as_query_engine(node_postprocessors=[ContextPilotNodePostprocessor()])

Node identity is ``node_id`` (stable for the life of an index; chunks of one
source document share its ``ref_doc_id``, named in dedup notes). Output
nodes are always copies (``model_copy`` with new metadata), so nodes shared
with the docstore and the caller's lists are never changed.

Metadata on each output node (excluded from what the LLM and the embedder
see, so it never changes the prompt): ``contextpilot_rank`` (relevance
rank: the position it had in the input, 0 = most relevant),
``contextpilot_deduplicated`` (its text was replaced by a note because the
conversation already received it), ``contextpilot_request_id``.
"""

from __future__ import annotations

import uuid
from typing import Any

from llama_index.core.bridge.pydantic import ConfigDict, Field, PrivateAttr
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import BaseNode, NodeWithScore, QueryBundle

import contextpilot as cp
from contextpilot.plugin_planner import Item, Placement, Planner, estimate_tokens

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

#: Text of a repeated node; fields ``{preview}`` (its first non-empty line)
#: and ``{label}`` (quoted node id, and source document when known). Never
#: its position, so a note is the same text wherever it lands and stays
#: cacheable.
DEFAULT_NOTE = '[Passage already provided earlier in this conversation; it begins: "{preview}"]'


def node_key(node: BaseNode) -> int:
    """Stable identity of a node: its ``node_id``."""
    return cp.stable_key("\x00node-id\x00" + node.node_id)


def _label(node: BaseNode) -> str:
    ref = node.source_node.node_id if node.source_node is not None else None
    return f'"{node.node_id}"' + (f' of document "{ref}"' if ref and ref != node.node_id else "")


def _preview(text: str, limit: int = 80) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return ""


def _text(node: BaseNode) -> str:
    return node.get_content()  # MetadataMode.NONE: the node's own text


class ContextPilotNodePostprocessor(BaseNodePostprocessor):
    """Node postprocessor planning with contextpilot (local or server).

    ``pilot``: a ``contextpilot.ContextPilot`` to share (default: a fresh
    local one per postprocessor, sized by ``capacity_tokens``, the engine's
    KV cache in tokens, if given); ``server_url``: a contextpilot server
    instead (``api_key``, ``timeout``); ``deduplicate``: replace nodes the
    conversation already received by a note; ``conversation_id``: the
    conversation (default: one per postprocessor instance, i.e. per chat
    or query engine that holds it); ``note_template``: the note's text.
    """

    # a misspelt option must fail, not be ignored
    model_config = ConfigDict(extra="forbid")

    pilot: Any = Field(default=None, exclude=True, description="contextpilot.ContextPilot to share")
    server_url: str | None = Field(
        default=None, description="contextpilot server URL (instead of a local pilot)"
    )
    api_key: str | None = Field(default=None, exclude=True, repr=False)
    timeout: float = Field(default=30.0, gt=0)
    capacity_tokens: float | None = Field(default=None, gt=0, description="engine KV cache size (own pilot)")
    deduplicate: bool = Field(default=False, description="replace repeats in the conversation by notes")
    conversation_id: str | None = Field(default=None, min_length=1)
    note_template: str = DEFAULT_NOTE

    _planner: Planner = PrivateAttr()
    _own_conversation: str = PrivateAttr(default_factory=lambda: f"llamaindex-{uuid.uuid4().hex}")

    def model_post_init(self, context: Any, /) -> None:
        super().model_post_init(context)
        try:
            self.note_template.format(label="x", preview="y")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"note_template may use only {{label}} and {{preview}}: {e!r}") from None
        self._planner = Planner(
            pilot=self.pilot,
            server_url=self.server_url,
            api_key=self.api_key,
            timeout=self.timeout,
            capacity_tokens=self.capacity_tokens,
        )
        self.pilot = self._planner.pilot

    @classmethod
    def class_name(cls) -> str:
        return "ContextPilotNodePostprocessor"

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        nodes = _check_nodes(nodes)
        (placement,) = self._planner.plan([self._items(nodes)], [self._conversation()], self.deduplicate)
        return self._apply(nodes, placement)

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        nodes = _check_nodes(nodes)
        (placement,) = await self._planner.aplan(
            [self._items(nodes)], [self._conversation()], self.deduplicate
        )
        return self._apply(nodes, placement)

    def close(self) -> None:
        """Close the server connection, if any."""
        self._planner.close()

    def _conversation(self) -> str:
        return self.conversation_id or self._own_conversation

    def _note(self, node: BaseNode) -> str:
        return self.note_template.format(label=_label(node), preview=_preview(_text(node)))

    def _items(self, nodes: list[NodeWithScore]) -> list[Item]:
        items = []
        for n in nodes:
            key, tokens = node_key(n.node), estimate_tokens(_text(n.node))
            if self.deduplicate:
                note = self._note(n.node)
                items.append(Item(key, tokens, cp.stable_key(note), estimate_tokens(note)))
            else:
                items.append(Item(key, tokens))
        return items

    def _apply(self, nodes: list[NodeWithScore], placement: Placement) -> list[NodeWithScore]:
        out = []
        for p in placement.order:
            src = nodes[p].node
            meta = {**src.metadata, RANK_KEY: p, DEDUP_KEY: p in placement.noted}
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
            if p in placement.noted:
                node.set_content(self._note(src))
            out.append(NodeWithScore(node=node, score=nodes[p].score))
        return out


def _plus_ours(keys: list[str]) -> list[str]:
    return [*keys, *(k for k in _OUR_KEYS if k not in keys)]


def _check_nodes(nodes: Any) -> list[NodeWithScore]:
    if isinstance(nodes, (str, bytes)) or not isinstance(nodes, (list, tuple)):
        raise ValueError(f"nodes must be a list of NodeWithScore, got {type(nodes).__name__}")
    for i, n in enumerate(nodes):
        if not isinstance(n, NodeWithScore):
            raise ValueError(f"nodes[{i}] must be a NodeWithScore, got {type(n).__name__}")
    return list(nodes)
