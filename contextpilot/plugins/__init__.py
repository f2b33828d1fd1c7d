"""What the framework plugins (``integrations/*``) share: planning through a
local pilot or a server (:mod:`.planner`), dedup notes checked against the
history the model receives (:mod:`.notes`), chat turns over a history the caller keeps
(:mod:`.chat`), and the LoCoMo replay their
bench scripts run (:mod:`.bench`).

Framework-free and import-light (numpy comes with the core, nothing else).
A plugin imports only this package, so the core's internals can move
without breaking it. ``PLUGIN_API`` is bumped when this surface changes in a
way plugins must follow.
"""

from __future__ import annotations

from contextpilot.core.blocks import stable_key
from contextpilot.plugins.chat import chat_turn, check_history, one_shot, relevance_line
from contextpilot.plugins.notes import (
    DEFAULT_NOTE,
    History,
    Turn,
    check_note_template,
    clean_label,
    find_notes,
    note_pattern,
    preview,
    render_block,
    render_turn,
    settle_history,
    unseen_notes,
)
from contextpilot.plugins.planner import Item, Placement, Planner, TokenLengths, estimate_tokens, make_planner

#: version of this surface; plugins check it at import time
PLUGIN_API = 1

__all__ = [
    "DEFAULT_NOTE",
    "PLUGIN_API",
    "History",
    "Item",
    "Placement",
    "Planner",
    "TokenLengths",
    "Turn",
    "chat_turn",
    "check_history",
    "check_note_template",
    "clean_label",
    "estimate_tokens",
    "find_notes",
    "make_planner",
    "note_pattern",
    "one_shot",
    "preview",
    "relevance_line",
    "render_block",
    "render_turn",
    "settle_history",
    "stable_key",
    "unseen_notes",
]
