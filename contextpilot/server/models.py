"""Typed request and response bodies of the HTTP API (pydantic v2).

Blocks are strict ints or strings: ``1.0``, ``true`` or ``null`` are
rejected with 422 and the field's path, never coerced or truncated.
Field names follow the reference's API so existing clients keep working.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, model_validator

from contextpilot.server.limits import BLOCK_ID_RANGE

__all__ = [
    "ChatCompletionBody",
    "CompletionBody",
    "DedupRequest",
    "DedupResponse",
    "DedupResultModel",
    "EvictRequest",
    "EngineErrorBody",
    "ErrorBody",
    "EvictResponse",
    "HealthResponse",
    "RequestsResponse",
    "ReorderRequest",
    "ReorderResponse",
    "RootResponse",
    "SessionsResponse",
    "StatsResponse",
    "StatusResponse",
    "WarmFailure",
    "WarmRequest",
    "WarmResponse",
]

#: an id (64-bit signed int) or a text; never a float, bool or null
BlockT = Annotated[StrictInt, Field(ge=BLOCK_ID_RANGE[0], le=BLOCK_ID_RANGE[1])] | StrictStr
#: ids, conversation ids and names: short strings
ShortStr = Annotated[StrictStr, Field(min_length=1, max_length=1024)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Request(BaseModel):
    """Request bodies: strict types (``0`` is no bool, ``"1"`` no number)."""

    model_config = ConfigDict(extra="ignore", strict=True)


class ReorderRequest(_Request):
    model_config = ConfigDict(extra="ignore", strict=True)
    contexts: list[list[BlockT]] = Field(min_length=1, description="one list of blocks per request")
    deduplicate: bool = Field(
        False,
        description="also replace blocks a conversation sent before by hints; the conversation of each "
        "context: conversation_ids, else conversation_id, else parent_request_ids (0.5.0 style), "
        "else each context starts a new one",
    )
    conversation_id: ShortStr | None = Field(None, description="conversation of every context")
    conversation_ids: list[ShortStr] | None = Field(None, description="conversation of each context")
    hint_template: str | None = Field(
        None, max_length=10_000, description="dedup hint; fields {ref} {preview} {index}"
    )
    replica: ShortStr | None = Field(
        None, description="several replicas: plan for this one (name or URL) instead of routing"
    )
    initial_tokens_per_context: int = Field(0, ge=0, description="accepted for compatibility; no effect")
    alpha: float | None = Field(None, description="accepted for compatibility; no effect")
    use_gpu: bool | None = Field(None, description="accepted for compatibility; set at server start")
    linkage_method: str | None = Field(None, description="accepted for compatibility; no effect")
    parent_request_ids: list[ShortStr | None] | None = Field(
        None,
        description="with deduplicate (0.5.0 style): per context, the request id of the previous turn "
        "(its conversation continues) or null (a new conversation)",
    )


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


class ReorderStats(_Model):
    planning_ms: float
    total_tokens: int
    cached_tokens_estimate: int
    live_requests: int


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
    stats: ReorderStats
    deduplication: DedupSummary | None = None
    scheduled_contexts: list[list[BlockT]] | None = Field(None, description="/schedule only")
    replicas: list[str] | None = Field(
        None, description="several replicas: the replica each reordered context is planned for"
    )


class DedupRequest(_Request):
    contexts: list[list[BlockT]] = Field(min_length=1)
    conversation_id: ShortStr | None = Field(None, description="conversation of every context")
    parent_request_ids: list[ShortStr | None] | None = Field(
        None,
        description="instead of conversation_id (0.5.0 style): per context, the previous turn's request id "
        "or null for a new conversation; each result gets a request_id to pass as the next parent",
    )
    hint_template: str | None = Field(None, max_length=10_000)


class DedupResponse(_Model):
    status: str = "success"
    conversation_id: str | None = Field(None, description="when the request named one")
    request_ids: list[str] = Field(description="per context: its id, a parent for the next turn")
    results: list[DedupResultModel]
    total_blocks_deduped: int
    total_blocks: int


class EvictRequest(_Request):
    request_ids: list[ShortStr] = Field(description="ids as the engine reports them (normalised here)")
    # empty means unset: hooks pass CONTEXTPILOT_REPLICA through as given
    replica: Annotated[StrictStr, Field(max_length=1024)] | None = Field(
        None,
        description="the engine replica that evicted (name or URL, as the hooks' CONTEXTPILOT_REPLICA); "
        "default (also when empty): whichever replica holds each id",
    )


class EvictResponse(_Model):
    status: str = "success"
    removed_count: int
    removed: list[str]
    not_found: list[str]
    normalized_request_ids: list[str]
    ignored: list[str] = Field(description="engine health checks, never ours")
    conversations_cleared: int = Field(
        0, description="0.5.0 field, always 0: eviction frees KV memory, it does not erase a conversation"
    )
    cleared_conversation_ids: list[str] = Field(
        default_factory=list, description="always empty (see conversations_cleared)"
    )
    nodes_removed: int
    requests_remaining: int
    replica: str | None = Field(None, description="the replica named in the notice, if any")
    removed_by_replica: dict[str, int] | None = Field(None, description="with several replicas")


class WarmRequest(_Request):
    model_config = ConfigDict(
        extra="ignore",
        strict=True,
        json_schema_extra={
            "anyOf": [
                {"required": ["prefixes"], "properties": {"prefixes": {"type": "array", "minItems": 1}}},
                {"required": ["blocks"], "properties": {"blocks": {"type": "array", "minItems": 1}}},
            ]
        },
    )
    prefixes: list[StrictStr] | None = Field(None, description="prompt texts to pre-fill")
    blocks: list[Annotated[list[StrictStr], Field(min_length=1)]] | None = Field(
        None, description="block lists, joined like a prompt"
    )
    model: str | None = Field(None, max_length=1024)
    concurrency: int = Field(4, ge=1, le=64)
    replica: StrictStr | None = Field(None, description="warm only this replica (name or URL); default all")

    @model_validator(mode="after")
    def _something_to_warm(self) -> WarmRequest:
        if not self.prefixes and not self.blocks:
            raise ValueError("give prefixes or blocks (a non-empty list)")
        return self


class WarmResponse(_Model):
    status: str
    succeeded: list[int]
    failed: list[dict[str, Any]]
    request_ids: list[str | None] = Field(description="ids on the (first) replica warmed")
    warmed: list[dict[str, Any]] = Field(
        default_factory=list,
        description="per warmed item (first replica): index, prompt_tokens (now cached), "
        "cached_before (already cached), from the engine's usage figures",
    )
    warmed_tokens: int = Field(0, description="prompt tokens warmed on the first replica")
    replicas: dict[str, dict[str, Any]] | None = Field(None, description="per replica, when several")


class WarmFailure(_Model):
    """502 from ``/warm``: nothing was warmed; the report says why."""

    detail: WarmResponse


# -- OpenAI-compatible bodies: checked for shape, forwarded unchanged ------------------


class _OpenAIBody(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    stream: bool | None = None
    # ids travel in HTTP headers (X-Request-Id): visible ASCII only
    rid: str | None = Field(
        None, max_length=256, pattern=r"^[!-~]+$", description="request id (also ``request_id``)"
    )
    request_id: str | None = Field(None, max_length=256, pattern=r"^[!-~]+$")


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionBody(_OpenAIBody):
    messages: list[ChatMessage] = Field(min_length=1)


class CompletionBody(_OpenAIBody):
    prompt: str | list[str] | list[int] | list[list[int]]


# -- other responses -----------------------------------------------------------------


class ErrorBody(_Model):
    detail: str


class EngineErrorDetail(_Model):
    """The ``error`` object of an engine failure the proxy maps (OpenAI's shape)."""

    message: str
    type: str
    code: int


class EngineErrorBody(_Model):
    error: EngineErrorDetail


class StatusResponse(_Model):
    status: str
    message: str | None = None
    conversation_id: str | None = None


class RootResponse(_Model):
    service: str
    version: str
    status: str
    mode: str
    index_initialized: bool


class EngineProbe(BaseModel):
    model_config = ConfigDict(extra="allow")
    url: str | None = Field(None, description="shown only to callers holding the API key (when one is set)")
    reachable: bool
    status: int | None = None
    error: str | None = None
    latency_ms: float


class ReplicaProbe(EngineProbe):
    name: str
    down: bool = Field(False, description="marked down: skipped by routing until the probe sees it again")


class HealthResponse(_Model):
    status: str = Field(
        description="'ready': index ready and every engine up; 'degraded': some engine (or all) "
        "down or unreachable (see engine_reachable, replicas_down)"
    )
    mode: str
    eviction_enabled: bool
    uptime_seconds: float
    index_ready: bool = Field(description="the server can plan (/reorder) and track requests")
    index_initialized: bool = Field(description="the live index holds something")
    engine_reachable: bool = Field(description="at least one engine (replica or fallback) answers")
    replicas_down: list[str] = Field(description="replicas marked down or not answering the probe")
    max_tokens: float | None = Field(None, description="engine cache capacity in tokens, when set")
    current_tokens: int = Field(description="tokens the live index believes cached (all replicas)")
    utilization_pct: float = Field(
        description="current_tokens / max_tokens in percent (0 without a capacity)"
    )
    engine: EngineProbe = Field(description="the first replica's engine")
    replicas: list[ReplicaProbe] | None = Field(None, description="every replica, when several")
    fallback: EngineProbe | None = Field(None, description="the fallback engine, when one is set")


class IndexStatsModel(BaseModel):
    model_config = ConfigDict(extra="allow")
    mode: str
    calls: int
    requests_planned: int
    live_requests: int
    index_nodes: int
    index_tokens: int
    capacity_tokens: float | None
    predicted_hit_ratio: float
    evicted_requests: int
    evicted_by_engine: int
    evicted_by_capacity: int
    evicted_by_ttl: int
    conversations: int
    num_requests: int = Field(description="0.5.0 name of live_requests")
    num_nodes: int = Field(description="0.5.0 name of index_nodes")
    total_tokens: int = Field(description="0.5.0 name of index_tokens")


class ServerStatsModel(BaseModel):
    model_config = ConfigDict(extra="allow")
    planned_requests: float
    engine_prompt_tokens: float
    engine_cached_tokens: float
    engine_hit_ratio: float
    uptime_seconds: float
    state_file: dict[str, Any] | None = Field(None, description="snapshot status when --state-file is set")


class RoutingInfo(BaseModel):
    model_config = ConfigDict(extra="allow")
    policy: str
    replicas: int


class StatsResponse(_Model):
    status: str = "success"
    index_stats: IndexStatsModel = Field(description="the live index (summed over replicas when several)")
    replicas: list[dict[str, Any]] = Field(description="per replica: index, load and routing, engine usage")
    routing: RoutingInfo
    server: ServerStatsModel
    config: dict[str, Any]
    timestamp: float
    index_check: str | None = Field(None, description="with ?check=true: 'ok' or the broken invariant")


class SessionInfo(BaseModel):
    model_config = ConfigDict(extra="allow")
    conversation_id: str
    blocks: int
    turns: int
    idle_seconds: float


class SessionsResponse(_Model):
    count: int
    ttl_seconds: float | None
    max_sessions: int
    sessions: list[SessionInfo]


class RequestsResponse(_Model):
    num_requests: int
    request_ids: list[str]
    replicas: dict[str, int] | None = Field(None, description="live requests per replica, when several")
