"""OpenAI <-> llama-server native ``/completion`` translation for the proxy.

The proxy sends OpenAI requests to the native endpoint because only its
answers say which slot served them (``id_slot``) and how many tokens were
reused (``timings.cache_n``). Chat messages are rendered with a fixed
template (``llama3`` or ``chatml``), not the model's own Jinja template, so
the prompt the proxy tracks is exactly the prompt the engine sees. No BOS
text is emitted: llama-server adds BOS itself when the model asks for it.

Bad input raises :class:`FieldError` naming the field (the proxy answers
422); nothing is truncated silently.
"""

from __future__ import annotations

import json
import time
from typing import Any

__all__ = [
    "CHAT_FORMATS",
    "FieldError",
    "MAX_BATCH",
    "StreamTranslator",
    "completion_prompt",
    "completion_prompts",
    "native_request",
    "openai_response",
    "render_chat",
]

#: format -> (message template, assistant opening, stop string)
CHAT_FORMATS: dict[str, tuple[str, str, str]] = {
    "llama3": (
        "<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>",
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
        "<|eot_id|>",
    ),
    "chatml": ("<|im_start|>{role}\n{content}<|im_end|>\n", "<|im_start|>assistant\n", "<|im_end|>"),
}
ROLES = ("system", "developer", "user", "assistant", "tool")

#: native sampling options passed through from OpenAI-style bodies when present
NATIVE_OPTIONS = (
    "top_k",
    "min_p",
    "typical_p",
    "repeat_penalty",
    "repeat_last_n",
    "mirostat",
    "mirostat_tau",
    "mirostat_eta",
    "grammar",
    "json_schema",
    "ignore_eos",
    "n_probs",
    "cache_prompt",
    "n_keep",
    "dry_multiplier",
    "dry_base",
    "dry_allowed_length",
    "dry_penalty_last_n",
)


class FieldError(ValueError):
    """Invalid request field; ``loc`` is its path in the body."""

    def __init__(self, loc: list[str | int], msg: str) -> None:
        super().__init__(f"{'.'.join(map(str, loc))}: {msg}")
        self.loc, self.msg = loc, msg

    def detail(self) -> list[dict[str, Any]]:
        """FastAPI's own 422 shape."""
        return [{"type": "value_error", "loc": ["body", *self.loc], "msg": self.msg}]


def _content_text(content: Any, loc: list[str | int]) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for j, part in enumerate(content):
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                raise FieldError([*loc, j], "only text parts ({'type': 'text', 'text': ...}) are supported")
            out.append(part["text"])
        return "".join(out)
    raise FieldError(loc, "must be a string or a list of text parts")


def render_chat(messages: Any, fmt: str) -> str:
    """The prompt text for ``messages`` in chat format ``fmt``."""
    if fmt not in CHAT_FORMATS:
        raise ValueError(f"unknown chat template format {fmt!r} (known: {', '.join(CHAT_FORMATS)})")
    if not isinstance(messages, list) or not messages:
        raise FieldError(["messages"], "must be a non-empty list of messages")
    tmpl, opening, _ = CHAT_FORMATS[fmt]
    parts = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise FieldError(["messages", i], "must be an object with 'role' and 'content'")
        role = m.get("role")
        if role not in ROLES:
            raise FieldError(["messages", i, "role"], f"must be one of {', '.join(ROLES)}")
        parts.append(
            tmpl.format(role=role, content=_content_text(m.get("content"), ["messages", i, "content"]))
        )
    return "".join(parts) + opening


def _number(body: dict[str, Any], key: str, lo: float, hi: float) -> float | None:
    v = body.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
        raise FieldError([key], f"must be a number in [{lo:g}, {hi:g}]")
    return float(v)


def _count(body: dict[str, Any], key: str) -> int | None:
    v = body.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise FieldError([key], "must be an integer >= 0")
    return v


def _token_ids(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(t, int) and not isinstance(t, bool) for t in v)


#: most prompts one batched completion request may carry
MAX_BATCH = 64


def completion_prompt(prompt: Any) -> str | list[int]:
    """One prompt, as text or token ids (a batch of one is unwrapped)."""
    prompts = completion_prompts(prompt)
    if len(prompts) != 1:
        raise FieldError(["prompt"], "must be one prompt here: a string or a list of token ids")
    return prompts[0]


def completion_prompts(prompt: Any) -> list[str | list[int]]:
    """The prompts of a completion request: one (a string or token ids) or a
    batch (a list of those, at most :data:`MAX_BATCH`). O(total tokens)."""
    if isinstance(prompt, str) or _token_ids(prompt):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) or _token_ids(p) for p in prompt):
        if len(prompt) > MAX_BATCH:
            raise FieldError(["prompt"], f"a batch holds at most {MAX_BATCH} prompts")
        return list(prompt)
    raise FieldError(
        ["prompt"],
        "must be a string, a list of token ids, or a list of those (a batch)",
    )


def native_request(body: dict[str, Any], *, chat: bool, fmt: str) -> tuple[dict[str, Any], str | list[int]]:
    """The native ``/completion`` body for an OpenAI request, and its prompt."""
    if chat:
        prompt: str | list[int] = render_chat(body.get("messages"), fmt)
    else:
        prompt = completion_prompt(body.get("prompt"))
    n = _count(body, "n")
    if n not in (None, 1):
        raise FieldError(["n"], "only n=1 is supported")
    out: dict[str, Any] = {"prompt": prompt, "cache_prompt": True}
    limit = _count(body, "max_completion_tokens") if chat else None
    if limit is None:
        limit = _count(body, "max_tokens")
    if limit is None and not chat:
        limit = 16  # OpenAI's default for completions; chat runs until a stop
    if limit is not None:
        out["n_predict"] = limit
    for key, lo, hi in (
        ("temperature", 0.0, 100.0),
        ("top_p", 0.0, 1.0),
        ("presence_penalty", -2.0, 2.0),
        ("frequency_penalty", -2.0, 2.0),
    ):
        v = _number(body, key, lo, hi)
        if v is not None:
            out[key] = v
    seed = body.get("seed")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise FieldError(["seed"], "must be an integer")
        out["seed"] = seed
    stop = body.get("stop")
    stops: list[str] = []
    if isinstance(stop, str):
        stops = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stops = list(stop)
    elif stop is not None:
        raise FieldError(["stop"], "must be a string or a list of strings")
    if chat:
        stops.append(CHAT_FORMATS[fmt][2])
    if stops:
        out["stop"] = stops
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise FieldError(["stream"], "must be a boolean")
    out["stream"] = bool(stream)
    for key in NATIVE_OPTIONS:
        if key in body:
            out[key] = body[key]
    return out, prompt


def _finish_reason(native: dict[str, Any]) -> str:
    return "stop" if native.get("stop_type") in ("eos", "word") else "length"


def _usage(native: dict[str, Any]) -> dict[str, Any]:
    timings = native.get("timings") if isinstance(native.get("timings"), dict) else {}
    prompt = int(native.get("tokens_evaluated") or 0)
    done = int(native.get("tokens_predicted") or 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": done,
        "total_tokens": prompt + done,
        "prompt_tokens_details": {"cached_tokens": int(timings.get("cache_n") or 0)},
    }


def openai_response(native: dict[str, Any], *, chat: bool, rid: str, model: str | None) -> dict[str, Any]:
    """An OpenAI (chat) completion built from a native final answer."""
    text = native.get("content") if isinstance(native.get("content"), str) else ""
    choice: dict[str, Any] = {"index": 0, "finish_reason": _finish_reason(native), "logprobs": None}
    if chat:
        choice["message"] = {"role": "assistant", "content": text}
    else:
        choice["text"] = text
    out = {
        "id": f"{'chatcmpl' if chat else 'cmpl'}-{rid}",
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": model or native.get("model") or "llama-server",
        "choices": [choice],
        "usage": _usage(native),
    }
    if isinstance(native.get("timings"), dict):
        out["timings"] = native["timings"]  # llama-server's own OpenAI answers carry them too
    return out


class StreamTranslator:
    """Native stream events -> OpenAI SSE bytes, one request at a time."""

    def __init__(self, *, chat: bool, rid: str, model: str | None, include_usage: bool) -> None:
        self.chat, self.model, self.include_usage = chat, model, include_usage
        self.id = f"{'chatcmpl' if chat else 'cmpl'}-{rid}"
        self.object = "chat.completion.chunk" if chat else "text_completion"
        self.created = int(time.time())
        self._started = False

    def _event(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        body = {
            "id": self.id,
            "object": self.object,
            "created": self.created,
            "model": self.model or "llama-server",
            "choices": choices,
            **extra,
        }
        return f"data: {json.dumps(body)}\n\n".encode()

    def _choice(self, text: str, finish: str | None) -> dict[str, Any]:
        if self.chat:
            delta: dict[str, Any] = {"content": text} if text or not self._started else {}
            if not self._started:
                delta["role"] = "assistant"
            self._started = True
            return {"index": 0, "delta": delta, "finish_reason": finish}
        return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}

    def translate(self, native: dict[str, Any]) -> bytes:
        """OpenAI events for one native event (partial or final)."""
        if isinstance(native.get("error"), dict):
            return f"data: {json.dumps({'error': native['error']})}\n\n".encode()
        text = native.get("content") if isinstance(native.get("content"), str) else ""
        if not native.get("stop"):
            return self._event([self._choice(text, None)]) if text or not self._started else b""
        out = b""
        if text:
            out += self._event([self._choice(text, None)])
        out += self._event([self._choice("", _finish_reason(native))])
        if self.include_usage:
            out += self._event([], usage=_usage(native))
        return out

    @staticmethod
    def done() -> bytes:
        return b"data: [DONE]\n\n"
