"""The reference release's import path for the clients: they live in
:mod:`contextpilot.client` (which needs only httpx, not the server); this
module re-exports exactly its public names."""

from contextpilot.client import *  # noqa: F403
from contextpilot.client import __all__  # noqa: F401
