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
# BASELINE_BINS: squish binaries of other builds (e.g. "/tmp/squish-61066e8"), stripped into the
# archive's baseline/ under their file names, for cuda_bench.sh's BASELINE to name. One xz stream
# with a dictionary past their sum holds them nearly for free (four 50 MB builds of nearby
# commits: 35 MB, where each alone takes 18-20 MB and the carry is 64 MiB).
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
XZ_OPTS=("-T2" "-${XZ_LEVEL:-6}")
PARTS=(bin lib)
if [ -n "${BASELINE_BINS:-}" ]; then
  mkdir -p "$STAGE/baseline"
  for b in $BASELINE_BINS; do strip -o "$STAGE/baseline/$(basename "$b")" "$b"; done
  PARTS+=(baseline)
  XZ_OPTS=("-T1" "--lzma2=preset=${XZ_LEVEL:-6},dict=256MiB")  # one stream: the window spans them
fi
# Code compresses well (xz: CUDA fat binaries are mostly PTX text); quantized models barely do
# (13 % with xz -9, 20 s more), so MODELS_XZ=1 compresses them only when the carry must shrink.
tar -C "$STAGE" -cf - "${PARTS[@]}" | xz "${XZ_OPTS[@]}" > "$BUILD/carry/squish-cuda.tar.xz"
rm -f "$BUILD/carry/squish-cuda-models.tar" "$BUILD/carry/squish-cuda-models.tar.xz"
if [ "${MODELS_XZ:-0}" = 1 ]; then
  tar -C "$STAGE" -cf - models | xz -T2 -9 > "$BUILD/carry/squish-cuda-models.tar.xz"
else
  tar -C "$STAGE" -cf "$BUILD/carry/squish-cuda-models.tar" models
fi
ls -la "$BUILD/carry/"
