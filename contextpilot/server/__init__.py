"""HTTP server, Python clients and OpenAI-compatible proxy (extra ``server``).

``from contextpilot.server import ContextPilotIndexClient`` works (lazily,
so importing this package stays cheap).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AsyncContextPilotIndexClient",
    "ContextPilotError",
    "ContextPilotIndexClient",
    "create_app",
]


def __getattr__(name: str) -> Any:
    if name in ("ContextPilotIndexClient", "AsyncContextPilotIndexClient", "ContextPilotError"):
        from contextpilot import client

        return getattr(client, name)
    if name == "create_app":
        from contextpilot.server.app import create_app

        return create_app
    raise AttributeError(name)
