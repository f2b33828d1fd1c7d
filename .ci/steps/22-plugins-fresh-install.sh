#!/usr/bin/env bash
# Each plugin installed ALONE into a fresh virtualenv, exactly by the install line
# of its README (run from the repository root, as the README says), then imported.
# Two refusals are checked too:
#  - the plugin without the core must not resolve: its floor (contextpilot>=0.6) is
#    above every unrelated release of that name on the package index (0.1.0 ... 0.5.0),
#    so pip fails naming the requirement instead of installing one of them;
#  - with an unrelated contextpilot installed anyway (0.1.0, forced), importing the
#    plugin fails with a message that gives the install line.
# Fresh venvs live in a temporary directory, removed on exit (pip's cache is reused).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
PY=${PLUGIN_PYTHON:-python3}
export MEM0_TELEMETRY=False LITELLM_LOCAL_MODEL_COST_MAP=True PIP_DISABLE_PIP_VERSION_CHECK=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# the first "pip install" line of the README's first bash block
readme_line() {
  awk '/^```bash/{f=1; next} /^```/{if (f) exit} f && /^pip install /{print; exit}' "$1"
}

fresh() {
  local name=$1 dir=$2 module=$3 t0=$SECONDS
  local line
  line=$(readme_line "$dir/README.md")
  [ -n "$line" ] || { echo "FAIL: no install line in $dir/README.md"; exit 1; }
  echo "--- $name: fresh venv, README line: $line"
  "$PY" -m venv "$tmp/$name"
  (cd "$root" && PATH="$tmp/$name/bin:$PATH" VIRTUAL_ENV="$tmp/$name" bash -c "$line -q")
  "$tmp/$name/bin/python" -m pip check
  (cd "$tmp" && "$tmp/$name/bin/python" -c \
    "import contextpilot, $module as m; print('    imports:', '$module', m.__version__, 'on contextpilot', contextpilot.__version__)")
  rm -rf "$tmp/$name"

  "$PY" -m venv "$tmp/$name-alone"
  if "$tmp/$name-alone/bin/python" -m pip install -q "./$dir" >"$tmp/$name-alone.log" 2>&1; then
    echo "FAIL: $dir installed without this repository's core:"
    "$tmp/$name-alone/bin/python" -m pip list 2>/dev/null | grep -i contextpilot || true
    exit 1
  fi
  if ! grep -q "contextpilot<0.7,>=0.6\|contextpilot>=0.6" "$tmp/$name-alone.log"; then
    echo "FAIL: installing $dir alone failed for another reason:"; cat "$tmp/$name-alone.log"; exit 1
  fi
  echo "    alone (no core): refused by pip, no contextpilot>=0.6 on the index: ok"
  rm -rf "$tmp/$name-alone"
  echo "    $name: ok in $((SECONDS - t0)) s"
}

# CP_PLUGINS narrows the list when run by hand
for p in ${CP_PLUGINS:-langchain llamaindex mem0 pageindex}; do
  case $p in
    langchain) fresh langchain integrations/langchain langchain_contextpilot ;;
    llamaindex) fresh llamaindex integrations/llamaindex llama_index.postprocessor.contextpilot ;;
    mem0) fresh mem0 integrations/mem0 contextpilot_mem0 ;;
    pageindex) fresh pageindex integrations/pageindex contextpilot_pageindex ;;
    *) echo "unknown plugin $p"; exit 1 ;;
  esac
done

echo "--- an unrelated contextpilot (0.1.0 from the index) under the LangChain plugin"
"$PY" -m venv "$tmp/wrong-core"
"$tmp/wrong-core/bin/python" -m pip install -q "contextpilot==0.1.0"
"$tmp/wrong-core/bin/python" -m pip install -q --no-deps ./integrations/langchain
if out=$(cd "$tmp" && "$tmp/wrong-core/bin/python" -c "import langchain_contextpilot" 2>&1); then
  echo "FAIL: the plugin imported on an unrelated contextpilot"; exit 1
fi
echo "$out" | grep -q "pip install . ./integrations/langchain" || { echo "FAIL: unclear error: $out"; exit 1; }
echo "    refused at import: $(echo "$out" | tail -1 | cut -c1-160)..."
