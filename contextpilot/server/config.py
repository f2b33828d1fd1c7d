"""Server configuration: every command-line flag has an environment variable.

Precedence: flag > environment variable > default. The parsed
:class:`ServerConfig` is handed to the app factory as an object, so no
setting can be lost when uvicorn starts the app (the reference re-imported
its module and silently dropped flags without an environment twin).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["ENV", "ServerConfig", "parse_config"]


def _bool(v: str) -> bool:
    s = v.strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {v!r}")


def _opt_float(v: str) -> float | None:
    return None if v.strip().lower() in ("", "none", "inf") else float(v)


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    stateless: bool = False
    infer_api_url: str = "http://localhost:30000"
    #: bearer token required on every endpoint but /health (None: open)
    api_key: str | None = None
    #: sent to the engine as ``Authorization: Bearer`` (None: nothing sent)
    engine_api_key: str | None = None
    #: content-defined chunking modulus for passage dedup on the proxy
    chunk_modulus: int = 13
    #: deduplicate repeated passages in proxied chat messages
    dedup_passages: bool = False
    log_level: str = "info"
    #: engine KV cache size in tokens, for the index's LRU mirror
    capacity_tokens: float | None = None
    #: seconds after which unused cached content is presumed evicted
    ttl: float | None = None
    session_ttl: float = 3600.0
    max_sessions: int = 10_000
    #: seconds to connect to / hear back from the engine
    engine_connect_timeout: float = 3.0
    engine_timeout: float = 120.0
    #: forward proxied requests untouched (no request ids, no recording)
    passthrough: bool = False
    max_body_bytes: int = 32 * 2**20
    #: items per list in one request body (contexts, request ids, warm prefixes)
    max_contexts: int = 100_000
    #: blocks in one context
    max_blocks_per_context: int = 10_000
    #: characters in one text block (or warm prefix)
    max_block_chars: int = 1_000_000
    #: snapshot of the live index and sessions: loaded at start, saved at shutdown (None: none)
    state_file: str | None = None
    #: seconds between periodic snapshots (0: only at shutdown)
    state_interval: float = 300.0

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be 1..65535, got {self.port}")
        if self.chunk_modulus < 1:
            raise ValueError("chunk_modulus must be >= 1")
        if not self.infer_api_url.startswith(("http://", "https://")):
            raise ValueError(f"infer_api_url must be an http(s) URL, got {self.infer_api_url!r}")
        self.infer_api_url = self.infer_api_url.rstrip("/")
        if self.log_level.lower() not in ("critical", "error", "warning", "info", "debug", "trace"):
            raise ValueError(f"unknown log level {self.log_level!r}")
        self.log_level = self.log_level.lower()
        for name in ("engine_connect_timeout", "engine_timeout", "session_ttl"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        for name in ("max_body_bytes", "max_contexts", "max_blocks_per_context", "max_block_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.state_interval < 0:
            raise ValueError("state_interval must be >= 0 (0: save only at shutdown)")
        if self.state_file is not None and not self.state_file.strip():
            self.state_file = None

    def public(self) -> dict[str, Any]:
        """Settings safe to show (keys masked)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for secret in ("api_key", "engine_api_key"):
            out[secret] = "***" if out[secret] else None
        return out


#: flag name -> (environment variable, parser)
ENV: dict[str, tuple[str, Callable[[str], Any]]] = {
    "host": ("CONTEXTPILOT_HOST", str),
    "port": ("CONTEXTPILOT_PORT", int),
    "stateless": ("CONTEXTPILOT_STATELESS_MODE", _bool),
    "infer_api_url": ("CONTEXTPILOT_INFER_API_URL", str),
    "api_key": ("CONTEXTPILOT_API_KEY", str),
    "engine_api_key": ("CONTEXTPILOT_ENGINE_API_KEY", str),
    "chunk_modulus": ("CONTEXTPILOT_CHUNK_MODULUS", int),
    "dedup_passages": ("CONTEXTPILOT_DEDUP_PASSAGES", _bool),
    "log_level": ("CONTEXTPILOT_LOG_LEVEL", str),
    "capacity_tokens": ("CONTEXTPILOT_CAPACITY_TOKENS", _opt_float),
    "ttl": ("CONTEXTPILOT_TTL", _opt_float),
    "session_ttl": ("CONTEXTPILOT_SESSION_TTL", float),
    "max_sessions": ("CONTEXTPILOT_MAX_SESSIONS", int),
    "engine_connect_timeout": ("CONTEXTPILOT_ENGINE_CONNECT_TIMEOUT", float),
    "engine_timeout": ("CONTEXTPILOT_ENGINE_TIMEOUT", float),
    "passthrough": ("CONTEXTPILOT_PASSTHROUGH", _bool),
    "max_body_bytes": ("CONTEXTPILOT_MAX_BODY_BYTES", int),
    "max_contexts": ("CONTEXTPILOT_MAX_CONTEXTS", int),
    "max_blocks_per_context": ("CONTEXTPILOT_MAX_BLOCKS_PER_CONTEXT", int),
    "max_block_chars": ("CONTEXTPILOT_MAX_BLOCK_CHARS", int),
    "state_file": ("CONTEXTPILOT_STATE_FILE", str),
    "state_interval": ("CONTEXTPILOT_STATE_INTERVAL", float),
}

_HELP = {
    "host": "address to bind (default 127.0.0.1)",
    "port": "port (default 8765)",
    "stateless": "plan each /reorder on its own, keep no live index",
    "infer_api_url": "inference engine base URL for the proxy (default http://localhost:30000)",
    "api_key": "require 'Authorization: Bearer KEY' on every endpoint except /health",
    "engine_api_key": "bearer token sent to the engine",
    "chunk_modulus": "content-defined chunking modulus for passage dedup (default 13)",
    "dedup_passages": "deduplicate repeated passages in proxied chat messages",
    "log_level": "critical|error|warning|info|debug|trace (default info)",
    "capacity_tokens": "engine KV cache size in tokens, so the index mirrors its LRU",
    "ttl": "seconds after which unused cached content is presumed evicted",
    "session_ttl": "seconds a conversation's dedup state lives unused (default 3600)",
    "max_sessions": "conversations tracked at most (default 10000)",
    "engine_connect_timeout": "seconds to connect to the engine (default 3)",
    "engine_timeout": "seconds to wait for the engine's answer (default 120)",
    "passthrough": "proxy without request ids or recording (byte-transparent)",
    "max_body_bytes": "largest request body accepted, with or without content-length (default 32 MiB)",
    "max_contexts": "items per list in one request: contexts, request ids, prefixes (default 100000)",
    "max_blocks_per_context": "blocks in one context (default 10000)",
    "max_block_chars": "characters in one text block or warm prefix (default 1000000)",
    "state_file": "snapshot file of the live index and sessions: restored at start, saved at shutdown",
    "state_interval": "seconds between periodic snapshots to --state-file (0: at shutdown only; default 300)",
}


def parse_config(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> ServerConfig:
    """Build the config from flags, then environment, then defaults."""
    env = os.environ if environ is None else environ
    defaults = ServerConfig()
    values: dict[str, Any] = {}
    for name, (var, conv) in ENV.items():
        if var in env:
            try:
                values[name] = conv(env[var])
            except ValueError as e:
                raise SystemExit(f"{var}={env[var]!r}: {e}") from None
    ap = argparse.ArgumentParser(
        prog="python -m contextpilot.server.http_server",
        description="contextpilot HTTP server: /reorder, /evict, ... and an OpenAI-compatible proxy.",
        epilog="Every flag can also be set by its environment variable (shown in brackets).",
    )
    for name, (var, conv) in ENV.items():
        flag = "--" + name.replace("_", "-")
        default = values.get(name, getattr(defaults, name))
        if conv is _bool:
            ap.add_argument(
                flag,
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=default,
                help=f"{_HELP[name]} [{var}]",
            )
        else:
            ap.add_argument(
                flag,
                dest=name,
                type=conv if conv is not _opt_float else _opt_float,
                default=default,
                help=f"{_HELP[name]} [{var}]",
            )
    args = ap.parse_args(argv)
    try:
        return ServerConfig(**vars(args))
    except ValueError as e:
        ap.error(str(e))
        raise  # unreachable: ap.error exits
