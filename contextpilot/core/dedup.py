"""Deduplication: across turns of a conversation, and of repeated passages.

Two independent tools:

* :class:`DedupLedger` + :func:`deduplicate_turn` — multi-turn: per
  conversation, a block already sent in an earlier turn (or earlier in the
  same turn) is replaced by a short reference hint that quotes it, so the
  model can find it in the history the caller keeps sending. Nothing is
  dropped silently: each block is either sent or hinted, and reported.
* :func:`dedup_passages` — content-defined chunking: long texts are cut at
  line boundaries chosen by a stable hash of the line (with minimum and
  maximum chunk sizes), so identical passages cut identically wherever they
  sit; a passage repeated in a *later, different* text becomes a pointer
  quoting its first line. Never within one text; protected texts (system
  prompts) are never shortened; a first occurrence never changes.

Both are deterministic: hashes are BLAKE2b, never Python's ``hash()``.
"""

from __future__ import annotations

import string
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from contextpilot.core.blocks import Block, stable_key
from contextpilot.core.lru import BoundedLRU
from contextpilot.core.persist import SnapshotError, as_int, as_list, as_seconds

__all__ = [
    "DEFAULT_HINT",
    "DedupLedger",
    "DedupResult",
    "PassageReport",
    "dedup_passages",
    "deduplicate_turn",
    "doc_ref",
    "preview",
]

DEFAULT_HINT = '[Document {ref} appeared earlier in this conversation; it begins: "{preview}"]'
_HINT_FIELDS = {"ref", "preview", "index"}


def doc_ref(block: Block) -> str:
    """Short stable label of a block: ``#<id>`` for ids, ``doc-<8 hex>`` for text."""
    if isinstance(block, str):
        return f"doc-{stable_key(block):016x}"[:12]
    return f"#{block}"


def preview(block: Block, limit: int = 80) -> str:
    """First non-empty line of a text block (cut to ``limit``), or the id."""
    if not isinstance(block, str):
        return str(block)
    for line in block.splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return ""


def check_hint_template(template: str) -> str:
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as e:
        raise ValueError(f"hint_template is not a valid format string: {e}") from None
    bad = names - _HINT_FIELDS
    if bad:
        raise ValueError(
            f"hint_template uses unknown field(s) {sorted(bad)}; allowed: {sorted(_HINT_FIELDS)}"
        )
    return template


@dataclass
class _Conversation:
    sent: OrderedDict[int, None] = field(default_factory=OrderedDict)
    turns: int = 0


class DedupLedger:
    """What each conversation was sent, for multi-turn dedup hints; bounded four ways.

    Invariants: at most ``max_conversations`` conversations (least recently
    used dropped first) and none idle longer than ``ttl`` seconds once
    :meth:`expire` or any update runs (both kept by a
    :class:`~contextpilot.core.lru.BoundedLRU`); at most ``max_blocks``
    remembered per conversation and ``max_total_blocks`` over all of them
    (oldest forgotten first: least recently used conversations go whole,
    then the current one's oldest blocks — a forgotten block is simply sent
    again, never hinted at). Not thread-safe: the owner locks.
    """

    def __init__(
        self,
        max_conversations: int = 10_000,
        ttl: float | None = 3600.0,
        max_blocks: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        max_total_blocks: int = 1_000_000,
    ) -> None:
        if max_conversations < 1 or max_blocks < 1 or max_total_blocks < 1:
            raise ValueError("max_conversations, max_blocks and max_total_blocks must be >= 1")
        if ttl is not None and not ttl > 0:
            raise ValueError(f"ttl must be > 0 seconds or None, got {ttl!r}")
        self.max_conversations = max_conversations
        self.ttl = ttl
        self.max_blocks = max_blocks
        self.max_total_blocks = max_total_blocks
        self._convs: BoundedLRU[_Conversation] = BoundedLRU(max_conversations, ttl, self._forget, clock)
        #: sum of len(c.sent) over all conversations
        self._total = 0

    def _forget(self, c: _Conversation) -> None:
        self._total -= len(c.sent)

    def __len__(self) -> int:
        return len(self._convs)

    def __contains__(self, cid: object) -> bool:
        return cid in self._convs

    @property
    def total_blocks(self) -> int:
        return self._total

    def ids(self) -> list[str]:
        return self._convs.ids()

    def info(self, cid: str) -> dict[str, float | int] | None:
        c, last = self._convs.peek(cid), self._convs.last_used(cid)
        if c is None or last is None:
            return None
        return {"blocks": len(c.sent), "turns": c.turns, "idle_seconds": self._convs.clock() - last}

    def clear(self, cid: str | None = None) -> bool:
        """Forget one conversation (returns whether it existed), or all."""
        if cid is None:
            self._convs.clear()
            self._total = 0
            return True
        return self._convs.drop(cid)

    def expire(self) -> int:
        return self._convs.expire()

    def trim(self) -> None:
        """Apply every bound now (after a bulk load)."""
        self._convs.expire()
        self._convs.trim()
        for _, c, _ in self._convs.entries():
            while len(c.sent) > self.max_blocks:
                c.sent.popitem(last=False)
                self._total -= 1
        self._enforce_total()

    def _enforce_total(self) -> None:
        while self._total > self.max_total_blocks:
            if len(self._convs) > 1:
                self._convs.drop_oldest()
            else:
                c = next(self._convs.entries())[1]
                c.sent.popitem(last=False)
                self._total -= 1

    def get(self, cid: str) -> _Conversation:
        """The conversation ``cid`` (created empty), marked used."""
        return self._convs.get(cid, _Conversation)

    def remember(self, c: _Conversation, key: int) -> None:
        if key not in c.sent:
            self._total += 1
        c.sent[key] = None
        c.sent.move_to_end(key)
        while len(c.sent) > self.max_blocks:
            c.sent.popitem(last=False)
            self._total -= 1
        # ``c`` was just used (moved last), so other conversations go first
        self._enforce_total()

    # -- export / load -------------------------------------------------------------

    def export(self) -> list[list[Any]]:
        """The state as JSON-ready rows ``[id, turns, idle_seconds, [key, ...]]``,
        least recently used conversation first, each one's keys oldest
        first. O(remembered keys)."""
        now = self._convs.clock()
        return [
            [cid, c.turns, round(max(0.0, now - last), 3), list(c.sent)]
            for cid, c, last in self._convs.entries()
        ]

    def load(self, rows: Any, *, downtime: float = 0.0) -> None:
        """Replace every conversation by :meth:`export` rows (all or nothing:
        a bad row raises :class:`~contextpilot.core.persist.SnapshotError`
        and nothing changes); ``downtime`` seconds are added to idle times;
        the bounds apply right after. O(remembered keys)."""
        now = self._convs.clock()
        parsed: list[tuple[str, _Conversation, float]] = []
        for i, row in enumerate(as_list(rows, "conversations")):
            if not isinstance(row, list) or len(row) != 4 or not isinstance(row[0], str) or not row[0]:
                raise SnapshotError(f"conversations[{i}]: expected [id, turns, idle_seconds, [keys]]")
            c = _Conversation(turns=as_int(row[1], f"conversations[{i}].turns", 0))
            last = now - as_seconds(row[2], f"conversations[{i}].idle_seconds") - downtime
            for j, k in enumerate(as_list(row[3], f"conversations[{i}].keys")):
                c.sent[as_int(k, f"conversations[{i}].keys[{j}]", 0)] = None
            parsed.append((row[0], c, last))
        self.clear()
        for cid, c, last in parsed:
            self._convs.put(cid, c, last)
        self._total = sum(len(c.sent) for _, c, _ in self._convs.entries())
        self.trim()

    def empty_like(self) -> DedupLedger:
        """A new, empty ledger with the same bounds and clock."""
        return DedupLedger(
            self.max_conversations, self.ttl, self.max_blocks, self._convs.clock, self.max_total_blocks
        )

    def replace_with(self, other: DedupLedger) -> None:
        """Take ``other``'s conversations, e.g. one filled by :meth:`load`
        while this ledger stayed live (``other`` is not to be used after).
        O(conversations)."""
        self.clear()
        for cid, c, last in other._convs.entries():
            self._convs.put(cid, c, last)
        self._total = other._total
        self.trim()


@dataclass
class DedupResult:
    """One context after multi-turn dedup."""

    original_docs: list[Block]
    #: the blocks still sent in full, in order
    deduplicated_docs: list[Block]
    #: same length as ``original_docs``: each block, or its hint if repeated
    docs_with_hints: list[Block]
    overlapping_docs: list[Block]
    new_docs: list[Block]
    reference_hints: list[str]
    #: positions (in ``original_docs``) replaced by hints
    hinted_positions: list[int]
    request_id: str | None = None

    @property
    def blocks_total(self) -> int:
        return len(self.original_docs)

    @property
    def blocks_deduped(self) -> int:
        return len(self.hinted_positions)

    @property
    def block_chars_saved(self) -> int:
        saved = 0
        for pos, hint in zip(self.hinted_positions, self.reference_hints):
            b = self.original_docs[pos]
            if isinstance(b, str):
                saved += len(b) - len(hint)
        return saved


def deduplicate_turn(
    store: DedupLedger,
    contexts: Sequence[Sequence[Block]],
    conversation_id: str,
    hint_template: str | None = None,
) -> list[DedupResult]:
    """Replace blocks this conversation already sent by reference hints.

    Contexts are processed in order and each one's new blocks count as sent
    for the next (and for later turns). A block repeated inside one context
    keeps its first copy and hints the others.
    """
    if not isinstance(conversation_id, str) or not conversation_id:
        raise ValueError("conversation_id must be a non-empty string")
    template = check_hint_template(hint_template if hint_template is not None else DEFAULT_HINT)
    conv = store.get(conversation_id)
    conv.turns += 1
    out: list[DedupResult] = []
    for ctx in contexts:
        res = DedupResult(list(ctx), [], [], [], [], [], [])
        for pos, b in enumerate(ctx):
            key = stable_key(b)
            if key in conv.sent:
                hint = template.format(ref=doc_ref(b), preview=preview(b), index=pos)
                res.overlapping_docs.append(b)
                res.reference_hints.append(hint)
                res.hinted_positions.append(pos)
                res.docs_with_hints.append(hint)
                conv.sent.move_to_end(key)
            else:
                res.new_docs.append(b)
                res.deduplicated_docs.append(b)
                res.docs_with_hints.append(b)
                store.remember(conv, key)
        out.append(res)
    return out


# -- content-defined passage dedup ------------------------------------------------

_POINTER = '[… passage repeated from above, beginning: "{first}" …]'


@dataclass
class PassageReport:
    texts: list[str]
    #: per text, how many passages became pointers
    replaced: list[int]
    chars_saved: int


def chunk_lines(text: str, modulus: int = 13, min_chars: int = 200, max_chars: int = 2000) -> list[str]:
    """Cut ``text`` after lines whose hash is 0 mod ``modulus`` once the
    chunk has ``min_chars``, or before it would pass ``max_chars``. Lines
    are never split; joining the chunks gives back ``text`` exactly."""
    lines = text.splitlines(keepends=True)
    chunks: list[str] = []
    cur: list[str] = []
    size = 0
    for line in lines:
        if cur and size + len(line) > max_chars:
            chunks.append("".join(cur))
            cur, size = [], 0
        cur.append(line)
        size += len(line)
        if size >= min_chars and stable_key(line.rstrip("\r\n")) % modulus == 0:
            chunks.append("".join(cur))
            cur, size = [], 0
    if cur:
        chunks.append("".join(cur))
    return chunks


def dedup_passages(
    texts: Sequence[str],
    *,
    protected: Iterable[int] = (),
    modulus: int = 13,
    min_chars: int = 200,
    max_chars: int = 2000,
) -> PassageReport:
    """Point later copies of long passages back to their first occurrence.

    ``protected``: indices of texts never shortened (system prompts); their
    passages still count as first occurrences.
    """
    if modulus < 1 or min_chars < 1 or max_chars < min_chars:
        raise ValueError("need modulus >= 1 and 1 <= min_chars <= max_chars")
    keep = set(protected)
    first_seen: dict[int, int] = {}
    out: list[str] = []
    replaced: list[int] = []
    saved = 0
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"texts[{i}] must be a string, got {type(text).__name__}")
        parts: list[str] = []
        n = 0
        for chunk in chunk_lines(text, modulus, min_chars, max_chars):
            key = stable_key(chunk)
            origin = first_seen.setdefault(key, i)
            if origin != i and i not in keep and len(chunk.strip()) >= min_chars:
                first = preview(chunk, 60).replace('"', "'")
                pointer = _POINTER.format(first=first) + ("\n" if chunk.endswith("\n") else "")
                if len(pointer) < len(chunk):
                    parts.append(pointer)
                    saved += len(chunk) - len(pointer)
                    n += 1
                    continue
            parts.append(chunk)
        out.append("".join(parts))
        replaced.append(n)
    return PassageReport(out, replaced, saved)
