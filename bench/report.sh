#!/usr/bin/env bash
# bench/report.sh - runs the benchmarks of the performance issue and writes bench/REPORT.md
# with its plots in bench/plots/*.png. `make bench` builds, then runs this.
#
#   bench/report.sh                  the bounded default: about 8 minutes on 2 cores
#   BENCH_QUICK=1 bench/report.sh    a smoke run of a minute (small sizes, one repeat)
#
# Sizes (environment): BENCH_EVENTS (Nexmark events per throughput run at p=1: 20000000, about
# 3 s, so that a run takes a few checkpoints; p=2 runs take 1.5 times as many),
# BENCH_REPEAT (interleaved repeats, medians: 3; the word counts, whose runs are short and
# vary more: BENCH_WC_REPEAT, 5), BENCH_LATENCY_SECONDS (length of each paced
# latency run: 3), BENCH_WORDS (words of the 100 K-vocabulary word count: 60000000, about 4 s
# at p=1, so that a run takes a few checkpoints), BENCH_WC_BIG_WORDS (words of the
# 10 M-vocabulary word count: 10000000, about 2 s and one checkpoint mid-run),
# BENCH_WC_LONG_WORDS (words of the same word count run for about 5 s, so that it takes
# several checkpoints of a state of millions of entries: 40000000; 0 skips it), BENCH_KEYS
# (state memory keys: 10000000), BENCH_PROFILE=0 skips perf. BUILD (build directory: build), BENCH_OUT (raw logs and data:
# $BUILD/bench-report), BENCH_REPORT (the report: bench/REPORT.md).
#
# What runs, in this order, each step in its own process:
#   1. bench_nexmark -p 1, then -p 2: the bare generator loop, the gen job and q0-q3, each
#      without and with a checkpoint every second (interleaved, BENCH_REPEAT times, medians);
#      then per query a max-rate run and runs at 50 % of that rate without and with
#      checkpoints (BENCH_REPEAT times, interleaved; medians of the percentiles), recording
#      end-to-end latency.
#   2. bench_word_count at 100 K words (p=1, p=2) and at 10 M words (p=1), STREAMING, the bare
#      loop and the engine without and with checkpoints, interleaved; then the 10 M-vocabulary
#      count on BENCH_WC_LONG_WORDS words, the engine only, without and with checkpoints
#      (BENCH_REPEAT interleaved repeats).
#   3. bench_state_memory: heap keyed state of BENCH_KEYS i64 keys with i64 values.
#   4. perf record of q0 and of the word count (engine only), top functions by self time; and
#      of q3 and of the 10 M-vocabulary word count with checkpoints, with call graphs
#      (inclusive time: how much the checkpoint I/O thread takes).
# Every step records the machine's load while it ran (the CPU time other processes took),
# since this machine is shared. bench/report.py then writes the report and the plot data,
# and gnuplot (bench/plot/*.gp) renders the plots.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
BIN=$BUILD/bin
OUT=${BENCH_OUT:-$BUILD/bench-report}
REPORT=${BENCH_REPORT:-$ROOT/bench/REPORT.md}
PLOTS=$(dirname "$REPORT")/plots

if [[ ${BENCH_QUICK:-0} == 1 ]]; then
    : "${BENCH_EVENTS:=2000000}" "${BENCH_REPEAT:=1}" "${BENCH_LATENCY_SECONDS:=2}"
    : "${BENCH_WORDS:=2000000}" "${BENCH_WC_BIG_WORDS:=2000000}" "${BENCH_KEYS:=1000000}"
    : "${BENCH_WC_LONG_WORDS:=4000000}"
fi
EVENTS=${BENCH_EVENTS:-20000000}
EVENTS_P2=$((EVENTS * 3 / 2))
REPEAT=${BENCH_REPEAT:-3}
LAT_SECONDS=${BENCH_LATENCY_SECONDS:-3}
WORDS=${BENCH_WORDS:-60000000}
WC_BIG_WORDS=${BENCH_WC_BIG_WORDS:-10000000}
WC_LONG_WORDS=${BENCH_WC_LONG_WORDS:-40000000}
KEYS=${BENCH_KEYS:-10000000}
PROFILE=${BENCH_PROFILE:-1}
WC_REPEAT=${BENCH_WC_REPEAT:-$((REPEAT > 1 ? REPEAT + 2 : 1))}

for b in bench_nexmark bench_word_count bench_state_memory; do
    if [[ ! -x $BIN/$b ]]; then
        echo "report.sh: $BIN/$b not built (run make build)" >&2
        exit 1
    fi
done
for tool in gnuplot python3; do
    if ! command -v "$tool" >/dev/null; then
        echo "report.sh: $tool not found (scripts/setup.sh installs it)" >&2
        exit 1
    fi
done

rm -rf "$OUT"
mkdir -p "$OUT" "$PLOTS"
export SLUICE_LOG_LEVEL=warn
START=$(date +%s)

# ---- the machine ---------------------------------------------------------------------------
{
    echo "date	$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "cpu	$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
    echo "nproc	$(nproc)"
    echo "mem	$(free -h | awk '/^Mem:/ {print $2}')"
    echo "mem_avail	$(free -h | awk '/^Mem:/ {print $7}')"
    echo "kernel	$(uname -sr)"
    echo "hypervisor	$(lscpu 2>/dev/null | awk -F': *' '/Hypervisor vendor/ {print $2}')"
    echo "caches	$(lscpu 2>/dev/null | awk -F': *' '/^L[123][di]? cache/ {printf "%s%s %s", sep, $1, $2; sep="; "}')"
    echo "compiler	$(cc --version | head -1)"
    echo "build_type	$(awk -F= '/^CMAKE_BUILD_TYPE:/ {print $2}' "$BUILD/CMakeCache.txt" 2>/dev/null)"
    if git -C "$ROOT" rev-parse --short HEAD >/dev/null 2>&1; then
        echo "commit	$(git -C "$ROOT" rev-parse --short HEAD)"
        echo "dirty	$(git -C "$ROOT" status --porcelain -- src include CMakeLists.txt | awk '{print $2}' | tr '\n' ' ')"
    fi
    echo "sizes	events=$EVENTS events_p2=$EVENTS_P2 repeat=$REPEAT wc_repeat=$WC_REPEAT latency_seconds=$LAT_SECONDS words=$WORDS wc_big_words=$WC_BIG_WORDS wc_long_words=$WC_LONG_WORDS keys=$KEYS"
} >"$OUT/machine.tsv"

# ---- steps, with the load other processes put on the machine meanwhile ----------------------
TCK=$(getconf CLK_TCK)
cpu_busy() { # busy and total jiffies of all CPUs
    awk '/^cpu / {b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6}' /proc/stat
}
own_cpu() { # CPU jiffies of this shell's waited-for children
    awk '{print $16 + $17}' /proc/$$/stat
}
echo "step	wall_s	own_cpu_s	others_cpu_share	load1" >"$OUT/steps.tsv"
step() { # step NAME LOG COMMAND...: runs the command, output to LOG, records the load
    local name=$1 log=$2
    shift 2
    echo "report.sh: $name" >&2
    local t0 b0 o0 t1 b1 o1
    t0=$(date +%s.%N)
    read -r b0 _ < <(cpu_busy)
    o0=$(own_cpu)
    if ! "$@" >"$log" 2>&1; then
        cat "$log" >&2
        echo "report.sh: $name failed (log: $log)" >&2
        exit 1
    fi
    t1=$(date +%s.%N)
    read -r b1 _ < <(cpu_busy)
    o1=$(own_cpu)
    awk -v n="$name" -v t0="$t0" -v t1="$t1" -v b="$((b1 - b0))" -v o="$((o1 - o0))" \
        -v tck="$TCK" -v cpus="$(nproc)" -v l="$(cut -d' ' -f1 /proc/loadavg)" \
        'BEGIN { w = t1 - t0; own = o / tck; others = b / tck - own; if (others < 0) others = 0;
                 printf "%s\t%.1f\t%.1f\t%.2f\t%s\n", n, w, own, others / (w * cpus), l }' \
        >>"$OUT/steps.tsv"
}

NX=(--query all --repeat "$REPEAT" --checkpoints both --latency --seconds "$LAT_SECONDS"
    --csv "$OUT/nexmark.tsv")
step "nexmark p=1" "$OUT/nexmark-p1.log" "$BIN/bench_nexmark" -p 1 --events "$EVENTS" "${NX[@]}"
step "nexmark p=2" "$OUT/nexmark-p2.log" "$BIN/bench_nexmark" -p 2 --events "$EVENTS_P2" "${NX[@]}"

WC=(--mode streaming --checkpoints both --repeat "$WC_REPEAT" --csv "$OUT/wordcount.tsv")
step "word count 100K p=1" "$OUT/wc-100k-p1.log" \
    "$BIN/bench_word_count" --words "$WORDS" --vocab 100000 -p 1 "${WC[@]}"
step "word count 100K p=2" "$OUT/wc-100k-p2.log" \
    "$BIN/bench_word_count" --words "$WORDS" --vocab 100000 -p 2 "${WC[@]}"
step "word count 10M p=1" "$OUT/wc-10m-p1.log" \
    "$BIN/bench_word_count" --words "$WC_BIG_WORDS" --vocab 10000000 -p 1 --mode streaming \
    --checkpoints both --repeat "$WC_REPEAT" --csv "$OUT/wordcount.tsv"
if ((WC_LONG_WORDS > 0)); then
    step "word count 10M long p=1" "$OUT/wc-10m-long-p1.log" \
        "$BIN/bench_word_count" --words "$WC_LONG_WORDS" --vocab 10000000 -p 1 --mode streaming \
        --checkpoints both --repeat "$REPEAT" --no-baselines --csv "$OUT/wordcount-long.tsv"
fi

step "state memory" "$OUT/state-memory.log" \
    "$BIN/bench_state_memory" --keys "$KEYS" --key i64 --csv "$OUT/memory.tsv"

# ---- profiles ------------------------------------------------------------------------------
profile() { # profile NAME CALLGRAPH COMMAND...: perf record, then the top functions
    local name=$1 callgraph=$2
    shift 2
    local g=()
    [[ $callgraph == 1 ]] && g=(-g)
    perf record -q "${g[@]}" -F 999 -o "$OUT/perf-$name.data" -- "$@" >"$OUT/perf-$name.log" 2>&1
    # self time: percent, object, symbol
    perf report -i "$OUT/perf-$name.data" --no-children --sort dso,symbol --stdio 2>/dev/null |
        awk '/^ +[0-9.]+%/ {pct = $1; sub("%", "", pct); printf "%s\t%s\t%s\n", pct, $2, $4}' |
        head -25 >"$OUT/perf-$name.tsv"
    if [[ $callgraph == 1 ]]; then # inclusive time: percent, self percent, symbol
        perf report -i "$OUT/perf-$name.data" --children --sort symbol --stdio -g none \
            2>/dev/null |
            awk '/^ +[0-9.]+%/ {c = $1; s = $2; sub("%", "", c); sub("%", "", s);
                                printf "%s\t%s\t%s\n", c, s, $4}' |
            head -25 >"$OUT/perf-$name-children.tsv"
    fi
    rm -f "$OUT/perf-$name.data"
}
if [[ $PROFILE == 1 ]] && command -v perf >/dev/null && perf stat -o /dev/null true >/dev/null 2>&1; then
    step "profile q0" "$OUT/profile-q0.log" profile q0 0 \
        "$BIN/bench_nexmark" --query q0 --events 10000000 --no-baselines
    step "profile word count" "$OUT/profile-wc.log" profile wordcount 0 \
        "$BIN/bench_word_count" --words "$WORDS" --vocab 100000 --mode streaming --no-baselines
    step "profile q3, checkpoints" "$OUT/profile-q3ckpt.log" profile q3ckpt 1 \
        "$BIN/bench_nexmark" --query q3 --events "$EVENTS" --no-baselines --checkpoints on
    step "profile word count 10M, checkpoints" "$OUT/profile-wc10m.log" profile wordcount10m 1 \
        "$BIN/bench_word_count" --words "$((WC_BIG_WORDS / 2))" --vocab 10000000 \
        --mode streaming --no-baselines --checkpoints on
else
    echo "report.sh: perf not available (Debian: linux-perf) or BENCH_PROFILE=0: no profiles" >&2
fi

# ---- the report and the plots ------------------------------------------------------------------
echo "total	$(($(date +%s) - START))" >>"$OUT/machine.tsv"
python3 "$ROOT/bench/report.py" "$OUT" "$REPORT"
for gp in "$ROOT"/bench/plot/*.gp; do
    gnuplot -e "datadir='$OUT'; outdir='$PLOTS'" "$gp"
done
echo "report.sh: wrote $REPORT and $(ls "$PLOTS"/*.png | wc -l) plots in $PLOTS ($(($(date +%s) - START)) s)" >&2
