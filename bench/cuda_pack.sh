#!/usr/bin/env bash
# Packs what a GPU machine needs to run squish's CUDA build without the Debian -dev packages:
# the binaries, every shared library they load except glibc's own (ldd), and the small
# quantized test models, into one compressed archive (the GPU machine takes 64 MiB).
#   bench/cuda_pack.sh [BUILD] [MODELS_DIR]  ->  BUILD/carry/squish-cuda.tar.xz (binaries and
#   libraries) + BUILD/carry/squish-cuda-models.tar (.tar.xz with MODELS_XZ=1)
# On the GPU machine: tar xJf squish-cuda.tar.xz -C DIR; LD_LIBRARY_PATH=DIR/lib DIR/bin/squish ...
# MODELS_DIR holds small quantized files for the whole-model tests (squish_cuda_tests reads
# gcide-llama-16M-Q4_K_M.gguf, gcide-llama-16M-Q8_0.gguf, gcide-qwen2-28M-Q4_K_M.gguf), made with
#   squish quantize ../shared/models/gcide-llama-16M -o DIR/gcide-llama-16M-Q4_K_M.gguf --type Q4_K_M
# XZ_LEVEL (default 6; 1 is several times faster on a busy machine), MODELS_XZ (0).
set -euo pipefail
BUILD=${1:-build-cuda}
MODELS=${2:-$BUILD/models}
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/bin" "$STAGE/lib" "$STAGE/models" "$BUILD/carry"
for b in squish squish_cuda_tests; do
  strip -o "$STAGE/bin/$b" "$BUILD/$b"
  ldd "$BUILD/$b" | awk '/=> \// {print $3}' | while read -r lib; do
    case "$(basename "$lib")" in
      libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|ld-linux*) ;;  # the machine's glibc
      *) cp -uL "$lib" "$STAGE/lib/" ;;
    esac
  done
done
cp "$MODELS"/*.gguf "$STAGE/models/" 2>/dev/null || true
# Code compresses well (xz: CUDA fat binaries are mostly PTX text); quantized models barely do
# (13 % with xz -9, 20 s more), so MODELS_XZ=1 compresses them only when the carry must shrink.
tar -C "$STAGE" -cf - bin lib | xz -T2 "-${XZ_LEVEL:-6}" > "$BUILD/carry/squish-cuda.tar.xz"
rm -f "$BUILD/carry/squish-cuda-models.tar" "$BUILD/carry/squish-cuda-models.tar.xz"
if [ "${MODELS_XZ:-0}" = 1 ]; then
  tar -C "$STAGE" -cf - models | xz -T2 -9 > "$BUILD/carry/squish-cuda-models.tar.xz"
else
  tar -C "$STAGE" -cf "$BUILD/carry/squish-cuda-models.tar" models
fi
ls -la "$BUILD/carry/"
