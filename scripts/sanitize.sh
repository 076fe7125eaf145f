#!/usr/bin/env bash
# Hostile-input CI stage (docs/fuzzing.md): builds squish, its tests and the fuzz targets with
# clang + AddressSanitizer + UndefinedBehaviorSanitizer (UBSan does not recover: any report fails),
# runs the test suite under them, then every fuzzer for a short budget.
#
#   scripts/sanitize.sh [FUZZ_SECONDS_PER_TARGET]   (default 10)
#
# Excluded from the sanitizer test run (they still run unsanitized in scripts/test.sh), because
# under ASan they cost minutes on a 2-core CI box and exercise no parser the rest does not:
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
export SQUISH_SHARED="${SQUISH_SHARED:-$(cd .. && pwd)/shared}"
start=$(date +%s)

if [ ! -f "$BUILD/build.ninja" ]; then
  launcher=()
  if [ "${SQUISH_SANITIZE_CCACHE:-0}" = 1 ] && command -v ccache >/dev/null 2>&1; then
    launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
  fi
  CC=clang CXX=clang++ cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DSQUISH_FUZZ=ON -DSQUISH_BUILD_BENCH=OFF "${launcher[@]}" >/dev/null
fi
cmake --build "$BUILD" -j"$(nproc)" --target squish squish_tests
echo "sanitize: built in $(($(date +%s) - start)) s"

# halt_on_error/abort: the first report fails the test. Leak checking stays on.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export OMP_WAIT_POLICY=passive
excluded='^(Cli|CliQuantize|CliEval|EvalCli|CompareCli|BenchCli|Doctor|Report|ManifestInterop|Gptq|Calib|BlockGrid|KillResume)\.|^(Shared/SharedGolden|All/LlamaCppGolden|AllTypes/QuantInterop)\.'
(cd "$BUILD" && ctest --output-on-failure -j"$(nproc)" --timeout 600 -E "$excluded")
echo "sanitize: tests done at $(($(date +%s) - start)) s"

SQUISH_FUZZ_BUILD="$BUILD" bash scripts/fuzz.sh -t "$fuzz_seconds"
echo "sanitize: done in $(($(date +%s) - start)) s"
