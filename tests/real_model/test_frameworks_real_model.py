"""LangChain, LlamaIndex and mem0 on a real model, through the product path.

Model and engine: Gemma 3 270M base, Q4_K_M (``contextpilot.bench.real_models``,
``gemma3-270m``), on the llama-server that ``scripts/build_llama_server.sh``
builds, started as ``-c 4096 -np 1 -t 2 --cache-ram 0 --swa-full``. Gemma 3
uses sliding-window attention; without ``--swa-full`` llama.cpp reuses no
partial prefix at all, so the test checks the server's log says so.

Path: framework -> contextpilot server's OpenAI proxy (``/v1/chat/completions``
or ``/v1/completions``) -> the llama.cpp slot-tracking proxy
(``python -m contextpilot.llamacpp.proxy``, default ``llama3`` chat
rendering: the base model has no chat training, so any fixed template is
plain text to it; what prefix reuse needs is a deterministic rendering with
the retrieved text before the question) -> llama-server. The proxy reports
the slot's overwritten requests to the server's live index.

Workload: the first three sessions' observation memories of LoCoMo
conversation 0 (28 short facts), a hashed bag-of-words embedder, top-6, and
the first four questions about Caroline answered from those sessions (related
questions: their retrieved memories overlap). Greedy answers of at most 8
tokens. Questions are asked one at a time, each once the eviction notices of
the previous answer reached the index (as a user's next question would; the
notices are batched every 50 ms off the request path).

Each framework answers the questions twice, each time on a freshly started
llama-server and product path: in its plain retrieval order (no contextpilot
plugin) and with the plugin (LangChain ``ContextPilotReorder`` and LlamaIndex
``ContextPilotNodePostprocessor`` planning on the server, ``server_url``; the
mem0 ``ContextPilotReranker`` in server mode). Asserted, on
figures the engine reports (``timings.cache_n``, summed per request by the
llama.cpp proxy's ``GET /stats`` ``reuse``), never on times:

* with the plugin every question after the first reuses cached tokens, and
  the questions together reuse more tokens than in the plain order on the
  same questions;
* the framework's own view of the answer (``cached_tokens`` in the usage the
  proxy relays) matches the proxy's per-request figure where the framework
  exposes it (LangChain, mem0's OpenAI client);
* a request the engine evicted is gone from the server's index: with one
  slot each question overwrites the previous one's prompt, so after the run
  only the last request id is live (the plugin's own id, carried to the
  engine as ``rid``). For mem0 that is the server's index, which recorded the
  wrapper's id when the request passed its proxy; the wrapper's own local
  pilot is not told (it has no server mode on main).

Skips, with the reason, when llama-server, the model, LoCoMo or a framework
is missing; with ``CONTEXTPILOT_REAL_MODEL_TESTS=1`` (CI step
``.ci/steps/33-real-model-frameworks.sh``) it builds/fetches what it can and
fails instead of skipping.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from contextpilot.bench.engine import LlamaServer
from contextpilot.bench.llama_client import get_json, swa_status
from contextpilot.bench.product_path import ProductPath
from contextpilot.bench.real_models import model_spec
from contextpilot.bench.workloads import default_locomo_path, observation_facts
from contextpilot.core.ids import normalize_request_id

from support.embedding import llamaindex_embedding, mem0_embedder, word_vector
from support.llamacpp_chain import real_model_files
from support.locomo import locomo_sample

pytestmark = pytest.mark.real_model

REQUIRED = os.environ.get("CONTEXTPILOT_REAL_MODEL_TESTS") == "1"
MODEL = "gemma3-270m"
CTX = 4096
TOP_K = 6
ANSWER_TOKENS = 8
N_QUESTIONS = 4
SESSIONS = 3
SYSTEM = "Answer the question from these notes."
DIMS = 256
MEM0_USER = {"user_id": "caroline"}


def _skip_or_fail(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"CONTEXTPILOT_REAL_MODEL_TESTS=1 but {reason}")
    pytest.skip(f"REAL-MODEL FRAMEWORK TEST NOT RUN: {reason}")


def _need(*modules: str) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as e:
            _skip_or_fail(
                f"{name} is not importable ({e}); .ci/steps/33-real-model-frameworks.sh builds a venv with it"
            )


# -- fixtures --------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    memories: list[str]
    questions: list[str]


@pytest.fixture(scope="module")
def workload() -> Workload:
    path = default_locomo_path()
    if path is None:
        _skip_or_fail("LoCoMo data not found (../shared/data/locomo10.json or $CONTEXTPILOT_LOCOMO)")
    sample = locomo_sample(path, 0)
    memories = observation_facts(sample, SESSIONS)

    def in_sessions(q: dict) -> bool:
        ev = q.get("evidence") or []
        nums = [re.match(r"D(\d+):", e) for e in ev]
        return bool(ev) and all(m is not None and int(m.group(1)) <= SESSIONS for m in nums)

    questions = [
        str(q["question"])
        for q in sample["qa"]
        if q.get("category") != 5 and "Caroline" in q["question"] and in_sessions(q)
    ][:N_QUESTIONS]
    assert len(questions) == N_QUESTIONS, questions
    return Workload(memories, questions)


@pytest.fixture(scope="module")
def engine_files() -> tuple[Path, Path, tuple[str, ...]]:
    binary, model = real_model_files(MODEL, required_by="CONTEXTPILOT_REAL_MODEL_TESTS")
    return binary, model, model_spec(MODEL).flags


@contextlib.contextmanager
def _stack(files: tuple[Path, Path, tuple[str, ...]], workdir: Path) -> Iterator[ProductPath]:
    """A fresh llama-server (empty cache) behind a fresh product path."""
    binary, model, flags = files
    workdir.mkdir(parents=True, exist_ok=True)
    with LlamaServer(binary, model, ctx=CTX, parallel=1, extra=flags) as engine:
        swa = swa_status(engine)
        assert not swa["sliding_window"] or swa["swa_full"], f"no partial-prefix reuse possible: {swa}"
        with ProductPath(engine.url, workdir) as path:
            yield path


# -- shared pieces -------------------------------------------------------------------


#: function words carry no topic: without them related questions retrieve overlapping memories
STOP_WORDS = frozenset(
    "a an the and or of to in on at for with from by about as is are was were be been has have had do does "
    "did what when where who whom which why how would could should will can her his she he their they them "
    "it its this that these those into than then there not no yes if so".split()
)


def _hash_vector(text: str) -> list[float]:
    """The shared offline embedder on content words (unit length, deterministic)."""
    return word_vector(text, DIMS, STOP_WORDS)


@dataclass
class Answer:
    text: str
    #: the plugin's request id, sent to the engine as ``rid`` (None: plain order)
    rid: str | None
    #: cached tokens as the framework saw them in the answer's usage (None: not exposed)
    cached: int | None


@dataclass
class Run:
    cached: list[int] = field(default_factory=list)  # engine cache_n per question
    prompt: list[int] = field(default_factory=list)  # prompt tokens per question
    answers: list[Answer] = field(default_factory=list)
    live: set[str] = field(default_factory=set)  # the server's live request ids after the run
    evictions: int = 0  # ids the llama.cpp proxy reported evicted

    @property
    def total(self) -> int:
        return sum(self.cached)


Ask = Callable[[str], Answer]
Builder = Callable[[str, Workload, bool, contextlib.ExitStack, Path], Ask]


def _delivered(path: ProductPath, timeout: float = 15.0) -> dict[str, Any]:
    """The llama.cpp proxy's stats once every eviction notice it queued has
    been delivered to the index (or given up on): notices are batched off
    the request path (``flush_interval`` 50 ms), so a client that asks its
    next question within milliseconds of an answer may be planned before the
    notice lands. The test asks like a user does: after the notices landed."""
    deadline = time.monotonic() + timeout
    while True:
        st = get_json(path.proxy_url + "/stats")
        n = st["evictions"]["notifier"] or {}
        done = sum(int(n.get(k, 0)) for k in ("sent", "failed", "rejected", "dropped_full"))
        if (not n.get("pending") and done >= int(n.get("queued", 0))) or time.monotonic() > deadline:
            return st
        time.sleep(0.05)


def _measure(path: ProductPath, ask: Ask, questions: list[str]) -> Run:
    run = Run()
    for q in questions:
        before = _delivered(path)["reuse"]
        run.answers.append(ask(q))
        after = get_json(path.proxy_url + "/stats")["reuse"]  # updated before the answer is returned
        run.cached.append(after["reused_tokens"] - before["reused_tokens"])
        run.prompt.append(after["prompt_tokens"] - before["prompt_tokens"])
    st = _delivered(path)
    run.evictions = int(st["evictions"]["reported"])
    run.live = set(get_json(path.url + "/requests?limit=100000")["request_ids"])
    return run


# -- the frameworks ------------------------------------------------------------------


def _langchain(url: str, wl: Workload, plugin: bool, stack: contextlib.ExitStack, tmp: Path) -> Ask:
    """retriever (| ContextPilotReorder) -> prompt -> ChatOpenAI at our proxy."""
    from langchain_contextpilot import REQUEST_KEY, ContextPilotReorder
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnableLambda, RunnableParallel, RunnablePassthrough
    from langchain_core.vectorstores import InMemoryVectorStore
    from langchain_openai import ChatOpenAI

    class HashEmbeddings(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [_hash_vector(t) for t in texts]

        def embed_query(self, text: str) -> list[float]:
            return _hash_vector(text)

    store = InMemoryVectorStore(HashEmbeddings())
    store.add_documents([Document(m, id=f"m{i}") for i, m in enumerate(wl.memories)])
    retriever = store.as_retriever(search_kwargs={"k": TOP_K})
    docs = retriever | ContextPilotReorder(server_url=url) if plugin else retriever
    llm = ChatOpenAI(
        base_url=url + "/v1",
        api_key="sk-local",
        model=MODEL,
        max_tokens=ANSWER_TOKENS,
        temperature=0,
        max_retries=0,
    )
    prompt = ChatPromptTemplate.from_messages([("system", SYSTEM + "\n\n{context}"), ("human", "{question}")])

    def answer(x: dict[str, Any]) -> Answer:
        rid = x["docs"][0].metadata.get(REQUEST_KEY) if x["docs"] else None
        # the plugin's id goes to the engine, so its eviction notice names what the index holds
        model = llm.bind(extra_body={"rid": rid}) if rid else llm
        context = "\n\n".join(d.page_content for d in x["docs"])
        msg = (prompt | model).invoke({"context": context, "question": x["question"]})
        details = (msg.usage_metadata or {}).get("input_token_details") or {}
        return Answer(str(msg.content), rid, details.get("cache_read"))

    chain = RunnableParallel(docs=docs, question=RunnablePassthrough()) | RunnableLambda(answer)
    return chain.invoke


def _llamaindex(url: str, wl: Workload, plugin: bool, stack: contextlib.ExitStack, tmp: Path) -> Ask:
    """VectorStoreIndex query engine (node_postprocessors=[ContextPilotNodePostprocessor])
    with OpenAILike (completions API) at our proxy."""
    from llama_index.core import VectorStoreIndex
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
    from llama_index.llms.openai_like import OpenAILike
    from llama_index.postprocessor.contextpilot import REQUEST_KEY, ContextPilotNodePostprocessor

    class RequestIdToLLM(BaseNodePostprocessor):
        """Glue the query engine lacks: hands the plugin's request id to the
        LLM call (as ``rid``), so the engine's eviction notice names it."""

        llm: Any

        def _postprocess_nodes(
            self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
        ) -> list[NodeWithScore]:
            rid = nodes[0].node.metadata.get(REQUEST_KEY) if nodes else None
            self.llm.additional_kwargs["extra_body"] = {"rid": rid} if rid else {}
            return nodes

    index = VectorStoreIndex(
        [TextNode(text=m, id_=f"m{i}") for i, m in enumerate(wl.memories)],
        embed_model=llamaindex_embedding(DIMS, STOP_WORDS),
    )
    llm = OpenAILike(
        model=MODEL,
        api_base=url + "/v1",
        api_key="sk-local",
        is_chat_model=False,
        context_window=CTX,
        max_tokens=ANSWER_TOKENS,
        temperature=0.0,
        max_retries=0,
    )
    post: list[BaseNodePostprocessor] = []
    if plugin:
        cp_post = ContextPilotNodePostprocessor(server_url=url)
        stack.callback(cp_post.close)
        post = [cp_post, RequestIdToLLM(llm=llm)]
    engine = index.as_query_engine(llm=llm, similarity_top_k=TOP_K, node_postprocessors=post)

    def ask(q: str) -> Answer:
        r = engine.query(q)
        rid = r.source_nodes[0].node.metadata.get(REQUEST_KEY) if r.source_nodes else None
        return Answer(str(r), rid, None)

    return ask


def _mem0(url: str, wl: Workload, plugin: bool, stack: contextlib.ExitStack, tmp: Path) -> Ask:
    """mem0 Memory (embedded qdrant, infer=False) -> search -> the plugin's
    ContextPilotReranker (server mode: it plans on the contextpilot server,
    whose index the engine's evictions reach) -> memory_messages -> the
    openai client at our proxy; plain: mem0's search order."""
    import openai
    from contextpilot_mem0 import REQUEST_KEY, ContextPilotReranker, memory_messages
    from mem0 import Memory
    from mem0.llms.base import LLMBase

    class NoCallLLM(LLMBase):
        def generate_response(self, messages: Any, response_format: Any = None, tools: Any = None,
                              tool_choice: str = "auto", **kw: Any) -> str:  # fmt: skip
            raise AssertionError("mem0 called its LLM although every add used infer=False")

    cfg = {
        "vector_store": {
            "provider": "qdrant",
            "config": {
                "path": str(tmp / "qdrant"),
                "collection_name": "memories",
                "embedding_model_dims": DIMS,
                "on_disk": False,
            },
        },
        # the openai clients are built with a key, never called (embedder and LLM replaced below)
        "llm": {"provider": "openai", "config": {"api_key": "sk-offline"}},
        "embedder": {"provider": "openai", "config": {"api_key": "sk-offline", "embedding_dims": DIMS}},
        "history_db_path": str(tmp / "history.db"),
    }
    memory = Memory.from_config(cfg)
    stack.callback(memory.close)
    stack.callback(memory.vector_store.client.close)
    memory.embedding_model = mem0_embedder(DIMS, STOP_WORDS)
    memory.llm = NoCallLLM()
    memory.add([{"role": "user", "content": m} for m in wl.memories], **MEM0_USER, infer=False)
    reranker = ContextPilotReranker(server_url=url)
    client = openai.OpenAI(base_url=url + "/v1", api_key="sk-local", max_retries=0)
    stack.callback(client.close)

    def ask(q: str) -> Answer:
        items = memory.search(q, filters=MEM0_USER, top_k=TOP_K, threshold=0.0)["results"]
        rid = None
        if plugin:
            items = reranker.rerank(q, items)
            rid = items[0].get(REQUEST_KEY) if items else None
        r = client.chat.completions.create(
            model=MODEL,
            messages=memory_messages(q, items, system_instruction=SYSTEM),
            max_tokens=ANSWER_TOKENS,
            temperature=0,
            extra_body={"rid": rid} if rid else None,
        )
        details = r.usage.prompt_tokens_details if r.usage else None
        return Answer(r.choices[0].message.content or "", rid, details.cached_tokens if details else None)

    return ask


FRAMEWORKS: dict[str, tuple[tuple[str, ...], Builder]] = {
    "langchain": (("langchain_core", "langchain_openai", "langchain_contextpilot"), _langchain),
    "llamaindex": (
        ("llama_index.core", "llama_index.llms.openai_like", "llama_index.postprocessor.contextpilot"),
        _llamaindex,
    ),
    "mem0": (("mem0", "openai", "contextpilot_mem0"), _mem0),
}


@pytest.fixture(scope="module", params=list(FRAMEWORKS))
def framework(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A framework whose packages import (checked before any engine is built or fetched)."""
    with pytest.MonkeyPatch.context() as mp:
        # read by mem0 at import: no telemetry, nothing written under ~/.mem0
        mp.setenv("MEM0_TELEMETRY", "False")
        mp.setenv("MEM0_DIR", str(tmp_path_factory.mktemp("mem0-home")))
        _need(*FRAMEWORKS[request.param][0])
        yield request.param


def test_plugin_raises_engine_reuse_and_evictions_reach_the_index(
    framework: str,
    workload: Workload,
    engine_files: tuple[Path, Path, tuple[str, ...]],
    tmp_path: Path,
) -> None:
    build = FRAMEWORKS[framework][1]
    runs: dict[bool, Run] = {}
    for plugin in (False, True):
        work = tmp_path / ("plugin" if plugin else "plain")
        with _stack(engine_files, work) as path, contextlib.ExitStack() as stack:
            runs[plugin] = _measure(path, build(path.url, workload, plugin, stack, work), workload.questions)
    plain, ours = runs[False], runs[True]
    print(
        f"\n{framework}: engine cache_n over {len(workload.questions)} questions "
        f"(Gemma 3 270M, llama-server --swa-full, top-{TOP_K} of {len(workload.memories)} LoCoMo memories): "
        f"plain order {plain.total} of {sum(plain.prompt)} prompt tokens {plain.cached}, "
        f"with the plugin {ours.total} of {sum(ours.prompt)} {ours.cached}; "
        f"evictions reported {ours.evictions}; answers {[a.text for a in ours.answers]}"
    )

    for run in (plain, ours):
        assert all(isinstance(a.text, str) for a in run.answers)
        assert all(p > 0 for p in run.prompt), run.prompt  # every question reached the engine
        # the framework's own usage figure is the engine's cache_n, relayed
        for a, c in zip(run.answers, run.cached):
            assert a.cached is None or a.cached == c, (a.cached, c)
    assert any(a.text.strip() for a in ours.answers), "the model produced no text at all"

    # reuse rises question after question, and beats the framework's plain order
    assert all(c > 0 for c in ours.cached[1:]), ours.cached
    assert ours.total > plain.total, (ours.cached, plain.cached)

    # evictions: each question overwrote the previous one's prompt in the single slot
    rids = [a.rid for a in ours.answers]
    assert all(rids), f"the plugin gave no request id: {rids}"
    ids = [normalize_request_id(r) for r in rids]
    assert len(set(ids)) == len(ids)
    assert ours.evictions >= len(ids) - 1
    assert not (ours.live & set(ids[:-1])), f"evicted requests still in the index: {ours.live & set(ids)}"
    assert ids[-1] in ours.live, "the request the engine still holds left the index"
