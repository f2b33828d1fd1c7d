"""Typed request and response bodies of the HTTP API (pydantic v2).

Blocks are strict ints or strings: ``1.0``, ``true`` or ``null`` are
rejected with 422 and the field's path, never coerced or truncated.
Field names follow the reference's API so existing clients keep working.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

__all__ = [
    "DedupRequest",
    "DedupResponse",
    "DedupResultModel",
    "EvictRequest",
    "EvictResponse",
    "ReorderRequest",
    "ReorderResponse",
    "WarmRequest",
    "WarmResponse",
]

BlockT = StrictInt | StrictStr


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ReorderRequest(_Model):
    contexts: list[list[BlockT]] = Field(min_length=1, description="one list of blocks per request")
    deduplicate: bool = Field(False, description="also replace blocks a conversation sent before by hints")
    conversation_id: str | None = Field(None, min_length=1, description="conversation of every context")
    conversation_ids: list[str] | None = Field(None, description="conversation of each context")
    hint_template: str | None = Field(None, description="dedup hint; fields {ref} {preview} {index}")
    replica: StrictStr | None = Field(
        None, description="several replicas: plan for this one (name or URL) instead of routing"
    )
    initial_tokens_per_context: int = Field(0, ge=0, description="accepted for compatibility; no effect")
    alpha: float | None = Field(None, description="accepted for compatibility; no effect")
    use_gpu: bool | None = Field(None, description="accepted for compatibility; set at server start")
    linkage_method: str | None = Field(None, description="accepted for compatibility; no effect")
    parent_request_ids: list[str] | None = Field(None, description="accepted for compatibility; no effect")


class DedupResultModel(_Model):
    request_id: str | None = None
    conversation_id: str
    original_docs: list[BlockT]
    deduplicated_docs: list[BlockT]
    docs_with_hints: list[BlockT]
    overlapping_docs: list[BlockT]
    new_docs: list[BlockT]
    reference_hints: list[str]
    hinted_positions: list[int]
    blocks_deduped: int
    blocks_total: int
    block_chars_saved: int


class DedupSummary(_Model):
    enabled: bool = True
    results: list[DedupResultModel]
    total_docs_deduplicated: int
    total_blocks_deduped: int


class ReorderResponse(_Model):
    status: str = "success"
    mode: str = Field(description="stateless | initial | incremental")
    input_type: str = Field(description="integer | string")
    num_contexts: int
    num_groups: int
    groups: list[list[int]] = Field(description="input indices of each prefix-sharing group, in run order")
    reordered_contexts: list[list[BlockT]]
    original_indices: list[int] = Field(description="reordered_contexts[j] is contexts[original_indices[j]]")
    request_ids: list[str] | None = Field(None, description="stateful: id of each reordered request")
    stats: dict[str, Any]
    deduplication: DedupSummary | None = None
    scheduled_contexts: list[list[BlockT]] | None = Field(None, description="/schedule only")
    replicas: list[str] | None = Field(
        None, description="several replicas: the replica each reordered context is planned for"
    )


class DedupRequest(_Model):
    contexts: list[list[BlockT]] = Field(min_length=1)
    conversation_id: str = Field(min_length=1)
    hint_template: str | None = None


class DedupResponse(_Model):
    status: str = "success"
    conversation_id: str
    results: list[DedupResultModel]
    total_blocks_deduped: int
    total_blocks: int


class EvictRequest(_Model):
    request_ids: list[StrictStr] = Field(description="ids as the engine reports them (normalised here)")
    replica: StrictStr | None = Field(
        None,
        description="the engine replica that evicted (name or URL, as the hooks' CONTEXTPILOT_REPLICA); "
        "default: whichever replica holds each id",
    )


class EvictResponse(_Model):
    status: str = "success"
    removed_count: int
    removed: list[str]
    not_found: list[str]
    normalized_request_ids: list[str]
    ignored: list[str] = Field(description="engine health checks, never ours")
    conversations_cleared: list[str] = Field(
        default_factory=list,
        description="always empty: eviction frees KV memory, it does not erase what a conversation said",
    )
    nodes_removed: int
    requests_remaining: int
    replica: str | None = Field(None, description="the replica named in the notice, if any")
    removed_by_replica: dict[str, int] | None = Field(None, description="with several replicas")


class WarmRequest(_Model):
    prefixes: list[StrictStr] | None = Field(None, description="prompt texts to pre-fill")
    blocks: list[list[StrictStr]] | None = Field(None, description="block lists, joined like a prompt")
    model: str | None = None
    concurrency: int = Field(4, ge=1, le=64)
    replica: StrictStr | None = Field(None, description="warm only this replica (name or URL); default all")


class WarmResponse(_Model):
    status: str
    succeeded: list[int]
    failed: list[dict[str, Any]]
    request_ids: list[str | None] = Field(description="ids on the (first) replica warmed")
    replicas: dict[str, dict[str, Any]] | None = Field(None, description="per replica, when several")
