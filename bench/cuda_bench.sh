#!/usr/bin/env bash
# Runs on the GPU machine, from an archive made by bench/cuda_pack.sh: the CUDA test binary
# (kernels vs CPU reference, whole-model logits GPU vs CPU; under compute-sanitizer too when the
# machine has it), then `squish synth` of real model shapes and `squish bench --device cuda` on
# each file (decode tok/s, achieved weight GB/s vs the measured read bandwidth, pp512).
#   bench/cuda_bench.sh [ARCHIVE] [OUT_DIR]
# Settings: SHAPES (llama3-8b), TYPES ("Q4_K_M Q8_0"), REPS (3), TESTS (1), SANITIZE (1),
# WORK (synth files, /tmp/squish-synth), BENCH_ARGS (extra `squish bench` flags), VARIANTS (1:
# also decode with each of SQUISH_CUDA_FUSE=0, SQUISH_CUDA_PDL=0, SQUISH_CUDA_Q8=0,
# SQUISH_CUDA_GRAPHS=0; VARIANT_LIST replaces that list; an entry may set several variables joined
# by commas, e.g. SQUISH_CUDA_FUSE=4,SQUISH_CUDA_DECODE=5; VARIANT_ARGS: their `squish bench`
# tests, default "-p 0 -n 128"), PP_VARIANT_LIST (prefill only: pp512
# with each of these settings, e.g. "SQUISH_CUDA_GEMM=0" for the mat-vec prefill), LLAMA_BENCH (llama.cpp's CUDA llama-bench: run on the same files,
# `-ngl 99 -p 512 -n 128 -fa F` for F in LLAMA_FA ("1"), cuBLAS from LLAMA_LIBS
# (/usr/local/cuda/lib64), and the squish / llama.cpp ratios printed), LLAMA_SRC (instead of
# LLAMA_BENCH: the tarball of tools/llama_cpp/cuda_source.sh, built here by
# tools/llama_cpp/cuda_build.sh in the background while the tests and synth run; packed into
# LLAMA_PACK_DIR when set: 41 MB of xz parts, too large to carry next to squish's archive),
# LLAMA_XZ (instead of both: the packed binary, or the prefix of its parts,
# from such a run), PROFILE (1: nsys GPU time per kernel over 32 decoded tokens,
# kernels-SHAPE-TYPE.txt), NCU (1: Nsight Compute on NCU_COUNT kernels after NCU_SKIP,
# ncu-SHAPE-TYPE.txt; only the types in NCU_TYPES when set; NCU_KERNEL: only kernels whose
# names match this regex, e.g. attention_group; NCU_CLOCK: ncu's --clock-control,
# default none, the clocks the timed runs get, where ncu's own default locks the base clock;
# NCU_SECTIONS: its sections, default "SpeedOfLight LaunchStats Occupancy"; NCU_ENV: settings for
# its run, joined by commas), LLAMA_REPS (llama-bench -r, REPS),
# BASELINE (squish binaries of other builds, named by their files: xz-compressed files, or names
# in the archive's baseline/ folder, cuda_pack.sh BASELINE_BINS; decode with each and with this
# archive's binary in turn, BASELINE_ROUNDS (2) rounds of VARIANT_ARGS, BASELINE_ENV their
# settings),
# BUNDLE (1: the text results but summary.txt end in OUT/results.tgz, since the GPU machine
# hands back at most 8 files), DEPTHS (e.g. "4096": also tg64 after that many tokens of context,
# with SQUISH_CUDA_ATTN_SPLIT=0 and 1, or each entry of DEPTH_VARIANT_LIST), SASS (1: cuobjdump's SASS of the kernels whose mangled names match
# SASS_MATCH, an extended regex, default the Q4_K two-row decode kernel with the norm prologue and
# the Q8_0 one-row kernel, in sass.txt, with an opcode count per kernel in summary.txt), TEST_ENV
# (settings for the test binary's run, joined by commas, e.g. SQUISH_CUDA_ATTN_PER8=1).
set -uo pipefail
ARCHIVE=${1:-build-cuda/carry/squish-cuda.tar.xz}
OUT=${2:-${OUT:-/tmp/squish-cuda-out}}
SHAPES=${SHAPES:-llama3-8b}
TYPES=${TYPES:-Q4_K_M Q8_0}
REPS=${REPS:-3}
WORK=${WORK:-/tmp/squish-synth}
DIR=$(mktemp -d)
tar xJf "$ARCHIVE" -C "$DIR"
for MODELS_TAR in "$(dirname "$ARCHIVE")"/squish-cuda-models.tar{,.xz}; do  # cuda_pack.sh MODELS_XZ
  [ -f "$MODELS_TAR" ] && tar xf "$MODELS_TAR" -C "$DIR"
done
export LD_LIBRARY_PATH=$DIR/lib
SQ=$DIR/bin/squish
mkdir -p "$OUT" "$WORK"
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
# Every step under a time limit (STEP_TIMEOUT seconds): a hung kernel costs one step, not the run.
TO="timeout ${STEP_TIMEOUT:-300}"

nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
LLAMA_BUILD_PID=
if [ -z "${LLAMA_BENCH:-}" ] && [ -n "${LLAMA_XZ:-}" ]; then
  cat "$LLAMA_XZ"* | xz -d > /tmp/llama-bench-cuda && chmod +x /tmp/llama-bench-cuda &&
    LLAMA_BENCH=/tmp/llama-bench-cuda
elif [ -z "${LLAMA_BENCH:-}" ] && [ -n "${LLAMA_SRC:-}" ]; then
  nice -n 19 bash "$(dirname "$0")/../tools/llama_cpp/cuda_build.sh" "$LLAMA_SRC" /tmp/llama-cuda \
    "${LLAMA_PACK_DIR:-}" \
    > "$OUT/llama-build.txt" 2>&1 &
  LLAMA_BUILD_PID=$!
  LLAMA_BENCH=/tmp/llama-cuda/llama.cpp/build/bin/llama-bench
fi
TEST_ENV=${TEST_ENV:-}
NCU_ENV=${NCU_ENV:-}
if [ "${TESTS:-1}" = 1 ]; then
  # The lower-bit mixes of CudaModel.LowBitMixesMatchCpu, made here (a second each) rather than
  # carried: the archive's 64 MiB are nearly spent.
  for mix in Q4_K_M Q2_K Q3_K_M IQ4_XS Q4_0 Q5_1 IQ4_NL; do
    mkdir -p "$DIR/models"
    f=$DIR/models/synth-tiny-k-$mix.gguf
    [ -f "$f" ] || "$SQ" synth --shape tiny-k --type "$mix" -o "$f" > /dev/null 2>&1 ||
      echo "synth tiny-k $mix: failed" | tee -a "$OUT/summary.txt"
  done
  t0=$(date +%s%N)
  # shellcheck disable=SC2086
  env SQUISH_CUDA_MODELS=$DIR/models ${TEST_ENV//,/ } $TO "$DIR/bin/squish_cuda_tests" \
    > "$OUT/cuda_tests.txt" 2>&1
  echo "squish_cuda_tests: rc $? in $(ms "$t0") ms" | tee -a "$OUT/summary.txt"
  grep -E "^\[  (PASSED|FAILED) |RMS\(gpu|FAILED" "$OUT/cuda_tests.txt" | tee -a "$OUT/summary.txt"
  SAN=$(ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
  SAN=${SAN:-$(command -v compute-sanitizer || true)}
  if [ "${SANITIZE:-1}" = 1 ] && [ -n "$SAN" ]; then
    SQUISH_CUDA_MODELS=$DIR/models $TO "$SAN" --tool memcheck --error-exitcode 9 \
      "$DIR/bin/squish_cuda_tests" --gtest_filter='*CudaMatmul*:*CudaPrefillGemm*:CudaKernels*:CudaModel.Llama*Q4*:CudaModel.LlamaMatchesCpuWithSplitDecodeAttention:CudaModel.LowBitMixesMatchCpu' \
      > "$OUT/sanitizer.txt" 2>&1
    echo "compute-sanitizer memcheck: rc $?; $(grep -c 'Invalid' "$OUT/sanitizer.txt") invalid accesses" |
      tee -a "$OUT/summary.txt"
  elif [ "${SANITIZE:-1}" = 1 ]; then
    echo "compute-sanitizer: not found on this machine" | tee -a "$OUT/summary.txt"
  else
    echo "compute-sanitizer: skipped (SANITIZE=0)" | tee -a "$OUT/summary.txt"
  fi
fi
if [ "${SASS:-0}" = 1 ]; then
  CUOBJ=$(ls /usr/local/cuda*/bin/cuobjdump 2>/dev/null | head -1)
  CUOBJ=${CUOBJ:-$(command -v cuobjdump || true)}
  if [ -n "$CUOBJ" ]; then
    MATCH=${SASS_MATCH:-mv_q8_decode_kernel.*Q4KELi2ELi5ELb1ELb0E|mv_q8_kernel.*Q80ELi1ELi1ELi1ELi0ELi8E}
    for f in "$DIR"/bin/squish "$DIR"/lib/*; do
      "$CUOBJ" -sass "$f" 2>/dev/null | awk -v m="$MATCH" '/Function : /{p = ($0 ~ m)} p'
    done > "$OUT/sass.txt"
    # Opcodes per kernel: a copy (MOV) of registers still being loaded stalls the warp.
    awk '/Function : /{name = $3} $1 ~ /^\/\*[0-9a-f]+\*\/$/{op = $2; if (op ~ /^@/) op = $3;
         n[name " " op]++} END {for (k in n) print n[k], k}' "$OUT/sass.txt" |
      sort -k2,2 -k1,1nr | awk '{c[$2] = c[$2] " " $3 ":" $1} END {for (k in c) print "sass " k c[k]}' |
      tee -a "$OUT/summary.txt"
  else
    echo "sass: cuobjdump not found" | tee -a "$OUT/summary.txt"
  fi
fi
# All files first (CPU work, while a llama.cpp build may run), then the timed runs on a quiet box.
for shape in $SHAPES; do
  for type in $TYPES; do
    f=$WORK/$shape-$type.gguf
    t0=$(date +%s%N)
    "$SQ" synth --shape "$shape" --type "$type" -o "$f" > "$OUT/synth-$shape-$type.txt" 2>&1
    echo "synth $shape $type: rc $? in $(ms "$t0") ms, $(stat -c %s "$f") bytes" |
      tee -a "$OUT/summary.txt"
  done
done
# The llama.cpp build runs in the background while the tests and synth run; the timed runs wait
# for it (a build beside them measured squish's decode 4-6 % slower on the H100).
if [ -n "$LLAMA_BUILD_PID" ]; then
  wait "$LLAMA_BUILD_PID"
  echo "llama.cpp build: rc $?" | tee -a "$OUT/summary.txt"
  grep -E "built|failed" "$OUT/llama-build.txt" | tee -a "$OUT/summary.txt"
fi
for shape in $SHAPES; do
  for type in $TYPES; do
    f=$WORK/$shape-$type.gguf
    # shellcheck disable=SC2086
    $TO "$SQ" bench "$f" --device cuda -p 512 -n 128 -r "$REPS" ${BENCH_ARGS:-} \
      > "$OUT/bench-$shape-$type.txt" 2>&1
    echo "bench $shape $type: rc $?" | tee -a "$OUT/summary.txt"
    cat "$OUT/bench-$shape-$type.txt" | tee -a "$OUT/summary.txt"
    if [ "${VARIANTS:-1}" = 1 ]; then
      # Decode without the 8-bit-activation kernels, and without CUDA graphs.
      for v in ${VARIANT_LIST:-SQUISH_CUDA_FUSE=0 SQUISH_CUDA_PDL=0 SQUISH_CUDA_Q8=0 SQUISH_CUDA_GRAPHS=0}; do
        vf=$OUT/bench-$shape-$type-${v//=/_}.txt
        # shellcheck disable=SC2086
        env ${v//,/ } $TO "$SQ" bench "$f" --device cuda ${VARIANT_ARGS:--p 0 -n 128} -r 2 > "$vf" 2>&1
        echo "bench $shape $type with $v: rc $?" | tee -a "$OUT/summary.txt"
        grep -E "tg128|roofline" "$vf" | tee -a "$OUT/summary.txt"
      done
    fi
    if [ -n "${BASELINE:-}" ]; then
      # The same decode with other builds' binaries, in turn with this one's (drift hits all).
      for b in $BASELINE; do
        name=$(basename "$b" .xz)
        if [ -x "$DIR/baseline/$b" ]; then
          ln -sf "$DIR/baseline/$b" "/tmp/baseline-$name"
        else
          [ -x "/tmp/baseline-$name" ] || { xz -dc "$b" > "/tmp/baseline-$name" &&
            chmod +x "/tmp/baseline-$name"; }
        fi
      done
      for round in $(seq "${BASELINE_ROUNDS:-2}"); do
        for which in this $(for b in $BASELINE; do basename "$b" .xz; done); do
          bin=$SQ
          envs=
          if [ "$which" != this ]; then bin=/tmp/baseline-$which; envs=${BASELINE_ENV:-}; fi
          vf=$OUT/ab-$shape-$type-$which-$round.txt
          # shellcheck disable=SC2086
          env ${envs//,/ } $TO "$bin" bench "$f" --device cuda ${VARIANT_ARGS:--p 0 -n 128} -r 2 \
            > "$vf" 2>&1
          echo "ab $shape $type $which round $round: rc $? $(grep -oE '\| tg[0-9]+ +\| [0-9.]+' "$vf")" |
            tee -a "$OUT/summary.txt"
        done
      done
    fi
    for v in ${PP_VARIANT_LIST:-}; do
      vf=$OUT/bench-$shape-$type-pp-${v//=/_}.txt
      env ${v//,/ } $TO "$SQ" bench "$f" --device cuda -p 512 -n 0 -r "$REPS" > "$vf" 2>&1
      echo "bench $shape $type pp512 with $v: rc $?" | tee -a "$OUT/summary.txt"
      grep -E "pp512" "$vf" | tee -a "$OUT/summary.txt"
    done
    for d in ${DEPTHS:-}; do
      # Decode after d tokens of context, with the default attention and split over the context.
      for v in ${DEPTH_VARIANT_LIST:-SQUISH_CUDA_ATTN_SPLIT=0 SQUISH_CUDA_ATTN_SPLIT=1}; do
        vf=$OUT/bench-$shape-$type-d$d-${v//=/_}.txt
        # shellcheck disable=SC2086
        env ${v//,/ } $TO "$SQ" bench "$f" --device cuda -p 0 -n 64 -d "$d" -r 2 > "$vf" 2>&1
        echo "bench $shape $type tg64 @ d$d with $v: rc $?" | tee -a "$OUT/summary.txt"
        grep -E "tg64" "$vf" | tee -a "$OUT/summary.txt"
      done
    done
    if [ "${PROFILE:-0}" = 1 ]; then
      # Nsight Systems: GPU time per kernel over 32 decoded tokens (graph nodes traced one by one).
      NSYS=$(ls /usr/local/cuda*/bin/nsys /opt/nvidia/nsight-systems*/bin/nsys \
        /usr/local/cuda*/nsight-systems*/bin/nsys 2>/dev/null | head -1)
      NSYS=${NSYS:-$(command -v nsys || true)}
      if [ -n "$NSYS" ]; then
        $TO "$NSYS" profile -o /tmp/squish-prof -f true -t cuda --cuda-graph-trace=node \
          "$SQ" bench "$f" --device cuda -p 0 -n 32 -r 1 > "$OUT/nsys-$shape-$type.txt" 2>&1
        echo "nsys $shape $type: rc $?" | tee -a "$OUT/summary.txt"
        $TO "$NSYS" stats -q -r cuda_gpu_kern_sum /tmp/squish-prof.nsys-rep \
          > "$OUT/kernels-$shape-$type.txt" 2>&1 ||
          $TO "$NSYS" stats -q -r gpukernsum /tmp/squish-prof.nsys-rep \
            > "$OUT/kernels-$shape-$type.txt" 2>&1
      else
        echo "nsys: not found ($(ls -d /usr/local/cuda*/bin /opt/nvidia 2>/dev/null | tr '\n' ' '))" |
          tee -a "$OUT/summary.txt"
      fi
    fi
    if [ "${NCU:-0}" = 1 ] && [[ " ${NCU_TYPES:-$type} " == *" $type "* ]]; then
      # Nsight Compute on one decode layer's kernels (after the first decoded token): duration and
      # DRAM throughput of each (SpeedOfLight).
      NCUB=$(ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)
      if [ -n "$NCUB" ]; then
        NCU_SECTION_ARGS=()
        # NCU_KERNEL: only kernels whose names match this regex (NCU_SKIP and NCU_COUNT count those).
        [ -n "${NCU_KERNEL:-}" ] && NCU_SECTION_ARGS+=(--kernel-name "regex:$NCU_KERNEL")
        for sec in ${NCU_SECTIONS:-SpeedOfLight LaunchStats Occupancy}; do
          NCU_SECTION_ARGS+=(--section "$sec")
        done
        # shellcheck disable=SC2086
        env ${NCU_ENV//,/ } $TO "$NCUB" "${NCU_SECTION_ARGS[@]}" \
          --clock-control "${NCU_CLOCK:-none}" \
          --launch-skip "${NCU_SKIP:-300}" \
          --launch-count "${NCU_COUNT:-10}" "$SQ" bench "$f" --device cuda -p 0 -n 2 -r 1 \
          > "$OUT/ncu-$shape-$type.txt" 2>&1
        echo "ncu $shape $type: rc $?" | tee -a "$OUT/summary.txt"
        grep -E "^  [a-z_]+.*\(|Duration|DRAM Throughput|Memory Throughput|Registers Per|Achieved Occ|Grid Size" \
          "$OUT/ncu-$shape-$type.txt" |
          sed -E 's/^ +//' | cut -c1-150 | tee -a "$OUT/summary.txt"
      fi
    fi
    if [ -n "${LLAMA_BENCH:-}" ] && [ -x "$LLAMA_BENCH" ]; then
      for fa in ${LLAMA_FA:-1}; do
        lb=$OUT/llama-bench-$shape-$type-fa$fa.txt
        LD_LIBRARY_PATH=${LLAMA_LIBS:-/usr/local/cuda/lib64} $TO "$LLAMA_BENCH" -m "$f" -ngl 99 -p 512 \
          -n 128 -fa "$fa" -r "${LLAMA_REPS:-$REPS}" > "$lb" 2>&1
        echo "llama-bench $shape $type -fa $fa: rc $?" | tee -a "$OUT/summary.txt"
        grep -E "^\| " "$lb" | tee -a "$OUT/summary.txt"
        # Ratios: the t/s column (last) of the pp512 and tg128 rows of both tables.
        for test in pp512 tg128; do
          sq=$(grep -E "\| $test " "$OUT/bench-$shape-$type.txt" | head -1 | awk -F'|' '{print $(NF-1)}' | awk '{print $1}')
          ll=$(grep -E "\| +$test " "$lb" | head -1 | awk -F'|' '{print $(NF-1)}' | awk '{print $1}')
          if [ -n "$sq" ] && [ -n "$ll" ]; then
            echo "ratio $shape $type $test -fa $fa: squish $sq / llama.cpp $ll = $(awk -v a="$sq" -v b="$ll" 'BEGIN{printf "%.2f", a/b}')" |
              tee -a "$OUT/summary.txt"
          fi
        done
      done
    fi
    rm -f "$f"
  done
done
# The GPU machine hands back at most 8 files: with BUNDLE=1 (the default) every text result but
# summary.txt goes into OUT/results.tgz.
if [ "${BUNDLE:-1}" = 1 ]; then
  (cd "$OUT" && tar czf results.tgz --exclude=summary.txt ./*.txt && rm -f -- $(ls ./*.txt | grep -v '^./summary.txt$'))
fi
