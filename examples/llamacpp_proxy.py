"""The llama.cpp proxy: eviction sync for llama-server.

llama-server has no in-engine hook, so ``python -m contextpilot.llamacpp.proxy``
sits in front of it, learns which slot served each request and what the
slot kept, and tells the contextpilot server (``POST /evict``) when a
request's cache was overwritten. The chain here::

    client -> contextpilot server -> llamacpp proxy -> llama-server

    python examples/llamacpp_proxy.py --llama-server http://127.0.0.1:8080   # a real llama-server (-np 1)
    python examples/llamacpp_proxy.py            # a small stand-in (python -m contextpilot.sim.llama_server)

The stand-in speaks llama-server's native protocol with one slot (the
simulated OpenAI engine does not speak it, so it cannot stand in here). Two
turns of one conversation share the slot (the proxy counts the reused
tokens); another conversation then takes the only slot, and the first
conversation's requests leave the server's live index. Exits 1 if not.
With a real llama-server run it with one slot (``-np 1``) and
``--cache-ram 0``, as the proxy's docs say.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

import httpx
from stack import check, contextpilot_server, free_port, start

FACTS = " ".join(f"fact {i} about the topic" for i in range(40))


def send(server: str, messages: list[dict[str, str]]) -> tuple[str, dict]:
    r = httpx.post(
        server + "/v1/chat/completions",
        json={"messages": messages, "max_tokens": 2, "temperature": 0},
        timeout=120,
    )
    r.raise_for_status()
    return r.headers["x-contextpilot-request-id"], r.json()


def live(server: str) -> set[str]:
    return set(httpx.get(server + "/requests", timeout=10).json()["request_ids"])


def wait_until_gone(server: str, ids: set[str], timeout: float = 30.0) -> set[str]:
    """The ids among ``ids`` still live once none is, or at the deadline
    (eviction notices are sent in the background)."""
    deadline = time.monotonic() + timeout
    while (still := live(server) & ids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return still


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-server", help="a running llama-server (default: start the stand-in)")
    args = ap.parse_args(argv)
    with contextlib.ExitStack() as stack:
        engine = args.llama_server
        if engine is None:
            engine = stack.enter_context(start("contextpilot.sim.llama_server", "--slots", "1"))
            print(f"llama-server stand-in (one slot) at {engine}")
        server_port = free_port()
        proxy = stack.enter_context(
            start(
                "contextpilot.llamacpp.proxy",
                env={"LLAMA_SERVER_URL": engine, "CONTEXTPILOT_INDEX_URL": f"http://127.0.0.1:{server_port}"},
                ready="/stats",
            )
        )
        server = stack.enter_context(contextpilot_server(proxy, port=server_port))
        print(f"llamacpp proxy at {proxy}, contextpilot server at {server}")

        system = {"role": "system", "content": "You answer about apples. " + FACTS}
        a, _ = send(server, [system, {"role": "user", "content": "first question"}])
        before = httpx.get(proxy + "/stats", timeout=10).json()
        b, _ = send(
            server,
            [
                system,
                {"role": "user", "content": "first question"},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": "second question"},
            ],
        )
        after = httpx.get(proxy + "/stats", timeout=10).json()
        reused = after["reuse"]["reused_tokens"] - before["reuse"]["reused_tokens"]
        print(f"turn 2 of conversation 1 ({b}): the slot reused {reused} tokens of turn 1 ({a})")
        check(reused > 0, "the second turn reused the first turn's tokens in the slot")
        check({a, b} <= live(server), "both turns are live in the server's index")

        c, _ = send(server, [{"role": "system", "content": "A different system prompt. " + FACTS},
                             {"role": "user", "content": "hello"}])  # fmt: skip
        still = wait_until_gone(server, {a, b})
        final = httpx.get(proxy + "/stats", timeout=10).json()
        print(
            f"conversation 2 ({c}) took the only slot: proxy reported "
            f"{final['evictions']['reported'] - after['evictions']['reported']} evictions; "
            f"conversation 1 still live in the index: {sorted(still) or 'none'}"
        )
        check(not still, "the overwritten requests left the server's live index")
        check(c in live(server), "the request now in the slot is live")
    print(
        "RESULT llamacpp_proxy: slot reuse counted, overwritten requests evicted from the index", flush=True
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
