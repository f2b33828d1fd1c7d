"""What each llama-server slot holds, and which requests a new one evicts.

llama-server keeps one KV sequence per slot. A request served on slot ``s``
keeps the first ``cache_n`` tokens the slot held (``timings.cache_n`` in its
answer) and overwrites everything after them with its own prompt and output
(``prompt.tokens.keep_first(n_past)`` in tools/server). So a request whose
prompt was held in ``s`` has lost its KV cache there unless its prompt is a
prefix of the new one.

Model, per slot: the *entries* (request id, prompt length in tokens, prompt
length in units) of the requests whose prompts are still held, and the
slot's last prompt ``content`` (token ids, or text for text prompts; only
its first ``max_units`` units are kept).

Invariants:

- I1. Every entry's prompt is a prefix of its slot's ``content`` (when the
  content is known and long enough to hold it).
- I2. ``holders[rid]`` is exactly the set of slots with an entry for
  ``rid``; a request id is reported evicted exactly when that set becomes
  empty, so a request held in two slots is reported once, when both lost it.
- I3. Bounded: at most ``max_slots`` slots, ``max_entries`` entries per slot
  (the oldest entry past that stops being tracked: counted, never reported),
  ``max_units`` units of content per slot; ``holders`` has at most
  ``max_slots * max_entries`` keys.

When request ``p`` lands on slot ``s`` with ``cache_n`` reused tokens, an
entry survives iff

- the content and ``p`` are comparable (both token ids, or both text) and
  the entry fits in the stored content: its prompt is a prefix of ``p``,
  i.e. its length in units is at most ``LCP(content, p)`` (exact, also with
  ``--cache-reuse`` chunk shifting, and when an identical prompt makes the
  server re-evaluate its last token). For text prompts this is a prefix of
  the text, which may end mid-token: the entry then counts as held;
- otherwise: its length in tokens is at most ``cache_n`` (exact without
  ``--cache-reuse``).

A truncated prompt (``truncated: true``) replaces everything.

Sliding-window models: llama.cpp reuses a *partial* prefix of such a model
(Gemma 2/3, Mistral-style windows, gpt-oss) only when llama-server runs with
``--swa-full``; without it ``cache_n`` is 0 whenever the new prompt diverges
from the slot's content, and reordering gains nothing. ``observe`` notices
it from outside: a request sharing at least ``MIN_SHARED_TOKENS`` (estimated)
leading tokens with its slot's previous prompt, diverging after them, that
got under a quarter of them back, counts as ``prefix_not_reused``.

``observe`` costs O(len(prompt) + entries in the slot); ``reconcile`` with a
``GET /slots`` answer costs O(slots + their entries). One lock guards all
state, so the proxy's handlers and its poller can call in from any thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MIN_SHARED_TOKENS", "SlotTracker"]

#: shared leading tokens (estimated) from which a reuse of 0 is suspicious
MIN_SHARED_TOKENS = 64

Prompt = Sequence[int] | str


@dataclass
class _Entry:
    rid: str
    n_tokens: int
    units: int | None  # length of the prompt in content units; None if unknown


@dataclass
class _Slot:
    entries: list[_Entry] = field(default_factory=list)
    content: list[int] | str | None = None
    n_tokens: int = 0  # tokens of the last prompt seen on this slot
    served: int = 0
    reused_tokens: int = 0
    evicted: int = 0
    seq: int = 0  # bumped by every observe on this slot
    polled_seq: int = -1  # seq at the last reconcile that looked at this slot
    last_task: int | None = None  # id_task seen by the last reconcile
    last_used: float = 0.0


def _lcp(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Length of the longest common prefix; slices compare in C, chunk by chunk."""
    n = min(len(a), len(b))
    i, step = 0, 1024
    while i < n:
        j = min(i + step, n)
        if a[i:j] == b[i:j]:
            i = j
            continue
        while a[i] == b[i]:
            i += 1
        return i
    return n


class SlotTracker:
    """Per-slot content model of one llama-server (see the module docstring)."""

    def __init__(self, max_slots: int = 1024, max_entries: int = 256, max_units: int = 1 << 20) -> None:
        if max_slots < 1 or max_entries < 1 or max_units < 0:
            raise ValueError("max_slots and max_entries must be >= 1, max_units >= 0")
        self.max_slots = max_slots
        self.max_entries = max_entries
        self.max_units = max_units
        self._lock = threading.Lock()
        self._slots: dict[int, _Slot] = {}
        self._holders: dict[str, set[int]] = {}
        self._counts = dict.fromkeys(
            (
                "observed",
                "evicted",
                "evicted_by_poll",
                "untracked_overflow",
                "bad_slot",
                "foreign_tasks",
                "prompt_tokens",
                "reused_tokens",
                "prefix_not_reused",
            ),
            0,
        )
        #: the last request whose shared prefix was not reused (see the module docstring)
        self.last_prefix_miss: dict[str, int] | None = None

    # -- requests served through the proxy ------------------------------------------------

    def observe(
        self,
        slot: int,
        rid: str,
        prompt: Prompt | None,
        n_prompt: int,
        cache_n: int,
        *,
        truncated: bool = False,
        complete: bool = True,
        expect_reuse: bool = True,
    ) -> list[str]:
        """Request ``rid`` was served on ``slot``: ``n_prompt`` prompt tokens,
        ``cache_n`` of them reused. ``prompt`` is its token ids or text
        (``None`` if unknown). With ``complete=False`` (the answer broke off)
        the request is not recorded as held; ``expect_reuse=False`` (the
        client turned ``cache_prompt`` off) skips the reuse check. Returns the
        request ids that no slot holds any more (``rid`` itself included when
        not recorded)."""
        if not isinstance(slot, int) or isinstance(slot, bool) or not 0 <= slot < self.max_slots:
            with self._lock:
                self._counts["bad_slot"] += 1
            return self.forget(rid) if not complete else []
        n_prompt, cache_n = max(0, int(n_prompt)), max(0, int(cache_n))
        with self._lock:
            s = self._slots.get(slot)
            if s is None:
                s = self._slots[slot] = _Slot()
            if prompt is not None and not isinstance(prompt, str):
                prompt = list(prompt)
            # a broken-off answer may have left only part of its prompt: lengths only
            seen = prompt if complete else None
            comparable = (
                seen is not None
                and s.content is not None
                and isinstance(seen, str) == isinstance(s.content, str)
            )
            lcp = _lcp(s.content, seen) if comparable else None  # type: ignore[arg-type]
            if lcp is not None and expect_reuse and not truncated:
                self._check_reuse(s, slot, lcp, cache_n)
            removed = self._survive(s, slot, lcp, cache_n, truncated)
            if complete:
                self._add(s, slot, rid, prompt, n_prompt)
            else:
                removed.append(rid)
            self._set_content(s, prompt)
            s.n_tokens = n_prompt
            s.served += 1
            s.reused_tokens += cache_n
            s.seq += 1
            s.last_used = time.time()
            self._counts["observed"] += 1
            self._counts["prompt_tokens"] += n_prompt
            self._counts["reused_tokens"] += cache_n
            return self._released(removed, s)

    def forget(self, rid: str) -> list[str]:
        """``rid`` failed before any slot was known: ``[rid]`` unless some
        slot holds it (then ``[]``)."""
        with self._lock:
            return [] if self._holders.get(rid) else [rid]

    def prefix_misses(self) -> int:
        """Requests so far whose shared prefix the engine did not reuse."""
        with self._lock:
            return self._counts["prefix_not_reused"]

    def _check_reuse(self, s: _Slot, slot: int, lcp: int, cache_n: int) -> None:
        """Count a shared, diverging prefix the engine did not reuse."""
        held = len(s.content or ())
        if not held or lcp >= held:  # nothing shared, or the old prompt is a prefix: reused either way
            return
        shared = lcp * s.n_tokens // held  # the previous prompt's tokens per unit
        if shared >= MIN_SHARED_TOKENS and 4 * cache_n < shared:
            self._counts["prefix_not_reused"] += 1
            self.last_prefix_miss = {"slot": slot, "shared_tokens_estimate": shared, "cache_n": cache_n}

    def _survive(self, s: _Slot, slot: int, lcp: int | None, cache_n: int, truncated: bool) -> list[str]:
        """Drop the entries the new prompt overwrote; returns their ids.
        ``lcp``: units the new prompt shares with the slot's content (None
        when the two are not comparable)."""
        if not s.entries:
            return []
        if truncated:
            keep: list[_Entry] = []
        else:
            comparable = lcp is not None
            stored = len(s.content) if s.content is not None else 0
            keep = []
            for e in s.entries:
                if comparable and e.units is not None and e.units <= stored:
                    ok = e.units <= lcp  # type: ignore[operator]
                else:
                    ok = e.n_tokens <= cache_n
                if ok:
                    keep.append(e)
        kept = {id(e) for e in keep}
        gone = [e.rid for e in s.entries if id(e) not in kept]
        s.entries = keep
        for rid in gone:
            self._unhold(rid, slot)
        return gone

    def _add(self, s: _Slot, slot: int, rid: str, prompt: Prompt | None, n_prompt: int) -> None:
        units = len(prompt) if prompt is not None else None
        s.entries = [e for e in s.entries if e.rid != rid]
        s.entries.append(_Entry(rid, n_prompt, units))
        s.entries.sort(key=lambda e: e.n_tokens)
        self._holders.setdefault(rid, set()).add(slot)
        while len(s.entries) > self.max_entries:
            # the shortest prompts are dropped from tracking; they are never reported
            old = s.entries.pop(0)
            self._unhold(old.rid, slot)
            self._counts["untracked_overflow"] += 1

    def _set_content(self, s: _Slot, prompt: Prompt | None) -> None:
        s.content = None if prompt is None else prompt[: self.max_units]

    def _unhold(self, rid: str, slot: int) -> None:
        held = self._holders.get(rid)
        if held is not None:
            held.discard(slot)
            if not held:
                del self._holders[rid]

    def _released(self, candidates: list[str], s: _Slot | None) -> list[str]:
        """Of ``candidates``, those no slot holds any more (I2); forgets them."""
        out = []
        for rid in dict.fromkeys(candidates):
            held = self._holders.get(rid)
            if not held:
                self._holders.pop(rid, None)
                out.append(rid)
        if s is not None:
            s.evicted += len(out)
        self._counts["evicted"] += len(out)
        return out

    # -- GET /slots ----------------------------------------------------------------------

    def poll_token(self) -> dict[int, int]:
        """Take before ``GET /slots``; pass to :meth:`reconcile`. Slots served
        in between are left alone (their answer already told us more)."""
        with self._lock:
            return {i: s.seq for i, s in self._slots.items()}

    def reconcile(self, token: dict[int, int], slots: list[dict[str, Any]]) -> list[str]:
        """Apply a ``GET /slots`` answer; returns the ids no slot holds any more.

        For each idle slot not served through us since ``token``:
        - entries longer than the tokens the slot holds now (``n_prompt_tokens``;
          0 when it shows no task, e.g. after a restart) are gone;
        - if its ``id_task`` changed although no answer of ours came for this
          slot since the last poll, someone else used it: entries longer than
          that task's ``n_prompt_tokens_cache`` are gone, and the content is
          no longer known. (llama-server resets a released slot's stats, so an
          idle slot reports 0 there: all its entries are reported, since how
          much the other client reused cannot be told.)
        Slots missing from the answer lose everything."""
        by_id: dict[int, dict[str, Any]] = {}
        for item in slots:
            i = item.get("id") if isinstance(item, dict) else None
            if isinstance(i, int) and 0 <= i < self.max_slots:
                by_id[i] = item
        removed: list[str] = []
        with self._lock:
            for i in by_id:
                self._slots.setdefault(i, _Slot())
            for i, s in self._slots.items():
                if token.get(i, 0) != s.seq:
                    continue
                item = by_id.get(i)
                if item is None:
                    limit = 0
                    task = None
                elif item.get("is_processing"):
                    continue
                else:
                    task = item.get("id_task") if isinstance(item.get("id_task"), int) else None
                    limit = _int(item.get("n_prompt_tokens")) if task is not None else 0
                    if (
                        task is not None
                        and s.last_task is not None
                        and task != s.last_task
                        and (s.polled_seq == s.seq)
                    ):
                        self._counts["foreign_tasks"] += 1
                        limit = min(limit, _int(item.get("n_prompt_tokens_cache")))
                        s.content = None
                keep = [e for e in s.entries if e.n_tokens <= limit]
                if len(keep) != len(s.entries):
                    gone = [e.rid for e in s.entries if e.n_tokens > limit]
                    s.entries = keep
                    for rid in gone:
                        self._unhold(rid, i)
                    out = self._released(gone, s)
                    self._counts["evicted_by_poll"] += len(out)
                    removed += out
                if item is None:
                    s.content = None
                s.last_task = task
                s.polled_seq = s.seq
            # slots that vanished and hold nothing need no state
            for i in [i for i, s in self._slots.items() if i not in by_id and not s.entries]:
                del self._slots[i]
        return removed

    # -- reporting ------------------------------------------------------------------------

    def holds(self, rid: str) -> list[int]:
        """Slots that hold ``rid``'s prompt."""
        with self._lock:
            return sorted(self._holders.get(rid, ()))

    def stats(self, max_ids: int = 32) -> dict[str, Any]:
        """Counters and per-slot state (at most ``max_ids`` ids listed per slot)."""
        with self._lock:
            slots = {}
            for i in sorted(self._slots):
                s = self._slots[i]
                slots[str(i)] = {
                    "requests_held": len(s.entries),
                    "request_ids": [e.rid for e in s.entries[-max_ids:]],
                    "prompt_tokens": s.n_tokens,
                    "content_known": s.content is not None,
                    "served": s.served,
                    "reused_tokens": s.reused_tokens,
                    "evicted": s.evicted,
                    "last_used": s.last_used,
                }
            c = dict(self._counts)
            c["reuse_ratio"] = c["reused_tokens"] / c["prompt_tokens"] if c["prompt_tokens"] else 0.0
            c["requests_held"] = len(self._holders)
            return {**c, "slots": slots}

    def reset(self) -> list[str]:
        """Forget every slot and counter (the engine's cache is untouched);
        returns the request ids that were held, sorted, so the caller can
        report them evicted (the model no longer vouches for them). O(ids)."""
        with self._lock:
            held = sorted(self._holders)
            self._slots.clear()
            self._holders.clear()
            self.last_prefix_miss = None
            for k in self._counts:
                self._counts[k] = 0
            return held


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 0
