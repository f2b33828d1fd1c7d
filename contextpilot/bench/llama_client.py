"""llama-server's native API as the real-model benchmark uses it.

One request at a time over urllib (no client dependency): serve a prompt
and read ``timings`` (``cache_n`` reused tokens, ``prompt_ms``), score a gold
answer's log-likelihood on top of a cached prompt, count tokens, and read
the server's sliding-window-attention set-up from its log.
"""

from __future__ import annotations

import json
import struct
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from contextpilot.bench.engine import LlamaServer

__all__ = [
    "count_tokens",
    "gbnf_literal",
    "get_json",
    "gguf_sliding_window",
    "post_json",
    "score_gold",
    "serve",
    "swa_status",
]


def gbnf_literal(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 32:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def post_json(url: str, body: dict, timeout: float = 900.0) -> dict:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        detail = e.read()[:2000].decode(errors="replace")
        raise RuntimeError(f"POST {url} -> HTTP {e.code}: {detail}") from None


def get_json(url: str, timeout: float = 30.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def gguf_sliding_window(path: str | Path) -> int | None:
    """The model's sliding-attention window from a GGUF header (``<arch>.
    attention.sliding_window``), or None when it has none.

    Reads key/value metadata only, stopping at the key (the tensor data is
    never touched): milliseconds, where a full GGUF reader takes seconds.
    """
    with open(path, "rb") as f:

        def read(fmt: str) -> Any:
            size = struct.calcsize("<" + fmt)
            return struct.unpack("<" + fmt, f.read(size))[0]

        def string() -> bytes:
            return f.read(read("Q"))

        def skip(kind: int) -> Any:
            if kind in _SCALAR:
                return read(_SCALAR[kind])
            if kind == 8:
                return string()
            if kind == 9:
                item, n = read("I"), read("Q")
                if item in _SCALAR:
                    f.seek(n * struct.calcsize("<" + _SCALAR[item]), 1)
                else:
                    for _ in range(n):
                        skip(item)
                return None
            raise ValueError(f"{path}: unknown GGUF value type {kind}")

        if f.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        read("I")  # version
        read("Q")  # tensors
        for _ in range(read("Q")):
            key = string()
            value = skip(read("I"))
            if key.endswith(b".attention.sliding_window"):
                return int(value) or None
    return None


def swa_status(server: LlamaServer) -> dict:
    """Whether the served model uses sliding-window attention (from its GGUF
    header) and whether llama-server keeps a full-size SWA cache (its log
    says so at start; ``/props`` does not). Both true, or the first false,
    is what partial-prefix reuse needs."""
    window = gguf_sliding_window(server.model)
    return {"sliding_window": window, "swa_full": "full-size SWA cache" in server.log_text()}


def count_tokens(url: str, text: str) -> int:
    return len(post_json(url + "/tokenize", {"content": text, "add_special": False})["tokens"])


def serve(url: str, prompt: str, n_predict: int, rid: str | None = None, openai: bool = False) -> dict:
    """One completion; returns the native fields we need."""
    if openai:
        body = {"prompt": prompt, "max_tokens": n_predict, "temperature": 0, "rid": rid}
        r = post_json(url + "/v1/completions", body)
        text = r["choices"][0].get("text", "")
    else:
        body = {"prompt": prompt, "n_predict": n_predict, "temperature": 0, "cache_prompt": True}
        r = post_json(url + "/completion", body)
        text = r.get("content", "")
    t = r.get("timings") or {}
    if "cache_n" not in t or "prompt_ms" not in t:
        raise RuntimeError(f"engine answer without timings.cache_n/prompt_ms: {sorted(r)}")
    per_token = float(t.get("predicted_ms", 0.0)) / max(1, int(t.get("predicted_n", 0) or 0))
    return {
        "text": text,
        "cache_n": int(t["cache_n"]),
        "prompt_n": int(t.get("prompt_n", 0)),
        "prompt_ms": float(t["prompt_ms"]),
        "ttft_ms": float(t["prompt_ms"]) + (per_token if n_predict else 0.0),
    }


def score_gold(url: str, prompt: str, gold: str) -> tuple[float, int]:
    """Log-likelihood of ``" " + gold`` after ``prompt`` under the raw model.

    A grammar forces the gold text; with ``n_probs`` the server reports each
    chosen token's probability from the model's logits before sampling, so
    the grammar picks the tokens but does not bend their probabilities.
    The prompt was just served, so it is read from the cache.
    """
    target = " " + gold.strip()
    body = {
        "prompt": prompt,
        "n_predict": 4 * len(target) + 8,
        "temperature": 0,
        "cache_prompt": True,
        "grammar": "root ::= " + gbnf_literal(target),
        "n_probs": 1,
    }
    r = post_json(url + "/completion", body)
    want = target.encode()
    got, total, n = b"", 0.0, 0
    # the grammar ends with end-of-text, whose probability is not the answer's: stop at the text
    for p in r.get("completion_probabilities") or []:
        if got == want:
            break
        piece = bytes(p["bytes"]) if isinstance(p.get("bytes"), list) else str(p.get("token", "")).encode()
        got += piece
        total += float(p["logprob"])
        n += 1
    if got != want:
        raise RuntimeError(f"forced gold answer came back as {got!r}, expected {want!r}")
    return total, n
