"""Run by the *reference* ContextPilot 0.5.0 interpreter (not ours): drive a
server at ``argv[1]`` with the reference's own ``ContextPilotIndexClient``,
calling every method it names, and print each answer as JSON (``None`` when
the reference client swallowed an HTTP error). The test in this folder
checks the answers; this script asserts nothing itself."""

import json
import sys

from contextpilot.server.http_client import ContextPilotIndexClient

url = sys.argv[1]
c = ContextPilotIndexClient(url, timeout=60.0)
out = {"client_module": ContextPilotIndexClient.__module__}
out["reset"] = c.reset()
out["health_empty"] = c.health()
out["is_ready_empty"] = c.is_ready()
out["reorder_int"] = c.reorder([[1, 2, 3], [2, 3, 4], [1, 2, 5]])
out["reorder_str"] = c.reorder([["alpha doc", "beta doc"], ["beta doc", "gamma doc"]])
out["reorder_raw"] = c.reorder_raw([[7, 8, 9], [8, 9, 10]])
out["build"] = c.build([[11, 12], [12, 13]])
out["schedule"] = c.schedule([[1, 2], [2, 3]])
# the reference's multi-turn flow: None starts a conversation, a request id continues it
t1 = c.reorder_raw([["doc A text", "doc B text"]], deduplicate=True, parent_request_ids=[None])
out["dedup_turn1"] = t1
rid1 = t1["request_ids"][0] if t1 else None
t2 = c.deduplicate([["doc B text", "doc C text"]], parent_request_ids=[rid1])
out["dedup_turn2"] = t2
rid2 = t2["request_ids"][0] if t2 else None
out["dedup_turn3"] = c.reorder_raw(
    [["doc C text", "doc A text", "doc D text"]], deduplicate=True, parent_request_ids=[rid2]
)
out["dedup_other"] = c.reorder_raw([["doc A text"]], deduplicate=True, parent_request_ids=[None])
out["get_requests"] = c.get_requests()
out["get_stats"] = c.get_stats()
out["health"] = c.health()
out["is_ready"] = c.is_ready()
out["evict"] = c.evict([rid1] if rid1 else [])
out["search"] = c.search([1, 2, 3])
out["insert"] = c.insert([1, 2, 3], [0], 10)
out["update_node"] = c.update_node([0], 5)
json.dump(out, sys.stdout)
