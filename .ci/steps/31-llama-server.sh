#!/usr/bin/env bash
# Real llama-server: build it (or reuse the cached build in ~/.cache/contextpilot),
# then run the llama.cpp proxy's end-to-end eviction test on it:
# contextpilot server -> proxy -> llama-server -np 2 --cache-ram 0 (tiny GGUF),
# the benchmark's engine replay (tests/bench/test_engine.py) and routing over two replicas.
# First run: about 7 minutes of build on 2 cores; later runs: about 30 s.
set -euo pipefail
PY="${CP_PYTHON:-python3}"
t0=$SECONDS

missing=()
for tool in cmake c++ make; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ "${#missing[@]}" -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing build tools (${missing[*]}) from Debian ..."
  apt-get update -qq && apt-get install -y -qq --no-install-recommends cmake g++ make >/dev/null
  missing=()
  for tool in cmake c++ make; do command -v "$tool" >/dev/null || missing+=("$tool"); done
fi
if [ "${#missing[@]}" -gt 0 ]; then
  # no silent pass: a step that cannot get its tools fails
  echo "STEP 31 FAILED: no ${missing[*]} to build llama-server, and they could not be installed" \
    "(apt-get as root); install them and rerun" >&2
  exit 1
fi

bin="$(nice -n 10 bash scripts/build_llama_server.sh)"
echo "llama-server: $bin (ready after $((SECONDS - t0)) s)"
# "version: N (commit)" on stderr; the source is llama.cpp vendored in the llama-cpp-python sdist
.ci/component llama-server "$("$bin" --version 2>&1 | grep -m1 '^version' | cut -d' ' -f2-) from $(basename "$(dirname "$(dirname "$(dirname "$bin")")")")"

t1=$SECONDS
CONTEXTPILOT_ENGINE_TESTS=1 LLAMA_SERVER_BIN="$bin" "$PY" -m pytest -q -rA -p no:cacheprovider \
  tests/llamacpp/test_llamacpp_real.py
echo "ran: tests/llamacpp/test_llamacpp_real.py on the real llama-server in $((SECONDS - t1)) s" \
  "(step total $((SECONDS - t0)) s)"

# the benchmark's engine replay (retrieval order vs ours, tiny model) on the same binary
t3=$SECONDS
CONTEXTPILOT_ENGINE_TESTS=1 LLAMA_SERVER_BIN="$bin" "$PY" -m pytest -q -rA -p no:cacheprovider \
  tests/bench/test_engine.py
echo "ran: tests/bench/test_engine.py (llama-server replay) in $((SECONDS - t3)) s (step total $((SECONDS - t0)) s)"

# cache-aware routing vs round-robin over two real llama-server replicas behind one contextpilot server
t2=$SECONDS
CONTEXTPILOT_ENGINE_TESTS=1 LLAMA_SERVER_BIN="$bin" "$PY" -m pytest -q -rA -p no:cacheprovider \
  tests/server/test_routing_llama.py
echo "ran: tests/server/test_routing_llama.py (routing over 2 real llama-server replicas) in $((SECONDS - t2)) s" \
  "(step total $((SECONDS - t0)) s)"
