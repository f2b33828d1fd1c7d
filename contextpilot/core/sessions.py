"""Old name of :class:`contextpilot.core.lru.BoundedLRU`, kept for the
plugin packages that import it from here."""

from contextpilot.core.lru import BoundedLRU as SessionStore

__all__ = ["SessionStore"]
