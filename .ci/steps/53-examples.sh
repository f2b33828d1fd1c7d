#!/usr/bin/env bash
# The runnable examples in examples/ (README "Examples"), each against the
# simulated engine it starts itself (the llama.cpp one against the
# llama-server stand-in contextpilot.sim.llama_server). Each example checks what it claims and
# exits non-zero otherwise; this step also checks that each one printed its
# RESULT line and no FAILED line. About 30 s on 2 cores.
set -uo pipefail
py=${CP_PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
t0=$SECONDS
failed=0
for name in batch_stateless online_eviction llamacpp_proxy chat_sessions; do
  t=$SECONDS
  out=$(timeout 120 "$py" "examples/$name.py" 2>&1)
  rc=$?
  printf '%s\n' "$out" | sed "s/^/  [$name] /"
  if [ "$rc" -ne 0 ]; then
    echo "53-examples: $name exited $rc"; failed=1
  elif ! printf '%s\n' "$out" | grep -q "^RESULT $name: "; then
    echo "53-examples: $name printed no RESULT line"; failed=1
  elif printf '%s\n' "$out" | grep -q "^FAILED"; then
    echo "53-examples: $name printed a FAILED check"; failed=1
  else
    echo "53-examples: $name ok in $((SECONDS - t)) s"
  fi
done
echo "53-examples: done in $((SECONDS - t0)) s"
exit "$failed"
