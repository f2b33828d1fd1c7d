"""Chat sessions over HTTP: the server keeps each conversation's history.

    python examples/chat_sessions.py               # starts the simulated engine and the server
    python examples/chat_sessions.py --server URL  # a contextpilot server in front of an engine

Creates a session with a system prompt (warmed on the engine at once), runs
three turns through it with the client (each sends only this turn's
documents and question; the server sends the whole history to the engine),
lists it, deletes it. Prints the engine's cached-token figures per turn:
each turn's prompt starts with the previous one, so almost all of it comes
from the cache. Exits 1 if that does not show.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import uuid

from stack import check, contextpilot_server, sim_engine

from contextpilot.client import ContextPilotHTTPError, ContextPilotIndexClient

SYSTEM = (
    "You are the support assistant of a bicycle shop. Answer from the documents in the user's "
    "messages; documents already given earlier are referred to by their label. "
) * 4
DOCS = {
    "warranty": "Frames carry a five-year warranty; components one year from purchase. " * 6,
    "repairs": "Repairs are booked online; a standard service takes two working days. " * 6,
    "returns": "Unused items can be returned within 30 days with the receipt. " * 6,
}
TURNS = [
    (["warranty", "repairs"], "Is a cracked frame covered?"),
    (["warranty", "returns"], "Can I return a saddle I have not used?"),
    (["repairs"], "How long does a service take?"),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", help="a running contextpilot server (default: start one with the sim engine)")
    args = ap.parse_args(argv)
    with contextlib.ExitStack() as stack:
        server = args.server
        if server is None:
            server = stack.enter_context(contextpilot_server(stack.enter_context(sim_engine())))
        client = stack.enter_context(ContextPilotIndexClient(server, timeout=60))
        sid = f"shop-{uuid.uuid4().hex[:8]}"

        made = client.create_chat_session(SYSTEM, session_id=sid, max_turns=16)
        warmed = made["warmed"]
        print(f"created {sid}: system prompt warmed, {warmed['prompt_tokens']} prompt tokens now cached")
        check(made["created"] and warmed["prompt_tokens"] > 0, "the system prompt was warmed on the engine")

        results = []
        for names, query in TURNS:
            r = client.chat_turn(sid, query, docs=[DOCS[n] for n in names], max_tokens=8)
            results.append(r)
            print(
                f"turn {r['turn']}: {query!r} with {names}: sent {r['messages_sent']} messages, "
                f"engine cached {r['cached_tokens']}/{r['prompt_tokens']} prompt tokens"
            )
        first, *later = results
        check(first["cached_tokens"] > 0, "turn 1 reused the warmed system prompt")
        for prev, r in zip(results, later):
            check(
                r["cached_tokens"] >= prev["prompt_tokens"] - 2,
                f"turn {r['turn']} found turn {prev['turn']}'s whole prompt cached "
                f"({r['cached_tokens']} >= {prev['prompt_tokens']} - 2)",
            )

        history = client.chat_session(sid)["history"]
        repeated = DOCS["warranty"] not in history[2]["content"]
        print(f"the server holds {len(history)} messages; turn 2 refers to the warranty text of turn 1")
        check(repeated and DOCS["returns"] in history[2]["content"], "a repeated document was sent once only")

        listed = [s["session_id"] for s in client.chat_sessions()["sessions"]]
        check(sid in listed, f"GET /chat/sessions lists {sid}")
        client.delete_chat_session(sid)
        try:
            client.chat_session(sid)
            gone = False
        except ContextPilotHTTPError as e:
            gone = e.status == 404
        check(gone, "after DELETE the session answers 404")
    print("RESULT chat_sessions: each turn's prompt is served from cache up to the previous turn", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
