#!/usr/bin/env bash
# LangChain and LlamaIndex plugins (integrations/langchain, integrations/llamaindex).
# Each gets its own virtualenv under .ci-venvs/ (reused when present) holding
# only contextpilot (this repository, editable), the plugin and its framework;
# the plugin must import and run there before any test dependency is added,
# which proves it installs alone. Then the plugin's server extra
# (contextpilot[server]: the server-mode tests start a real server) and its
# test extra go in,
# and the plugin's own test suite runs against the installed (non-editable)
# package, with the framework's real pipeline and offline fakes.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PLUGIN_PYTHON:-python3}

# name, package dir, smoke-test code run outside the repository
plugin() {
  local name=$1 dir=$2 smoke=$3
  local venv=".ci-venvs/$name" t0=$SECONDS
  echo "--- plugin $name ($dir) in $venv"
  [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
  local pip=("$venv/bin/python" -m pip install -q)
  "${pip[@]}" --upgrade pip
  "${pip[@]}" -e .
  "${pip[@]}" "./$dir"
  "${pip[@]}" --no-deps --force-reinstall "./$dir"   # this checkout's code, even in a reused venv
  (cd /tmp && "$OLDPWD/$venv/bin/python" -c "$smoke")
  echo "    installs alone: ok"
  "${pip[@]}" "./$dir[server,test]"   # server extra = contextpilot[server] (already installed, editable)
  "$venv/bin/python" -m pip check
  "$venv/bin/python" -m pip list 2>/dev/null | grep -iE '^(contextpilot|langchain-core|langchain-classic|langchain-tests|llama-index-core|pytest) ' || true
  "$venv/bin/python" -m pytest -q -p no:cacheprovider "$dir/tests"
  # the framework path on real text (prints hit ratios; skips without LoCoMo)
  "$venv/bin/python" "$dir/bench/locomo_session.py"
  echo "    $name: ok in $((SECONDS - t0)) s"
}

plugin langchain integrations/langchain '
from langchain_core.documents import Document
from langchain_contextpilot import ContextPilotReorder
r = ContextPilotReorder()
r.invoke([Document("a", id="1"), Document("b", id="2")])
out = r.invoke([Document("c", id="3"), Document("b", id="2"), Document("a", id="1")])
assert [d.id for d in out][:2] == ["1", "2"], out
'

plugin llamaindex integrations/llamaindex '
from llama_index.core.schema import NodeWithScore, TextNode
from llama_index.postprocessor.contextpilot import ContextPilotNodePostprocessor
p = ContextPilotNodePostprocessor()
p.postprocess_nodes([NodeWithScore(node=TextNode(text=t, id_=t)) for t in "ab"])
out = p.postprocess_nodes([NodeWithScore(node=TextNode(text=t, id_=t)) for t in "cba"])
assert [n.node.node_id for n in out][:2] == ["a", "b"], out
'
