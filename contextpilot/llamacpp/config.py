"""The llama.cpp proxy's settings: flags, then environment variables, then defaults.

Every value is checked when the config is built (``ValueError`` naming the
field), so a proxy never starts half-configured.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from contextpilot.llamacpp.translate import CHAT_FORMATS

__all__ = ["ENV", "ProxyConfig", "parse_config"]


@dataclass
class ProxyConfig:
    llama_server_url: str = "http://127.0.0.1:8080"
    #: contextpilot server to report evictions to; None: metrics-only proxy
    index_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8081
    chat_template_format: str = "llama3"
    log_file: str | None = None
    #: seconds between GET /slots reconciliations; 0 turns polling off
    slots_poll_interval: float = 2.0
    timeout: float = 600.0
    connect_timeout: float = 3.0
    #: bearer token for llama-server (its --api-key)
    llama_api_key: str | None = None
    max_body_bytes: int = 32 * 2**20

    def __post_init__(self) -> None:
        for name in ("llama_server_url", "index_url"):
            url = getattr(self, name)
            if url is not None and not url.startswith(("http://", "https://")):
                raise ValueError(f"{name} must be an http(s) URL, got {url!r}")
        self.llama_server_url = self.llama_server_url.rstrip("/")
        self.index_url = self.index_url.rstrip("/") if self.index_url else None
        if self.chat_template_format not in CHAT_FORMATS:
            raise ValueError(f"chat_template_format must be one of {', '.join(CHAT_FORMATS)}")
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be 1..65535, got {self.port}")
        if self.slots_poll_interval < 0 or self.timeout <= 0 or self.connect_timeout <= 0:
            raise ValueError("slots_poll_interval must be >= 0, timeouts > 0")
        if self.max_body_bytes < 1:
            raise ValueError("max_body_bytes must be >= 1")


def _opt_str(v: str) -> str | None:
    return v.strip() or None


#: field -> (environment variable, parser, help)
ENV: dict[str, tuple[str, Any, str]] = {
    "llama_server_url": ("LLAMA_SERVER_URL", str, "llama-server base URL (default http://127.0.0.1:8080)"),
    "index_url": ("CONTEXTPILOT_INDEX_URL", _opt_str, "contextpilot server receiving evictions (unset: off)"),
    "host": ("PROXY_HOST", str, "address to bind (default 127.0.0.1)"),
    "port": ("PROXY_PORT", int, "port (default 8081)"),
    "chat_template_format": ("CHAT_TEMPLATE_FORMAT", str, "chat template: llama3 | chatml (default llama3)"),
    "log_file": ("LOG_FILE", _opt_str, "JSONL request log: one JSON object per request (unset: off)"),
    "slots_poll_interval": ("SLOTS_POLL_INTERVAL", float, "seconds between GET /slots checks; 0 = off"),
    "timeout": ("LLAMA_TIMEOUT", float, "seconds to wait for llama-server's answer (default 600)"),
    "connect_timeout": ("LLAMA_CONNECT_TIMEOUT", float, "seconds to connect to llama-server (default 3)"),
    "llama_api_key": ("LLAMA_API_KEY", _opt_str, "bearer token sent to llama-server"),
    "max_body_bytes": ("PROXY_MAX_BODY_BYTES", int, "largest request body accepted (default 32 MiB)"),
}


def parse_config(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> ProxyConfig:
    """Flags, then environment variables, then defaults."""
    env = os.environ if environ is None else environ
    defaults = ProxyConfig()
    ap = argparse.ArgumentParser(
        prog="python -m contextpilot.llamacpp.proxy",
        description="Slot-tracking proxy in front of llama-server; reports evictions to contextpilot.",
        epilog="Every flag can also be set by its environment variable (shown in brackets).",
    )
    for f in fields(ProxyConfig):
        var, conv, text = ENV[f.name]
        default = getattr(defaults, f.name)
        if var in env:
            try:
                default = conv(env[var])
            except ValueError as e:
                raise SystemExit(f"{var}={env[var]!r}: {e}") from None
        ap.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=conv, default=default,
                        help=f"{text} [{var}]")  # fmt: skip
    args = ap.parse_args(argv)
    try:
        return ProxyConfig(**vars(args))
    except ValueError as e:
        ap.error(str(e))
        raise  # unreachable
