#!/usr/bin/env bash
# Hostile-input CI stage (docs/fuzzing.md): builds the parsers, their tests and the fuzz targets
# with clang + AddressSanitizer + UndefinedBehaviorSanitizer (UBSan does not recover: any report
# fails; LeakSanitizer is on), runs the tests under them, then every fuzzer for a short budget.
#
#   scripts/sanitize.sh [FUZZ_SECONDS_PER_TARGET]   (default 10)
#
# CI (scripts/test.sh) runs the parsers-only stage: `squish_parsers` (what reads files: formats,
# tokenizers, config, imatrix, saved base, text) and `squish_parser_tests` (the gguf,
# safetensors, llama2c, tokenizer, nfc, imatrix and fuzz-regression tests), and the ten
# parser-only fuzz targets. Building the whole library and suite under ASan takes about
# 25 CPU-minutes, beyond the stage's budget on a 2-core box; SQUISH_SANITIZE_FULL=1 adds it
# (squish, squish_tests, manifest_fuzz) for local runs, excluding these suites, which cost
# minutes under ASan and exercise no parser the rest does not:
#  - end-to-end CLI suites (Cli*, EvalCli, CompareCli, BenchCli, Doctor, Report): they re-run the
#    sanitized `squish` binary over whole models many times;
#  - whole-model goldens and interop (SharedGolden, LlamaCppGolden, ManifestInterop, QuantInterop);
#  - calibration-heavy quantization (Gptq, Calib, BlockGrid);
#  - the kill/resume trials (KillResume): dozens of whole `squish quantize` runs.
# The build uses no compiler cache (as in CI) unless SQUISH_SANITIZE_CCACHE=1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${SQUISH_FUZZ_BUILD:-$ROOT/build-fuzz}
fuzz_seconds=${1:-10}
full=${SQUISH_SANITIZE_FULL:-0}
export SQUISH_SHARED="${SQUISH_SHARED:-$(cd .. && pwd)/shared}"
start=$(date +%s)
PARSER_TARGETS=(gguf_fuzz safetensors_fuzz llama2c_fuzz config_fuzz tokenizer_json_fuzz
                sentencepiece_model_fuzz imatrix_fuzz text_fuzz tokenize_fuzz saved_base_fuzz)

if [ ! -f "$BUILD/build.ninja" ]; then
  launcher=()
  if [ "${SQUISH_SANITIZE_CCACHE:-0}" = 1 ] && command -v ccache >/dev/null 2>&1; then
    launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
  fi
  CC=clang CXX=clang++ cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DSQUISH_FUZZ=ON -DSQUISH_BUILD_BENCH=OFF "${launcher[@]}" >/dev/null
fi
targets=(squish_parser_tests "${PARSER_TARGETS[@]}")
if [ "$full" = 1 ]; then targets+=(squish squish_tests manifest_fuzz); fi
cmake --build "$BUILD" -j"$(nproc)" --target "${targets[@]}"
echo "sanitize: built in $(($(date +%s) - start)) s"

# abort_on_error: the first report fails the test. Leak checking stays on.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export OMP_WAIT_POLICY=passive
"$BUILD/squish_parser_tests"
if [ "$full" = 1 ]; then
  excluded='^(Cli|CliQuantize|CliEval|EvalCli|CompareCli|BenchCli|Doctor|Report|ManifestInterop|Gptq|Calib|BlockGrid|KillResume)\.|^(Shared/SharedGolden|All/LlamaCppGolden|AllTypes/QuantInterop)\.'
  (cd "$BUILD" && ctest --output-on-failure -j"$(nproc)" --timeout 600 -E "$excluded")
fi
echo "sanitize: tests done at $(($(date +%s) - start)) s"

if [ "$full" = 1 ]; then fuzz_targets=("${PARSER_TARGETS[@]}" manifest_fuzz); else
  fuzz_targets=("${PARSER_TARGETS[@]}"); fi
SQUISH_FUZZ_BUILD="$BUILD" bash scripts/fuzz.sh -t "$fuzz_seconds" "${fuzz_targets[@]}"
echo "sanitize: done in $(($(date +%s) - start)) s"
