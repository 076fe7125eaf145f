#!/usr/bin/env bash
# Regenerates tests/data/llamacpp/: llama.cpp's own logits on F32 GGUF files written by
# `squish convert`, for the tiny fixtures and the two shared gcide models. The test suite then
# checks that squish, running the same GGUF, agrees with llama.cpp.
#   bash tools/llama_cpp/make_goldens.sh        (after scripts/build.sh and tools/llama_cpp/build.sh)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SHARED="${SQUISH_SHARED:-$(cd "$ROOT/.." && pwd)/shared}"
PEER="${PEER:-$ROOT/build/peers}"
LOGITS="$PEER/bin/llama_logits"
SQUISH="$ROOT/build/squish"
OUT="$ROOT/tests/data/llamacpp"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"
tokens_of() { python3 -c "import json,sys; print(' '.join(map(str, json.load(open(sys.argv[1]))['tokens'])))" "$1"; }
for a in llama llama_linear mistral qwen2 phi3 gemma smollm; do
  "$SQUISH" convert "$ROOT/tests/data/fixtures/$a" -o "$WORK/$a.gguf" --type f32 2>/dev/null
  "$LOGITS" logits "$WORK/$a.gguf" "$OUT/$a.logits.bin" $(tokens_of "$ROOT/tests/data/fixtures/$a/golden.json")
done
"$SQUISH" convert "$SHARED/models/stories260K/stories260K.bin" -o "$WORK/stories.gguf" --type f32 2>/dev/null
"$LOGITS" logits "$WORK/stories.gguf" "$OUT/stories260K.logits.bin" $(tokens_of "$OUT/stories260K.json")
for m in gcide-llama-16M gcide-qwen2-28M; do
  "$SQUISH" convert "$SHARED/models/$m" -o "$WORK/$m.gguf" --type f32 2>/dev/null
  "$LOGITS" logits "$WORK/$m.gguf" "$OUT/$m.logits.bin" $(tokens_of "$ROOT/tests/data/fixtures/$m.json")
done
echo "wrote $OUT"
