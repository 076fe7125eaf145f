#!/usr/bin/env bash
# Runs a fuzz pack (made by `scripts/fuzz.sh -p DIR`) on a machine with many cores and no build
# tools: every target at once, sharing the cores so that each one reaches the execution goal.
#
#   fuzz/run_pack.sh PACK OUT SECONDS [GOAL_EXECUTIONS]   (goal default: 10,000,000)
#
# Phase 1 (20 s) runs one process per target to measure its rate; phase 2 gives each target the
# number of processes that its remaining executions need in the time left (the targets needing
# fewest first; a slow one gets what is left). Writes OUT/summary.tsv (target, executions,
# processes, seconds, findings) and OUT/report.tgz: per target its findings (crash-*, timeout-*,
# oom-*, leak-*) and the tails of its logs. Exit status 1 when any target has a finding.
set -uo pipefail
PACK=$(cd "$1" && pwd)
OUT=$2
SECONDS_TOTAL=$3
GOAL=${4:-10000000}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
CORES=$(nproc)
export LD_LIBRARY_PATH="$PACK/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export SQUISH_SHARED="$PACK/shared"
export SQUISH_SOURCE="$PACK/source"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
WORK=${FUZZ_WORK:-/tmp/squish-fuzz-pack}
rm -rf "$WORK"
mkdir -p "$WORK"
tar xzf "$PACK/corpus.tgz" -C "$WORK"  # -> $WORK/fuzz-corpus/<target>
mapfile -t TARGETS < "$PACK/targets.txt"
begin=$(date +%s)

# The pack's binaries need a glibc as new as the build machine's; when this one's is older, they
# run under the build machine's loader and C library, packed in glibc/.
LOADER=()
if ! "$PACK/bin/text_fuzz" -runs=1 "$PACK/seeds/text_fuzz" > "$WORK/smoke.log" 2>&1; then
  LOADER=("$PACK/glibc/ld-linux-x86-64.so.2" --library-path "$PACK/lib:$PACK/glibc")
  if ! "${LOADER[@]}" "$PACK/bin/text_fuzz" -runs=1 "$PACK/seeds/text_fuzz" > "$WORK/smoke.log" 2>&1; then
    echo "fuzz pack: the binaries do not start here:" >&2
    tail -5 "$WORK/smoke.log" >&2
    exit 3
  fi
  echo "fuzz pack: running under the packed glibc"
fi

# fuzz TARGET PROCS SECONDS RUNS_PER_PROCESS PHASE: PROCS libFuzzer processes sharing the
# corpus folder (each adds what it finds there and reloads the others' finds).
fuzz() {
  local target=$1 procs=$2 secs=$3 runs=$4 phase=$5
  local dir=$WORK/$target/$phase
  mkdir -p "$dir" "$WORK/fuzz-corpus/$target"
  local args=(-rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 -print_final_stats=1
              -max_len="$(cat "$PACK/maxlen/$target")" -artifact_prefix="$WORK/$target/"
              -max_total_time="$secs" -reload=1)
  [ "$runs" -gt 0 ] && args+=(-runs="$runs")
  [ -f "$PACK/dict/$target.dict" ] && args+=(-dict="$PACK/dict/$target.dict")
  local i
  for ((i = 0; i < procs; ++i)); do
    (cd "$dir" && "${LOADER[@]}" "$PACK/bin/$target" "${args[@]}" -seed=$((1000 * i + 7)) \
       "$WORK/fuzz-corpus/$target" "$PACK/seeds/$target" > "$dir/fuzz-$i.log" 2>&1) &
  done
  wait
}

executions() {  # executions TARGET PHASE: sum over the phase's processes
  cat "$WORK/$1/$2"/fuzz-*.log 2>/dev/null | grep -h "stat::number_of_executed_units" |
    awk '{s += $2} END {print s + 0}'
}

echo "fuzz pack: ${#TARGETS[@]} targets, $CORES cores, $SECONDS_TOTAL s, goal $GOAL executions"
probe=${PROBE_SECONDS:-20}
for t in "${TARGETS[@]}"; do fuzz "$t" 1 "$probe" 0 probe & done
wait
probe_wall=$(($(date +%s) - begin))  # includes loading the corpus, as phase 2 will
left=$((SECONDS_TOTAL - probe_wall - 15))  # 15 s for shutdown and copying
if [ "$left" -lt 10 ]; then left=10; fi

# Processes each target needs for the rest of its goal in `left` seconds at its probe rate.
declare -A need_procs done_probe
total_need=0
for t in "${TARGETS[@]}"; do
  done_probe[$t]=$(executions "$t" probe)
  rest=$((GOAL - done_probe[$t]))
  rate=$((done_probe[$t] / probe_wall + 1))
  if [ "$rest" -le 0 ]; then n=0; else n=$(((rest + rate * left - 1) / (rate * left))); fi
  need_procs[$t]=$n
  total_need=$((total_need + n))
  echo "  probe $t: ${done_probe[$t]} executions ($rate/s), needs $n process(es)"
done
# Every target that still needs executions gets one process; the other cores go to the targets
# needing the fewest first, so the fast ones reach the goal and a slow one takes what is left
# (scaling every target down alike left most of them short in the first runs).
declare -A procs
free=$CORES
for t in "${TARGETS[@]}"; do
  procs[$t]=0
  if [ "${need_procs[$t]}" -gt 0 ]; then procs[$t]=1; free=$((free - 1)); fi
done
while read -r n t; do
  extra=$((n - 1))
  [ "$extra" -gt "$free" ] && extra=$free
  [ "$extra" -lt 0 ] && extra=0
  procs[$t]=$((procs[$t] + extra))
  free=$((free - extra))
done < <(for t in "${TARGETS[@]}"; do echo "${need_procs[$t]} $t"; done | sort -n)
for t in "${TARGETS[@]}"; do
  n=${procs[$t]}
  [ "$n" -eq 0 ] && continue
  rest=$((GOAL - done_probe[$t]))
  fuzz "$t" "$n" "$left" $(((rest + n - 1) / n)) main &
done
wait

printf "target\texecutions\tprocesses(probe+main)\tseconds\tfindings\n" > "$OUT/summary.tsv"
failed=0
for t in "${TARGETS[@]}"; do
  total=$((done_probe[$t] + $(executions "$t" main)))
  mkdir -p "$WORK/report/$t"
  findings=$(find "$WORK/$t" -maxdepth 1 -type f -name '*-*' | grep -cE '/(crash|timeout|oom|leak|slow-unit)-' || true)
  find "$WORK/$t" -maxdepth 1 -type f -regex '.*/\(crash\|timeout\|oom\|leak\|slow-unit\)-.*' \
    -exec cp {} "$WORK/report/$t/" \;
  for phase in probe main; do
    [ -d "$WORK/$t/$phase" ] && tail -c 20000 -q "$WORK/$t/$phase"/*.log > "$WORK/report/$t/$phase.log" 2>/dev/null
  done
  grep -lE "ERROR: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|libFuzzer)|runtime error" \
    "$WORK/$t"/*/fuzz-*.log > /dev/null 2>&1 && findings=$((findings + 1))
  [ "$findings" -gt 0 ] && failed=1
  printf "%s\t%d\t1+%d\t%d\t%d\n" "$t" "$total" "${procs[$t]}" "$(($(date +%s) - begin))" \
    "$findings" >> "$OUT/summary.tsv"
done
tar czf "$OUT/report.tgz" -C "$WORK" report  # one file: the runner returns only a few
column -t "$OUT/summary.tsv" 2>/dev/null || cat "$OUT/summary.tsv"
exit $failed
