#!/usr/bin/env bash
# squish quantize vs llama-quantize (no imatrix, round-to-nearest family), one evaluator (squish
# eval) on held-out text: KL divergence vs the F32 model, perplexity, top-1 agreement, file size,
# quantize wall time; then decode/prefill speed of squish vs llama-bench on the same files.
# Usage: bash bench/quant_compare.sh [MODEL] [TYPES] [CHUNKS] [THREADS]
#   TYPES default "Q8_0 Q6_K Q5_K_M Q4_K_M Q4_0 Q3_K_M Q2_K"; SPEED=0 skips the speed table,
#   QUALITY=0 the quality table (speed only: QUALITY=0 bash bench/quant_compare.sh MODEL "Q4_K_M Q8_0
#   Q2_K" 0 2). Speeds are medians of REPS (default 5) runs of squish bench and llama-bench, run
#   back to back per file; other load on the machine skews both, so the load average is printed.
#   SQUISH=path/to/squish and LLAMA_BIN=dir/with/llama-bench override the binaries.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="${SQUISH_SHARED:-$(cd "$ROOT/.." && pwd)/shared}"
MODEL="${1:-$SHARED/models/gcide-llama-16M}"
TYPES="${2:-Q8_0 Q6_K Q5_K_M Q4_K_M Q4_0 Q3_K_M Q2_K}"
CHUNKS="${3:-20}"
THREADS="${4:-$(nproc)}"
TEXT="${TEXT:-$SHARED/data/gcide-valid.txt}"
PEER="${PEER:-$ROOT/build/peers}"
BIN="${LLAMA_BIN:-$PEER/llama.cpp/build/bin}"
SQUISH="${SQUISH:-$ROOT/build/squish}"
[ -x "$SQUISH" ] || bash "$ROOT/scripts/build.sh"
[ -x "$BIN/llama-quantize" ] || bash "$ROOT/tools/llama_cpp/build.sh" "$PEER"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
name="$(basename "$MODEL")"
"$SQUISH" convert "$MODEL" -o "$WORK/f32.gguf" --type f32 2>/dev/null
now() { date +%s.%N; }
echo "model: $name, text: $(basename "$TEXT"), $CHUNKS windows of 512, threads $THREADS"
QUALITY="${QUALITY:-1}"
if [ "$QUALITY" != 0 ]; then
  echo
  echo "| type | squish KLD | llama.cpp KLD | KLD ratio | squish PPL | llama.cpp PPL | squish MiB | llama.cpp MiB | squish quantize s | llama-quantize s |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
fi
for t in $TYPES; do
  a=$(now); "$SQUISH" quantize "$WORK/f32.gguf" -o "$WORK/s-$t.gguf" --type "$t" 2>/dev/null; b=$(now)
  [ "$QUALITY" = 0 ] && continue
  "$BIN/llama-quantize" "$WORK/f32.gguf" "$WORK/l-$t.gguf" "$t" "$THREADS" >/dev/null 2>&1; c=$(now)
  "$SQUISH" eval "$WORK/s-$t.gguf" --base "$WORK/f32.gguf" -f "$TEXT" --chunks "$CHUNKS" -t "$THREADS" --json > "$WORK/se.json" 2>/dev/null
  "$SQUISH" eval "$WORK/l-$t.gguf" --base "$WORK/f32.gguf" -f "$TEXT" --chunks "$CHUNKS" -t "$THREADS" --json > "$WORK/le.json" 2>/dev/null
  python3 - "$t" "$WORK/se.json" "$WORK/le.json" "$WORK/s-$t.gguf" "$WORK/l-$t.gguf" "$a" "$b" "$c" <<'PY'
import json, os, sys
t, se, le, sf, lf, a, b, c = sys.argv[1:]
s = json.load(open(se)); l = json.load(open(le))
print(f"| {t} | {s['mean_kld']:.5f} | {l['mean_kld']:.5f} | {s['mean_kld'] / l['mean_kld']:.3f} | "
      f"{s['model_ppl']:.4f} | {l['model_ppl']:.4f} | {os.path.getsize(sf) / 2**20:.2f} | "
      f"{os.path.getsize(lf) / 2**20:.2f} | {float(b) - float(a):.1f} | {float(c) - float(b):.1f} |")
PY
done
[ "${SPEED:-1}" = 0 ] && exit 0
echo
echo "speed on squish's files, median of ${REPS:-5} runs each; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| type | test | squish t/s | llama.cpp t/s | ratio |"
echo "|---|---|---|---|---|"
for t in $TYPES; do
  "$SQUISH" bench "$WORK/s-$t.gguf" -p 512 -n 128 -t "$THREADS" -r "${REPS:-5}" --json > "$WORK/sb.json"
  "$BIN/llama-bench" -m "$WORK/s-$t.gguf" -p 512 -n 128 -t "$THREADS" -r "${REPS:-5}" -o json > "$WORK/lb.json" 2>/dev/null
  python3 - "$t" "$WORK/sb.json" "$WORK/lb.json" <<'PY'
import json, statistics, sys
t = sys.argv[1]; s = json.load(open(sys.argv[2])); l = json.load(open(sys.argv[3]))
peer = {("pp" if r["n_gen"] == 0 else "tg"): statistics.median(r["samples_ts"]) for r in l}
for k, label in (("pp", "pp512"), ("tg", "tg128")):
    ours = statistics.median(s[k]["samples"])
    print(f"| {t} | {label} | {ours:.1f} | {peer[k]:.1f} | {ours / peer[k]:.2f}x |")
PY
done
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
