#!/usr/bin/env bash
# Drop-in compatibility with the published ContextPilot 0.5.0, both ways:
# the reference installed (pip, pinned) into its own virtualenv (cached under
# .ci-venvs/reference), then tests/compat with the `reference` marker required:
# the reference's own client drives our server (real uvicorn on 127.0.0.1),
# and our client drives the reference's own server (CPU).
set -euo pipefail
venv="$PWD/.ci-venvs/reference"
t0=$SECONDS
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! (cd / && PYTHONPATH= "$venv/bin/python" -c \
    "import importlib.metadata as m, sys; sys.exit(m.version('contextpilot') != '0.5.0')" 2>/dev/null); then
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q 'contextpilot==0.5.0'
fi
echo "52-reference-compat: reference contextpilot 0.5.0 ready in $((SECONDS - t0)) s"
.ci/component contextpilot-reference 0.5.0

CONTEXTPILOT_REFERENCE_PYTHON="$venv/bin/python" CP_CI_EXPECT_SKIP="" \
  "${CP_PYTHON:-python}" -m pytest -q -p no:cacheprovider -m reference tests/compat
echo "52-reference-compat: done in $((SECONDS - t0)) s"
