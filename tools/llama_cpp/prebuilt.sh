#!/usr/bin/env bash
# Sets up the reference peer without compiling llama.cpp: the prebuilt CPU libllama from npm
# (@node-llama-cpp/linux-x64) plus llama.cpp's headers from the source bundle that node-llama-cpp
# ships, then builds tests/interop/llama_logits against them. Used by the test suite (interop
# tests) and fast enough for CI (~1 minute).
#   bash tools/llama_cpp/prebuilt.sh [DEST]     (default build/peer-prebuilt)
# Prints the path of the llama_logits binary on success.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DEST="${1:-$ROOT/build/peer-prebuilt}"
mkdir -p "$DEST"
DEST="$(cd "$DEST" && pwd)"
source "$ROOT/tools/llama_cpp/npm.sh"
mkdir -p "$DEST/bin"
LIBS="$DEST/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64"
if [ ! -f "$LIBS/libllama.v0.5.0.so" ] || [ ! -f "$DEST/node_modules/node-llama-cpp/llama/gitRelease.bundle" ]; then
  npm_install_pinned "$DEST" "@node-llama-cpp/linux-x64@$NODE_LLAMA_CPP_VERSION"
fi
SRC="$DEST/llama.cpp-src"
if [ ! -f "$SRC/include/llama.h" ]; then
  rm -rf "$SRC"
  git clone -q --depth 1 "$DEST/node_modules/node-llama-cpp/llama/gitRelease.bundle" "$SRC" 2>/dev/null ||
    git clone -q "$DEST/node_modules/node-llama-cpp/llama/gitRelease.bundle" "$SRC"
fi
LIB_LLAMA="$(ls "$LIBS"/libllama.v*.so | head -1)"
LIB_GGML="$(ls "$LIBS"/libggml.v*.so | head -1)"
g++ -std=c++17 -O2 -I"$SRC/include" -I"$SRC/ggml/include" "$ROOT/tests/interop/llama_logits.cpp" \
  "$LIB_LLAMA" "$LIB_GGML" "$LIBS/libggml-base.so" -Wl,-rpath,"$LIBS" -o "$DEST/bin/llama_logits"
echo "$DEST/bin/llama_logits"
