#!/usr/bin/env bash
# Reliability suite:
#  1. schema fuzzing: schemathesis (own virtualenv, pinned, so its
#     dependencies never meet the project's) against a real server process
#     in front of the simulated engine, with an API key and small limits so
#     the limit paths are exercised; checks: no 5xx, every status, content
#     type, header and body as the OpenAPI schema says, invalid input
#     rejected, auth enforced. Time-boxed (FUZZ_SECONDS, default 120 s).
#  2. the concurrency stress at full size (8 threads x 2,500 calls in-process,
#     8 x 625 over HTTP).
# Run from the repository root; $CP_PYTHON is the project's venv python.
set -euo pipefail
PY="${CP_PYTHON:-python3}"
VENV="$PWD/.ci-venvs/schemathesis"
ST_VERSION=4.32.5
FUZZ_SECONDS="${FUZZ_SECONDS:-120}"
FUZZ_SEED="${FUZZ_SEED:-20240601}"

if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$ST_VERSION"; then
  echo "--- installing schemathesis $ST_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q "schemathesis==$ST_VERSION"
fi

.ci/component schemathesis "$("$VENV/bin/schemathesis" --version | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -1)"

ports=($("$PY" - <<'PYEOF'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
PYEOF
))
ENGINE_PORT=${ports[0]}
SERVER_PORT=${ports[1]}
KEY="fuzz-key-$RANDOM$RANDOM"
LOGDIR=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]+"${pids[@]}"}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]+"${pids[@]}"}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

"$PY" -m contextpilot.server.sim_engine --port "$ENGINE_PORT" >"$LOGDIR/engine.log" 2>&1 &
pids+=($!)
"$PY" -m contextpilot.server.http_server --port "$SERVER_PORT" \
  --infer-api-url "http://127.0.0.1:$ENGINE_PORT" --api-key "$KEY" \
  --ttl 600 --max-contexts 50 --max-blocks-per-context 20 \
  --max-block-chars 200 --max-body-bytes 65536 --engine-timeout 10 \
  --state-file "$LOGDIR/state.json" --state-interval 5 >"$LOGDIR/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  if "$PY" -c "import httpx,sys; sys.exit(httpx.get('http://127.0.0.1:$SERVER_PORT/health', timeout=1).status_code != 200)" 2>/dev/null; then
    break
  fi
  sleep 0.2
done

# 413 (body over --max-body-bytes) is a proper rejection of invalid data too
cat >"$LOGDIR/schemathesis.toml" <<'TOML'
[checks.negative_data_rejection]
expected-statuses = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]
TOML

echo "--- schemathesis $ST_VERSION against http://127.0.0.1:$SERVER_PORT/openapi.json for ${FUZZ_SECONDS}s"
set +e
# from the log folder: schemathesis keeps a cache (.schemathesis/) in its working directory
(cd "$LOGDIR" && "$VENV/bin/schemathesis" --config-file "$LOGDIR/schemathesis.toml" run "http://127.0.0.1:$SERVER_PORT/openapi.json" \
  -H "Authorization: Bearer $KEY" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection,ignored_auth \
  --max-time "$FUZZ_SECONDS" --workers 2 --request-timeout 30 --seed "$FUZZ_SEED" \
  --suppress-health-check too_slow,data_too_large \
  --report junit --report-dir "$LOGDIR/report")
rc=$?
set -e
if [ "$rc" -ne 0 ]; then
  echo "schemathesis found failures (exit $rc); server log tail:" >&2
  tail -50 "$LOGDIR/server.log" >&2
  exit "$rc"
fi
if grep -q "Traceback" "$LOGDIR/server.log"; then
  echo "the server logged a traceback during fuzzing:" >&2
  grep -n -A 20 "Traceback" "$LOGDIR/server.log" | head -60 >&2
  exit 1
fi
"$PY" - "$SERVER_PORT" "$KEY" <<'PYEOF'
import sys, httpx
port, key = sys.argv[1], sys.argv[2]
r = httpx.get(f"http://127.0.0.1:{port}/stats", params={"check": "true"},
              headers={"Authorization": f"Bearer {key}"}, timeout=60).json()
print("index after fuzzing:", r["index_check"], r["index_stats"]["live_requests"], "live requests")
sys.exit(r["index_check"] != "ok")
PYEOF
cleanup
pids=()

echo "--- concurrency stress at full size"
CONTEXTPILOT_STRESS_CALLS=2500 "$PY" -m pytest -q -s tests/core/test_reliability_concurrency.py
