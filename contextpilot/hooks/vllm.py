"""vLLM (v1) eviction sync: which requests' KV left the prefix cache.

``BlockPool`` keeps cached blocks, not requests. The hook records, per
pool, which request ids hold which block ids, and reports a request once
none of its blocks is cached any more (vLLM looks blocks up by chained
hash, so a later block can serve a hit again once an earlier one is
recomputed: a request is gone only when all of its blocks are).

Patched ``BlockPool`` methods (all or nothing, see ``patching``):
- ``cache_full_blocks(request, blocks, num_cached_blocks, num_full_blocks,
  ...)``: after the original, the request holds every cached block among
  ``blocks[:num_full_blocks]`` (its prefix hits included). O(new blocks);
  the first sighting of a request adds its prefix-hit blocks too.
- ``cache_partial_block(request, block, ...)``: the block becomes reachable
  from the request's prefix.
- ``_maybe_evict_cached_block(block)``: the original returns True when the
  block lost its cache entries; its ``block_id`` is then dropped (or, when
  a twin block still caches the same hash, its requests move there). This
  runs for every block the pool hands out, so the wrapper is one call and
  one test unless something was evicted.
- ``move_block_hashes(src, dst)``: entries re-homed, requests follow.
- ``reset_prefix_cache()``: when it succeeds (returns True) every request
  tracked by that pool is reported evicted, by id. We do not call the
  index's ``/reset``: it may serve several engines (replicas) and also holds
  conversation history that a cache flush does not erase.

Ids: vLLM's engine core appends ``-<8 random chars>`` to the id it was
given (unless ``VLLM_DISABLE_REQUEST_ID_RANDOMIZATION``), and its OpenAI
server adds ``-<i>`` per completion prompt and ``_<i>`` per chat prompt
when there are several. The hook strips those, so the index sees the id it
minted (``cmpl-``/``chatcmpl-`` prefixes are removed by the notifier).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from types import ModuleType
from typing import Any

from contextpilot.hooks.notifier import EvictionNotifier
from contextpilot.hooks.patching import patch_class
from contextpilot.hooks.tracker import RequestEntries

__all__ = ["external_request_id", "patch_block_pool_module", "pool_tracker"]

log = logging.getLogger("contextpilot.hooks")

_TRACKER_ATTR = "_contextpilot_requests"
_RANDOM_SUFFIX = re.compile(r"-[0-9a-f]{8}$")
_CMPL_INDEX = re.compile(r"^(cmpl-.+)-\d+$")
_CHAT_INDEX = re.compile(r"^(chatcmpl-.+)_\d+$")


def external_request_id(request_id: str, randomized: bool | None = None) -> str:
    """The id a vLLM client gave, from the engine core's ``request_id``."""
    if randomized is None:
        randomized = not os.environ.get("VLLM_DISABLE_REQUEST_ID_RANDOMIZATION")
    rid = _RANDOM_SUFFIX.sub("", request_id) if randomized else request_id
    m = _CMPL_INDEX.match(rid) or _CHAT_INDEX.match(rid)
    return m.group(1) if m else rid


def pool_tracker(pool: Any) -> RequestEntries:
    """The request <-> block map of one pool (created on first use)."""
    d = pool.__dict__
    t = d.get(_TRACKER_ATTR)
    if t is None:
        t = d[_TRACKER_ATTR] = RequestEntries()
    return t


def _cached_ids(blocks: Any) -> list[int]:
    return [b.block_id for b in blocks if b.block_hash is not None and not b.is_null]


def _vllm_wrappers(notifier: EvictionNotifier) -> dict[str, Any]:
    def make_cache_full(orig: Callable[..., Any]) -> Callable[..., Any]:
        def cache_full_blocks(
            self: Any,
            request: Any,
            blocks: Any,
            num_cached_blocks: int,
            num_full_blocks: int,
            *args: Any,
            **kwargs: Any,
        ) -> Any:
            result = orig(self, request, blocks, num_cached_blocks, num_full_blocks, *args, **kwargs)
            if num_cached_blocks < num_full_blocks and self.enable_caching:
                try:
                    rid = external_request_id(request.request_id)
                    tracker = pool_tracker(self)
                    start = num_cached_blocks if rid in tracker else 0
                    tracker.add(rid, _cached_ids(blocks[start:num_full_blocks]))
                except Exception:
                    log.exception("contextpilot: vLLM block registration failed")
            return result

        return cache_full_blocks

    def make_cache_partial(orig: Callable[..., Any]) -> Callable[..., Any]:
        def cache_partial_block(self: Any, request: Any, block: Any, *args: Any, **kwargs: Any) -> Any:
            result = orig(self, request, block, *args, **kwargs)
            if result is not None:
                try:
                    pool_tracker(self).add(external_request_id(request.request_id), (block.block_id,))
                except Exception:
                    log.exception("contextpilot: vLLM block registration failed")
            return result

        return cache_partial_block

    def make_maybe_evict(orig: Callable[..., Any]) -> Callable[..., Any]:
        def _maybe_evict_cached_block(self: Any, block: Any) -> Any:
            block_hash = block.block_hash  # the original resets it
            evicted = orig(self, block)
            if evicted:
                try:
                    tracker = pool_tracker(self)
                    # a twin copy of the same content may still be cached (two requests
                    # computed it at once): the requests then follow that copy
                    twin = (
                        self.cached_block_hash_to_block.get_one_block(block_hash)
                        if block_hash is not None
                        else None
                    )
                    if twin is not None:
                        tracker.move_entry(block.block_id, twin.block_id)
                        return evicted
                    gone = tracker.remove_entries((block.block_id,))
                    if gone:
                        notifier.notify(gone)
                except Exception:
                    log.exception("contextpilot: vLLM eviction sync failed")
            return evicted

        return _maybe_evict_cached_block

    def make_move(orig: Callable[..., Any]) -> Callable[..., Any]:
        def move_block_hashes(self: Any, src_block: Any, dst_block: Any, *args: Any, **kwargs: Any) -> Any:
            result = orig(self, src_block, dst_block, *args, **kwargs)
            try:
                pool_tracker(self).move_entry(src_block.block_id, dst_block.block_id)
            except Exception:
                log.exception("contextpilot: vLLM block move sync failed")
            return result

        return move_block_hashes

    def make_reset(orig: Callable[..., Any]) -> Callable[..., Any]:
        def reset_prefix_cache(self: Any, *args: Any, **kwargs: Any) -> Any:
            ok = orig(self, *args, **kwargs)
            if ok:
                try:
                    gone = pool_tracker(self).clear()
                    if gone:
                        notifier.notify(gone)
                except Exception:
                    log.exception("contextpilot: vLLM reset sync failed")
            return ok

        return reset_prefix_cache

    return {
        "cache_full_blocks": (
            (
                "self",
                "request",
                "blocks",
                "num_cached_blocks",
                "num_full_blocks",
                "block_size",
                "kv_cache_group_id",
            ),
            make_cache_full,
        ),
        "cache_partial_block": (
            ("self", "request", "block", "num_tokens", "kv_cache_group_id", "block_size"),
            make_cache_partial,
        ),
        "_maybe_evict_cached_block": (("self", "block"), make_maybe_evict),
        "move_block_hashes": (("self", "src_block", "dst_block"), make_move),
        "reset_prefix_cache": (("self",), make_reset),
    }


def patch_block_pool_module(module: ModuleType, notifier: EvictionNotifier) -> bool:
    """Hook ``vllm.v1.core.block_pool.BlockPool``."""
    cls = getattr(module, "BlockPool", None)
    if not isinstance(cls, type):
        log.warning("contextpilot: %s has no BlockPool; vLLM sync disabled", module.__name__)
        return False
    # the partial-block and move paths are recent; older pools simply lack them
    optional = frozenset({"cache_partial_block", "move_block_hashes"})
    return patch_class(cls, _vllm_wrappers(notifier), "vLLM BlockPool", optional)
