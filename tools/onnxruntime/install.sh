#!/usr/bin/env bash
# Installs ONNX Runtime's CPU build for Node (npm onnxruntime-node; its CPU libonnxruntime.so is in
# the package, so the GPU download step is skipped) into DEST, the way the llama.cpp peer is set
# up from npm. Used by the test suite (ONNX export tests) and bench/onnx_compare.sh.
#   bash tools/onnxruntime/install.sh [DEST]     (default build/ort-peer)
# Prints DEST/node_modules (the value for SQUISH_ORT_NODE_MODULES) on success.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DEST="${1:-$ROOT/build/ort-peer}"
VERSION="${ONNXRUNTIME_NODE_VERSION:-1.30.0}"
mkdir -p "$DEST"
DEST="$(cd "$DEST" && pwd)"
if [ ! -f "$DEST/node_modules/onnxruntime-node/package.json" ] ||
   ! grep -q "\"version\": \"$VERSION\"" "$DEST/node_modules/onnxruntime-node/package.json"; then
  (cd "$DEST" && { [ -f package.json ] || npm init -y >/dev/null 2>&1; }
   ONNXRUNTIME_NODE_INSTALL=skip ONNXRUNTIME_NODE_INSTALL_CUDA=skip \
     npm install --prefix "$DEST" --no-audit --no-fund --loglevel=error "onnxruntime-node@$VERSION" >/dev/null)
fi
# Loads and runs: fails here, not in every test, when the runtime cannot start.
node -e "require('$DEST/node_modules/onnxruntime-node')" >/dev/null
echo "$DEST/node_modules"
