#!/usr/bin/env bash
# Create (or reuse) CPU-only virtualenvs with the real SGLang and vLLM, for the
# engine eviction-hook tests, and install this checkout into them.
#
#   scripts/make_engine_venvs.sh              # both engines
#   scripts/make_engine_venvs.sh sglang       # or: vllm
#   CONTEXTPILOT_ENGINE_VENVS=/dir scripts/make_engine_venvs.sh
#
# Venvs live in $CONTEXTPILOT_ENGINE_VENVS (default ~/.cache/contextpilot/venvs)
# as sglang-<ver> and vllm-<ver>. A venv is reused when its marker file matches
# this recipe and its interpreter still runs; otherwise it is rebuilt from
# scratch. The recipes follow shared/notes/engines.md: torch 2.13.0 CPU wheel,
# the engine with --no-deps plus the few dependencies the cache classes need
# (the full dependency sets pull CUDA torch and several GB).
#
# contextpilot itself goes in with `pip install --no-deps -e <repo>`: the hooks
# need only the standard library.
#
# Prints one line per engine: "<engine> ok <venv>" or "<engine> FAILED <log>".
# Exit status: 0 when every requested engine is ready, 1 otherwise.
set -uo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd -P)"
ROOT="${CONTEXTPILOT_ENGINE_VENVS:-${XDG_CACHE_HOME:-$HOME/.cache}/contextpilot/venvs}"
PY="${PYTHON:-python3}"
SGLANG_VERSION=0.5.23
VLLM_VERSION=0.33.0
TORCH_SPEC="torch==2.13.0"

SGLANG_DEPS="numpy orjson psutil pybase64 requests packaging pillow starlette msgspec pydantic pyzmq tqdm
IPython aiohttp transformers dill apache-tvm-ffi sentencepiece compressed-tensors gguf openai
partial-json-parser triton"
VLLM_DEPS="packaging psutil pyzmq urllib3 regex numpy msgspec pydantic cbor2 transformers aiohttp requests
openai-harmony openai pillow pybase64 cachetools cloudpickle uvloop py-cpuinfo prometheus-client fastapi
partial-json-parser llguidance apache-tvm-ffi"

mkdir -p "$ROOT"
PIN="$ROOT/torch-pin.txt"
echo "$TORCH_SPEC" >"$PIN"

recipe() { # the marker text: any change to a recipe rebuilds the venv
  case "$1" in
    sglang) echo "sglang==$SGLANG_VERSION $TORCH_SPEC | $SGLANG_DEPS" ;;
    vllm) echo "vllm==$VLLM_VERSION $TORCH_SPEC | $VLLM_DEPS | xgrammar --no-deps" ;;
  esac
}

install_engine() { # $1 engine, $2 venv; runs inside the log redirection
  local engine="$1" v="$2" pip="$2/bin/python -m pip"
  $pip install -q --upgrade pip || return 1
  $pip install -q "$TORCH_SPEC" || return 1
  case "$engine" in
    sglang)
      $pip install -q --no-deps "sglang==$SGLANG_VERSION" || return 1
      # shellcheck disable=SC2086
      $pip install -q -c "$PIN" $SGLANG_DEPS || return 1
      ;;
    vllm)
      $pip install -q --no-deps "vllm==$VLLM_VERSION" || return 1
      # shellcheck disable=SC2086
      $pip install -q -c "$PIN" $VLLM_DEPS || return 1
      # with its dependencies xgrammar pulls triton (1 GB); the import does not need it
      $pip install -q --no-deps xgrammar || return 1
      ;;
  esac
}

make_one() {
  local engine="$1" version v marker log t0
  case "$engine" in
    sglang) version=$SGLANG_VERSION ;;
    vllm) version=$VLLM_VERSION ;;
    *) echo "unknown engine: $engine (sglang|vllm)" >&2; return 1 ;;
  esac
  v="$ROOT/$engine-$version"
  marker="$v/.contextpilot-recipe"
  log="$ROOT/$engine-$version.log"
  t0=$SECONDS
  if [ -x "$v/bin/python" ] && [ "$(cat "$marker" 2>/dev/null)" = "$(recipe "$engine")" ] \
    && "$v/bin/python" -c "import importlib.util as u, sys; sys.exit(u.find_spec('$engine') is None)"; then
    echo "$engine: reusing $v" >&2
  else
    echo "$engine: building $v (log: $log) ..." >&2
    rm -rf "$v"
    if ! { "$PY" -m venv "$v" && install_engine "$engine" "$v"; } >"$log" 2>&1; then
      echo "$engine FAILED $log"
      tail -n 20 "$log" >&2
      return 1
    fi
    recipe "$engine" >"$marker"
    echo "$engine: built in $((SECONDS - t0)) s, $(du -sh "$v" | cut -f1)" >&2
  fi
  # this checkout, every time (the venv may have been built from another clone), and
  # the one-line .pth that turns the hooks on when CONTEXTPILOT_INDEX_URL is set
  # (the editable install is skipped when the venv already points at this checkout)
  here="$(cd "$v" && "$v/bin/python" -c 'import contextpilot, os; print(os.path.dirname(os.path.dirname(os.path.realpath(contextpilot.__file__))))' 2>/dev/null)"
  if [ "$here" != "$REPO" ] && ! "$v/bin/python" -m pip install -q --no-deps -e "$REPO" >>"$log" 2>&1; then
    echo "$engine FAILED $log"
    tail -n 20 "$log" >&2
    return 1
  fi
  if ! (cd "$v" && "$v/bin/python" -m contextpilot.install_hook) >>"$log" 2>&1; then
    echo "$engine FAILED $log"
    tail -n 20 "$log" >&2
    return 1
  fi
  echo "$engine ok $v"
}

engines=("$@")
[ ${#engines[@]} -gt 0 ] || engines=(sglang vllm)
status=0
for e in "${engines[@]}"; do
  make_one "$e" || status=1
done
exit $status
