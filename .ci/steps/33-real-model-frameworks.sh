#!/usr/bin/env bash
# LangChain, LlamaIndex and mem0 on a real model (Gemma 3 270M) through the
# product path: framework -> contextpilot server's OpenAI proxy -> llama.cpp
# slot-tracking proxy -> llama-server --swa-full (tests/real_model/).
#
# The frameworks live in their own venv, cached in ~/.cache/contextpilot/venvs
# (rebuilt when the framework specs below change); this checkout's contextpilot
# and its three plugins are reinstalled into it on every run (non-editable, so
# a cached venv never points at an old clone). llama-server is built or reused
# by scripts/build_llama_server.sh (cached), the model fetched into the cache
# by contextpilot.bench.real_models.fetch_model (250 MB, once). The tests then
# run with CONTEXTPILOT_REAL_MODEL_TESTS=1: anything missing fails, nothing skips.
# Warm: about 4 minutes on 2 busy cores (6 fresh llama-server + product-path
# starts, 24 short prompts).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
t0=$SECONDS
export PIP_DISABLE_PIP_VERSION_CHECK=1 MEM0_TELEMETRY=False

CACHE="${CONTEXTPILOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/contextpilot}"
# the frameworks' own packages (the plugins bring their framework cores)
FRAMEWORKS=("langchain-openai>=1.0,<2" "llama-index-llms-openai-like>=0.8,<0.9" "openai>=1.90,<3" "pytest>=8,<10")
py_version="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
venv="$CACHE/venvs/real-model-frameworks-py$py_version"
stamp="$venv/.contextpilot-specs"
want="${FRAMEWORKS[*]}"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "--- building $venv"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
fi
pip=("$venv/bin/python" -m pip install -q)
# dependencies first (cached after the first run), then this checkout's code over them
"${pip[@]}" "$root[server]" "$root/integrations/langchain" "$root/integrations/llamaindex" \
  "$root/integrations/mem0" "${FRAMEWORKS[@]}"
"${pip[@]}" --no-deps --force-reinstall "$root" "$root/integrations/langchain" \
  "$root/integrations/llamaindex" "$root/integrations/mem0"
echo "$want" >"$stamp"
"$venv/bin/python" -m pip check
"$venv/bin/python" -m pip list 2>/dev/null \
  | grep -iE '^(contextpilot|contextpilot-mem0|langchain-contextpilot|llama-index-postprocessor-contextpilot|langchain-core|langchain-openai|llama-index-core|llama-index-llms-openai-like|mem0ai|openai) ' || true
echo "venv ready in $((SECONDS - t0)) s"

# llama-server (build tools as in step 31) and the model
missing=()
for tool in cmake c++ make; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ "${#missing[@]}" -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing build tools (${missing[*]}) from Debian ..."
  apt-get update -qq && apt-get install -y -qq --no-install-recommends cmake g++ make >/dev/null
fi
bin="$(nice -n 10 bash scripts/build_llama_server.sh)"
model="$("$venv/bin/python" -c 'from contextpilot.bench.real_models import fetch_model; print(fetch_model("gemma3-270m"))')"
echo "llama-server: $bin"
echo "model: $model ($(du -m "$model" | cut -f1) MB)"
echo "engine and model ready after $((SECONDS - t0)) s"

# from the checkout's root: LoCoMo is found at ../shared/data/locomo10.json
t1=$SECONDS
CONTEXTPILOT_REAL_MODEL_TESTS=1 LLAMA_SERVER_BIN="$bin" nice -n 10 \
  "$venv/bin/python" -m pytest -q -rA -p no:cacheprovider -m real_model tests/real_model
echo "ran: tests/real_model (LangChain, LlamaIndex, mem0 on Gemma 3 270M, llama-server --swa-full)" \
  "in $((SECONDS - t1)) s (step total $((SECONDS - t0)) s)"
