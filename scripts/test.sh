#!/usr/bin/env bash
# Builds squish and runs the whole test suite. Test data is read from $SQUISH_SHARED
# (default: ../shared beside the repository).
set -euo pipefail
cd "$(dirname "$0")/.."
export SQUISH_SHARED="${SQUISH_SHARED:-$(cd .. && pwd)/shared}"
if [ ! -d "$SQUISH_SHARED/models" ]; then
  echo "error: shared test data not found at $SQUISH_SHARED (set SQUISH_SHARED)" >&2
  exit 1
fi
bash scripts/build.sh
# The reference peer for interop tests: llama.cpp's prebuilt CPU library from npm (node-llama-cpp).
# CI must run those tests; elsewhere they are skipped when npm is unavailable.
if [ -n "${CI:-}" ]; then export SQUISH_REQUIRE_PEER=1; fi
if command -v npm >/dev/null 2>&1 && command -v git >/dev/null 2>&1; then
  if LLAMA_LOGITS="$(bash tools/llama_cpp/prebuilt.sh build/peer-prebuilt)"; then
    export SQUISH_LLAMA_LOGITS="$LLAMA_LOGITS"
    export SQUISH_GGML_BACKEND_DIR="$PWD/build/peer-prebuilt/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64"
  else
    echo "warning: could not set up the llama.cpp peer; interop tests will be skipped" >&2
  fi
fi
# ONNX Runtime (npm onnxruntime-node, CPU) runs the models `squish export --format onnx` writes.
if command -v npm >/dev/null 2>&1 && command -v node >/dev/null 2>&1; then
  if ORT_MODULES="$(bash tools/onnxruntime/install.sh build/ort-peer)"; then
    export SQUISH_ORT_NODE_MODULES="$ORT_MODULES"
  else
    echo "warning: could not set up onnxruntime-node; ONNX Runtime tests will be skipped" >&2
  fi
fi
cd build
# ctest runs tests in parallel, each with its own OpenMP team: spinning idle threads would
# steal the cores from the other test (measured: 24 s instead of 1.3 s for one test).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
ctest --output-on-failure -j"$(nproc)" --timeout 600
cd ..
# Hostile inputs (docs/fuzzing.md): the parsers and their tests under ASan + UBSan (clang), then
# 10 s per fuzzer. SQUISH_SKIP_SANITIZE=1 skips the stage (e.g. a machine without clang).
if [ "${SQUISH_SKIP_SANITIZE:-0}" != 1 ]; then
  bash scripts/sanitize.sh 10
fi
