#!/usr/bin/env bash
# Builds squish's libFuzzer targets (clang, ASan + UBSan; see docs/fuzzing.md) and runs each one.
#
#   scripts/fuzz.sh [-r RUNS | -t SECONDS] [-j JOBS] [TARGET...]
#   scripts/fuzz.sh -p PACK.tgz [TARGET...]
#
# Default: 10 million executions per target (the bar of issue #9), one process each, all targets.
# -t gives a time budget per target instead; -j runs that many processes per target (libFuzzer
# -jobs/-workers; the run count then applies to each). The corpus grows in
# $BUILD/fuzz-corpus/<target> across runs; seeds are regenerated each run from fuzz/make_seeds.py,
# the test fixtures and, when present, the shared test models' small files (never copied into
# the repository). Findings (crash-*, timeout-*, oom-*, leak-*) land in
# $BUILD/fuzz-findings/<target>/; the exit status is non-zero when any target found one.
# -p builds, then packs the targets (debug info stripped), the shared libraries they load, seeds,
# dictionaries, the corpus and fuzz/run_pack.sh into one archive for a many-core machine without
# build tools; run it there with `tar xzf PACK.tgz -C DIR && bash DIR/run_pack.sh DIR OUT SECONDS`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${SQUISH_FUZZ_BUILD:-$ROOT/build-fuzz}
SHARED=${SQUISH_SHARED:-$(cd .. && pwd)/shared}
ALL=(gguf_fuzz safetensors_fuzz llama2c_fuzz config_fuzz tokenizer_json_fuzz
     sentencepiece_model_fuzz imatrix_fuzz text_fuzz tokenize_fuzz saved_base_fuzz manifest_fuzz)

runs=10000000
seconds=""
jobs=1
pack=""
while getopts "r:t:j:p:h" opt; do
  case $opt in
    r) runs=$OPTARG; seconds="" ;;
    t) seconds=$OPTARG; runs="" ;;
    j) jobs=$OPTARG ;;
    p) pack=$OPTARG ;;
    *) sed -n 2,18p "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
if [ $# -gt 0 ]; then targets=("$@"); else targets=("${ALL[@]}"); fi

if [ ! -f "$BUILD/build.ninja" ]; then
  launcher=()
  if command -v ccache >/dev/null 2>&1; then
    launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
  fi
  CC=clang CXX=clang++ cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DSQUISH_FUZZ=ON -DSQUISH_BUILD_BENCH=OFF "${launcher[@]}" >/dev/null
fi
cmake --build "$BUILD" -j"$(nproc)" --target "${targets[@]}"

# Seeds: generated tiny files plus the fixtures each parser reads in the test suite.
SEEDS=$BUILD/fuzz-seeds
rm -rf "$SEEDS"
python3 "$ROOT/fuzz/make_seeds.py" "$SEEDS"
add_seed() {  # add_seed TARGET FILE...
  local target=$1
  shift
  mkdir -p "$SEEDS/$target"
  for f in "$@"; do
    [ -f "$f" ] && cp "$f" "$SEEDS/$target/$(echo "${f#"$ROOT"/}" | tr / _)"
  done
  return 0
}
add_seed config_fuzz "$ROOT"/tests/data/fixtures/*/config.json "$SHARED"/models/*/config.json
add_seed tokenizer_json_fuzz "$ROOT/tests/data/tokenizer/spm_bpe_tokenizer.json"
add_seed sentencepiece_model_fuzz "$ROOT/tests/data/tokenizer/spm_bpe.model"
add_seed text_fuzz "$ROOT/README.md"
if [ -f "$SHARED/data/gcide-valid.txt" ]; then
  head -c 2000 "$SHARED/data/gcide-valid.txt" > "$SEEDS/tokenize_fuzz/gcide-valid-head.txt"
fi

# Inputs larger than this are not generated: every seed above fits, and small inputs keep the
# execution rate high. config.json / tokenizer seeds need the room of real files. Text for the
# tokenizers is cut to 256 bytes: everything their code branches on (added tokens, a
# pre-tokenizer word, a UTF-8 sequence, a stray byte, the start of the text) fits many times into
# that, the cost per input grows with its length (4 KiB inputs ran 366/s per process), and a
# longer text only repeats the same paths (docs/fuzzing.md).
max_len_for() {
  case $1 in
    tokenizer_json_fuzz | sentencepiece_model_fuzz) echo 16384 ;;
    tokenize_fuzz) echo 256 ;;
    *) echo 8192 ;;
  esac
}

if [ -n "$pack" ]; then
  stage=$(mktemp -d)
  mkdir -p "$stage"/{bin,lib,dict,maxlen,shared/models/gcide-llama-16M,source/tests/data/tokenizer}
  for target in "${targets[@]}"; do
    objcopy --strip-debug "$BUILD/$target" "$stage/bin/$target"
    echo "$target" >> "$stage/targets.txt"
    max_len_for "$target" > "$stage/maxlen/$target"
    dict=$ROOT/fuzz/dict/${target%_fuzz}.dict
    [ -f "$dict" ] && cp "$dict" "$stage/dict/$target.dict"
    # Every shared library but the C library's own (the other machine's glibc must be as new).
    ldd "$BUILD/$target" | awk '$3 ~ /^\// {print $3}' |
      grep -vE '/(libc|libm|libpthread|libdl|librt)\.so' | xargs -r cp -n -L -t "$stage/lib"
  done
  mkdir -p "$stage/glibc"  # for a machine with an older C library (fuzz/run_pack.sh)
  for lib in /lib64/ld-linux-x86-64.so.2 $(ldd "$BUILD/${targets[0]}" |
      awk '$3 ~ /\/(libc|libm|libpthread|libdl|librt)\.so/ {print $3}'); do
    cp -L "$lib" "$stage/glibc/"
  done
  cp -r "$SEEDS" "$stage/seeds"
  cp "$ROOT/fuzz/run_pack.sh" "$stage/"
  cp "$ROOT/tests/data/tokenizer/spm_bpe_tokenizer.json" "$stage/source/tests/data/tokenizer/"
  [ -f "$SHARED/models/gcide-llama-16M/tokenizer.json" ] &&
    cp "$SHARED/models/gcide-llama-16M/tokenizer.json" "$stage/shared/models/gcide-llama-16M/"
  mkdir -p "$BUILD/fuzz-corpus"
  tar czf "$stage/corpus.tgz" -C "$BUILD" fuzz-corpus
  tar czf "$pack" -C "$stage" .
  rm -rf "$stage"
  echo "fuzz: packed ${#targets[@]} targets into $pack ($(du -h "$pack" | cut -f1))"
  exit 0
fi

failed=()
for target in "${targets[@]}"; do
  corpus=$BUILD/fuzz-corpus/$target
  findings=$BUILD/fuzz-findings/$target
  mkdir -p "$corpus" "$findings" "$SEEDS/$target"
  args=(-rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 -max_len="$(max_len_for "$target")"
        -artifact_prefix="$findings/" -print_final_stats=1)
  dict=$ROOT/fuzz/dict/${target%_fuzz}.dict
  [ -f "$dict" ] && args+=(-dict="$dict")
  if [ -n "$seconds" ]; then args+=(-max_total_time="$seconds"); else args+=(-runs="$runs"); fi
  log=$findings/last-run.log
  echo "== $target (${seconds:+${seconds}s}${runs:+$runs runs}, $jobs job(s)); log: $log"
  start=$(date +%s)
  status=0
  if [ "$jobs" -gt 1 ]; then
    (cd "$findings" && "$BUILD/$target" "${args[@]}" -jobs="$jobs" -workers="$jobs" \
      "$corpus" "$SEEDS/$target" > "$log" 2>&1) || status=$?
    cat "$findings"/fuzz-*.log >> "$log" 2>/dev/null || true
  else
    "$BUILD/$target" "${args[@]}" "$corpus" "$SEEDS/$target" > "$log" 2>&1 || status=$?
  fi
  execs=$(grep -h "stat::number_of_executed_units" "$log" | awk '{s += $2} END {print s + 0}')
  echo "   $execs executions in $(($(date +%s) - start)) s, exit status $status"
  if [ "$status" -ne 0 ] || ls "$findings" | grep -qE '^(crash|timeout|oom|leak|slow-unit)-'; then
    grep -E "ERROR|runtime error|==[0-9]+==|deadly signal|Test unit written" "$log" | head -5 || true
    failed+=("$target")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: findings in: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: no findings"
