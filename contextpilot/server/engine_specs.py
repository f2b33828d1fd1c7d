"""Which engine replicas the server fronts: from ``--infer-api-url``
(repeated) or an ``--engines-file``.

An engines file is JSON (a list, or ``{"engines": [...]}``) or TOML
(``[[engines]]`` tables); each entry has ``url`` and optionally ``name``,
``api_key``, ``max_inflight``, ``max_inflight_tokens`` and
``capacity_tokens``. Unknown keys, duplicate names or URLs, and more than
:data:`MAX_REPLICAS` entries are errors naming the entry, so a typo never
silently drops a limit.

Invariants: names are unique, at most 64 characters of ``[A-Za-z0-9_.:-]``
(safe as metric labels); URLs are unique http(s) base URLs without a
trailing slash; there are 1..``MAX_REPLICAS`` replicas.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = ["MAX_REPLICAS", "EngineSpec", "load_engines_file", "specs_from_urls"]

#: bounds every per-replica map and metric label set
MAX_REPLICAS = 64
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


@dataclass(frozen=True)
class EngineSpec:
    """One replica. ``None`` limits fall back to the server-wide settings."""

    name: str
    url: str
    api_key: str | None = None
    #: in-flight requests above which the router sends new work elsewhere
    max_inflight: int | None = None
    #: in-flight prompt tokens above which the router sends new work elsewhere
    max_inflight_tokens: int | None = None
    #: this engine's KV cache size in tokens (for its index's LRU mirror)
    capacity_tokens: float | None = None

    def public(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["api_key"] = "***" if self.api_key else None
        return out


def _check_url(url: Any, where: str) -> str:
    if not isinstance(url, str) or not url.strip().startswith(("http://", "https://")):
        raise ValueError(f"{where}: url must be an http(s) URL, got {url!r}")
    url = url.strip().rstrip("/")
    if not urlsplit(url).netloc:
        raise ValueError(f"{where}: url {url!r} has no host")
    return url


def default_name(url: str) -> str:
    """``http://10.0.0.5:30000/v1`` -> ``10.0.0.5:30000`` (path kept if any)."""
    parts = urlsplit(url)
    name = parts.netloc + parts.path.replace("/", "_")
    name = re.sub(r"[^A-Za-z0-9_.:-]", "_", name)[:64]
    return name or "engine"


def _check_all(specs: list[EngineSpec]) -> list[EngineSpec]:
    if not specs:
        raise ValueError("no engines given")
    if len(specs) > MAX_REPLICAS:
        raise ValueError(f"at most {MAX_REPLICAS} engines, got {len(specs)}")
    for attr in ("url", "name"):
        seen: set[str] = set()
        for i, s in enumerate(specs):
            v = getattr(s, attr)
            if v in seen:
                raise ValueError(f"engines[{i}]: duplicate {attr} {v!r}")
            seen.add(v)
    return specs


def specs_from_urls(
    urls: Sequence[str],
    api_key: str | None = None,
    max_inflight: int | None = None,
    max_inflight_tokens: int | None = None,
    capacity_tokens: float | None = None,
) -> list[EngineSpec]:
    """One replica per URL, named ``host:port``; server-wide limits."""
    specs = []
    for i, u in enumerate(urls):
        url = _check_url(u, f"--infer-api-url #{i + 1}")
        specs.append(
            EngineSpec(default_name(url), url, api_key, max_inflight, max_inflight_tokens, capacity_tokens)
        )
    return _check_all(specs)


def _positive(entry: dict[str, Any], key: str, where: str, kind: type) -> Any:
    v = entry.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not isinstance(v, int)):
        raise ValueError(f"{where}: {key} must be a positive {kind.__name__}, got {v!r}")
    if v <= 0:
        raise ValueError(f"{where}: {key} must be > 0, got {v!r}")
    return kind(v)


def load_engines_file(
    path: str | Path,
    api_key: str | None = None,
    max_inflight: int | None = None,
    max_inflight_tokens: int | None = None,
    capacity_tokens: float | None = None,
) -> list[EngineSpec]:
    """Read replicas from a JSON or TOML file (by suffix; ``.toml`` is TOML,
    anything else JSON). Entries without a limit get the server-wide one."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ValueError(f"engines file {str(p)!r}: {e.strerror or e}") from None
    try:
        if p.suffix.lower() == ".toml":
            import tomllib  # Python >= 3.11

            data: Any = tomllib.loads(text)
        else:
            data = json.loads(text)
    except ModuleNotFoundError:
        raise ValueError("TOML engines files need Python >= 3.11; use JSON") from None
    except ValueError as e:  # json.JSONDecodeError and tomllib.TOMLDecodeError
        raise ValueError(f"engines file {str(p)!r} is not valid: {e}") from None
    if isinstance(data, dict):
        data = data.get("engines")
    if not isinstance(data, list):
        raise ValueError(f"engines file {str(p)!r}: expected a list of engines (or an 'engines' list)")
    known = {f.name for f in fields(EngineSpec)}
    specs = []
    for i, entry in enumerate(data):
        where = f"engines[{i}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected an object with at least 'url'")
        unknown = set(entry) - known
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        url = _check_url(entry.get("url"), where)
        name = entry.get("name", default_name(url))
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"{where}: name must match [A-Za-z0-9_.:-]{{1,64}}, got {name!r}")
        key = entry.get("api_key", api_key)
        if key is not None and not isinstance(key, str):
            raise ValueError(f"{where}: api_key must be a string")
        mi = _positive(entry, "max_inflight", where, int)
        mt = _positive(entry, "max_inflight_tokens", where, int)
        cap = _positive(entry, "capacity_tokens", where, float)
        specs.append(
            EngineSpec(
                name,
                url,
                key,
                max_inflight if mi is None else mi,
                max_inflight_tokens if mt is None else mt,
                capacity_tokens if cap is None else cap,
            )
        )
    return _check_all(specs)
