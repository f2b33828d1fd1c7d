"""Chat prompts scored the way contextpilot's simulated engine scores them:
rendered with its chat template, tokenised with its tokeniser, then served
in order through a radix prefix cache (``contextpilot.sim``).

Used by the plugins' suites (integrations/*/tests), which compare the
prompts a framework sends with and without contextpilot, and the orders of
the documents in them. :class:`ChatReplay` collects a replay's prompts and
:func:`check_replay` asserts what contextpilot must gain on them.
Deterministic: the same prompts give the same figures. Cost: O(total
prompt tokens) per call (one render, one tokenisation, one cache walk each).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field

from contextpilot.plugins import DEFAULT_NOTE, find_notes
from contextpilot.server.sim_engine import render_chat, tokenize
from contextpilot.sim import RadixCacheSim

Messages = list[dict[str, str]]

__all__ = [
    "ChatReplay",
    "check_replay",
    "common_prefix",
    "hit_ratio",
    "prompt_tokens",
    "rendered",
    "shareable_prefix",
    "uncached_tokens",
]


def rendered(messages: Messages) -> str:
    """The text a chat engine sees (the simulated engine's template)."""
    return render_chat(messages)


def common_prefix(a: Sequence[object], b: Sequence[object]) -> int:
    """Length of the longest common prefix of ``a`` and ``b`` (characters of
    two texts, or items of two lists). O(that length)."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def shareable_prefix(first: Sequence[object], second: Collection[object]) -> int:
    """Length of the longest prefix of ``first`` made only of items that
    ``second`` also holds: the most a reordering of the second request can
    share with the first (documents by id). O(that length)."""
    n = 0
    while n < len(first) and first[n] in second:
        n += 1
    return n


def _served(prompts: Sequence[Messages], capacity: float | None) -> RadixCacheSim:
    sim = RadixCacheSim(capacity)
    for messages in prompts:
        toks = tokenize(render_chat(messages))
        sim.serve(toks, [1] * len(toks))
    return sim


def hit_ratio(prompts: Sequence[Messages], capacity: float | None = None) -> float:
    """Token hit ratio of serving the prompts in order (``capacity`` tokens of
    cache, unbounded when None)."""
    return _served(prompts, capacity).hit_ratio


def uncached_tokens(prompts: Sequence[Messages], capacity: float | None = None) -> int:
    """Prompt tokens the engine must compute (not found in the prefix cache)."""
    sim = _served(prompts, capacity)
    return sim.total_tokens - sim.hit_tokens


def prompt_tokens(prompts: Sequence[Messages]) -> int:
    """All prompt tokens, cached or not."""
    return sum(len(tokenize(render_chat(m))) for m in prompts)


@dataclass
class ChatReplay:
    """The prompts of one replay of a question list, plain against ours.

    One-shot: each question alone, ``[system, user]``, its documents in the
    framework's order (plain) or contextpilot's (ours). Chat: one growing
    conversation; ours sends each turn's whole previous prompt back as
    history (append-only), plain puts this question's documents in a fresh
    system message before the bare questions and answers so far (what a
    framework's chat loop does without contextpilot).
    """

    one_shot_plain: list[Messages] = field(default_factory=list)
    one_shot_ours: list[Messages] = field(default_factory=list)
    chat_plain: list[Messages] = field(default_factory=list)
    chat_ours: list[Messages] = field(default_factory=list)

    def one_shot(self, plain: Messages, ours: Messages) -> None:
        """Record one question's two one-shot prompts."""
        self.one_shot_plain.append(plain)
        self.one_shot_ours.append(ours)

    def chat(
        self,
        turns: Iterable[tuple[str, str]],
        ours: Callable[[Messages, str], Messages],
        plain_system: Callable[[str], dict[str, str]],
    ) -> None:
        """Replay ``(question, answer)`` turns: ``ours(history, question)``
        builds our prompt from the history so far (its system message
        first); ``plain_system(question)`` is the plain loop's system
        message for that question. O(turns) calls of each."""
        history: Messages = []
        plain_history: Messages = []
        for question, answer in turns:
            prompt = ours(history, question)
            self.chat_ours.append(prompt)
            # the next turn's history: this prompt less its system message, then the answer
            history = [*prompt[1:], {"role": "assistant", "content": answer}]
            user = {"role": "user", "content": question}
            self.chat_plain.append([plain_system(question), *plain_history, user])
            plain_history += [user, {"role": "assistant", "content": answer}]


def check_replay(
    r: ChatReplay, name: str, block_sep: str = "\n\n", unit: str = "documents"
) -> dict[str, object]:
    """Assert what contextpilot gains on a replay and print the figures.

    One-shot: the same blocks (split on ``block_sep`` in the system message)
    reach the model, and ours hits the prefix cache more, unbounded and at
    16 and 2 mean prompts of capacity. Chat: each of our prompts extends the
    previous one, so the shared prefix grows every turn and ends over four
    times the plain loop's longest; ours hits more and computes fewer
    tokens although it resends the history; repeated blocks became notes.
    Returns the figures (``name`` heads the printed line).
    """
    figures: dict[str, object] = {}
    mean = prompt_tokens(r.one_shot_plain) / len(r.one_shot_plain)
    for label, cap in (("inf", None), ("16x", 16 * mean), ("2x", 2 * mean)):
        plain, ours = hit_ratio(r.one_shot_plain, cap), hit_ratio(r.one_shot_ours, cap)
        figures[f"one-shot plain {label}"], figures[f"one-shot ours {label}"] = plain, ours
        assert ours > plain, (label, plain, ours)
    for a, b in zip(r.one_shot_ours, r.one_shot_plain, strict=True):
        assert sorted(a[0]["content"].split(block_sep)) == sorted(b[0]["content"].split(block_sep))

    texts = [rendered(m) for m in r.chat_ours]
    for prev, nxt in zip(texts, texts[1:]):
        assert nxt.startswith(prev)
    shared = [common_prefix(a, b) for a, b in zip(texts, texts[1:])]
    assert all(b > a for a, b in zip(shared, shared[1:]))
    plain_texts = [rendered(m) for m in r.chat_plain]
    plain_shared = max(common_prefix(a, b) for a, b in zip(plain_texts, plain_texts[1:]))
    figures["chat shared prefix first/last (chars)"] = (shared[0], shared[-1])
    figures["chat plain shared prefix max (chars)"] = plain_shared
    assert shared[-1] > 4 * plain_shared
    plain, ours = hit_ratio(r.chat_plain), hit_ratio(r.chat_ours)
    figures["chat plain inf"], figures["chat ours inf"] = plain, ours
    assert ours > plain
    # ours sends the history every turn, yet computes less
    figures["chat uncached tokens plain"] = uncached_tokens(r.chat_plain)
    figures["chat uncached tokens ours"] = uncached_tokens(r.chat_ours)
    assert figures["chat uncached tokens ours"] < figures["chat uncached tokens plain"]
    hinted = sum(len(find_notes(m[-1]["content"], DEFAULT_NOTE)) for m in r.chat_ours)
    figures[f"chat hinted {unit}"] = hinted
    assert hinted > 0
    shown = (f"{k} = {round(v, 3) if isinstance(v, float) else v}" for k, v in figures.items())
    print(f"\n{name}: " + "; ".join(shown))
    return figures
