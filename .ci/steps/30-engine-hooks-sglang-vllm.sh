#!/usr/bin/env bash
# Engine eviction hooks on the real SGLang and vLLM cache classes (CPU):
# create or reuse the engine virtualenvs (~/.cache/contextpilot/venvs), then
# run tests/hooks/test_engine_hooks.py with the project's python ($CP_PYTHON),
# which starts a real contextpilot server and drives each engine in its own
# venv with CONTEXTPILOT_INDEX_URL set. Both engines must run: a venv that
# cannot be built fails the step.
set -uo pipefail
cd "$(dirname "$0")/../.."
PY="${CP_PYTHON:-python3}"
t0=$SECONDS

out="$(nice bash scripts/make_engine_venvs.sh sglang vllm)"
echo "$out"
echo "engine venvs ready in $((SECONDS - t0)) s"
if grep -q " FAILED " <<<"$out" || [ "$(grep -c " ok " <<<"$out")" -ne 2 ]; then
  grep " FAILED " <<<"$out" | while read -r engine _ log; do
    echo "STEP 30 FAILED: the $engine venv could not be built; last lines of $log:" >&2
    tail -20 "$log" >&2 || true
  done
  exit 1
fi

for v in $(awk '/ ok /{print $3}' <<<"$out"); do  # what actually runs: versions from each venv
  engine=$(basename "$v" | cut -d- -f1)
  .ci/component "$engine" "$("$v/bin/python" -c 'import sys; from importlib.metadata import version as v
print(v(sys.argv[1]), "(torch " + v("torch") + ")")' "$engine")"
done

echo "=== .pth start-up cost in each engine venv (hooks off)"
for v in $(awk '/ ok /{print $3}' <<<"$out"); do
  echo -n "$(basename "$v"): "
  (cd "$v" && "$v/bin/python" -m contextpilot.install_hook --bench --runs 20) || exit 1
done

t1=$SECONDS
CONTEXTPILOT_HOOK_ENGINE_TESTS=1 "$PY" -m pytest -q -rs -s -p no:cacheprovider tests/hooks/test_engine_hooks.py 2>&1 \
  | tee /tmp/contextpilot-engine-hooks.$$.log
rc=${PIPESTATUS[0]}
echo "=== engine hooks: which ran"
grep -E "^(SGLANG|VLLM) RAN:|SKIPPED" /tmp/contextpilot-engine-hooks.$$.log || echo "(none)"
rm -f /tmp/contextpilot-engine-hooks.$$.log
echo "engine hook tests: exit $rc in $((SECONDS - t1)) s (step total $((SECONDS - t0)) s)"
exit "$rc"
