#!/usr/bin/env bash
# Build llama.cpp's llama-server from the source shipped in the llama-cpp-python
# sdist on PyPI, into a cache folder reused on later runs.
#
#   scripts/build_llama_server.sh            # prints the binary's path
#   CONTEXTPILOT_CACHE=/some/dir scripts/build_llama_server.sh
#
# Needs: python3 with pip, cmake, a C++ compiler. About 7 minutes on 2 cores.
set -euo pipefail

VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
CACHE="${CONTEXTPILOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/contextpilot}"
# The recipe's revision is part of the folder name, so a binary built by an
# older recipe is never reused (r2: no AMX, see below).
RECIPE=r2
DEST="$CACHE/llama.cpp-$VERSION-$RECIPE"
BIN="$DEST/build/bin/llama-server"

if [ -x "$BIN" ]; then
  echo "$BIN"
  exit 0
fi

mkdir -p "$CACHE"
work="$(mktemp -d "$CACHE/build.XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "downloading llama-cpp-python $VERSION sdist ..." >&2
# through pip, as configured on this machine (index, proxy, hashes); pip only
# prepares the sdist's metadata, nothing is compiled here
if [ -n "${LLAMA_CPP_SDIST:-}" ] && [ -f "$LLAMA_CPP_SDIST" ]; then
  cp "$LLAMA_CPP_SDIST" "$work/sdist.tar.gz"
else
  python3 -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$work/dl" >&2
  mv "$work/dl/llama_cpp_python-$VERSION.tar.gz" "$work/sdist.tar.gz"
fi
tar -xzf "$work/sdist.tar.gz" -C "$work"
src="$work/llama_cpp_python-$VERSION/vendor/llama.cpp"
[ -f "$src/CMakeLists.txt" ] || { echo "no llama.cpp source in the sdist" >&2; exit 1; }

# -march=native turns on AMX where the CPU reports it (Sapphire Rapids), but
# a VM may not grant the tile state: the server then dies with SIGSEGV at
# ldtilecfg in ggml_backend_amx_mul_mat on its first quantized (Q4_K) matmul,
# i.e. while loading Gemma (seen on this project's machines, Firecracker
# guests). AVX-512 does the same work; AMX stays off.
flags=""
if [ "$(uname -m)" = x86_64 ]; then
  flags="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
fi
echo "building llama-server (several minutes) ..." >&2
cmake -S "$src" -B "$src/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_BUILD_SERVER=ON \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DBUILD_SHARED_LIBS=OFF -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" >&2
cmake --build "$src/build" --target llama-server -j "${JOBS:-2}" >&2

# move into place atomically: a half-built tree never looks finished
rm -rf "$DEST.tmp"
mkdir -p "$DEST.tmp/build"
cp -r "$src/build/bin" "$DEST.tmp/build/"
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
# builds of older recipes (or versions) go: lookups glob llama.cpp-*
for old in "$CACHE"/llama.cpp-*; do
  [ "$old" = "$DEST" ] || rm -rf "$old"
done
echo "$BIN"
