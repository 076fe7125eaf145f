#!/usr/bin/env bash
# Records llama-quantize's per-tensor type choices for each standard mix on the shared models, as
# tests/data/llamacpp/plans/<model>.<MIX>.json ({tensor: type}); the test suite checks that
# `squish quantize --dry-run --json` chooses the same types.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SHARED="${SQUISH_SHARED:-$(cd "$ROOT/.." && pwd)/shared}"
PEER="${PEER:-$ROOT/build/peers}"
SQUISH="$ROOT/build/squish"
OUT="$ROOT/tests/data/llamacpp/plans"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"
for m in gcide-llama-16M gcide-qwen2-28M; do
  "$SQUISH" convert "$SHARED/models/$m" -o "$WORK/$m.gguf" --type f32 2>/dev/null
  for mix in Q2_K Q2_K_S Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 IQ4_NL IQ4_XS; do
    # llama-quantize refuses some low-bit mixes without an imatrix; those have no golden.
    "$PEER/llama.cpp/build/bin/llama-quantize" "$WORK/$m.gguf" "$WORK/q.gguf" "$mix" 2 >/dev/null 2>&1 || continue
    "$SQUISH" info --json "$WORK/q.gguf" |
      python3 -c "import json,sys; print(json.dumps({t['name']: t['type'] for t in json.load(sys.stdin)['tensors']}, indent=0, sort_keys=True))" \
      > "$OUT/$m.$mix.json"
  done
done
echo "wrote $OUT"
