"""contextpilot for mem0: memory prompts that share prefixes in the KV cache.

from mem0 import Memory
from contextpilot_mem0 import ContextPilotMemory

memory = ContextPilotMemory(Memory())
found = memory.search("Where do I live?", filters={"user_id": "alice"})
messages = memory.build_messages("Where do I live?", found)
"""

from contextpilot.core.sessions import SessionStore
from contextpilot_mem0.memory import (
    CHAT_HINT,
    CHAT_SYSTEM,
    DEFAULT_SYSTEM,
    MEMORY_HEADER,
    AsyncChatSession,
    AsyncContextPilotMemory,
    ChatSession,
    ContextPilotMemory,
    memory_text,
)

__version__ = "0.1.0"

__all__ = [
    "CHAT_HINT",
    "CHAT_SYSTEM",
    "DEFAULT_SYSTEM",
    "MEMORY_HEADER",
    "AsyncChatSession",
    "AsyncContextPilotMemory",
    "ChatSession",
    "ContextPilotMemory",
    "SessionStore",
    "__version__",
    "memory_text",
]
