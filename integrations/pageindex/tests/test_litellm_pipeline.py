"""PageIndex's pipeline end to end, offline: ``md_to_tree`` builds the tree,
the tree search and answer calls go through litellm (PageIndex's LLM layer).
The tree search is answered by litellm's ``mock_response`` (what a model
would pick); the answers go over HTTP to contextpilot's simulated
OpenAI-compatible engine (a separate process with a token-level prefix
cache), which reports ``usage.prompt_tokens_details.cached_tokens``.
A litellm callback records exactly what each model call received."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import litellm
import pytest
from _support import build_tree, handbook_markdown
from contextpilot_pageindex import DEFAULT_SYSTEM, ContextPilotPageIndex, parse_node_list
from litellm.integrations.custom_logger import CustomLogger

import contextpilot as cp
from contextpilot.server.sim_engine import render_chat, tokenize

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
from procs import engine  # noqa: E402  (the repository's process helper)

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


@pytest.fixture(scope="module")
def sim_engine():
    with engine() as proc:
        yield proc


def _ask(url: str, messages: list[dict]) -> tuple[str, int, int]:
    r = litellm.completion(
        model="openai/sim-engine", api_base=f"{url}/v1", api_key="sk-local", messages=messages
    )
    return r.choices[0].message.content, r.usage.prompt_tokens, r.usage.prompt_tokens_details.cached_tokens


def _flush(url: str) -> None:
    import httpx

    httpx.post(f"{url}/flush_cache", timeout=5).raise_for_status()


def test_pipeline_model_sees_contextpilot_order_and_dedup(tmp_path, recorder, sim_engine):
    cpi = ContextPilotPageIndex(cp.ContextPilot())
    cpi.add_tree("hb", build_tree(tmp_path / "handbook.md", handbook_markdown()))
    chat = cpi.chat("employee-7")
    ours = []
    _flush(sim_engine.url)
    for question, picks in PICKS.items():
        search = cpi.tree_search_messages(question)
        picked = litellm.completion(
            model="gpt-4o-mini",
            messages=search,
            mock_response=json.dumps({"thinking": "leave chapter", "node_list": [f"hb:{n}" for n in picks]}),
        )
        refs = parse_node_list(picked.choices[0].message.content)
        messages = chat.messages(question, refs)
        answer, total, cached = _ask(sim_engine.url, messages)
        chat.reply(answer)
        ours.append((messages, total, cached))

    # the recorder saw: tree search, answer, tree search, answer, ...
    assert len(recorder.calls) == 2 * len(PICKS)
    searches, answers = recorder.calls[0::2], recorder.calls[1::2]
    assert all(s[0] == searches[0][0] for s in searches)  # the trees: one shared system message
    assert [a for a in answers] == [m for m, _, _ in ours]  # the model got exactly our messages
    second = answers[1][-1]["content"]
    annual = cpi.select([("hb", "0006")]).blocks[0]
    assert annual not in second and "appeared earlier in this conversation" in second  # dedup
    assert cpi.select([("hb", "0008")]).blocks[0] in second
    # each answer call finds the whole previous prompt in the engine's cache
    for (_, prev_total, _), (_, _, cached) in zip(ours, ours[1:]):
        assert cached >= prev_total

    # the same calls in retrieval order and plain history, for comparison
    _flush(sim_engine.url)
    history: list[dict] = []
    plain = []
    for question, picks in PICKS.items():
        blocks = cpi.select([("hb", n) for n in picks]).blocks
        system = cp.build_messages(blocks, question, system_instruction=DEFAULT_SYSTEM)[0]
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
    cpi = ContextPilotPageIndex(cp.ContextPilot())
    cpi.add_tree("hb", build_tree(tmp_path / "handbook.md", handbook_markdown()))
    _flush(sim_engine.url)
    (q1, p1), (q2, p2) = list(PICKS.items())[:2]
    m1 = cpi.messages(q1, [("hb", n) for n in p1])
    m2 = cpi.messages(q2, [("hb", n) for n in p2])
    _ask(sim_engine.url, m1)
    _, _, cached = _ask(sim_engine.url, m2)
    assert recorder.calls == [m1, m2]
    # the longest run of the first prompt's sections that the second also has
    # (0005 is only in the first): the second prompt must repeat it first
    first = m1[0]["content"]
    order1 = sorted(cpi.select([("hb", n) for n in p1]).blocks, key=first.index)
    wanted = set(cpi.select([("hb", n) for n in p2]).blocks)
    run = []
    for b in order1:
        if b not in wanted:
            break
        run.append(b)
    assert run
    head = cp.build_messages(run, q2, system_instruction=DEFAULT_SYSTEM)[0]["content"]
    assert first.startswith(head) and m2[0]["content"].startswith(head)
    # and the engine found at least those tokens cached
    assert cached >= len(
        tokenize(render_chat([{"role": "system", "content": head}]).split("\n<assistant>")[0])
    )
