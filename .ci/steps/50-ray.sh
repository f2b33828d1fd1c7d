#!/usr/bin/env bash
# Sharded planning on Ray (contextpilot.distributed): its own virtualenv with
# contextpilot[ray,bench,test] (Ray stays out of the main CI venv), the tests in
# tests/distributed on a local 2-CPU Ray instance, then the sharding
# benchmark at small scale on Ray (Ray Dataset input included).
set -euo pipefail
venv=.ci-venvs/ray
t0=$SECONDS
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -e '.[ray,bench,test]'
echo "50-ray: ray $("$venv/bin/python" -c 'import ray; print(ray.__version__)') installed in $((SECONDS - t0)) s"

export RAY_USAGE_STATS_ENABLED=0
"$venv/bin/python" -m pytest -q -p no:cacheprovider -W ignore::DeprecationWarning tests/distributed
"$venv/bin/python" -m contextpilot.bench --shards 2,4 --shard-requests 5000 --shard-dataset \
  --out .ci-venvs/ray-bench
echo "50-ray: done in $((SECONDS - t0)) s"
