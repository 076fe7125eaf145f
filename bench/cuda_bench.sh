#!/usr/bin/env bash
# Runs on the GPU machine, from an archive made by bench/cuda_pack.sh: the CUDA test binary
# (kernels vs CPU reference, whole-model logits GPU vs CPU; under compute-sanitizer too when the
# machine has it), then `squish synth` of real model shapes and `squish bench --device cuda` on
# each file (decode tok/s, achieved weight GB/s vs the measured read bandwidth, pp512).
#   bench/cuda_bench.sh [ARCHIVE] [OUT_DIR]
# Settings: SHAPES (llama3-8b), TYPES ("Q4_K_M Q8_0"), REPS (3), TESTS (1), SANITIZE (1),
# WORK (synth files, /tmp/squish-synth), BENCH_ARGS (extra `squish bench` flags), VARIANTS (1:
# also decode with SQUISH_CUDA_Q8=0 and with SQUISH_CUDA_GRAPHS=0).
set -uo pipefail
ARCHIVE=${1:-build-cuda/carry/squish-cuda.tar.xz}
OUT=${2:-${OUT:-/tmp/squish-cuda-out}}
SHAPES=${SHAPES:-llama3-8b}
TYPES=${TYPES:-Q4_K_M Q8_0}
REPS=${REPS:-3}
WORK=${WORK:-/tmp/squish-synth}
DIR=$(mktemp -d)
tar xJf "$ARCHIVE" -C "$DIR"
MODELS_TAR=$(dirname "$ARCHIVE")/squish-cuda-models.tar
[ -f "$MODELS_TAR" ] && tar xf "$MODELS_TAR" -C "$DIR"
export LD_LIBRARY_PATH=$DIR/lib
SQ=$DIR/bin/squish
mkdir -p "$OUT" "$WORK"
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
if [ "${TESTS:-1}" = 1 ]; then
  t0=$(date +%s%N)
  SQUISH_CUDA_MODELS=$DIR/models "$DIR/bin/squish_cuda_tests" > "$OUT/cuda_tests.txt" 2>&1
  echo "squish_cuda_tests: rc $? in $(ms "$t0") ms" | tee -a "$OUT/summary.txt"
  grep -E "^\[  (PASSED|FAILED) |RMS\(gpu|FAILED" "$OUT/cuda_tests.txt" | tee -a "$OUT/summary.txt"
  SAN=$(ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
  SAN=${SAN:-$(command -v compute-sanitizer || true)}
  if [ "${SANITIZE:-1}" = 1 ] && [ -n "$SAN" ]; then
    SQUISH_CUDA_MODELS=$DIR/models "$SAN" --tool memcheck --error-exitcode 9 \
      "$DIR/bin/squish_cuda_tests" --gtest_filter='*CudaMatmul*:CudaKernels*:CudaModel.Llama*Q4*' \
      > "$OUT/sanitizer.txt" 2>&1
    echo "compute-sanitizer memcheck: rc $?; $(grep -c 'Invalid' "$OUT/sanitizer.txt") invalid accesses" |
      tee -a "$OUT/summary.txt"
  else
    echo "compute-sanitizer: not found on this machine" | tee -a "$OUT/summary.txt"
  fi
fi
for shape in $SHAPES; do
  for type in $TYPES; do
    f=$WORK/$shape-$type.gguf
    t0=$(date +%s%N)
    "$SQ" synth --shape "$shape" --type "$type" -o "$f" > "$OUT/synth-$shape-$type.txt" 2>&1
    echo "synth $shape $type: rc $? in $(ms "$t0") ms, $(stat -c %s "$f") bytes" |
      tee -a "$OUT/summary.txt"
    # shellcheck disable=SC2086
    "$SQ" bench "$f" --device cuda -p 512 -n 128 -r "$REPS" ${BENCH_ARGS:-} \
      > "$OUT/bench-$shape-$type.txt" 2>&1
    echo "bench $shape $type: rc $?" | tee -a "$OUT/summary.txt"
    cat "$OUT/bench-$shape-$type.txt" | tee -a "$OUT/summary.txt"
    if [ "${VARIANTS:-1}" = 1 ]; then
      # Decode without the 8-bit-activation kernels, and without CUDA graphs.
      for v in SQUISH_CUDA_Q8=0 SQUISH_CUDA_GRAPHS=0; do
        env "$v" "$SQ" bench "$f" --device cuda -p 0 -n 128 -r 2 > "$OUT/bench-$shape-$type-$v.txt" 2>&1
        echo "bench $shape $type with $v: rc $?" | tee -a "$OUT/summary.txt"
        grep -E "tg128|roofline" "$OUT/bench-$shape-$type-$v.txt" | tee -a "$OUT/summary.txt"
      done
    fi
    rm -f "$f"
  done
done
