#!/usr/bin/env bash
# The mem0 and PageIndex plugins, each in its own virtualenv holding only
# contextpilot (this checkout), the plugin and its framework, then its test
# dependencies. Separate venvs: pageindex pulls litellm, which pins openai<3,
# while mem0 takes the newest openai. Venvs are reused when present.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
export MEM0_TELEMETRY=False LITELLM_LOCAL_MODEL_COST_MAP=True PIP_DISABLE_PIP_VERSION_CHECK=1

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
  (cd "$root/$dir" && "$py" -m pytest -q -rs tests)
  echo "--- plugin $name: ok in $((SECONDS - t0)) s"
}

run_plugin mem0 integrations/mem0 contextpilot_mem0
run_plugin pageindex integrations/pageindex contextpilot_pageindex
