#!/usr/bin/env bash
# Builds the reference peer, llama.cpp, from the source that the npm package node-llama-cpp ships
# (its llama/gitRelease.bundle), plus tests/interop/llama_logits against its libllama.
#   bash tools/llama_cpp/build.sh [DEST]      (DEST defaults to build/peers)
# Produces DEST/llama.cpp/build/bin/{llama-perplexity,llama-bench,llama-quantize,llama-tokenize}
# and DEST/bin/llama_logits. Takes ~10 minutes on 2 cores the first time.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DEST="${1:-$ROOT/build/peers}"
source "$ROOT/tools/llama_cpp/npm.sh"
mkdir -p "$DEST/npm" "$DEST/bin"
if [ ! -f "$DEST/npm/node_modules/node-llama-cpp/llama/gitRelease.bundle" ]; then
  npm_install_pinned "$DEST/npm"
fi
if [ ! -d "$DEST/llama.cpp/.git" ]; then
  git clone -q "$DEST/npm/node_modules/node-llama-cpp/llama/gitRelease.bundle" "$DEST/llama.cpp"
fi
cd "$DEST/llama.cpp"
cmake -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_BUILD_SERVER=OFF \
  -DLLAMA_OPENSSL=OFF -DGGML_NATIVE=ON >/dev/null
ninja -C build llama-perplexity llama-bench llama-quantize llama-tokenize >/dev/null
g++ -std=c++17 -O2 -I"$DEST/llama.cpp/include" -I"$DEST/llama.cpp/ggml/include" \
  "$ROOT/tests/interop/llama_logits.cpp" -L"$DEST/llama.cpp/build/bin" -lllama -lggml -lggml-base \
  -Wl,-rpath,"$DEST/llama.cpp/build/bin" -o "$DEST/bin/llama_logits"
echo "llama.cpp peer ready in $DEST"
