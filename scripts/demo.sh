#!/usr/bin/env bash
# demo.sh - what `make demo` shows: the seed's StateDemo01, a socket word count fed by nc,
# and the keyed and broadcast state examples, each a job program on the embedded local
# cluster with parallel subtasks. Finishes on its own in a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/bin

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "StateDemo01: max per city, by max_by(1) and by a ValueState (AUTOMATIC -> BATCH, -p 2)"
echo "\$ $bin/state_demo_01 -p 2"
"$bin/state_demo_01" -p 2

say "Word count from a socket: nc sends lines, the job prints every updated count (-p 2)"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
{
    printf 'hello world\n'
    sleep 0.5
    printf 'hello sluice\n'
    sleep 0.5
    printf 'to be or not to be\n'
    sleep 0.5
} | nc -N -l 127.0.0.1 "$port" &
nc_pid=$!
for _ in $(seq 50); do
    ss -ltn 2>/dev/null | grep -q ":$port " && break
    sleep 0.1
done
echo "\$ $bin/word_count -p 2 127.0.0.1 $port"
"$bin/word_count" -p 2 127.0.0.1 "$port"
wait "$nc_pid" 2>/dev/null || true

say "Frequent login IPs per user (ListState, -p 2)"
"$bin/login_ips" -p 2

say "Running total per customer (ReducingState)"
"$bin/order_totals"

say "Average per sensor (AggregatingState, BATCH)"
"$bin/sensor_average" -p 2

say "Visits per page per user (MapState)"
"$bin/page_visits"

say "Threshold alerts (broadcast state read-write on the rules side, read-only on readings)"
"$bin/threshold_alerts" -p 2

say "Exactly-once through a failure: checkpoints every 200 ms, a bug on the first attempt, restart"
echo "(counts of 'w0' every 500 updates; the job then checks its committed output against exact counts)"
ft=$(mktemp -d "${TMPDIR:-/tmp}/sluice-demo.XXXXXX")
trap 'rm -rf "$ft"' EXIT
SLUICE_LOG_LEVEL=info "$bin/exactly_once_demo" -- "$ft/out" "$ft/checkpoints" --watch w0 2>&1 |
    awk '
    /event=checkpoint_completed/ {
        match($0, /id=[0-9]+/); id = substr($0, RSTART + 3, RLENGTH - 3)
        match($0, /duration_ms=[0-9]+/); d = substr($0, RSTART + 12, RLENGTH - 12)
        match($0, /size_bytes=[0-9]+/); b = substr($0, RSTART + 11, RLENGTH - 11)
        printf "  checkpoint %s completed (%s ms, %s bytes)\n", id, d, b; next }
    /event=job_restarting/ {
        match($0, /failure="[^"]*"/); f = substr($0, RSTART + 9, RLENGTH - 10)
        match($0, /delay_ms=[0-9]+/); d = substr($0, RSTART + 9, RLENGTH - 9)
        printf "  FAILURE: %s\n  restarting in %s ms (restart strategy: fixed-delay)\n", f, d; next }
    /event=restoring/ {
        match($0, /checkpoint=[0-9]+/); c = substr($0, RSTART + 11, RLENGTH - 11)
        printf "  restored every subtask from checkpoint %s; the counts continue:\n", c; next }
    /level=/ { next }
    { print }'

say "done"
