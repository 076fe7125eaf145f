#!/usr/bin/env bash
# W8A8 quality and speed: Q8_0 (per-32-block activations), W8A8 round-to-nearest and W8A8
# SmoothQuant (per-token int8 activations, per-row int8 weights), one evaluator (squish eval: KL
# divergence vs the float model on held-out text), llama-perplexity on the SmoothQuant file (it
# loads as plain Q8_0 and runs with its own per-block activations) next to squish perplexity on
# the same file in both activation modes, and squish bench prefill / decode of Q8_0 vs W8A8.
# Usage: bash bench/w8a8_compare.sh [MODEL] [CHUNKS] [THREADS]
#   CHUNKS: evaluation windows of 512 (default 20); CALIB_TOKENS (default 16384) for SmoothQuant;
#   ALPHA (default search); LLAMA_BIN: llama.cpp's bin folder (default the peer build).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="${SQUISH_SHARED:-$(cd "$ROOT/.." && pwd)/shared}"
MODEL="${1:-$SHARED/models/gcide-llama-16M}"
CHUNKS="${2:-20}"
THREADS="${3:-$(nproc)}"
CALIB="${CALIB:-$SHARED/data/gcide-calib.txt}"
TEXT="${TEXT:-$SHARED/data/gcide-valid.txt}"
CALIB_TOKENS="${CALIB_TOKENS:-16384}"
ALPHA="${ALPHA:-search}"
PEER="${PEER:-$ROOT/build/peers}"
BIN="${LLAMA_BIN:-$PEER/llama.cpp/build/bin}"
SQUISH="${SQUISH:-$ROOT/build/squish}"
[ -x "$SQUISH" ] || bash "$ROOT/scripts/build.sh"
[ -x "$BIN/llama-perplexity" ] || bash "$ROOT/tools/llama_cpp/build.sh" "$PEER"
WORK="${WORK:-$(mktemp -d)}"
mkdir -p "$WORK"
[ -n "${KEEP:-}" ] || trap 'rm -rf "$WORK"' EXIT
run() { "$@" > "$WORK/log" 2>&1 || { cat "$WORK/log" >&2; return 1; }; }
json() { /usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))$2)" "$1"; }
name="$(basename "$MODEL")"
echo "model: $name; SmoothQuant on $CALIB_TOKENS tokens of $(basename "$CALIB"), alpha $ALPHA;" \
  "evaluation: $(basename "$TEXT"), $CHUNKS windows of 512, threads $THREADS"
run "$SQUISH" quantize "$MODEL" -o "$WORK/q8_0.gguf" --type Q8_0
run "$SQUISH" quantize "$MODEL" -o "$WORK/w8a8-rtn.gguf" --type w8a8 --method rtn
/usr/bin/time -f "%e %M" -o "$WORK/sq.time" "$SQUISH" quantize "$MODEL" -o "$WORK/w8a8-sq.gguf" \
  --type w8a8 --method smoothquant --calib "$CALIB" --calib-tokens "$CALIB_TOKENS" \
  --alpha "$ALPHA" -t "$THREADS" > "$WORK/sq.log" 2>&1 || { cat "$WORK/sq.log" >&2; exit 1; }
grep "smoothquant: done" "$WORK/sq.log" | tr '\r' '\n' | tail -1
echo
echo "| file | activations | KLD vs float | PPL | same top token % | MiB |"
echo "|---|---|---|---|---|---|"
for f in q8_0 w8a8-rtn w8a8-sq; do
  for mode in "" 0; do
    [ "$f" = q8_0 ] && [ -n "$mode" ] && continue
    SQUISH_W8A8=$mode "$SQUISH" eval "$WORK/$f.gguf" --base "$MODEL" -f "$TEXT" --chunks "$CHUNKS" \
      -t "$THREADS" --json > "$WORK/$f$mode.eval.json" 2> "$WORK/log" || { cat "$WORK/log" >&2; exit 1; }
    act="per-token int8"
    { [ "$f" = q8_0 ] || [ "$mode" = 0 ]; } && act="per-32-block int8 (Q8_0, as llama.cpp)"
    /usr/bin/python3 - "$WORK/$f$mode.eval.json" "$f" "$act" "$(stat -c %s "$WORK/$f.gguf")" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
top = 100 * j["top1_agreement"]
print(f"| {sys.argv[2]} | {sys.argv[3]} | {j['mean_kld']:.5f} | {j['model_ppl']:.4f} | {top:.2f} | {int(sys.argv[4]) / 2**20:.2f} |")
PY
  done
done
echo
"$BIN/llama-perplexity" -m "$WORK/w8a8-sq.gguf" -f "$TEXT" -c 512 --chunks "$CHUNKS" -t "$THREADS" \
  > "$WORK/lppl.txt" 2>&1 || { tail -5 "$WORK/lppl.txt" >&2; exit 1; }
lppl=$(grep -o "Final estimate: PPL = [0-9.]*" "$WORK/lppl.txt" | awk '{print $NF}')
for mode in 1 0; do
  SQUISH_W8A8=$mode "$SQUISH" perplexity "$WORK/w8a8-sq.gguf" -f "$TEXT" --ctx 512 --chunks "$CHUNKS" \
    -t "$THREADS" --json > "$WORK/sppl$mode.json" 2>/dev/null
done
echo "SmoothQuant file: llama-perplexity $lppl; squish perplexity per-token $(json "$WORK/sppl1.json" "['ppl']")," \
  "per-block $(json "$WORK/sppl0.json" "['ppl']")"
echo
echo "| file | pp512 tok/s | tg128 tok/s |"
echo "|---|---|---|"
for f in q8_0 w8a8-sq; do
  "$SQUISH" bench "$WORK/$f.gguf" -p 512 -n 128 -t "$THREADS" -r "${REPS:-3}" --json > "$WORK/$f.bench.json" 2>/dev/null
  echo "| $f | $(json "$WORK/$f.bench.json" "['pp']['tokens_per_second']" | xargs printf '%.1f') ± $(json "$WORK/$f.bench.json" "['pp']['stddev']" | xargs printf '%.1f') |" \
    "$(json "$WORK/$f.bench.json" "['tg']['tokens_per_second']" | xargs printf '%.1f') ± $(json "$WORK/$f.bench.json" "['tg']['stddev']" | xargs printf '%.1f') |"
done
