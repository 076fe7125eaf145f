#!/usr/bin/env bash
# Packs the llama.cpp source that squish pins (node-llama-cpp's llama/gitRelease.bundle, as
# tools/llama_cpp/build.sh uses) into a small xz tarball for building llama.cpp's CUDA
# llama-bench on the GPU machine (16 cores there; the CUDA build takes hours on this 2-core box).
# Only what CMake configures and the llama-bench target compiles travels: no docs, vocab models,
# tests, examples, Python, web UI, or ggml backends other than CPU and CUDA.
#   bash tools/llama_cpp/cuda_source.sh [DEST]   ->  DEST/llama.cpp-src.tar.xz (default
#   build-cuda/peer; DEST must be an ignored folder: it travels with `carry`)
# On the GPU machine: bash tools/llama_cpp/cuda_build.sh DEST/llama.cpp-src.tar.xz BUILD_DIR.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DEST="${1:-$ROOT/build-cuda/peer}"
source "$ROOT/tools/llama_cpp/npm.sh"
mkdir -p "$DEST"
DEST="$(cd "$DEST" && pwd)"
NPM="$DEST/npm"
BUNDLE="$NPM/node_modules/node-llama-cpp/llama/gitRelease.bundle"
[ -f "$BUNDLE" ] || npm_install_pinned "$NPM"
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
git clone -q "$BUNDLE" "$STAGE/llama.cpp" 2>/dev/null
SRC="$STAGE/llama.cpp"
echo "llama.cpp $(git -C "$SRC" rev-parse --short HEAD) from node-llama-cpp $NODE_LLAMA_CPP_VERSION" > "$SRC/SQUISH_SOURCE"
rm -rf "$SRC/.git" "$SRC"/{docs,models,media,gguf-py,tests,examples,pocs,benches,conversion,app} \
  "$SRC/tools/ui" "$SRC/vendor/miniaudio/"*.md
# CMake adds these backends' folders only when their GGML_* option is on.
for b in "$SRC"/ggml/src/ggml-*/; do
  case "$(basename "$b")" in ggml-cpu | ggml-cuda) ;; *) rm -rf "$b" ;; esac
done
tar -C "$STAGE" -cf - llama.cpp | xz -T2 -6 > "$DEST/llama.cpp-src.tar.xz.tmp"
mv "$DEST/llama.cpp-src.tar.xz.tmp" "$DEST/llama.cpp-src.tar.xz"
ls -la "$DEST/llama.cpp-src.tar.xz"
