#!/usr/bin/env bash
# Decode speed of one quantization in three runtimes: ONNX Runtime (CPU, MatMulNBits with
# accuracy_level 4, driven by tools/onnxruntime/logits.js) on `squish export --format onnx` of
# the GGUF, squish's own runtime (squish bench) and llama.cpp (llama-bench) on the same GGUF.
# Usage: bash bench/onnx_compare.sh [MODEL] [TYPES] [THREADS]
#   default: ../shared/models/gcide-qwen2-28M, "Q4_0 Q8_0", 2 threads. Decode tokens N (default
#   128) after a 16-token prompt; medians of REPS (default 5) runs. The machine is shared: the load
#   average is printed before and after, and all three runtimes run back to back per type.
#   SQUISH, LLAMA_BIN and SQUISH_ORT_NODE_MODULES override where the binaries are.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="${SQUISH_SHARED:-$(cd "$ROOT/.." && pwd)/shared}"
MODEL="${1:-$SHARED/models/gcide-qwen2-28M}"
TYPES="${2:-Q4_0 Q8_0}"
THREADS="${3:-2}"
N="${N:-128}"
REPS="${REPS:-5}"
SQUISH="${SQUISH:-$ROOT/build/squish}"
BIN="${LLAMA_BIN:-/tmp/llama.cpp/build/bin}"
ORT="${SQUISH_ORT_NODE_MODULES:-$ROOT/build/ort-peer/node_modules}"
[ -x "$SQUISH" ] || bash "$ROOT/scripts/build.sh"
[ -d "$ORT/onnxruntime-node" ] || ORT="$(bash "$ROOT/tools/onnxruntime/install.sh" "$ROOT/build/ort-peer")"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
IDS="1,45,67,89,120,33,250,7,99,150,12,200,17,18,19,20"
echo "model: $(basename "$MODEL"), decode $N tokens after 16, threads $THREADS, median of $REPS"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| type | ORT tok/s | squish tok/s | llama.cpp tok/s | ORT / squish | ORT / llama.cpp |"
echo "|---|---|---|---|---|---|"
for t in $TYPES; do
  "$SQUISH" quantize "$MODEL" -o "$WORK/$t.gguf" --type "$t" --pure 2>/dev/null
  "$SQUISH" export "$WORK/$t.gguf" --format onnx -o "$WORK/$t-onnx" --accuracy-level 4 2>/dev/null
  ort=()
  for _ in $(seq "$REPS"); do
    ort+=("$(SQUISH_ORT_NODE_MODULES="$ORT" node "$ROOT/tools/onnxruntime/logits.js" "$WORK/$t-onnx" \
      "$IDS" - --bench "$N" --threads "$THREADS" | sed -n 's/^decode_tok_s=\([0-9.]*\).*/\1/p')")
  done
  "$SQUISH" bench "$WORK/$t.gguf" -p 16 -n "$N" -t "$THREADS" -r "$REPS" --json > "$WORK/sb.json"
  "$BIN/llama-bench" -m "$WORK/$t.gguf" -p 0 -n "$N" -t "$THREADS" -r "$REPS" -o json > "$WORK/lb.json" 2>/dev/null
  python3 - "$t" "$WORK/sb.json" "$WORK/lb.json" "${ort[@]}" <<'PY'
import json, statistics, sys
t, sb, lb, *ort = sys.argv[1:]
o = statistics.median(float(x) for x in ort)
s = statistics.median(json.load(open(sb))["tg"]["samples"])
l = statistics.median(next(r for r in json.load(open(lb)) if r["n_gen"] > 0)["samples_ts"])
print(f"| {t} | {o:.1f} | {s:.1f} | {l:.1f} | {o / s:.2f}x | {o / l:.2f}x |")
PY
done
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
