"""The llama.cpp slot model and the OpenAI <-> native translation (pure code)."""

from __future__ import annotations

import json

import pytest

from contextpilot.llamacpp.slots import SlotTracker
from contextpilot.llamacpp.translate import (
    FieldError,
    StreamTranslator,
    native_request,
    openai_response,
    render_chat,
)

P1 = list(range(100, 200))
P2 = list(range(300, 400))


def test_new_prompt_evicts_what_it_overwrote_and_keeps_its_prefixes():
    t = SlotTracker()
    assert t.observe(0, "a", P1[:40], 40, 0) == []
    # b extends a: a's prompt is still held
    assert t.observe(0, "b", P1[:70], 70, 40) == []
    assert t.holds("a") == [0] and t.holds("b") == [0]
    # c shares 50 tokens: b (70) is overwritten, a (40) is a prefix of c and stays
    assert t.observe(0, "c", P1[:50] + P2[:30], 80, 50) == ["b"]
    assert t.holds("a") == [0] and t.holds("b") == []
    # a different prompt replaces everything
    assert sorted(t.observe(0, "d", P2, 100, 0)) == ["a", "c"]
    s = t.stats()
    assert s["evicted"] == 3 and s["requests_held"] == 1
    assert s["prompt_tokens"] == 40 + 70 + 80 + 100 and s["reused_tokens"] == 90
    assert s["slots"]["0"]["request_ids"] == ["d"]


def test_identical_prompt_keeps_the_earlier_request():
    # llama-server re-evaluates the last token of a fully cached prompt: cache_n = n - 1
    t = SlotTracker()
    t.observe(0, "a", P1, 100, 0)
    assert t.observe(0, "b", P1, 100, 99) == []
    assert t.holds("a") == [0]


def test_without_content_the_length_rule_applies():
    t = SlotTracker()
    t.observe(0, "a", None, 40, 0)
    t.observe(0, "b", None, 70, 40)
    assert t.observe(0, "c", None, 90, 45) == ["b"]
    assert t.holds("a") == [0]


def test_prefix_rule_beats_cache_n_under_chunk_reuse():
    # with --cache-reuse, cache_n may exceed the common prefix: the content decides
    t = SlotTracker()
    t.observe(0, "a", P1[:60], 60, 0)
    new = P1[:10] + P2[:5] + P1[10:60]
    assert t.observe(0, "b", new, 65, 60) == ["a"]


def test_text_prompts_compare_as_text():
    t = SlotTracker()
    t.observe(0, "a", "system: be brief\nuser: hi", 30, 0)
    assert t.observe(0, "b", "system: be brief\nuser: hi\nassistant: hello\nuser: more", 60, 29) == []
    assert t.observe(0, "c", "system: be brief\nuser: bye", 32, 25) == ["a", "b"]


def test_request_held_in_two_slots_is_reported_once_both_lost_it():
    t = SlotTracker()
    t.observe(0, "a", P1, 100, 0)
    t.observe(1, "a", P1, 100, 0)  # the same id re-sent, served on another slot
    assert t.holds("a") == [0, 1]
    assert t.observe(0, "b", P2, 100, 0) == []
    assert t.observe(1, "c", P2[:50], 50, 0) == ["a"]


def test_resent_id_on_the_same_slot_is_not_reported():
    t = SlotTracker()
    t.observe(0, "a", P1, 100, 0)
    assert t.observe(0, "a", P2, 100, 0) == []
    assert t.holds("a") == [0]


def test_broken_off_request_is_not_held_and_uses_lengths_only():
    t = SlotTracker()
    t.observe(0, "a", P1[:40], 40, 0)
    t.observe(0, "b", P1[:80], 80, 40)
    # c's prompt extends b's, but c broke off after keeping only 50 tokens: b (80) is gone
    assert sorted(t.observe(0, "c", P1, 100, 50, complete=False)) == ["b", "c"]
    assert t.holds("a") == [0]


def test_truncated_prompt_replaces_everything():
    t = SlotTracker()
    t.observe(0, "a", P1[:40], 40, 0)
    assert t.observe(0, "b", P1, 100, 40, truncated=True) == ["a"]


def test_failures_and_bad_slots():
    t = SlotTracker(max_slots=4)
    assert t.forget("x") == ["x"]
    t.observe(0, "a", P1, 100, 0)
    assert t.forget("a") == []
    assert t.observe(7, "b", P1, 100, 0) == []  # out of range: not tracked
    assert t.observe(-1, "c", P1, 100, 0, complete=False) == ["c"]
    assert t.stats()["bad_slot"] == 2


def test_bounds_hold():
    t = SlotTracker(max_slots=2, max_entries=3, max_units=10)
    for i in range(10):
        t.observe(0, f"r{i}", P1[: 5 + i], 5 + i, 4 + i)  # each extends the last
    s = t.stats()
    assert s["slots"]["0"]["requests_held"] == 3 and s["untracked_overflow"] == 7
    assert s["requests_held"] == 3 and s["evicted"] == 0
    # content was cut at 10 units: longer entries fall back to lengths
    assert t.observe(0, "z", P2, 100, 0) == ["r7", "r8", "r9"]
    with pytest.raises(ValueError):
        SlotTracker(max_slots=0)


def test_reconcile_with_slots_answers():
    t = SlotTracker()
    t.observe(0, "a", P1[:40], 40, 0)
    t.observe(0, "b", P1[:90], 90, 40)
    t.observe(1, "c", P2, 100, 0)
    slot0 = {
        "id": 0,
        "is_processing": False,
        "id_task": 2,
        "n_prompt_tokens": 94,
        "n_prompt_tokens_cache": 40,
    }
    slot1 = {
        "id": 1,
        "is_processing": False,
        "id_task": 3,
        "n_prompt_tokens": 104,
        "n_prompt_tokens_cache": 0,
    }
    assert t.reconcile(t.poll_token(), [slot0, slot1]) == []
    # someone else used slot 0 (new task, no answer through us), keeping 50 tokens
    foreign = {**slot0, "id_task": 9, "n_prompt_tokens": 120, "n_prompt_tokens_cache": 50}
    assert t.reconcile(t.poll_token(), [foreign, slot1]) == ["b"]
    assert t.stats()["foreign_tasks"] == 1
    # a busy slot is left alone; a slot served during the poll too
    token = t.poll_token()
    t.observe(1, "d", P2 + [1], 101, 100)
    assert t.reconcile(token, [{**foreign, "is_processing": True}, {"id": 1, "is_processing": False}]) == []
    # a restarted engine shows empty slots; a vanished slot loses everything
    assert sorted(t.reconcile(t.poll_token(), [{"id": 0, "is_processing": False}])) == ["a", "c", "d"]
    s = t.stats()
    assert s["requests_held"] == 0 and s["evicted_by_poll"] == 4


def test_reset_forgets_everything():
    t = SlotTracker()
    t.observe(0, "a", P1, 100, 0)
    t.reset()
    assert t.stats()["requests_held"] == 0 and t.stats()["observed"] == 0
    assert t.forget("a") == ["a"]


# -- translation -----------------------------------------------------------------------------


def test_chat_templates():
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": [{"type": "text", "text": "Q"}]}]
    assert render_chat(msgs, "chatml") == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n"
    )
    assert render_chat(msgs, "llama3") == (
        "<|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nQ<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    # a conversation's next turn extends the previous prompt: its cache stays usable
    longer = msgs + [{"role": "assistant", "content": "A"}, {"role": "user", "content": "Q2"}]
    for fmt in ("chatml", "llama3"):
        assert render_chat(longer, fmt).startswith(render_chat(msgs, fmt))
    with pytest.raises(ValueError):
        render_chat(msgs, "jinja")


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"messages": []}, ["messages"]),
        ({"messages": ["hi"]}, ["messages", 0]),
        ({"messages": [{"role": "robot", "content": "x"}]}, ["messages", 0, "role"]),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, ["messages", 0, "content", 0]),
        ({"messages": [{"role": "user", "content": 5}]}, ["messages", 0, "content"]),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": -1}, ["max_tokens"]),
        ({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, ["temperature"]),
        ({"messages": [{"role": "user", "content": "x"}], "n": 2}, ["n"]),
        ({"messages": [{"role": "user", "content": "x"}], "stop": [1]}, ["stop"]),
        ({"messages": [{"role": "user", "content": "x"}], "stream": "yes"}, ["stream"]),
        ({"messages": [{"role": "user", "content": "x"}], "seed": 1.5}, ["seed"]),
    ],
)
def test_bad_chat_fields_are_named(body, loc):
    with pytest.raises(FieldError) as e:
        native_request(body, chat=True, fmt="llama3")
    assert e.value.loc == loc
    assert e.value.detail()[0]["loc"] == ["body", *loc]


@pytest.mark.parametrize("prompt", [None, "", [], ["a", "b"], [[1], [2]], [1, "a"], {"x": 1}, [True]])
def test_bad_prompts_are_refused(prompt):
    if prompt == "":
        assert native_request({"prompt": ""}, chat=False, fmt="llama3")[1] == ""
        return
    with pytest.raises(FieldError) as e:
        native_request({"prompt": prompt}, chat=False, fmt="llama3")
    assert e.value.loc == ["prompt"]


def test_native_request_fields():
    body = {
        "messages": [{"role": "user", "content": "x"}],
        "max_tokens": 3,
        "temperature": 0,
        "stop": "END",
        "top_k": 5,
        "model": "m",
    }
    native, prompt = native_request(body, chat=True, fmt="chatml")
    assert native["prompt"] == prompt and native["n_predict"] == 3 and native["temperature"] == 0.0
    assert native["stop"] == ["END", "<|im_end|>"] and native["top_k"] == 5 and "model" not in native
    native, prompt = native_request({"prompt": [[5, 6, 7]]}, chat=False, fmt="chatml")
    assert prompt == [5, 6, 7] and native["n_predict"] == 16 and native["stream"] is False


def test_answers_translate_to_openai():
    native = {
        "content": "hey",
        "stop": True,
        "stop_type": "eos",
        "tokens_evaluated": 10,
        "tokens_predicted": 2,
        "timings": {"cache_n": 7, "prompt_n": 3},
        "id_slot": 1,
    }
    out = openai_response(native, chat=True, rid="req-1", model="m")
    assert out["id"] == "chatcmpl-req-1" and out["choices"][0]["message"]["content"] == "hey"
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["usage"] == {
        "prompt_tokens": 10,
        "completion_tokens": 2,
        "total_tokens": 12,
        "prompt_tokens_details": {"cached_tokens": 7},
    }
    text = openai_response({**native, "stop_type": "limit"}, chat=False, rid="req-1", model=None)
    assert text["choices"][0]["text"] == "hey" and text["choices"][0]["finish_reason"] == "length"

    tr = StreamTranslator(chat=True, rid="req-1", model="m", include_usage=True)
    raw = tr.translate({"content": "h", "stop": False}) + tr.translate({**native, "content": ""}) + tr.done()
    events = [e[len("data: ") :] for e in raw.decode().split("\n\n") if e]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"content": "h", "role": "assistant"}
    assert chunks[1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[2]["choices"] == [] and chunks[2]["usage"]["prompt_tokens_details"]["cached_tokens"] == 7


def test_a_shared_prefix_the_engine_did_not_reuse_is_counted() -> None:
    """The outside view of a sliding-window model served without --swa-full."""
    a = "x" * 400 + "A" * 400
    b = "x" * 400 + "B" * 400  # shares half of a's 200 tokens: ~100
    cases = [
        (b, 0, True, 1),  # diverging, nothing reused: flagged
        (b, 100, True, 0),  # reused as shared
        (a + "more", 0, True, 0),  # a is a prefix: not a partial-prefix case
        (b, 0, False, 0),  # the client turned caching off
        ("y" * 800, 0, True, 0),  # nothing shared
    ]
    for second, cache_n, expect, flagged in cases:
        t = SlotTracker()
        t.observe(0, "r1", a, 200, 0)
        t.observe(0, "r2", second, 200, cache_n, expect_reuse=expect)
        assert t.prefix_misses() == flagged, (second[400:404], cache_n, expect)
        assert t.stats()["prefix_not_reused"] == flagged
    assert t.last_prefix_miss is None
    t = SlotTracker()
    t.observe(0, "r1", a, 200, 0)
    t.observe(0, "r2", b, 200, 0)
    assert t.last_prefix_miss == {"slot": 0, "shared_tokens_estimate": 100, "cache_n": 0}
    t.reset()
    assert t.prefix_misses() == 0 and t.last_prefix_miss is None
