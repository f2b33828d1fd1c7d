"""PageIndex's markdown pipeline end to end, offline: ``md_to_tree`` builds
the tree, retrieval picks nodes (fixed picks stand in for the model's tree
search), and the answer calls go through litellm (PageIndex's LLM layer)
over HTTP to contextpilot's simulated OpenAI-compatible engine (a separate
process with a token-level prefix cache), which reports
``usage.prompt_tokens_details.cached_tokens``. A litellm callback records
exactly what each model call received."""

from __future__ import annotations

import litellm
import pytest
from _support import build_tree, handbook_markdown
from contextpilot_pageindex import ContextPilotPageIndex
from litellm.integrations.custom_logger import CustomLogger

import contextpilot as cp
from contextpilot.plugins import DEFAULT_NOTE, find_notes, unseen_notes

from support.plugin_fixtures import flush_cache

# what the tree-search model "answers" for each question (doc "hb")
PICKS = {
    "How many days of annual leave do I get, and what about sick leave?": ["0006", "0007", "0005"],
    "How long is parental leave, and does annual leave still apply?": ["0008", "0006", "0007"],
    "Can I take unpaid leave on top of parental leave?": ["0009", "0008", "0006", "0007"],
}


class Recorder(CustomLogger):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[dict]] = []

    def log_pre_api_call(self, model, messages, kwargs) -> None:
        self.calls.append([dict(m) for m in messages])


@pytest.fixture
def recorder():
    rec = Recorder()
    old = list(litellm.callbacks)
    litellm.callbacks = [rec]
    yield rec
    litellm.callbacks = old


def _ask(url: str, messages: list[dict]) -> tuple[str, int, int]:
    r = litellm.completion(
        model="openai/sim-engine", api_base=f"{url}/v1", api_key="sk-local", messages=messages
    )
    return r.choices[0].message.content, r.usage.prompt_tokens, r.usage.prompt_tokens_details.cached_tokens


def test_pipeline_model_sees_contextpilot_order_and_dedup(tmp_path, recorder, sim_engine):
    cpi = ContextPilotPageIndex(pilot=cp.ContextPilot())
    cpi.add_tree("hb", build_tree(tmp_path / "handbook.md", handbook_markdown()))
    plain_cpi = ContextPilotPageIndex(pilot=cp.ContextPilot(stateless=True))
    plain_cpi.add_tree("hb", build_tree(tmp_path / "handbook2.md", handbook_markdown()))
    ours = []
    flush_cache(sim_engine.url)
    history: list[dict] = []
    for question, picks in PICKS.items():
        messages = cpi.chat_messages(history, question, [("hb", n) for n in picks])
        answer, total, cached = _ask(sim_engine.url, messages)
        history = [*messages[1:], {"role": "assistant", "content": answer}]
        ours.append((messages, total, cached))

    assert recorder.calls == [m for m, _, _ in ours]  # the model got exactly our messages
    second = recorder.calls[1][-1]["content"]
    annual = cpi.select([("hb", "0006")]).blocks[0]
    assert annual not in second and "hb:0006" in find_notes(second, DEFAULT_NOTE)  # dedup
    assert annual in recorder.calls[1][1]["content"]  # ... pointing at the first turn, in the same prompt
    known = {}
    for picks in PICKS.values():
        sel = cpi.select([("hb", n) for n in picks])
        known.update(zip(sel.labels, sel.blocks))
    for call in recorder.calls:
        assert unseen_notes([m["content"] for m in call], known, DEFAULT_NOTE) == []
    # each answer call finds the whole previous prompt in the engine's cache
    for (_, prev_total, _), (_, _, cached) in zip(ours, ours[1:]):
        assert cached >= prev_total

    # the same calls in retrieval order and plain history, for comparison
    flush_cache(sim_engine.url)
    history = []
    plain = []
    for question, picks in PICKS.items():
        system = plain_cpi.messages(question, [("hb", n) for n in picks])[0]
        answer, total, cached = _ask(
            sim_engine.url, [system, *history, {"role": "user", "content": question}]
        )
        history += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        plain.append((total, cached))
    ours_ratio = sum(c for _, _, c in ours) / sum(t for _, t, _ in ours)
    plain_ratio = sum(c for _, c in plain) / sum(t for t, _ in plain)
    print(
        f"\nengine cached/prompt tokens, 3-question session: plain {plain_ratio:.3f}, ours {ours_ratio:.3f}"
    )
    assert ours_ratio > plain_ratio


def test_one_shot_answers_share_the_longest_prefix_at_the_engine(tmp_path, recorder, sim_engine):
    cpi = ContextPilotPageIndex(pilot=cp.ContextPilot())
    cpi.add_tree("hb", build_tree(tmp_path / "handbook.md", handbook_markdown()))
    flush_cache(sim_engine.url)
    (q1, p1), (q2, p2) = list(PICKS.items())[:2]
    m1 = cpi.messages(q1, [("hb", n) for n in p1])
    m2 = cpi.messages(q2, [("hb", n) for n in p2])
    _, t1, _ = _ask(sim_engine.url, m1)
    _, _, cached = _ask(sim_engine.url, m2)
    assert recorder.calls == [m1, m2]
    # the second prompt repeats the first's longest run of shared sections first
    first, second = m1[0]["content"], m2[0]["content"]
    o1 = sorted(p1, key=lambda n: first.index(f"[hb:{n}]"))
    run = 0
    while run < len(o1) and o1[run] in p2:
        run += 1
    assert run >= 1
    cut = first.index(f"[hb:{o1[run]}]") if run < len(o1) else len(first)
    assert second.startswith(first[:cut])
    assert cached > 0
