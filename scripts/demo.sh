#!/usr/bin/env bash
# The main job on a model, end to end: install dependencies, build, inspect the model, convert it
# to an F16 GGUF and quantize it to Q4_K_M (files llama.cpp loads), measure what quantization cost
# on held-out text (perplexity, KL divergence, top-1 agreement), generate text, measure speed,
# compare both models' answers and write an HTML report of it all (out/report.html).
#   bash scripts/demo.sh [MODEL] [TEXT]
# MODEL defaults to ../shared/models/gcide-llama-16M, TEXT to ../shared/data/gcide-valid.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED="${SQUISH_SHARED:-$(cd .. && pwd)/shared}"
MODEL="${1:-$SHARED/models/gcide-llama-16M}"
TEXT="${2:-$SHARED/data/gcide-valid.txt}"
if [ ! -e "$MODEL" ]; then
  echo "error: model not found: $MODEL" >&2
  echo "usage: bash scripts/demo.sh [MODEL (HF folder, .gguf or llama2.c .bin)] [TEXT]" >&2
  exit 1
fi
if [ ! -f "$TEXT" ]; then
  echo "error: evaluation text not found: $TEXT" >&2
  exit 1
fi
bash scripts/build.sh
mkdir -p out
SQUISH=build/squish
echo "== squish info"
$SQUISH info "$MODEL"
echo "== squish convert -> out/model-f16.gguf"
$SQUISH convert "$MODEL" -o out/model-f16.gguf --type f16
echo "== squish quantize -> out/model-q4_k_m.gguf"
$SQUISH quantize "$MODEL" -o out/model-q4_k_m.gguf --type Q4_K_M
echo "== squish info: the manifest squish recorded in the Q4_K_M model (and out/model-q4_k_m.gguf.manifest.json)"
$SQUISH info out/model-q4_k_m.gguf
echo "== squish perplexity (original; 20 windows of 512 tokens)"
$SQUISH perplexity "$MODEL" -f "$TEXT" --chunks 20
echo "== squish eval: what Q4_K_M cost against the original"
$SQUISH eval out/model-q4_k_m.gguf --base "$MODEL" -f "$TEXT" --chunks 20
echo "== squish run (Q4_K_M)"
$SQUISH run out/model-q4_k_m.gguf -p "Dictionary, n." -n 48
echo "== squish bench (F16, then Q4_K_M)"
$SQUISH bench out/model-f16.gguf -p 256 -n 64 -r 2
$SQUISH bench out/model-q4_k_m.gguf -p 256 -n 64 -r 2
echo "== squish compare: the original and Q4_K_M answer the same prompts (greedy)"
printf '%s\n' "Dictionary, n." "Apple, n." "Water, n." > out/prompts.txt
$SQUISH compare "$MODEL" out/model-q4_k_m.gguf --prompts out/prompts.txt -n 32
echo "== squish report -> out/report.html (every model in out/, per-tensor errors against the original)"
$SQUISH eval out/model-q4_k_m.gguf --base "$MODEL" -f "$TEXT" --chunks 20 --json > out/model-q4_k_m.eval.json
$SQUISH compare "$MODEL" out/model-q4_k_m.gguf --prompts out/prompts.txt -n 32 --json \
  > out/model-q4_k_m.compare.json
$SQUISH report out -o out/report.html
