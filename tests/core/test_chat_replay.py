"""Multi-turn replay scored with ``contextpilot.sim``: chat sessions against
fresh prompts per turn.

Each session asks its questions in order; sessions run interleaved (round
robin), as concurrent users would. Every prompt is rendered with the
simulated engine's chat template and tokeniser and served, in 16-token
pages, through ``contextpilot.sim.RadixCacheSim`` (LRU; a page is reused
only whole, after an identical prefix, as in vLLM). Layouts compared:

* fresh, retrieval order: ``[system + documents, question]`` per turn, no history;
* fresh, optimize: the same through ``ContextPilot.optimize`` (reordered);
* history, docs in system: what apps that keep the history usually send —
  this turn's documents in the system message, then the conversation, then
  the question (the documents change each turn, so the prefix breaks);
* chat session: ``ContextPilot.chat`` — the whole history, this turn's
  documents in its user message, repeats hinted.

The fresh layouts carry no history, so they send less; the fair figure is
the tokens the engine must compute. Always runs on a synthetic workload;
also on LoCoMo (Maharana et al., ACL 2024) when ``locomo10.json`` is found.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

import pytest

import contextpilot as cp
from contextpilot.sim import RadixCacheSim
from contextpilot.sim.engine import render_chat, tokenize

Turn = tuple[list[str], str, str]  # documents (most relevant first), question, answer
Prompt = list[dict[str, str]]
PAGE = 16


@dataclass
class Scored:
    #: hit ratio per cache capacity label
    hit: dict[str, float]
    sent: int
    #: prompt tokens the engine computes (not found in the cache), ∞ cache
    computed: int
    #: hit ratio of the k-th turn of each history (∞ cache)
    per_turn: list[float]


def interleave(sessions: list[list[Turn]]) -> list[tuple[int, int]]:
    """(session, turn) pairs, round robin over the sessions."""
    out = []
    for t in range(max(map(len, sessions))):
        out += [(s, t) for s in range(len(sessions)) if t < len(sessions[s])]
    return out


def replay(sessions: list[list[Turn]], max_turns: int) -> dict[str, list[tuple[int, Prompt]]]:
    """Prompts of each layout in serving order, with the turn's index in its history."""
    out: dict[str, list[tuple[int, Prompt]]] = {k: [] for k in ("retrieval", "optimize", "history", "chat")}
    fresh = cp.ContextPilot()
    chat_pilot = cp.ContextPilot()
    chats = [chat_pilot.chat(f"s{i}", max_turns=max_turns) for i in range(len(sessions))]
    histories: list[list[dict[str, str]]] = [[] for _ in sessions]
    for s, t in interleave(sessions):
        docs, q, a = sessions[s][t]
        k = t % max_turns
        out["retrieval"].append((k, cp.build_messages(docs, q)))
        out["optimize"].append((k, fresh.optimize(docs, q)))
        if k == 0:
            histories[s] = []
        system = cp.build_messages(docs, q)[0]
        out["history"].append((k, [system, *histories[s], {"role": "user", "content": q}]))
        histories[s] += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        out["chat"].append((k, chats[s].messages(docs, q)))
        chats[s].reply(a)
    return out


def pages(tokens: list[str]) -> tuple[list[tuple[str, ...]], list[int]]:
    """A prompt as 16-token pages (keys) and their sizes, as a paged KV cache
    (vLLM) holds it: a page is reused only whole, after an identical prefix."""
    keys = [tuple(tokens[i : i + PAGE]) for i in range(0, len(tokens), PAGE)]
    return keys, [len(k) for k in keys]


def score(turns: list[int], tokens: list[list[str]], capacities: dict[str, float | None]) -> Scored:
    sims = {label: RadixCacheSim(cap) for label, cap in capacities.items()}
    hits: dict[int, list[tuple[int, int]]] = {}
    for k, tk in zip(turns, tokens):
        keys, w = pages(tk)
        got = {label: sim.serve(keys, w) for label, sim in sims.items()}
        hits.setdefault(k, []).append((got["inf"], len(tk)))
    per_turn = [sum(h for h, _ in hits[k]) / sum(n for _, n in hits[k]) for k in sorted(hits)]
    inf = sims["inf"]
    return Scored(
        {label: sim.hit_ratio for label, sim in sims.items()},
        inf.total_tokens,
        inf.total_tokens - inf.hit_tokens,
        per_turn,
    )


def check(sessions: list[list[Turn]], name: str, max_turns: int) -> dict[str, Scored]:
    prompts = replay(sessions, max_turns)
    tokens = {k: [tokenize(render_chat(p)) for _, p in v] for k, v in prompts.items()}
    fresh = [len(t) for t in tokens["retrieval"]]
    # the cache it takes to keep every session's whole history at once (its longest prompt)
    longest: dict[int, int] = {}
    for (s, _), tk in zip(interleave(sessions), tokens["chat"]):
        longest[s] = max(longest.get(s, 0), len(tk))
    capacities = {
        "inf": None,
        "all histories": float(sum(longest.values())),
        "32x fresh": 32 * sum(fresh) / len(fresh),
    }
    res = {k: score([t for t, _ in v], tokens[k], capacities) for k, v in prompts.items()}
    caps = " / ".join(f"{k} ({v:.0f} tokens)" if v else k for k, v in capacities.items())
    lines = [f"\n{name}: {len(sessions)} sessions, {len(fresh)} turns, max_turns {max_turns}; cache {caps}"]
    for k, r in res.items():
        hit = " / ".join(f"{x:.3f}" for x in r.hit.values())
        turns = " ".join(f"{x:.2f}" for x in r.per_turn[:8])
        lines.append(
            f"  {k:9s} hit {hit}; tokens sent {r.sent}, computed {r.computed}; hit by turn 1-8 (inf): {turns}"
        )
    print("\n".join(lines))

    chat, hist = res["chat"], res["history"]
    # every chat prompt holds its whole history: it starts with its session's
    # previous prompt token for token, so an unbounded cache must hit at least
    # that prompt's whole pages (the baseline, per turn); the hit ratio climbs
    reused: dict[int, list[int]] = {}
    prev: dict[int, list[str]] = {}
    for (s, _), (k, _), tk in zip(interleave(sessions), prompts["chat"], tokens["chat"]):
        if k:
            assert tk[: len(prev[s])] == prev[s], (s, k)
            got = reused.setdefault(k, [0, 0])
            got[0] += len(prev[s]) // PAGE * PAGE
            got[1] += len(tk)
        prev[s] = tk
    floor = {k: r / n for k, (r, n) in reused.items()}
    print("  chat reuse floor by turn 2-8:", " ".join(f"{floor[k]:.2f}" for k in sorted(floor)[:7]))
    assert all(chat.per_turn[k] >= floor[k] for k in floor), (chat.per_turn, floor)
    assert all(b > a for a, b in zip(chat.per_turn[1:6], chat.per_turn[2:7]))
    # by the last turn the history is most of the prompt: hit far above any other layout's
    assert chat.per_turn[-1] > max(r.per_turn[-1] for k, r in res.items() if k != "chat")
    # against keeping the history with this turn's documents in the system message
    for cap in ("inf", "all histories"):
        assert chat.hit[cap] > hist.hit[cap] + 0.3, cap
    assert chat.computed < 0.8 * hist.computed
    # the fresh optimize order shares more than the retrieval order (sanity of the setup)
    assert res["optimize"].hit["inf"] > res["retrieval"].hit["inf"]
    return res


def synthetic_sessions(n_sessions: int = 12, turns: int = 16, seed: int = 3) -> list[list[Turn]]:
    """Each session keeps to one topic (20 documents of ~60 words); each
    turn retrieves 6 documents, favouring the topic's popular ones."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(3000)]
    sessions = []
    for s in range(n_sessions):
        topic = [f"Topic {s % 6} note {j}: " + " ".join(rng.choices(words, k=60)) + "." for j in range(20)]
        weights = [1 / (j + 1) for j in range(20)]
        conv = []
        for t in range(turns):
            docs: list[str] = []
            while len(docs) < 6:
                d = rng.choices(topic, weights)[0]
                if d not in docs:
                    docs.append(d)
            answer = " ".join(rng.choices(words, k=rng.randrange(5, 25)))
            conv.append((docs, f"Session {s} question {t}: {' '.join(rng.choices(words, k=8))}?", answer))
        sessions.append(conv)
    return sessions


def test_synthetic_sessions():
    check(synthetic_sessions(), "synthetic", max_turns=64)


def locomo_sessions(path, conversations: int = 3, per_session: int = 20) -> list[list[Turn]]:
    """LoCoMo questions of the first conversations in order, BM25 top-10 of
    the conversation's observation memories each, gold answers as the
    model's answers, cut into sessions of ``per_session`` questions."""
    from contextpilot.bench.workloads import locomo_mem

    wl = locomo_mem(path, k=10)
    data = json.loads(open(path, encoding="utf-8").read())
    answers: dict[int, list[str]] = {}
    for c, sample in enumerate(data):
        answers[c] = [str(q.get("answer", q.get("adversarial_answer", ""))) for q in sample.get("qa", [])]
    sessions: list[list[Turn]] = []
    seen: dict[int, int] = {}
    for docs, q, c in zip(wl.contexts, wl.queries, wl.groups):
        if c >= conversations:
            continue
        i = seen[c] = seen.get(c, -1) + 1
        if i % per_session == 0:
            sessions.append([])
        sessions[-1].append(([str(d) for d in docs], q, answers[c][i] or "I don't know."))
    return sessions


@pytest.mark.locomo
def test_locomo_sessions(locomo_path):
    sessions = locomo_sessions(locomo_path)
    check(sessions, "LoCoMo memories (conversations 0-2)", max_turns=64)


def test_restarts_cost_little() -> None:
    # a short max_turns restarts often; the first turn after a restart is
    # computed again (its hit no better than a fresh prompt's, below every
    # later turn's), yet the session still computes fewer tokens than fresh prompts
    res = check(synthetic_sessions(n_sessions=4, turns=24), "synthetic, restart every 8 turns", max_turns=8)
    chat, fresh = res["chat"], (res["retrieval"], res["optimize"])
    assert chat.per_turn[0] <= max(f.per_turn[0] for f in fresh)
    assert chat.per_turn[0] < min(chat.per_turn[1:])
    assert chat.computed < min(f.computed for f in fresh)
