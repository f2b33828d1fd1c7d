"""Where a framework plugin's planning happens: a local ``ContextPilot`` or a server.

Shared by the LangChain and LlamaIndex plugins (``integrations/``), through
:mod:`contextpilot.plugins`.

Framework-free. An adapter turns each retrieval result into a list of
:class:`Item` (one per document, in relevance order) and gets back one
:class:`Placement` per result: the prompt order, and which documents go out
as a short note because their conversation already received them.

Per call, in this order:

1. dedup (optional): contextpilot's multi-turn dedup, per conversation, on
   the relevance order; a repeat is marked *noted*;
2. reorder: what will really be sent (each document's key, or its note's
   key) is planned in one ``reorder`` call, which also records it in the
   live index, so the next call puts first what this one sent.

Invariants: each placement's ``order`` is a permutation of its request's
positions; an empty request gets an empty placement and is never sent to
contextpilot; a failure raises and changes nothing the caller owns.
Cost: one planning call (plus one dedup call per conversation with dedup
on), O(total documents) work around them.

Uses only contextpilot's public API (the server client is imported only
when a ``server_url`` is given).
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from contextpilot.core.blocks import default_token_counter
from contextpilot.core.pilot import ContextPilot

__all__ = ["Item", "Placement", "Planner", "TokenLengths", "estimate_tokens", "make_planner"]

#: a document text's token estimate: contextpilot's default (about 4 UTF-8 bytes per token)
estimate_tokens = default_token_counter


@dataclass(frozen=True)
class Item:
    """One document of a request, as the planner sees it."""

    #: block identity (``stable_key`` of the document's id or text)
    key: int
    #: estimated prompt tokens of the document
    tokens: int
    #: identity and size of the note sent instead when the document is a repeat
    note_key: int = 0
    note_tokens: int = 0


@dataclass(frozen=True)
class Placement:
    """Where one request's documents go."""

    #: input positions in prompt order
    order: list[int]
    #: input positions sent as a note (already sent in this conversation)
    noted: frozenset[int]
    #: the live index's id of this request (``None``: stateless or empty)
    request_id: str | None


class TokenLengths:
    """Bounded map block key -> token length, the default pilot's token counter.

    The pilot sees opaque integer keys, not texts; this tells it each
    document's real size. At most ``max_entries`` keys (least recently
    written dropped first); a missing key weighs contextpilot's default for
    an id. Thread-safe. O(1) per lookup or write.
    """

    def __init__(self, max_entries: int = 200_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.max_entries = max_entries
        self._lengths: OrderedDict[int, int] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._lengths)

    def __contains__(self, key: object) -> bool:
        return True  # __getitem__ always answers

    def __getitem__(self, key: int) -> int:
        n = self._lengths.get(key)
        return 64 if n is None else n

    def update(self, pairs: Sequence[tuple[int, int]]) -> None:
        with self._lock:
            for key, n in pairs:
                self._lengths[key] = n
                self._lengths.move_to_end(key)
            while len(self._lengths) > self.max_entries:
                self._lengths.popitem(last=False)


class Planner:
    """Plans requests with a local ``ContextPilot`` or a contextpilot server.

    ``pilot``: an instance to share (it sees each document as a 64-token
    id unless built with a token counter for the keys); ``server_url``: a
    contextpilot server instead. With neither, a fresh local instance that
    weighs documents by their text, told the engine's cache size by
    ``capacity_tokens`` (so it mirrors LRU evictions). Thread-safe (the
    pilot and the server serialise planning).
    """

    def __init__(
        self,
        *,
        pilot: Any = None,
        server_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        capacity_tokens: float | None = None,
    ) -> None:
        if pilot is not None and server_url is not None:
            raise ValueError("give either pilot or server_url, not both")
        if capacity_tokens is not None and (pilot is not None or server_url is not None):
            raise ValueError("capacity_tokens sizes the plugin's own pilot: not with pilot or server_url")
        if pilot is not None and not isinstance(pilot, ContextPilot):
            raise ValueError(f"pilot must be a contextpilot.ContextPilot, got {type(pilot).__name__}")
        if server_url is not None and (
            not isinstance(server_url, str) or not server_url.startswith(("http://", "https://"))
        ):
            raise ValueError(f"server_url must be an http(s) URL, got {server_url!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        self.server_url = server_url
        self.api_key = api_key
        self.timeout = float(timeout)
        self.lengths: TokenLengths | None = None
        if server_url is None and pilot is None:
            self.lengths = TokenLengths()
            pilot = ContextPilot(token_counter=self.lengths, capacity_tokens=capacity_tokens)
        self.pilot: ContextPilot | None = pilot
        self._client: Any = None
        self._client_lock = threading.Lock()

    # -- sync --------------------------------------------------------------------

    def plan(
        self, requests: Sequence[Sequence[Item]], conversations: Sequence[str | None], dedup: bool
    ) -> list[Placement]:
        """One placement per request; ``conversations[i]`` is request i's
        conversation (needed for dedup, ignored without it)."""
        _check_aligned(requests, conversations)
        noted: list[frozenset[int]] = [frozenset()] * len(requests)
        if dedup:
            for cid, idx in _by_conversation(requests, conversations).items():
                hinted = self._dedup([[it.key for it in requests[i]] for i in idx], cid)
                for i, h in zip(idx, hinted):
                    noted[i] = frozenset(h)
        sent, live = _sent(requests, noted)
        if self.lengths is not None:
            self.lengths.update(
                [
                    (it.note_key, it.note_tokens) if p in nd else (it.key, it.tokens)
                    for req, nd in zip(requests, noted)
                    for p, it in enumerate(req)
                ]
            )
        reordered, order, rids = self._reorder([sent[i] for i in live]) if live else ([], [], [])
        return _placements(requests, noted, sent, live, reordered, order, rids)

    def _dedup(self, contexts: list[list[int]], cid: str) -> list[list[int]]:
        if self.pilot is not None:
            return [r.hinted_positions for r in self.pilot.deduplicate(contexts, cid)]
        r = self._sync_client().deduplicate(contexts, cid)
        return [x["hinted_positions"] for x in r["results"]]

    def _reorder(self, contexts: list[list[int]]) -> tuple[list[list[int]], list[int], list[str]]:
        if self.pilot is not None:
            r = self.pilot.reorder_detailed(contexts)
            return r.reordered, r.order, r.request_ids
        raw = self._sync_client().reorder_raw(contexts)
        return raw["reordered_contexts"], raw["original_indices"], raw.get("request_ids") or []

    def _sync_client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                from contextpilot.client import ContextPilotIndexClient

                self._client = ContextPilotIndexClient(self.server_url, self.timeout, self.api_key)
            return self._client

    # -- async -------------------------------------------------------------------

    async def aplan(
        self, requests: Sequence[Sequence[Item]], conversations: Sequence[str | None], dedup: bool
    ) -> list[Placement]:
        """Async :meth:`plan`. A server is called without blocking the loop
        (one short-lived client per call, so any event loop works); local
        planning is in-process work of well under a millisecond per request."""
        if self.pilot is not None:
            return self.plan(requests, conversations, dedup)
        _check_aligned(requests, conversations)
        from contextpilot.client import AsyncContextPilotIndexClient

        noted: list[frozenset[int]] = [frozenset()] * len(requests)
        async with AsyncContextPilotIndexClient(self.server_url, self.timeout, self.api_key) as client:
            if dedup:
                for cid, idx in _by_conversation(requests, conversations).items():
                    r = await client.deduplicate([[it.key for it in requests[i]] for i in idx], cid)
                    for i, x in zip(idx, r["results"]):
                        noted[i] = frozenset(x["hinted_positions"])
            sent, live = _sent(requests, noted)
            reordered: list[list[int]] = []
            order: list[int] = []
            rids: list[str] = []
            if live:
                raw = await client.reorder_raw([sent[i] for i in live])
                reordered, order = raw["reordered_contexts"], raw["original_indices"]
                rids = raw.get("request_ids") or []
        return _placements(requests, noted, sent, live, reordered, order, rids)

    def close(self) -> None:
        """Close the server connection, if any (the planner stays usable)."""
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def make_planner(options: Any) -> Planner:
    """The planner a plugin component's options ask for: ``options`` has
    ``pilot``, ``server_url``, ``api_key`` (a string or a pydantic
    ``SecretStr``), ``timeout`` and ``capacity_tokens`` (what the LangChain
    and LlamaIndex components share). Raises ``ValueError`` on a bad mix."""
    key = options.api_key
    if key is not None and hasattr(key, "get_secret_value"):
        key = key.get_secret_value()
    return Planner(
        pilot=options.pilot,
        server_url=options.server_url,
        api_key=key,
        timeout=options.timeout,
        capacity_tokens=options.capacity_tokens,
    )


def _check_aligned(requests: Sequence[Sequence[Item]], conversations: Sequence[str | None]) -> None:
    if len(requests) != len(conversations):
        raise ValueError(f"got {len(requests)} requests but {len(conversations)} conversation ids")


def _by_conversation(
    requests: Sequence[Sequence[Item]], conversations: Sequence[str | None]
) -> dict[str, list[int]]:
    """Non-empty requests with a conversation, grouped, in input order."""
    groups: dict[str, list[int]] = {}
    for i, (req, cid) in enumerate(zip(requests, conversations)):
        if req and cid is not None:
            groups.setdefault(cid, []).append(i)
    return groups


def _sent(
    requests: Sequence[Sequence[Item]], noted: Sequence[frozenset[int]]
) -> tuple[list[list[int]], list[int]]:
    """What each request really sends (a key, or its note's key), and the
    indices of the non-empty requests."""
    sent = [
        [it.note_key if p in nd else it.key for p, it in enumerate(req)] for req, nd in zip(requests, noted)
    ]
    return sent, [i for i, s in enumerate(sent) if s]


def _placements(
    requests: Sequence[Sequence[Item]],
    noted: Sequence[frozenset[int]],
    sent: list[list[int]],
    live: list[int],
    reordered: list[list[int]],
    order: list[int],
    rids: list[str],
) -> list[Placement]:
    """Map the planned block sequences back to input positions. Copies of
    one key keep their input order among themselves."""
    if sorted(order) != list(range(len(live))) or len(reordered) != len(live):
        raise RuntimeError(f"contextpilot returned an order for {len(order)} of {len(live)} requests")
    out = [Placement([], nd, None) for nd in noted]
    for j, k in enumerate(order):
        i = live[k]
        where: dict[int, deque[int]] = {}
        for p, key in enumerate(sent[i]):
            where.setdefault(key, deque()).append(p)
        positions: list[int] = []
        for key in reordered[j]:
            q = where.get(key)
            if not q:
                raise RuntimeError(f"contextpilot returned a block request {i} did not send")
            positions.append(q.popleft())
        if len(positions) != len(sent[i]):
            raise RuntimeError(
                f"contextpilot returned {len(positions)} of request {i}'s {len(sent[i])} blocks"
            )
        out[i] = Placement(positions, noted[i], rids[j] if j < len(rids) else None)
    return out
