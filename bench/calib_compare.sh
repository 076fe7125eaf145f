#!/usr/bin/env bash
# Calibrated quantization: squish (imatrix, GPTQ) vs llama.cpp (llama-imatrix + llama-quantize
# --imatrix), same calibration text, same mixes (identical per-tensor plans, so identical file
# sizes), one evaluator (squish eval: KL divergence vs the float model on held-out text), then
# llama-perplexity on squish's files next to squish's own perplexity, wall time and peak memory of
# every step (/usr/bin/time).
# Usage: bash bench/calib_compare.sh [MODEL] [TYPES] [CHUNKS] [THREADS]
#   TYPES default "Q4_K_M Q3_K_M Q2_K"; CHUNKS: evaluation windows of 512 (default 40).
#   CALIB_TOKENS (default 32768) and METHOD (default gptq) for squish; LLAMA_BIN: llama.cpp's
#   bin folder (default the peer build, tools/llama_cpp/build.sh; llama-imatrix is built there).
# SQUISH_MODE=auto compares at equal FILE SIZE instead of equal plan: llama-quantize --imatrix
#   writes each mix, then `squish auto --target-size <bytes of llama's file> --method $METHOD`
#   chooses squish's per-tensor types under that size (sensitivities cached in $WORK/cache;
#   AUTO_CACHE=DIR copies an earlier cache in). LLAMA_WORK=DIR reuses f32.gguf and
#   l.imatrix.gguf from an earlier run (llama-imatrix is then not re-timed).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="${SQUISH_SHARED:-$(cd "$ROOT/.." && pwd)/shared}"
MODEL="${1:-$SHARED/models/gcide-llama-16M}"
TYPES="${2:-Q4_K_M Q3_K_M Q2_K}"
CHUNKS="${3:-40}"
THREADS="${4:-$(nproc)}"
CALIB="${CALIB:-$SHARED/data/gcide-calib.txt}"
TEXT="${TEXT:-$SHARED/data/gcide-valid.txt}"
CALIB_TOKENS="${CALIB_TOKENS:-32768}"
METHOD="${METHOD:-gptq}"
PEER="${PEER:-$ROOT/build/peers}"
BIN="${LLAMA_BIN:-$PEER/llama.cpp/build/bin}"
SQUISH="${SQUISH:-$ROOT/build/squish}"
[ -x "$SQUISH" ] || bash "$ROOT/scripts/build.sh"
[ -x "$BIN/llama-quantize" ] || bash "$ROOT/tools/llama_cpp/build.sh" "$PEER"
if [ ! -x "$BIN/llama-imatrix" ]; then
  cmake --build "$BIN/.." --target llama-imatrix -j "$THREADS" >/dev/null
fi
WORK="${WORK:-$(mktemp -d)}"
mkdir -p "$WORK"
[ -n "${KEEP:-}" ] || trap 'rm -rf "$WORK"' EXIT
name="$(basename "$MODEL")"
# "seconds peak_MiB" of a command, its output to $WORK/log.
timed() {
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" > "$WORK/log" 2>&1 || { cat "$WORK/log" >&2; return 1; }
  awk '{printf "%.1f %.0f", $1, $2 / 1024}' "$WORK/time"
}
windows=$((CALIB_TOKENS / 512))
if [ "${SQUISH_MODE:-plan}" = auto ]; then
  LLAMA_WORK="${LLAMA_WORK:-$WORK}"
  [ -s "$LLAMA_WORK/f32.gguf" ] || "$SQUISH" convert "$MODEL" -o "$LLAMA_WORK/f32.gguf" --type f32 \
    > "$WORK/log" 2>&1 || { cat "$WORK/log" >&2; exit 1; }
  echo "model: $name; equal file size: squish auto --method $METHOD ($windows calibration windows" \
    "of 512) under the size of llama-quantize --imatrix's file; calibration: $(basename "$CALIB");" \
    "evaluation: $(basename "$TEXT"), $CHUNKS windows of 512, threads $THREADS"
  if [ -s "$LLAMA_WORK/l.imatrix.gguf" ]; then
    echo "llama-imatrix: reused $LLAMA_WORK/l.imatrix.gguf (timed in the earlier run)"
  else
    read -r li_s li_m <<< "$(timed "$BIN/llama-imatrix" -m "$LLAMA_WORK/f32.gguf" -f "$CALIB" \
      -o "$LLAMA_WORK/l.imatrix.gguf" -c 512 -t "$THREADS" --no-ppl)"
    echo "llama-imatrix (all of $(basename "$CALIB")): $li_s s, $li_m MiB peak"
  fi
  mkdir -p "$WORK/cache"
  [ -z "${AUTO_CACHE:-}" ] || cp -n "$AUTO_CACHE"/squish-auto-*.json "$WORK/cache/" 2>/dev/null || true
  echo
  echo "| type | squish auto $METHOD KLD | llama.cpp imatrix KLD | KLD ratio | squish PPL | llama.cpp PPL | llama-perplexity on squish's file | squish perplexity on it | bytes squish / llama | squish auto s / MiB | llama-quantize s / MiB |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  for t in $TYPES; do
    read -r lq_s lq_m <<< "$(timed "$BIN/llama-quantize" --imatrix "$LLAMA_WORK/l.imatrix.gguf" \
      "$LLAMA_WORK/f32.gguf" "$WORK/l-$t.gguf" "$t" "$THREADS")"
    size=$(stat -c %s "$WORK/l-$t.gguf")
    read -r sq_s sq_m <<< "$(timed "$SQUISH" auto "$MODEL" -o "$WORK/a-$t.gguf" --target-size "$size" \
      --calib "$CALIB" --method "$METHOD" --calib-tokens "$CALIB_TOKENS" --cache-dir "$WORK/cache" \
      --no-eval -t "$THREADS" ${SQUISH_ARGS:-})"
    cp "$WORK/log" "$WORK/a-$t.log"
    [ -s "$WORK/l-$t.eval.json" ] || "$SQUISH" eval "$WORK/l-$t.gguf" --base "$MODEL" -f "$TEXT" \
      --chunks "$CHUNKS" -t "$THREADS" --json > "$WORK/l-$t.eval.json" 2>/dev/null
    "$SQUISH" eval "$WORK/a-$t.gguf" --base "$MODEL" -f "$TEXT" --chunks "$CHUNKS" -t "$THREADS" \
      --json > "$WORK/a-$t.eval.json" 2>/dev/null
    "$BIN/llama-perplexity" -m "$WORK/a-$t.gguf" -f "$TEXT" -c 512 --chunks "$CHUNKS" \
      -t "$THREADS" > "$WORK/a-$t.lppl.txt" 2>&1
    "$SQUISH" perplexity "$WORK/a-$t.gguf" -f "$TEXT" --ctx 512 --chunks "$CHUNKS" -t "$THREADS" \
      --json > "$WORK/a-$t.sppl.json" 2>/dev/null
    /usr/bin/python3 - "$t" "$WORK" "$sq_s" "$sq_m" "$lq_s" "$lq_m" <<'PY'
import json, os, re, sys
t, work, sq_s, sq_m, lq_s, lq_m = sys.argv[1:]
s = json.load(open(f"{work}/a-{t}.eval.json")); l = json.load(open(f"{work}/l-{t}.eval.json"))
lppl = float(re.search(r"Final estimate: PPL = ([0-9.]+)", open(f"{work}/a-{t}.lppl.txt").read()).group(1))
sppl = json.load(open(f"{work}/a-{t}.sppl.json"))["ppl"]
ss, ls = os.path.getsize(f"{work}/a-{t}.gguf"), os.path.getsize(f"{work}/l-{t}.gguf")
print(f"| {t} | {s['mean_kld']:.5f} | {l['mean_kld']:.5f} | {s['mean_kld'] / l['mean_kld']:.3f} | "
      f"{s['model_ppl']:.4f} | {l['model_ppl']:.4f} | {lppl:.4f} | {sppl:.4f} | {ss} / {ls} | "
      f"{sq_s} / {sq_m} | {lq_s} / {lq_m} |")
PY
  done
  exit 0
fi
"$SQUISH" convert "$MODEL" -o "$WORK/f32.gguf" --type f32 > "$WORK/log" 2>&1 || { cat "$WORK/log" >&2; exit 1; }
echo "model: $name; calibration: $(basename "$CALIB"), llama-imatrix all of it, squish $METHOD" \
  "$windows windows of 512; evaluation: $(basename "$TEXT"), $CHUNKS windows of 512, threads $THREADS"
echo
read -r li_s li_m <<< "$(timed "$BIN/llama-imatrix" -m "$WORK/f32.gguf" -f "$CALIB" \
  -o "$WORK/l.imatrix.gguf" -c 512 -t "$THREADS" --no-ppl)"
read -r si_s si_m <<< "$(timed "$SQUISH" imatrix "$WORK/f32.gguf" -f "$CALIB" \
  -o "$WORK/s.imatrix.gguf" -c 512 -t "$THREADS")"
echo "| step | wall s | peak MiB |"
echo "|---|---|---|"
echo "| llama-imatrix (all windows) | $li_s | $li_m |"
echo "| squish imatrix (all windows) | $si_s | $si_m |"
echo
echo "| type | squish $METHOD KLD | llama.cpp imatrix KLD | KLD ratio | squish PPL | llama.cpp PPL | llama-perplexity on squish's file | squish perplexity on it | MiB (both) | squish $METHOD s / MiB | llama-quantize s / MiB |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for t in $TYPES; do
  read -r sq_s sq_m <<< "$(timed "$SQUISH" quantize "$MODEL" -o "$WORK/s-$t.gguf" --type "$t" \
    --method "$METHOD" --calib "$CALIB" --calib-tokens "$CALIB_TOKENS" -t "$THREADS" ${SQUISH_ARGS:-})"
  read -r lq_s lq_m <<< "$(timed "$BIN/llama-quantize" --imatrix "$WORK/l.imatrix.gguf" \
    "$WORK/f32.gguf" "$WORK/l-$t.gguf" "$t" "$THREADS")"
  for who in s l; do
    "$SQUISH" eval "$WORK/$who-$t.gguf" --base "$MODEL" -f "$TEXT" --chunks "$CHUNKS" \
      -t "$THREADS" --json > "$WORK/$who-eval.json" 2>/dev/null
  done
  # llama.cpp on squish's file, and squish on the same file, same windows.
  "$BIN/llama-perplexity" -m "$WORK/s-$t.gguf" -f "$TEXT" -c 512 --chunks "$CHUNKS" \
    -t "$THREADS" > "$WORK/lppl.txt" 2>&1
  "$SQUISH" perplexity "$WORK/s-$t.gguf" -f "$TEXT" --ctx 512 --chunks "$CHUNKS" -t "$THREADS" \
    --json > "$WORK/sppl.json" 2>/dev/null
  python3 - "$t" "$WORK" "$sq_s" "$sq_m" "$lq_s" "$lq_m" <<'PY'
import json, os, re, sys
t, work, sq_s, sq_m, lq_s, lq_m = sys.argv[1:]
s = json.load(open(f"{work}/s-eval.json")); l = json.load(open(f"{work}/l-eval.json"))
lppl = float(re.search(r"Final estimate: PPL = ([0-9.]+)", open(f"{work}/lppl.txt").read()).group(1))
sppl = json.load(open(f"{work}/sppl.json"))["ppl"]
ss, ls = os.path.getsize(f"{work}/s-{t}.gguf"), os.path.getsize(f"{work}/l-{t}.gguf")
size = f"{ss / 2**20:.2f}" if abs(ss - ls) < 2**16 else f"{ss / 2**20:.2f} / {ls / 2**20:.2f}"
print(f"| {t} | {s['mean_kld']:.5f} | {l['mean_kld']:.5f} | {s['mean_kld'] / l['mean_kld']:.3f} | "
      f"{s['model_ppl']:.4f} | {l['model_ppl']:.4f} | {lppl:.4f} | {sppl:.4f} | {size} | "
      f"{sq_s} / {sq_m} | {lq_s} / {lq_m} |")
PY
done
