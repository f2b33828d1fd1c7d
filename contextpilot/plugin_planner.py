"""Deprecated location: use :mod:`contextpilot.plugins` (kept so code written
against the first plugin releases still imports)."""

from contextpilot.plugins.planner import Item, Placement, Planner, TokenLengths, estimate_tokens

__all__ = ["Item", "Placement", "Planner", "TokenLengths", "estimate_tokens"]
