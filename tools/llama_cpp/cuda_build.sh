#!/usr/bin/env bash
# Builds llama.cpp's CUDA llama-bench on the GPU machine from the tarball that
# tools/llama_cpp/cuda_source.sh makes (sm_90 only, static llama/ggml libraries, cuBLAS and the
# CUDA runtime from the machine's toolkit), and packs the binary so a later call can carry it.
#   bash tools/llama_cpp/cuda_build.sh SRC_TARBALL BUILD_DIR [PACK_DIR]
# Prints the build's wall time; the binary is BUILD_DIR/llama.cpp/build/bin/llama-bench and, with
# PACK_DIR, also PACK_DIR/llama-bench-cuda.xz (split into 15 MiB parts when larger: .xz.00, ...).
# JOBS (default: all cores), BUILD_TIMEOUT (seconds, default 480).
set -euo pipefail
SRC=${1:?source tarball}
BUILD=${2:?build folder}
PACK=${3:-}
mkdir -p "$BUILD"
t0=$(date +%s)
tar xJf "$SRC" -C "$BUILD"
cd "$BUILD/llama.cpp"
NVCC=$(ls /usr/local/cuda/bin/nvcc 2>/dev/null || command -v nvcc)
cmake -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_COMPILER="$NVCC" \
  -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_NATIVE=OFF -DGGML_CUDA_NCCL=OFF \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_SERVER=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF > cmake.log 2>&1 ||
  { tail -20 cmake.log; exit 1; }
t1=$(date +%s)
timeout "${BUILD_TIMEOUT:-480}" ninja -C build -j "${JOBS:-$(nproc)}" llama-bench > ninja.log 2>&1 ||
  { tail -20 ninja.log; echo "llama-bench build failed after $(( $(date +%s) - t1 )) s"; exit 1; }
echo "llama.cpp CUDA llama-bench built: configure $((t1 - t0)) s, ninja $(( $(date +%s) - t1 )) s ($(nproc) cores)"
BIN=$PWD/build/bin/llama-bench
ls -la "$BIN"
if [ -n "$PACK" ]; then
  mkdir -p "$PACK"
  strip -o /tmp/llama-bench.stripped "$BIN"
  xz -T0 -6 -c /tmp/llama-bench.stripped > "$PACK/llama-bench-cuda.xz"
  if [ "$(stat -c %s "$PACK/llama-bench-cuda.xz")" -gt $((15 * 1024 * 1024)) ]; then
    split -b 15M -d "$PACK/llama-bench-cuda.xz" "$PACK/llama-bench-cuda.xz."
    rm "$PACK/llama-bench-cuda.xz"
  fi
  ls -la "$PACK"/llama-bench-cuda.xz*
fi
