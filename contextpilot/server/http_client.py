"""The reference release's import path for the clients: they live in
:mod:`contextpilot.client` (which needs only httpx, not the server)."""

from contextpilot.client import (
    AsyncContextPilotIndexClient,
    ContextPilotAuthError,
    ContextPilotConnectionError,
    ContextPilotError,
    ContextPilotHTTPError,
    ContextPilotIndexClient,
    ContextPilotNotSupportedError,
    ContextPilotValidationError,
)

__all__ = [
    "AsyncContextPilotIndexClient",
    "ContextPilotAuthError",
    "ContextPilotConnectionError",
    "ContextPilotError",
    "ContextPilotHTTPError",
    "ContextPilotIndexClient",
    "ContextPilotNotSupportedError",
    "ContextPilotValidationError",
]
