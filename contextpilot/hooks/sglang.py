"""SGLang (0.5.x) eviction sync: which requests' KV left the radix cache.

Works for the cache the server builds by default, ``UnifiedRadixCache``
(Rust or Python tree core alike), and for the legacy ``RadixCache``.

How:
- Tree nodes carry no request ids, and with the Rust core node deletion is
  invisible from Python. What every variant does report is the cache's own
  KV events: ``BlockStored`` (per page: chained hash, parent hash, tokens),
  ``BlockRemoved`` (hashes) and ``AllBlocksCleared``. The hook turns them on
  at construction when the server did not (``--kv-events-config`` unset),
  drains the queue right after each ``insert`` / ``evict`` /
  ``evict_for_alloc`` / ``reset`` and hands events it did not enable to
  nobody (the queue stays bounded). When the server did enable them, it
  keeps a copy and returns every event, in order, from ``take_events`` to
  the server's publisher.
- ``checkpoint(req, up_to=...)`` is where a request's tokens enter the
  tree; ``req.rid`` is known there. Eviction is leaf-first, so a request
  still has tokens cached iff the first page of its key is still cached
  (ancestors outlive descendants). Each request is therefore keyed by its
  first page ``(cache_salt, first page_size tokens)``; a root page's
  ``BlockStored`` (the one with no parent) maps its hash to that key, and
  when the last root node with that key is removed, every request keyed by
  it is evicted.
- Nothing here does I/O: evicted ids go to ``EvictionNotifier.notify``.

Limits (documented, conservative): only device-tier (``GPU``) events count;
namespaces other than ``cache_salt`` (LoRA ``extra_key``) share a key, so a
request can be reported late, never early; classes other than exactly
``RadixCache`` / ``UnifiedRadixCache`` (subclasses) are left alone.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Hashable, Iterable
from types import ModuleType
from typing import Any

from contextpilot.hooks.notifier import EvictionNotifier
from contextpilot.hooks.patching import patch_class
from contextpilot.hooks.tracker import RequestEntries

__all__ = ["SGLangSync", "patch_radix_cache_module", "patch_unified_radix_cache_module"]

log = logging.getLogger("contextpilot.hooks")

_SYNC_ATTR = "_contextpilot_sync"
_DEVICE_MEDIUMS = frozenset({"GPU", None})
#: at most this many distinct root pages remembered (the engine's own tree
#: bounds them; this guards against events we never see removed)
_MAX_ROOT_PAGES = 1_000_000


def _page_key(tokens: Iterable[Any], cache_salt: Any) -> Hashable:
    # bigram (EAGLE) trees publish (t_j, t_j+1) pairs: their first items are the raw tokens
    return (cache_salt, tuple(int(t[0]) if isinstance(t, (tuple, list)) else int(t) for t in tokens))


class SGLangSync:
    """Event bookkeeping for one SGLang radix cache instance.

    ``forced``: the hook enabled the events, so nobody else may see them.
    """

    def __init__(
        self, notifier: EvictionNotifier, page_size: int, forced: bool, tracker: RequestEntries | None = None
    ) -> None:
        self.notifier = notifier
        self.page_size = max(1, int(page_size))
        self.forced = forced
        self.requests = tracker or RequestEntries()
        self.stash: list[Any] = []  # events owed to the engine's publisher
        self.roots: dict[int, list[Any]] = {}  # root page hash -> [key, live copies]
        self.live: dict[Hashable, int] = {}  # key -> live root nodes with it
        self.lock = threading.RLock()
        self.counts = dict.fromkeys(("events", "registered", "not_cached", "evicted", "errors"), 0)

    # -- events ------------------------------------------------------------------

    def drain(self, cache: Any, take: Callable[[Any], list[Any]]) -> None:
        """Take the cache's pending events (with the original ``take_events``)."""
        try:
            with self.lock:
                events = take(cache)
                if not events:
                    return
                if not self.forced:
                    self.stash.extend(events)
                self.feed(events)
        except Exception:  # never break the engine
            self.counts["errors"] += 1
            log.exception("contextpilot: SGLang event sync failed")

    def feed(self, events: Iterable[Any]) -> None:
        gone: list[str] = []
        for ev in events:
            self.counts["events"] += 1
            kind = type(ev).__name__
            if kind == "AllBlocksCleared":
                self.roots.clear()
                self.live.clear()
                gone.extend(self.requests.clear())
                continue
            medium = getattr(ev, "medium", None)
            if getattr(medium, "value", medium) not in _DEVICE_MEDIUMS:
                continue
            if kind == "BlockStored":
                if ev.parent_block_hash is not None or not ev.block_hashes:
                    continue  # only a root page keys requests
                size = ev.block_size or self.page_size
                key = _page_key(ev.token_ids[:size], getattr(ev, "cache_salt", None))
                entry = self.roots.get(ev.block_hashes[0])
                if entry is None:
                    if len(self.roots) >= _MAX_ROOT_PAGES:
                        self._forget_oldest_root()
                    self.roots[ev.block_hashes[0]] = [key, 1]
                else:
                    entry[1] += 1
                self.live[key] = self.live.get(key, 0) + 1
            elif kind == "BlockRemoved":
                for h in ev.block_hashes:
                    entry = self.roots.get(h)
                    if entry is None:
                        continue
                    key = entry[0]
                    entry[1] -= 1
                    if entry[1] <= 0:
                        del self.roots[h]
                    left = self.live.get(key, 1) - 1
                    if left > 0:
                        self.live[key] = left
                    else:
                        self.live.pop(key, None)
                        gone.extend(self.requests.remove_entries((key,)))
        if gone:
            self.counts["evicted"] += len(gone)
            self.notifier.notify(gone)

    def _forget_oldest_root(self) -> None:
        h, (key, n) = next(iter(self.roots.items()))
        del self.roots[h]
        left = self.live.get(key, 0) - n
        if left > 0:
            self.live[key] = left
        else:
            self.live.pop(key, None)

    # -- requests ------------------------------------------------------------------

    def register(self, req: Any, up_to: int) -> None:
        """``req``'s tokens ``[0, up_to)`` were just offered to the tree."""
        try:
            rid = getattr(req, "rid", None)
            if not isinstance(rid, str) or up_to < self.page_size:
                return
            tokens = getattr(req, "full_untruncated_fill_ids", None)
            if tokens is None:
                tokens = getattr(req, "origin_input_ids", None) or ()
            if len(tokens) < self.page_size:
                return
            key = _page_key(tokens[: self.page_size], getattr(req, "cache_salt", None))
            with self.lock:
                if self.live.get(key):
                    self.requests.add(rid, (key,))
                    self.counts["registered"] += 1
                else:  # nothing of it went into the tree (too short, barred, ...)
                    self.counts["not_cached"] += 1
        except Exception:
            self.counts["errors"] += 1
            log.exception("contextpilot: SGLang request registration failed")

    def take_for_engine(self, cache: Any, take: Callable[[Any], list[Any]]) -> list[Any]:
        self.drain(cache, take)
        with self.lock:
            if self.forced:
                return []
            events, self.stash = self.stash, []
            return events

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                **self.counts,
                "root_pages": len(self.roots),
                "forced_events": self.forced,
                "tracker": self.requests.stats(),
            }


def _sglang_wrappers(cls: type, notifier: EvictionNotifier) -> dict[str, Any]:
    orig_take: list[Callable[[Any], list[Any]]] = []  # filled once the original is known

    def make_init(orig: Callable[..., Any]) -> Callable[..., Any]:
        def __init__(self: Any, params: Any, *args: Any, **kwargs: Any) -> None:
            ours = type(self) is cls and not getattr(params, "disable", True)
            forced = False
            if ours and not params.enable_kv_cache_events:
                try:
                    params = dataclasses.replace(params, enable_kv_cache_events=True)
                    forced = True
                except Exception:
                    log.warning("contextpilot: cannot enable KV events on %s; no sync", cls.__name__)
                    ours = False
            orig(self, params, *args, **kwargs)
            if ours:
                self.__dict__[_SYNC_ATTR] = SGLangSync(notifier, params.page_size, forced)
                drain(self)  # construction records AllBlocksCleared

        return __init__

    def drain(self: Any) -> None:
        sync = self.__dict__.get(_SYNC_ATTR)
        if sync is not None:
            sync.drain(self, orig_take[0])

    def make_draining(orig: Callable[..., Any]) -> Callable[..., Any]:
        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return orig(self, *args, **kwargs)
            finally:
                drain(self)

        return method

    def make_checkpoint(orig: Callable[..., Any]) -> Callable[..., Any]:
        def checkpoint(self: Any, req: Any, *args: Any, **kwargs: Any) -> Any:
            result = orig(self, req, *args, **kwargs)
            sync = self.__dict__.get(_SYNC_ATTR)
            if sync is not None:
                sync.drain(self, orig_take[0])
                sync.register(req, kwargs.get("up_to", args[0] if args else 0))
            return result

        return checkpoint

    def make_take(orig: Callable[..., Any]) -> Callable[..., Any]:
        orig_take.append(orig)

        def take_events(self: Any) -> Any:
            sync = self.__dict__.get(_SYNC_ATTR)
            if sync is None:
                return orig(self)
            return sync.take_for_engine(self, orig)

        return take_events

    # take_events first: the others need the original
    out: dict[str, Any] = {"take_events": (("self",), make_take)}
    out["__init__"] = (("self", "params"), make_init)
    out["checkpoint"] = (("self", "req", "up_to"), make_checkpoint)
    out["insert"] = (("self", "params"), make_draining)
    out["evict"] = (("self", "params"), make_draining)
    out["reset"] = (("self",), make_draining)
    return out


def patch_radix_cache_module(module: ModuleType, notifier: EvictionNotifier) -> bool:
    """Hook ``sglang.srt.mem_cache.radix_cache.RadixCache``."""
    cls = getattr(module, "RadixCache", None)
    if not isinstance(cls, type):
        log.warning("contextpilot: %s has no RadixCache; SGLang sync disabled", module.__name__)
        return False
    return patch_class(cls, _sglang_wrappers(cls, notifier), "SGLang RadixCache")


def patch_unified_radix_cache_module(module: ModuleType, notifier: EvictionNotifier) -> bool:
    """Hook ``sglang.srt.mem_cache.unified_radix_cache.UnifiedRadixCache``."""
    cls = getattr(module, "UnifiedRadixCache", None)
    if not isinstance(cls, type):
        log.warning("contextpilot: %s has no UnifiedRadixCache; SGLang sync disabled", module.__name__)
        return False
    wrappers = _sglang_wrappers(cls, notifier)
    wrappers["evict_for_alloc"] = (("self", "params"), wrappers["evict"][1])
    return patch_class(cls, wrappers, "SGLang UnifiedRadixCache")
