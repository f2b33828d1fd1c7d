"""Dedup notes that cannot lie: a repeat becomes a note only when the text it
stands for is in the messages the model receives.

Framework plugins do not keep the conversation; the framework does
(LangChain's ``BaseChatMessageHistory``, LlamaIndex's chat memory). So the
decision is made against the *history the prompt will carry*, by content:
a document is noted iff its exact rendered form (``[label]`` line plus its
text, or whatever form the plugin renders) occurs in a history message, or
earlier in the same turn. Nothing is remembered between calls, so trimmed,
summarised or restarted histories are handled for free: text that left the
history is sent in full again.

Notes themselves are stripped before looking, so a note that happens to
quote a short text in full never counts as that text.

:func:`unseen_notes` is the checker the tests use on every prompt: it
fails on any note whose text is not in the same prompt.

Cost: O(total history characters) to join the history once per turn, then
one substring search per document.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from contextpilot.core.dedup import preview

__all__ = [
    "DEFAULT_NOTE",
    "History",
    "Turn",
    "check_note_template",
    "clean_label",
    "find_notes",
    "note_pattern",
    "preview",
    "render_block",
    "render_turn",
    "settle_history",
    "unseen_notes",
]

#: what replaces a document the history already holds, after nothing else:
#: its label names the full copy above it (``[label]`` then the text)
DEFAULT_NOTE = "[{label}] (given earlier in this conversation)"
_NOTE_FIELDS = {"label", "preview"}
#: what a note in the history becomes when the turn holding its full copy
#: left the prompt (a trimmed or windowed history): it no longer points anywhere
GONE = "[{label}] (no longer in this conversation)"
#: joins history messages: never inside a rendered block, so no false match spans two messages
_SEP = "\x00"


def check_note_template(template: object) -> str:
    """The template, or ``ValueError``: it must name ``{label}`` (so the
    model can find the full copy) and may add ``{preview}``, nothing else."""
    if not isinstance(template, str):
        raise ValueError(f"note_template must be a string, got {type(template).__name__}")
    try:
        names = [f for _, f, spec, conv in string.Formatter().parse(template) if f is not None]
    except ValueError as e:
        raise ValueError(f"note_template is not a valid format string: {e}") from None
    bad = set(names) - _NOTE_FIELDS
    if bad:
        raise ValueError(f"note_template may use only {{label}} and {{preview}}, got {sorted(bad)}")
    if names.count("label") != 1 or names.count("preview") > 1:
        raise ValueError("note_template must contain {label} exactly once (and {preview} at most once)")
    if _SEP in template:
        raise ValueError("note_template must not contain NUL characters")
    return template


def note_pattern(template: str) -> re.Pattern[str]:
    """A regex matching every note the template can produce (group ``label``)."""
    out = []
    for literal, name, _, _ in string.Formatter().parse(check_note_template(template)):
        out.append(re.escape(literal))
        if name == "label":
            out.append(r"(?P<label>[^\]\n\x00]+?)")
        elif name == "preview":
            out.append(r"[^\n]*?")
    return re.compile("".join(out))


def clean_label(label: str) -> str:
    """A label as notes can carry it: no ``]``, newline or NUL (each becomes ``_``)."""
    return label.replace("]", "_").replace("\n", "_").replace(_SEP, "_") or "_"


def render_block(label: str, text: str) -> str:
    """A document as it appears in a turn: its label line, then its text."""
    return f"[{label}]\n{text}"


class History:
    """The texts a prompt's history carries, notes removed; ``holds(s)`` is
    true iff ``s`` occurs in one of them. Built once per turn: O(chars)."""

    def __init__(self, texts: Sequence[str], template: str) -> None:
        pattern = note_pattern(template)
        self._joined = _SEP.join(pattern.sub(_SEP, t) for t in texts)

    def holds(self, text: str) -> bool:
        return bool(text) and _SEP not in text and text in self._joined


@dataclass(frozen=True)
class Turn:
    """One turn's rendered documents."""

    #: the blocks (or notes), blank lines between, in the order given
    content: str
    #: positions (in the order given) sent as a note
    noted: frozenset[int]


def render_turn(
    labels: Sequence[str],
    texts: Sequence[str],
    history: History,
    template: str,
    *,
    dedup: bool = True,
) -> Turn:
    """Documents ``(labels[i], texts[i])`` in the given order; with ``dedup``
    one whose block the history holds, or that came earlier in this turn, is
    replaced by its note. Invariant: every note's block is in ``history`` or
    in ``content`` before it. O(documents) searches."""
    if len(labels) != len(texts):
        raise ValueError(f"got {len(labels)} labels for {len(texts)} texts")
    parts: list[str] = []
    noted: set[int] = set()
    here: set[str] = set()
    for i, (label, text) in enumerate(zip(labels, texts)):
        block = render_block(label, text)
        if dedup and (block in here or history.holds(block)):
            parts.append(template.format(label=label, preview=preview(text)))
            noted.add(i)
        else:
            parts.append(block)
            here.add(block)
    return Turn("\n\n".join(parts), frozenset(noted))


def settle_history(history: Sequence[str], turn: str, template: str) -> list[str]:
    """The history texts with every note that no longer has a full copy in
    the prompt (a block ``[label]`` + newline in the history outside notes,
    or in ``turn``) replaced by :data:`GONE`. A window that drops old turns
    can keep a later turn whose notes point into them; this keeps such a
    prompt honest. Unchanged texts are returned as the same objects.
    O(history characters)."""
    pattern = note_pattern(template)
    present = _SEP.join([*(pattern.sub(_SEP, t) for t in history), turn])
    out = []
    for text in history:

        def fix(m: re.Match[str]) -> str:
            label = m.group("label")
            return m.group(0) if f"[{label}]\n" in present else GONE.format(label=label)

        out.append(pattern.sub(fix, text) if pattern.search(text) else text)
    return out


def find_notes(prompt: str, template: str) -> list[str]:
    """Labels of the notes in ``prompt``, in order."""
    return [m.group("label") for m in note_pattern(template).finditer(prompt)]


def unseen_notes(
    messages: Sequence[str],
    full_text: Mapping[str, str] | Callable[[str], str | None],
    template: str,
) -> list[str]:
    """The checker: labels of notes in ``messages`` (one prompt, in order)
    whose full text is *not* in the same prompt outside notes.

    ``full_text`` maps a note's label to the exact text that must be present
    (e.g. :func:`render_block` of the document); an unknown label counts as
    unseen. Empty result = the prompt cannot mislead the model.
    """
    lookup = full_text.get if isinstance(full_text, Mapping) else full_text
    history = History(messages, template)
    bad = []
    for label in find_notes(_SEP.join(messages), template):
        text = lookup(label)
        if text is None or not history.holds(text):
            bad.append(label)
    return bad
