#!/usr/bin/env bash
# squish auto vs llama.cpp's fixed mixes at the same file size. For each model and mix: quantize
# with the mix (squish quantize: llama-quantize's per-tensor plan), take that file's size, let
# `squish auto --target-size <size>` choose per-tensor types for it, then measure both with one
# evaluator (squish eval: KL divergence vs the float model on held-out text, the float model's
# distributions saved once with --save-base) and print the KLD
# ratio auto / mix and auto's predicted vs measured KLD.
# Usage: bash bench/auto_compare.sh [MODELS] [MIXES] [CHUNKS]
#   MODELS default "gcide-llama-16M gcide-qwen2-28M" (names under $SQUISH_SHARED/models or paths);
#   MIXES default "Q2_K Q3_K_M Q4_K_M Q5_K_M"; CHUNKS: evaluation windows of 512 (default 20).
#   SENS_WINDOWS (default 4) and PROBE_WINDOWS (default 16) windows of 512 calibration tokens
#   (spread over the text) for the per-tensor sensitivities and the probes; the cache lives in
#   $WORK/cache (set WORK and KEEP=1 to reuse it across runs); METHOD (default rtn).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="${SQUISH_SHARED:-$(cd "$ROOT/.." && pwd)/shared}"
MODELS="${1:-gcide-llama-16M gcide-qwen2-28M}"
MIXES="${2:-Q2_K Q3_K_M Q4_K_M Q5_K_M}"
CHUNKS="${3:-20}"
CALIB="${CALIB:-$SHARED/data/gcide-calib.txt}"
TEXT="${TEXT:-$SHARED/data/gcide-valid.txt}"
SENS_WINDOWS="${SENS_WINDOWS:-4}"
PROBE_WINDOWS="${PROBE_WINDOWS:-16}"
METHOD="${METHOD:-rtn}"
SQUISH="${SQUISH:-$ROOT/build/squish}"
[ -x "$SQUISH" ] || bash "$ROOT/scripts/build.sh"
WORK="${WORK:-$(mktemp -d)}"
mkdir -p "$WORK/cache"
[ -n "${KEEP:-}" ] || trap 'rm -rf "$WORK"' EXIT
run() { "$@" > "$WORK/log" 2>&1 || { cat "$WORK/log" >&2; return 1; }; }
json_field() { /usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))$2)" "$1"; }
calib_flags=()
[ "$METHOD" = rtn ] || calib_flags=(--method "$METHOD")

printf "| model | mix | mix bytes | mix KLD | auto bytes | auto KLD | auto / mix | auto predicted | predicted / measured |\n"
printf "|---|---|---:|---:|---:|---:|---:|---:|---:|\n"
for m in $MODELS; do
  model="$m"
  [ -e "$model" ] || model="$SHARED/models/$m"
  name="$(basename "$model")"
  # The float model's distributions once (squish eval --save-base); every file is measured
  # against them, so each evaluation runs one model instead of two.
  base="$WORK/$name.squishkl"
  [ -s "$base" ] || run "$SQUISH" eval --base "$model" -f "$TEXT" --chunks "$CHUNKS" --save-base "$base"
  for mix in $MIXES; do
    fixed="$WORK/$name-$mix.gguf"
    auto="$WORK/$name-auto-$mix.gguf"
    if [ "$METHOD" = rtn ]; then
      run "$SQUISH" quantize "$model" -o "$fixed" --type "$mix"
    else
      run "$SQUISH" quantize "$model" -o "$fixed" --type "$mix" --method "$METHOD" --calib "$CALIB"
    fi
    size=$(stat -c %s "$fixed")
    "$SQUISH" auto "$model" -o "$auto" --target-size "$size" --calib "$CALIB" \
      --sens-windows "$SENS_WINDOWS" --probe-windows "$PROBE_WINDOWS" --cache-dir "$WORK/cache" --no-eval --json \
      "${calib_flags[@]}" > "$WORK/auto.json" 2> "$WORK/log" || { cat "$WORK/log" >&2; exit 1; }
    "$SQUISH" eval "$fixed" --base "$base" -f "$TEXT" --chunks "$CHUNKS" --json > "$WORK/fixed.eval.json" 2> "$WORK/log" || { cat "$WORK/log" >&2; exit 1; }
    "$SQUISH" eval "$auto" --base "$base" -f "$TEXT" --chunks "$CHUNKS" --json > "$WORK/auto.eval.json" 2> "$WORK/log" || { cat "$WORK/log" >&2; exit 1; }
    kf=$(json_field "$WORK/fixed.eval.json" "['mean_kld']")
    ka=$(json_field "$WORK/auto.eval.json" "['mean_kld']")
    pa=$(json_field "$WORK/auto.json" "['predicted_kld']")
    asize=$(stat -c %s "$auto")
    /usr/bin/python3 -c "
import sys
n, mix, fs, kf, asz, ka, pa = sys.argv[1:]
kf, ka, pa = float(kf), float(ka), float(pa)
print(f'| {n} | {mix} | {fs} | {kf:.5f} | {asz} | {ka:.5f} | {ka / kf:.3f} | {pa:.5f} | {pa / ka:.3f} |')
" "$name" "$mix" "$size" "$kf" "$asize" "$ka" "$pa"
  done
done
