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


def _opt_int(v: str) -> int | None:
    return None if v.strip().lower() in ("", "none", "inf", "off") else int(v)


#: routing policies across engine replicas (see contextpilot.server.router)
ROUTING = ("cache-aware", "round-robin", "random", "least-loaded")


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    stateless: bool = False
    #: engine base URL; several (comma-separated, or the flag repeated) are replicas
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
    #: JSON/TOML list of engine replicas (replaces infer_api_url when set)
    engines_file: str | None = None
    #: how requests are spread over replicas
    routing: str = "cache-aware"
    #: per-replica in-flight requests / prompt tokens that count as overloaded
    route_max_inflight: int | None = None
    route_max_inflight_tokens: int | None = None
    #: in-flight requests above the least busy replica that count as overloaded
    route_max_imbalance: int | None = 2
    #: share of a prompt a replica must hold cached (beyond what every warm
    #: replica holds) for cache affinity to decide
    route_min_match: float = 0.0
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
    #: processes planning a huge /reorder batch's chunks (None: one per CPU; 1: none)
    planning_workers: int | None = None
    #: requests per independently planned chunk of a huge batch
    planning_chunk: int = 100_000
    #: engine used only when no replica can take a request (None: none)
    fallback_url: str | None = None
    #: seconds between background probes of every engine (marks replicas down/up)
    health_interval: float = 2.0

    @property
    def engine_urls(self) -> list[str]:
        """The engine URLs given by --infer-api-url (one per replica)."""
        return self.infer_api_url.split(",")

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be 1..65535, got {self.port}")
        if self.chunk_modulus < 1:
            raise ValueError("chunk_modulus must be >= 1")
        urls = [u.strip().rstrip("/") for u in self.infer_api_url.split(",")]
        for u in urls:
            if not u.startswith(("http://", "https://")):
                raise ValueError(f"infer_api_url must be an http(s) URL, got {u!r}")
        self.infer_api_url = ",".join(urls)
        if self.routing not in ROUTING:
            raise ValueError(f"routing must be one of {', '.join(ROUTING)}, got {self.routing!r}")
        for name in ("route_max_inflight", "route_max_inflight_tokens", "route_max_imbalance"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be >= 1 (or none)")
        if not 0.0 <= self.route_min_match <= 1.0:
            raise ValueError("route_min_match must be in [0, 1]")
        if self.log_level.lower() not in ("critical", "error", "warning", "info", "debug", "trace"):
            raise ValueError(f"unknown log level {self.log_level!r}")
        self.log_level = self.log_level.lower()
        for name in ("engine_connect_timeout", "engine_timeout", "session_ttl"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        for name in ("max_body_bytes", "max_contexts", "max_blocks_per_context", "max_block_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.planning_workers is not None and self.planning_workers < 1:
            raise ValueError("planning_workers must be >= 1 (or none: one per CPU)")
        if self.planning_chunk < 1:
            raise ValueError("planning_chunk must be >= 1")
        if self.state_interval < 0:
            raise ValueError("state_interval must be >= 0 (0: save only at shutdown)")
        if self.state_file is not None and not self.state_file.strip():
            self.state_file = None
        if self.fallback_url is not None:
            self.fallback_url = self.fallback_url.strip().rstrip("/") or None
            if self.fallback_url and not self.fallback_url.startswith(("http://", "https://")):
                raise ValueError(f"fallback_url must be an http(s) URL, got {self.fallback_url!r}")
        if self.health_interval <= 0:
            raise ValueError("health_interval must be > 0")

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
    "engines_file": ("CONTEXTPILOT_ENGINES_FILE", str),
    "routing": ("CONTEXTPILOT_ROUTING", str),
    "route_max_inflight": ("CONTEXTPILOT_ROUTE_MAX_INFLIGHT", _opt_int),
    "route_max_inflight_tokens": ("CONTEXTPILOT_ROUTE_MAX_INFLIGHT_TOKENS", _opt_int),
    "route_max_imbalance": ("CONTEXTPILOT_ROUTE_MAX_IMBALANCE", _opt_int),
    "route_min_match": ("CONTEXTPILOT_ROUTE_MIN_MATCH", float),
    "max_contexts": ("CONTEXTPILOT_MAX_CONTEXTS", int),
    "max_blocks_per_context": ("CONTEXTPILOT_MAX_BLOCKS_PER_CONTEXT", int),
    "max_block_chars": ("CONTEXTPILOT_MAX_BLOCK_CHARS", int),
    "state_file": ("CONTEXTPILOT_STATE_FILE", str),
    "state_interval": ("CONTEXTPILOT_STATE_INTERVAL", float),
    "planning_workers": ("CONTEXTPILOT_PLANNING_WORKERS", _opt_int),
    "planning_chunk": ("CONTEXTPILOT_PLANNING_CHUNK", int),
    "fallback_url": ("CONTEXTPILOT_FALLBACK_URL", str),
    "health_interval": ("CONTEXTPILOT_HEALTH_INTERVAL", float),
}

_HELP = {
    "host": "address to bind (default 127.0.0.1)",
    "port": "port (default 8765)",
    "stateless": "plan each /reorder on its own, keep no live index",
    "infer_api_url": "inference engine base URL for the proxy (default http://localhost:30000); "
    "repeat the flag (or separate by commas) for several replicas",
    "api_key": "require 'Authorization: Bearer KEY' on every endpoint except /health",
    "engine_api_key": "bearer token sent to the engine",
    "chunk_modulus": "content-defined chunking modulus for passage dedup (default 13)",
    "dedup_passages": "deduplicate repeated passages in proxied chat messages",
    "log_level": "critical|error|warning|info|debug|trace (default info)",
    "capacity_tokens": "engine KV cache size in tokens, so the index mirrors its LRU",
    "ttl": "seconds after which unused cached content is presumed evicted",
    "session_ttl": "seconds a conversation's dedup state or a chat session lives unused (default 3600)",
    "max_sessions": "conversations (and, apart, chat sessions) tracked at most (default 10000)",
    "engine_connect_timeout": "seconds to connect to the engine (default 3)",
    "engine_timeout": "seconds to wait for the engine's answer (default 120)",
    "passthrough": "proxy without request ids or recording (byte-transparent)",
    "engines_file": "JSON or TOML list of engine replicas {name, url, api_key, max_inflight, "
    "max_inflight_tokens, capacity_tokens}; replaces --infer-api-url",
    "routing": "replica choice: cache-aware (default), round-robin, random, least-loaded",
    "route_max_inflight": "in-flight requests per replica that count as overloaded (default none)",
    "route_max_inflight_tokens": "in-flight prompt tokens per replica that count as overloaded "
    "(default none)",
    "route_max_imbalance": "in-flight requests above the least busy replica that count as overloaded "
    "(default 2; none: off)",
    "route_min_match": "share of a prompt a replica must hold cached, beyond what every warm replica "
    "holds, for cache affinity to count (default 0: any)",
    "max_body_bytes": "largest request body accepted, with or without content-length (default 32 MiB)",
    "max_contexts": "items per list in one request: contexts, request ids, prefixes (default 100000)",
    "max_blocks_per_context": "blocks in one context (default 10000)",
    "max_block_chars": "characters in one text block or warm prefix (default 1000000)",
    "state_file": "snapshot file of the live index and sessions: restored at start, saved at shutdown",
    "state_interval": "seconds between periodic snapshots to --state-file (0: at shutdown only; default 300)",
    "planning_workers": "processes planning a huge /reorder batch in parallel "
    "(default: one per CPU; 1: none)",
    "planning_chunk": "requests per independently planned chunk of a huge batch (default 100000)",
    "fallback_url": "engine used only when every replica is down or failed the request "
    "(its cache is not tracked)",
    "health_interval": "seconds between background probes that mark replicas down and back up (default 2)",
}


class _UrlList(argparse.Action):
    """``--infer-api-url`` may repeat: the first use replaces the default
    (or the environment's value), later ones add replicas."""

    SEEN = "_infer_api_url_seen"

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        seen = getattr(namespace, self.SEEN, False)
        current = getattr(namespace, self.dest) if seen else ""
        setattr(namespace, self.dest, f"{current},{values}" if current else values)
        setattr(namespace, self.SEEN, True)


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
        if name == "infer_api_url":
            ap.add_argument(flag, dest=name, action=_UrlList, default=default, help=f"{_HELP[name]} [{var}]")
        elif name == "routing":
            ap.add_argument(flag, dest=name, choices=ROUTING, default=default, help=f"{_HELP[name]} [{var}]")
        elif conv is _bool:
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
    vars(args).pop(_UrlList.SEEN, None)
    try:
        config = ServerConfig(**vars(args))
        if config.engines_file:  # fail at start, naming the bad entry
            from contextpilot.server.engine_specs import load_engines_file

            load_engines_file(config.engines_file)
        return config
    except ValueError as e:
        ap.error(str(e))
        raise  # unreachable: ap.error exits
