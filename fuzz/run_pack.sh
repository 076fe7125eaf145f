#!/usr/bin/env bash
# Runs a fuzz pack (made by `scripts/fuzz.sh -p DIR`) on a machine with many cores and no build
# tools: every target at once, sharing the cores so that each one reaches the execution goal.
#
#   fuzz/run_pack.sh PACK OUT SECONDS [GOAL] [CORPUS.tgz]
#
# GOAL is executions per target (default 10,000,000) or a file of "target<TAB>executions" lines
# (targets not listed get 10,000,000; a goal of 0 skips the target), e.g. the remaining.tsv of an
# earlier run. CORPUS.tgz (an earlier run's OUT/corpus.tgz) replaces the pack's corpus, so a
# second run continues where the first stopped.
# A smoke step first runs every target once over its seeds and stops (exit 3) when any of them
# fails to start. Phase 1 (20 s) runs one process per target to measure its rate; phase 2 is a
# work queue of chunks (about CHUNK_SECONDS=90 of one target each) handed to free cores, the
# target needing the fewest core-seconds first, so fast targets finish and slow ones then get
# every core. Writes OUT/summary.tsv (target, executions, processes, core-seconds, rate,
# findings), OUT/remaining.tsv (executions still missing per target, a GOAL file for the next
# run), OUT/corpus.tgz (the grown corpus) and OUT/report.tgz: per target its findings (crash-*,
# timeout-*, oom-*, leak-*) and the tails of its logs.
# Exit status 1 when any target has a finding.
set -uo pipefail
PACK=$(cd "$1" && pwd)
OUT=$2
SECONDS_TOTAL=$3
GOAL_ARG=${4:-10000000}
CORPUS=${5:-$PACK/corpus.tgz}
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
tar xzf "$CORPUS" -C "$WORK"  # -> $WORK/fuzz-corpus/<target>
mapfile -t PACKED < "$PACK/targets.txt"
declare -A goal
TARGETS=()
for t in "${PACKED[@]}"; do
  if [ -f "$GOAL_ARG" ]; then
    g=$(awk -v t="$t" '$1 == t {print $2}' "$GOAL_ARG")
    goal[$t]=${g:-10000000}
  else
    goal[$t]=$GOAL_ARG
  fi
  [ "${goal[$t]}" -gt 0 ] && TARGETS+=("$t")
done
begin=$(date +%s)

# The pack's binaries need a glibc as new as the build machine's; when this one's is older, they
# run under the build machine's loader and C library, packed in glibc/.
# The probe is the first packed target (a pack may hold any subset of the targets).
LOADER=()
PROBE=${PACKED[0]}
if ! "$PACK/bin/$PROBE" -runs=1 "$PACK/seeds/$PROBE" > "$WORK/smoke.log" 2>&1; then
  LOADER=("$PACK/glibc/ld-linux-x86-64.so.2" --library-path "$PACK/lib:$PACK/glibc")
  if ! "${LOADER[@]}" "$PACK/bin/$PROBE" -runs=1 "$PACK/seeds/$PROBE" > "$WORK/smoke.log" 2>&1; then
    echo "fuzz pack: the binaries do not start here:" >&2
    tail -5 "$WORK/smoke.log" >&2
    exit 3
  fi
  echo "fuzz pack: running under the packed glibc"
fi
# Smoke step: every target runs its seeds once (libraries load, the tokenizers a target loads at
# start are found), so a broken pack stops here rather than after the whole budget.
for t in "${TARGETS[@]}"; do
  (timeout 120 "${LOADER[@]}" "$PACK/bin/$t" -runs=0 -max_len="$(cat "$PACK/maxlen/$t")" \
     "$PACK/seeds/$t" > "$WORK/smoke-$t.log" 2>&1 || echo "$t" >> "$WORK/smoke-failed") &
done
wait
if [ -s "$WORK/smoke-failed" ]; then
  for t in $(cat "$WORK/smoke-failed"); do
    echo "fuzz pack: $t fails on its seeds:" >&2
    tail -5 "$WORK/smoke-$t.log" >&2
  done
  exit 3
fi
echo "fuzz pack: smoke step passed ($(($(date +%s) - begin)) s)"

# start_fuzz TARGET SECONDS RUNS PHASE SEQ: one libFuzzer process in the background, its log
# in $WORK/TARGET/PHASE/fuzz-SEQ.log. The processes of a target share its corpus folder
# (each adds what it finds there and reloads the others' finds). Sets `started` to its pid.
start_fuzz() {
  local target=$1 secs=$2 runs=$3 phase=$4 seq=$5
  local dir=$WORK/$target/$phase
  mkdir -p "$dir" "$WORK/fuzz-corpus/$target"
  local args=(-rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 -print_final_stats=1
              -max_len="$(cat "$PACK/maxlen/$target")" -artifact_prefix="$WORK/$target/"
              -max_total_time="$secs" -reload=1 -seed=$((1000 * seq + 7)))
  [ "$runs" -gt 0 ] && args+=(-runs="$runs")
  [ -f "$PACK/dict/$target.dict" ] && args+=(-dict="$PACK/dict/$target.dict")
  (cd "$dir" && exec "${LOADER[@]}" "$PACK/bin/$target" "${args[@]}" \
     "$WORK/fuzz-corpus/$target" "$PACK/seeds/$target" > "$dir/fuzz-$seq.log" 2>&1) &
  started=$!
}

log_executions() {  # log_executions LOG...: executions the finished processes reported
  cat "$@" 2>/dev/null | grep -h "stat::number_of_executed_units" | awk '{s += $2} END {print s + 0}'
}

echo "fuzz pack: ${#TARGETS[@]} targets, $CORES cores, $SECONDS_TOTAL s, goal $GOAL_ARG"
probe=${PROBE_SECONDS:-20}
probe_begin=$(date +%s)
for t in "${TARGETS[@]}"; do start_fuzz "$t" "$probe" 0 probe 0; done
wait
probe_wall=$(($(date +%s) - probe_begin))  # includes loading the corpus, as each chunk will
end=$((begin + SECONDS_TOTAL - 20))  # 20 s for shutdown and packing

# Phase 2: a work queue of chunks. Each process runs one chunk of a target (CHUNK_SECONDS at the
# target's probe rate, or what is left of its goal) and exits; whenever a core is free, the next
# chunk goes to the target whose unassigned executions need the fewest core-seconds, so the fast
# targets reach the goal first and the slow ones get every core once the fast ones are covered
# (a fixed split left cores idle as soon as the first targets were done). A target with a finding
# gets no further chunks.
chunk=${CHUNK_SECONDS:-90}
declare -A rate done assigned chunks core_s stopped pid_target pid_runs pid_start pid_seq
for t in "${TARGETS[@]}"; do
  done[$t]=$(log_executions "$WORK/$t/probe"/fuzz-*.log)
  rate[$t]=$((done[$t] / probe_wall + 1))
  assigned[$t]=0
  chunks[$t]=0
  core_s[$t]=$probe_wall
  stopped[$t]=0
  echo "  probe $t: ${done[$t]} executions (${rate[$t]}/s), $((goal[$t] - done[$t])) to go"
  ls "$WORK/$t" | grep -qE '^(crash|timeout|oom|leak|slow-unit)-' && stopped[$t]=1
done
running=0
seq=1
while true; do
  now=$(date +%s)
  while [ "$running" -lt "$CORES" ] && [ $((end - now)) -ge 15 ]; do
    pick=""
    best=0
    for t in "${TARGETS[@]}"; do
      [ "${stopped[$t]}" -eq 1 ] && continue
      open=$((goal[$t] - done[$t] - assigned[$t]))
      [ "$open" -le 0 ] && continue
      need=$((open / rate[$t]))
      if [ -z "$pick" ] || [ "$need" -lt "$best" ]; then pick=$t; best=$need; fi
    done
    [ -z "$pick" ] && break
    open=$((goal[$pick] - done[$pick] - assigned[$pick]))
    runs=$((rate[$pick] * chunk))
    [ "$runs" -gt "$open" ] && runs=$open
    start_fuzz "$pick" $((end - now)) "$runs" main "$seq"
    pid_target[$started]=$pick
    pid_runs[$started]=$runs
    pid_start[$started]=$now
    pid_seq[$started]=$seq
    assigned[$pick]=$((assigned[$pick] + runs))
    chunks[$pick]=$((chunks[$pick] + 1))
    seq=$((seq + 1))
    running=$((running + 1))
  done
  [ "$running" -eq 0 ] && break
  finished=""
  wait -n -p finished
  status=$?
  [ "$status" -eq 127 ] && [ -z "$finished" ] && break  # no child left
  # Only the chunks are counted (bash may report other children it started, e.g. substitutions).
  [ -z "$finished" ] || [ -z "${pid_target[$finished]+x}" ] && continue
  running=$((running - 1))
  t=${pid_target[$finished]}
  assigned[$t]=$((assigned[$t] - pid_runs[$finished]))
  done[$t]=$((done[$t] + $(log_executions "$WORK/$t/main/fuzz-${pid_seq[$finished]}.log")))
  core_s[$t]=$((core_s[$t] + $(date +%s) - pid_start[$finished]))
  [ "$status" -ne 0 ] && stopped[$t]=1
done
wait

printf "target\texecutions\tprocesses(probe+chunks)\tcore_seconds\texec_per_s\tfindings\n" \
  > "$OUT/summary.tsv"
: > "$OUT/remaining.tsv"
failed=0
for t in "${PACKED[@]}"; do
  if [ "${goal[$t]}" -le 0 ]; then
    printf "%s\t0\n" "$t" >> "$OUT/remaining.tsv"
    continue
  fi
  total=${done[$t]}
  rest=$((goal[$t] - total))
  printf "%s\t%d\n" "$t" "$((rest > 0 ? rest : 0))" >> "$OUT/remaining.tsv"
  mkdir -p "$WORK/report/$t"
  findings=$(find "$WORK/$t" -maxdepth 1 -type f -name '*-*' | grep -cE '/(crash|timeout|oom|leak|slow-unit)-' || true)
  find "$WORK/$t" -maxdepth 1 -type f -regex '.*/\(crash\|timeout\|oom\|leak\|slow-unit\)-.*' \
    -exec cp {} "$WORK/report/$t/" \;
  for phase in probe main; do
    [ -d "$WORK/$t/$phase" ] && tail -c 4000 -q "$WORK/$t/$phase"/*.log > "$WORK/report/$t/$phase.log" 2>/dev/null
  done
  grep -lE "ERROR: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|libFuzzer)|runtime error" \
    "$WORK/$t"/*/fuzz-*.log > /dev/null 2>&1 && findings=$((findings + 1))
  [ "$findings" -gt 0 ] && failed=1
  printf "%s\t%d\t1+%d\t%d\t%d\t%d\n" "$t" "$total" "${chunks[$t]}" "${core_s[$t]}" \
    "$((total / (core_s[$t] > 0 ? core_s[$t] : 1)))" "$findings" >> "$OUT/summary.tsv"
done
tar czf "$OUT/report.tgz" -C "$WORK" report  # one file: the runner returns only a few
tar czf "$OUT/corpus.tgz" -C "$WORK" fuzz-corpus  # for the next run's CORPUS argument
column -t "$OUT/summary.tsv" 2>/dev/null || cat "$OUT/summary.tsv"
exit $failed
