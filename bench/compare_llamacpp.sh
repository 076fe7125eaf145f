#!/usr/bin/env bash
# Side-by-side with llama.cpp on the same GGUF files, same threads, same machine, same run:
#   speed: squish bench vs llama-bench (pp512 prefill, tg128 decode), ratio squish/llama.cpp
#   quality: squish perplexity vs llama-perplexity (same F32 GGUF, same text, ctx 512)
# Usage: bash bench/compare_llamacpp.sh [MODEL] [TEXT] [THREADS]
# Needs the peer: bash tools/llama_cpp/build.sh (PEER=DIR to point at an existing build).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="${SQUISH_SHARED:-$(cd "$ROOT/.." && pwd)/shared}"
MODEL="${1:-$SHARED/models/gcide-llama-16M}"
TEXT="${2:-$SHARED/data/gcide-valid.txt}"
THREADS="${3:-$(nproc)}"
PEER="${PEER:-$ROOT/build/peers}"
LLAMA_BIN="$PEER/llama.cpp/build/bin"
REPS="${REPS:-5}"
CHUNKS="${CHUNKS:-0}"   # 0 = whole file
SQUISH="$ROOT/build/squish"
[ -x "$SQUISH" ] || bash "$ROOT/scripts/build.sh"
[ -x "$LLAMA_BIN/llama-bench" ] || bash "$ROOT/tools/llama_cpp/build.sh" "$PEER"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
name="$(basename "$MODEL")"
echo "model: $name  threads: $THREADS  cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo
echo "| file | test | squish t/s | llama.cpp t/s | squish / llama.cpp |"
echo "|---|---|---|---|---|"
for type in f32 f16; do
  gguf="$WORK/$name-$type.gguf"
  "$SQUISH" convert "$MODEL" -o "$gguf" --type "$type" 2>/dev/null
  "$SQUISH" bench "$gguf" -p 512 -n 128 -t "$THREADS" -r "$REPS" --json > "$WORK/s.json"
  "$LLAMA_BIN/llama-bench" -m "$gguf" -p 512 -n 128 -t "$THREADS" -r "$REPS" -o json > "$WORK/l.json" 2>/dev/null
  python3 - "$WORK/s.json" "$WORK/l.json" "$name-$type.gguf" <<'PY'
import json, sys
s = json.load(open(sys.argv[1])); l = json.load(open(sys.argv[2]))
def peer(kind):
    for r in l:
        if kind == "pp" and r["n_prompt"] > 0 and r["n_gen"] == 0: return r["avg_ts"]
        if kind == "tg" and r["n_gen"] > 0 and r["n_prompt"] == 0: return r["avg_ts"]
for kind, label in (("pp", "pp512"), ("tg", "tg128")):
    a = s[kind]["tokens_per_second"]; b = peer(kind)
    print(f"| {sys.argv[3]} | {label} | {a:.1f} | {b:.1f} | {a / b:.2f}x |")
PY
done
echo
gguf="$WORK/$name-f32.gguf"
"$SQUISH" convert "$MODEL" -o "$gguf" --type f32 2>/dev/null
chunk_arg=(); [ "$CHUNKS" != 0 ] && chunk_arg=(--chunks "$CHUNKS")
"$SQUISH" perplexity "$gguf" -f "$TEXT" -c 512 -t "$THREADS" "${chunk_arg[@]}" --json > "$WORK/sp.json" 2>/dev/null
"$LLAMA_BIN/llama-perplexity" -m "$gguf" -f "$TEXT" -c 512 -b 512 -t "$THREADS" "${chunk_arg[@]}" \
  > "$WORK/lp.txt" 2>&1 || true
python3 - "$WORK/sp.json" "$WORK/lp.txt" <<'PY'
import json, re, sys
s = json.load(open(sys.argv[1])); text = open(sys.argv[2]).read()
m = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", text)
peer = float(m.group(1)) if m else float("nan")
print("| perplexity (F32 GGUF, ctx 512) | squish | llama-perplexity | rel. diff |")
print("|---|---|---|---|")
print(f"| {s['n_chunks']} windows, {s['n_scored']} tokens scored | {s['ppl']:.4f} | {peer:.4f} | {abs(s['ppl'] - peer) / peer:.2e} |")
print(f"\nperplexity speed: squish {s['tokens_per_second']:.0f} tok/s")
PY
