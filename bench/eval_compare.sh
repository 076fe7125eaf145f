#!/usr/bin/env bash
# squish eval vs llama-perplexity --kl-divergence on the same pair of GGUF files (both written by
# squish: MODEL converted to F32 as the base, and quantized to TYPE, or converted to F16 when TYPE
# is f16, or, when TYPE is the path of another model with the same tokenizer, that model in F32:
# both runtimes then agree to ~1e-6, so the comparison isolates the two evaluators), same text,
# same windows. Prints the statistics side by side, and the sizes of the two
# saved-base files (llama.cpp's --kl-divergence-base file and squish's .squishkl).
# Usage: bash bench/eval_compare.sh [MODEL] [TYPE] [CHUNKS] [THREADS]
#   defaults: ../shared/models/gcide-llama-16M Q4_K_M 40 $(nproc)
#   env: TEXT (evaluation text), CTX (512), SQUISH (the squish binary), LLAMA_BIN (llama.cpp bin/)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="${SQUISH_SHARED:-$(cd "$ROOT/.." && pwd)/shared}"
MODEL="${1:-$SHARED/models/gcide-llama-16M}"
TYPE="${2:-Q4_K_M}"
CHUNKS="${3:-40}"
THREADS="${4:-$(nproc)}"
TEXT="${TEXT:-$SHARED/data/gcide-valid.txt}"
CTX="${CTX:-512}"
SQUISH="${SQUISH:-$ROOT/build/squish}"
if [ -z "${LLAMA_BIN:-}" ]; then
  LLAMA_BIN=/tmp/llama.cpp/build/bin
  [ -x "$LLAMA_BIN/llama-perplexity" ] || LLAMA_BIN="$ROOT/build/peers/llama.cpp/build/bin"
fi
[ -x "$SQUISH" ] || bash "$ROOT/scripts/build.sh"
[ -x "$LLAMA_BIN/llama-perplexity" ] || bash "$ROOT/tools/llama_cpp/build.sh" "$ROOT/build/peers"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

"$SQUISH" convert "$MODEL" -o "$WORK/base.gguf" --type f32 2>/dev/null
LABEL="$TYPE vs F32"
if [ -e "$TYPE" ]; then
  "$SQUISH" convert "$TYPE" -o "$WORK/model.gguf" --type f32 2>/dev/null
  LABEL="$(basename "$TYPE") F32 vs $(basename "$MODEL") F32"
elif [ "$TYPE" = f16 ] || [ "$TYPE" = bf16 ]; then
  "$SQUISH" convert "$MODEL" -o "$WORK/model.gguf" --type "$TYPE" 2>/dev/null
else
  "$SQUISH" quantize "$WORK/base.gguf" -o "$WORK/model.gguf" --type "$TYPE" 2>/dev/null
fi

PPL="$LLAMA_BIN/llama-perplexity"
common=(-f "$TEXT" -c "$CTX" --chunks "$CHUNKS" -t "$THREADS")
"$PPL" -m "$WORK/base.gguf" "${common[@]}" --kl-divergence-base "$WORK/base.kld" \
  > "$WORK/llama_base.log" 2>&1
"$PPL" -m "$WORK/model.gguf" "${common[@]}" --kl-divergence-base "$WORK/base.kld" \
  --kl-divergence > "$WORK/llama_kld.log" 2>&1
"$SQUISH" eval "$WORK/model.gguf" --base "$WORK/base.gguf" -f "$TEXT" --ctx "$CTX" \
  --chunks "$CHUNKS" -t "$THREADS" --save-base "$WORK/base.squishkl" --json \
  > "$WORK/live.json" 2>/dev/null
"$SQUISH" eval "$WORK/model.gguf" --base "$WORK/base.squishkl" -f "$TEXT" --chunks "$CHUNKS" \
  -t "$THREADS" --json > "$WORK/saved.json" 2>/dev/null

python3 - "$WORK" "$(basename "$MODEL")" "$LABEL" "$CHUNKS" "$CTX" <<'PY'
import json, os, re, sys
work, name, label, chunks, ctx = sys.argv[1:]
live = json.load(open(f"{work}/live.json"))
saved = json.load(open(f"{work}/saved.json"))
base_log = open(f"{work}/llama_base.log").read()
kld_log = open(f"{work}/llama_kld.log").read()

def grab(pattern, text=kld_log):
    m = re.search(pattern, text)
    if not m:
        sys.exit(f"eval_compare: '{pattern}' not found in llama-perplexity's output:\n" + text[-2000:])
    return float(m.group(1))

num = r"(-?[0-9.]+)"
llama = {
    "PPL(base)": grab(r"Final estimate: PPL = " + num, base_log),
    "PPL(model)": grab(r"Mean PPL\(Q\)\s*:\s*" + num),
    "PPL(model)/PPL(base)": grab(r"Mean PPL\(Q\)/PPL\(base\)\s*:\s*" + num),
    "ln(PPL(model)/PPL(base))": grab(r"Mean ln\(PPL\(Q\)/PPL\(base\)\)\s*:\s*" + num),
    "Cor(ln PPL(model), ln PPL(base)) %": grab(r"Cor\(ln\(PPL\(Q\)\), ln\(PPL\(base\)\)\):\s*" + num),
    "mean KLD": grab(r"Mean    KLD:\s*" + num),
    "median KLD": grab(r"Median  KLD:\s*" + num),
    "p99 KLD": grab(r"99\.0%   KLD:\s*" + num),
    "p99.9 KLD": grab(r"99\.9%   KLD:\s*" + num),
    "max KLD": grab(r"Maximum KLD:\s*" + num),
    "RMS Δp %": grab(r"RMS Δp    :\s*" + num),
    "same top %": grab(r"Same top p:\s*" + num),
}
llama_base_in_kld_run = grab(r"Mean PPL\(base\)\s*:\s*" + num)

def ours(j):
    return {
        "PPL(base)": j["base_ppl"],
        "PPL(model)": j["model_ppl"],
        "PPL(model)/PPL(base)": j["ppl"]["ratio"]["value"],
        "ln(PPL(model)/PPL(base))": j["ppl"]["ln_ratio"]["value"],
        "Cor(ln PPL(model), ln PPL(base)) %": 100 * j["ppl"]["ln_correlation"],
        "mean KLD": j["mean_kld"],
        "median KLD": j["median_kld"],
        "p99 KLD": j["p99_kld"],
        "p99.9 KLD": j["kld"]["p999"],
        "max KLD": j["max_kld"],
        "RMS Δp %": 100 * j["delta_p"]["rms"]["value"],
        "same top %": 100 * j["same_top"]["value"],
    }

a, b = ours(live), ours(saved)
print(f"model: {name}, {label} (GGUF files written by squish), {os.path.basename(live['file'])}, "
      f"{live['n_chunks']} windows of {ctx}, {live['n_scored']} scored tokens")
print()
print("| statistic | squish eval | squish eval, saved base | llama-perplexity | squish - llama |")
print("|---|---|---|---|---|")
for k, v in llama.items():
    d = a[k] - v
    rel = f" ({100 * d / v:+.2f} %)" if k.startswith(("PPL", "mean KLD")) and v else ""
    unit = " pp" if k.endswith("%") else ""
    print(f"| {k} | {a[k]:.6g} | {b[k]:.6g} | {v:.6g} | {d:+.4g}{unit}{rel} |")
print()
print(f"llama-perplexity's kl-divergence run reports PPL(base) = {llama_base_in_kld_run:.6g} "
      "(from its 16-bit quantized base log-probs; the table uses its base run's exact PPL).")
kld_bytes = os.path.getsize(f"{work}/base.kld")
sq_bytes = os.path.getsize(f"{work}/base.squishkl")
sb = saved["saved_base"]
print(f"saved base: llama.cpp {kld_bytes} bytes, squish {sq_bytes} bytes (top-{sb['top_k']} + tail "
      f"samples), {kld_bytes / sq_bytes:.1f}x smaller; squish saved-base KLD vs live: "
      f"{100 * (b['mean KLD'] / a['mean KLD'] - 1):+.3f} %, rigorous per-token tail bound "
      f"(mean) {sb['kld_tail_error_bound']:.3g}, base tail mass mean {sb['mean_tail_mass']:.3g}")
PY
