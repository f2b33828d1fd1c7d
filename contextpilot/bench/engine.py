"""Replay a workload on a real inference engine and read its cache reuse.

Two ways in:

* ``llama-server`` managed here: built from the llama.cpp source in the
  ``llama-cpp-python`` sdist (``scripts/build_llama_server.sh``, cached),
  loaded with a tiny random-weight GGUF with a byte vocabulary
  (:mod:`contextpilot.bench.tiny_model`), started on 127.0.0.1 and fed
  token-id prompts through its native ``/completion``; each response's
  ``timings.cache_n`` (reused tokens) and ``timings.prompt_ms`` are summed.
* any OpenAI-compatible URL (vLLM, SGLang, llama-server): text prompts to
  ``/v1/completions`` with ``max_tokens: 1``; reuse from
  ``usage.prompt_tokens_details.cached_tokens`` when the engine reports it,
  time measured per request by the client.

Each order is replayed on a freshly started server (managed mode), so
neither order inherits the other's cache.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from contextpilot.bench.processes import free_port, read_log, stop_process, wait_ready
from contextpilot.bench.tiny_model import text_to_tokens, write_tiny_llama

__all__ = [
    "EngineReport",
    "LlamaServer",
    "cache_dir",
    "find_llama_server",
    "replay_llama",
    "replay_openai",
]

log = logging.getLogger("contextpilot.bench")

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build_llama_server.sh"


def cache_dir() -> Path:
    base = os.environ.get("CONTEXTPILOT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "contextpilot"
    )
    return Path(base)


def find_llama_server(build: bool = False) -> Path | None:
    """``$LLAMA_SERVER_BIN``, a cached build, ``llama-server`` on PATH, or
    (with ``build``) a fresh build via the repo script."""
    env = os.environ.get("LLAMA_SERVER_BIN")
    if env and Path(env).is_file():
        return Path(env)
    for p in sorted(cache_dir().glob("llama.cpp-*/build/bin/llama-server")):
        if os.access(p, os.X_OK):
            return p
    found = shutil.which("llama-server")
    if found:
        return Path(found)
    if build:
        if not BUILD_SCRIPT.is_file():
            raise FileNotFoundError(f"build script missing: {BUILD_SCRIPT}")
        out = subprocess.run(["bash", str(BUILD_SCRIPT)], check=True, capture_output=True, text=True)
        return Path(out.stdout.strip().splitlines()[-1])
    return None


def _post(url: str, body: dict, timeout: float) -> dict:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.load(r)


@dataclass
class LlamaServer:
    """A llama-server process on 127.0.0.1; use as a context manager."""

    binary: Path
    model: Path
    ctx: int = 16384
    threads: int = 2
    parallel: int = 1
    extra: Sequence[str] = ()
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LlamaServer:
        cmd = [
            str(self.binary),
            "-m",
            str(self.model),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "-c",
            str(self.ctx),
            "-np",
            str(self.parallel),
            "-t",
            str(self.threads),
            "--cache-ram",
            "0",
            *self.extra,
        ]
        log.info("starting %s", " ".join(cmd))
        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            wait_ready(
                self.proc,
                self.url + "/health",  # 503 while the model loads
                name="llama-server",
                timeout=120,
                output=lambda: self.log_text()[-2000:],
                interval=0.3,
            )
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def log_text(self) -> str:
        """What the server has logged so far (its model and cache set-up)."""
        return read_log(self._log)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        self._log.close()


@dataclass
class EngineReport:
    """Totals of one order's replay on one engine."""

    order: str
    requests: int
    prompt_tokens: int
    reused_tokens: int
    prompt_ms: float
    wall_seconds: float
    per_request: list[dict] = field(default_factory=list)

    @property
    def reuse(self) -> float:
        return self.reused_tokens / self.prompt_tokens if self.prompt_tokens else 0.0

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("per_request")
        d["reuse"] = self.reuse
        return d


def _prompt_text(system: str, blocks: Sequence[str], query: str) -> str:
    return system + "".join("\n\n" + b for b in blocks) + "\n\nQuestion: " + query + "\nAnswer:"


def replay_llama(
    url: str,
    prompts: Sequence[tuple[Sequence[str], str]],
    system: str,
    order_name: str,
    timeout: float = 600.0,
    progress=None,
) -> EngineReport:
    """Native ``/completion`` with byte-vocab token ids, one request at a time."""
    rep = EngineReport(order_name, 0, 0, 0, 0.0, 0.0)
    t0 = time.perf_counter()
    for blocks, query in prompts:
        tokens = text_to_tokens(_prompt_text(system, blocks, query))
        r = _post(
            url + "/completion",
            {
                "prompt": tokens,
                "n_predict": 1,
                "cache_prompt": True,
                "temperature": 0.0,
            },
            timeout,
        )
        t = r.get("timings", {})
        cache_n, prompt_ms = int(t.get("cache_n", 0)), float(t.get("prompt_ms", 0.0))
        rep.requests += 1
        rep.prompt_tokens += len(tokens)
        rep.reused_tokens += cache_n
        rep.prompt_ms += prompt_ms
        rep.per_request.append({"tokens": len(tokens), "cache_n": cache_n, "prompt_ms": prompt_ms})
        if progress is not None:
            progress.update()
    rep.wall_seconds = time.perf_counter() - t0
    return rep


def replay_openai(
    url: str,
    prompts: Sequence[tuple[Sequence[str], str]],
    system: str,
    order_name: str,
    model: str | None = None,
    timeout: float = 600.0,
    progress=None,
) -> EngineReport:
    """``/v1/completions`` on any OpenAI-compatible engine (vLLM, SGLang, ...)."""
    rep = EngineReport(order_name, 0, 0, 0, 0.0, 0.0)
    base = url.rstrip("/")
    t0 = time.perf_counter()
    for blocks, query in prompts:
        body: dict = {"prompt": _prompt_text(system, blocks, query), "max_tokens": 1, "temperature": 0}
        if model:
            body["model"] = model
        s = time.perf_counter()
        r = _post(base + "/v1/completions", body, timeout)
        ms = 1000 * (time.perf_counter() - s)
        usage = r.get("usage") or {}
        cached = int(((usage.get("prompt_tokens_details") or {}).get("cached_tokens")) or 0)
        n = int(usage.get("prompt_tokens") or 0)
        rep.requests += 1
        rep.prompt_tokens += n
        rep.reused_tokens += cached
        rep.prompt_ms += ms
        rep.per_request.append({"tokens": n, "cache_n": cached, "prompt_ms": ms})
        if progress is not None:
            progress.update()
    rep.wall_seconds = time.perf_counter() - t0
    return rep


@contextlib.contextmanager
def tiny_model(n_embd: int, n_layer: int) -> Iterator[Path]:
    """A cached tiny GGUF of the given size (written once)."""
    path = cache_dir() / "models" / f"tiny-{n_embd}x{n_layer}.gguf"
    if not path.is_file():
        tmp = path.with_suffix(".tmp")
        quiet = logging.getLogger("gguf")
        level = quiet.level
        quiet.setLevel(logging.WARNING)  # it logs every file it writes
        try:
            write_tiny_llama(tmp, n_embd=n_embd, n_layer=n_layer, n_head=max(1, n_embd // 64))
        finally:
            quiet.setLevel(level)
        tmp.replace(path)
    yield path
