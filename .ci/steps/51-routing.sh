#!/usr/bin/env bash
# Cache-aware routing across engine replicas, on real processes: several
# sim_engine replicas + a contextpilot server on 127.0.0.1 (routing flags by
# effect; multi-turn chat and LoCoMo online replays, cache-aware vs
# round-robin), then the in-process routing benchmark at small scale.
set -euo pipefail
PY="${CP_PYTHON:-python}"
t0=$SECONDS
echo "routing: multi-process tests (tests/server/test_routing_server.py, tests/server/test_routing_replay.py)"
if [ -z "${CONTEXTPILOT_LOCOMO:-}" ] && ! "$PY" -c 'import sys; from contextpilot.bench.workloads import default_locomo_path as p; sys.exit(p() is None)'; then
  echo "routing: LoCoMo data not found: the LoCoMo replay is skipped (set CONTEXTPILOT_LOCOMO to run it)"
fi
CONTEXTPILOT_ROUTING_TESTS=1 "$PY" -m pytest -q -rs -s tests/server/test_routing_server.py tests/server/test_routing_replay.py
echo "routing: benchmark, quick (python -m contextpilot.bench --routing-replicas 4 --quick)"
"$PY" -m contextpilot.bench --routing-replicas 4 --quick --out .ci-bench/routing
echo "routing: done in $((SECONDS - t0)) s"
