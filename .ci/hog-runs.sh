#!/usr/bin/env bash
# The root test suite under CPU load: RUNS runs (default 3) of
# `python -m pytest -q -x` while HOGS busy-loop processes (default 2, one per
# core of the CI machine) compete for the CPU. Prints one line per run (exit
# status, wall seconds, pytest's summary) and exits non-zero if any run failed.
# The hogs are started and stopped by this script only (by their own PIDs).
#
#   PYTHON=/work/venv/bin/python RUNS=3 HOGS=2 .ci/hog-runs.sh
#
# Run from the checkout's root; it prepends the checkout to PYTHONPATH so the
# tests import this tree. Logs go to ${HOG_LOGS:-/tmp/cp-hog-runs}/run-N.log.
set -u
PYTHON="${PYTHON:-python}"
RUNS="${RUNS:-3}"
HOGS="${HOGS:-2}"
LOGS="${HOG_LOGS:-/tmp/cp-hog-runs}"
mkdir -p "$LOGS"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

hogs=()
stop_hogs() {
  for pid in "${hogs[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${hogs[@]}"; do wait "$pid" 2>/dev/null; done
  hogs=()
}
trap stop_hogs EXIT INT TERM

for _ in $(seq "$HOGS"); do
  "$PYTHON" -c 'while True: pass' &
  hogs+=("$!")
done
echo "hogs: ${hogs[*]} ($(nproc) cores); load before: $(cut -d' ' -f1-3 /proc/loadavg)"

failed=0
for i in $(seq "$RUNS"); do
  t0=$SECONDS
  "$PYTHON" -m pytest -q -x -p no:cacheprovider >"$LOGS/run-$i.log" 2>&1
  rc=$?
  [ "$rc" -ne 0 ] && failed=1
  summary=$(grep -E '^(=+ )?[0-9]+ (passed|failed)|^FAILED|^ERROR' "$LOGS/run-$i.log" | tail -3 | tr '\n' ' ')
  echo "run $i: exit $rc, $((SECONDS - t0)) s, load $(cut -d' ' -f1-3 /proc/loadavg): $summary"
done
stop_hogs
exit "$failed"
