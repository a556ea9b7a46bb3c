#!/usr/bin/env bash
# test_word_count.sh - build/bin/word_count against a real `nc` server on 127.0.0.1, as in
# the seed (`nc -lk 9999`): lines typed into nc are counted and every update is printed, one
# line sent and its counts awaited before the next. Then how the job ends: SIGINT (exit
# 130, "cancelled" on stderr), SIGTERM (143), and by itself with exit 0 when the server
# closes the connection (the socket source has max_retry 0), with every line it was sent
# counted. Last, a run with checkpoints that dies after its final checkpoint (failpoint
# job.before_commit), restored with -s from it against a server that sends new words: the
# socket source reads them, and they are counted on top of the restored counts.
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

command -v nc >/dev/null || fail "nc not found (netcat-openbsd): run scripts/setup.sh"

# start_server NAME NC_ARGS...: starts `nc -v NC_ARGS... 127.0.0.1 PORT` on a free port
# with its stdin on a fifo held open as fd 3 (write a line with `send`), and waits until it
# listens. Sets $port and $nc_pid; nc's stderr is in $tmp/NAME.nc.err.
start_server() {
    local name=$1
    shift
    port=$(free_port)
    mkfifo "$tmp/$name.fifo"
    # Children get no copy of fd 3, or nc would never see the end of its input.
    nc -v "$@" 127.0.0.1 "$port" 3>&- <"$tmp/$name.fifo" >"$tmp/$name.nc.out" \
        2>"$tmp/$name.nc.err" &
    nc_pid=$!
    sl_pids+=("$nc_pid")
    exec 3>"$tmp/$name.fifo"
    wait_for 10 "nc listening on 127.0.0.1:$port" grep -q 'Listening on' "$tmp/$name.nc.err"
}

# send LINE: one line to the job through nc.
send() {
    printf '%s\n' "$1" >&3
}

# start_job NAME ARGS...: starts word_count ARGS... 127.0.0.1 $port, stdout in
# $tmp/NAME.out and stderr in $tmp/NAME.err; waits until nc reports the connection. Sets
# $job_pid.
start_job() {
    local name=$1
    shift
    "$SL_BIN/word_count" "$@" 127.0.0.1 "$port" 3>&- </dev/null >"$tmp/$name.out" \
        2>"$tmp/$name.err" &
    job_pid=$!
    sl_pids+=("$job_pid")
    wait_for 10 "word_count connected to nc" grep -q 'Connection received' "$tmp/$name.nc.err"
}

# exited PID: true once PID has ended (gone, or a zombie not yet waited for).
exited() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    stat=${stat##*) }
    [[ ${stat%% *} == Z ]]
}

running() {
    ! exited "$1"
}

# wait_exit SECONDS PID DESCRIPTION: waits for PID to end; its exit status is then in $rc.
wait_exit() {
    wait_for "$1" "$3" exited "$2"
    rc=0
    wait "$2" || rc=$?
}

# stop_server: closes nc's stdin and stops it.
stop_server() {
    exec 3>&-
    kill "$nc_pid" 2>/dev/null || true
    wait "$nc_pid" 2>/dev/null || true
}

# ---- parallelism 1: counts in order, then SIGINT ----------------------------------------

start_server p1 -lk
start_job p1
send hello
wait_for 10 "(hello,1) after the first hello" has_lines "$tmp/p1.out" '(hello,1)'
send hello
wait_for 10 "(hello,2) after the second hello" has_lines "$tmp/p1.out" '(hello,2)'
check "(hello,1) then (hello,2), nothing else" \
    diff -u <(printf '(hello,1)\n(hello,2)\n') "$tmp/p1.out"
send "hello world flink"
wait_for 10 "(hello,3) (world,1) (flink,1)" \
    has_lines "$tmp/p1.out" '(hello,3)' '(world,1)' '(flink,1)'
check "exactly the five counts, no subtask prefix" \
    diff -u <(printf '(flink,1)\n(hello,1)\n(hello,2)\n(hello,3)\n(world,1)\n') \
    <(LC_ALL=C sort "$tmp/p1.out")
check "counts of hello in order 1, 2, 3" \
    diff -u <(printf '(hello,1)\n(hello,2)\n(hello,3)\n') <(grep '^(hello,' "$tmp/p1.out")
check "job still running while the connection is open" running "$job_pid"

kill -INT "$job_pid"
wait_exit 3 "$job_pid" "word_count to exit within 3 s of SIGINT"
check "SIGINT: exit status 130 (got $rc)" test "$rc" -eq 130
check "SIGINT: stderr says cancelled ($(head -c 300 "$tmp/p1.err"))" grep -q cancelled "$tmp/p1.err"
check "SIGINT: nothing printed after cancelling" test "$(wc -l <"$tmp/p1.out")" -eq 5
check_no_sanitizer_output "$tmp/p1.err"
stop_server

# ---- parallelism 2: prefixes, one subtask per word, then SIGTERM -----------------------

start_server p2 -lk
start_job p2 -p 2
send "hello world flink"
wait_for 10 "first line counted" bash -c "[[ \$(wc -l <'$tmp/p2.out') -ge 3 ]]"
send "flink sluice hello state"
send "a b c d e f g h"
send "hello a b sluice"
# Expected: one line per word occurrence, the n-th occurrence of a word as (word,n).
exp_p2=(
    '(hello,1)' '(world,1)' '(flink,1)'
    '(flink,2)' '(sluice,1)' '(hello,2)' '(state,1)'
    '(a,1)' '(b,1)' '(c,1)' '(d,1)' '(e,1)' '(f,1)' '(g,1)' '(h,1)'
    '(hello,3)' '(a,2)' '(b,2)' '(sluice,2)'
)
wait_for 10 "all ${#exp_p2[@]} counts with -p 2" \
    bash -c "[[ \$(wc -l <'$tmp/p2.out') -ge ${#exp_p2[@]} ]]"
check "-p 2: every line starts with 1> or 2> " bash -c "! grep -qvE '^[12]> ' '$tmp/p2.out'"
sed -E 's/^[0-9]+> //' "$tmp/p2.out" >"$tmp/p2.rows"
check "-p 2: exactly the expected counts" \
    diff -u <(printf '%s\n' "${exp_p2[@]}" | LC_ALL=C sort) <(LC_ALL=C sort "$tmp/p2.rows")
for w in hello flink sluice a b; do
    check "-p 2: counts of $w in increasing order" \
        diff -u <(grep -F "($w," <(printf '%s\n' "${exp_p2[@]}")) <(grep -F "($w," "$tmp/p2.rows")
done
conflicts=$(awk '{ w = $2; sub(/^\(/, "", w); sub(/,[0-9]+\)$/, "", w)
    if (w in s && s[w] != $1) bad[w] = 1; s[w] = $1 } END { for (w in bad) print w }' \
    "$tmp/p2.out" | xargs)
check "-p 2: each word always comes from the same subtask (not: '$conflicts')" \
    test -z "$conflicts"
check "-p 2: both subtasks print (prefixes: $(cut -d' ' -f1 "$tmp/p2.out" | sort -u | xargs))" \
    test "$(cut -d' ' -f1 "$tmp/p2.out" | sort -u | xargs)" = "1> 2>"

kill -TERM "$job_pid"
wait_exit 3 "$job_pid" "word_count -p 2 to exit within 3 s of SIGTERM"
check "SIGTERM: exit status 143 (got $rc)" test "$rc" -eq 143
check "SIGTERM: stderr says cancelled ($(head -c 300 "$tmp/p2.err"))" \
    grep -q cancelled "$tmp/p2.err"
check_no_sanitizer_output "$tmp/p2.err"
stop_server

# ---- the server closes the connection: nc -N shuts down its side at end of stdin ------

start_server eof -N -l
start_job eof -p 2
send "to be or not to be"
exec 3>&- # end of nc's input: nc sends what it has, then closes the connection
wait_exit 10 "$job_pid" "word_count -p 2 to end by itself when nc closes the connection"
check "connection closed: exit status 0 (got $rc; stderr: $(head -c 300 "$tmp/eof.err"))" \
    test "$rc" -eq 0
check "connection closed: every word of the last line counted before the end" \
    diff -u <(printf '(be,1)\n(be,2)\n(not,1)\n(or,1)\n(to,1)\n(to,2)\n') \
    <(sed -E 's/^[0-9]+> //' "$tmp/eof.out" | LC_ALL=C sort)
check "connection closed: (to,1) before (to,2)" \
    diff -u <(printf '(to,1)\n(to,2)\n') <(sed -E 's/^[0-9]+> //' "$tmp/eof.out" | grep '^(to,')
check "connection closed: stderr is empty" test ! -s "$tmp/eof.err"
check_no_sanitizer_output "$tmp/eof.err"
wait "$nc_pid" 2>/dev/null || true

# ---- the server goes away: nc -lk is killed --------------------------------------------

start_server killed -lk
start_job killed
send "bye bye"
wait_for 10 "(bye,2)" has_lines "$tmp/killed.out" '(bye,1)' '(bye,2)'
stop_server
wait_exit 10 "$job_pid" "word_count to end by itself when nc is killed"
check "server killed: exit status 0 (got $rc; stderr: $(head -c 300 "$tmp/killed.err"))" \
    test "$rc" -eq 0
check "server killed: output is (bye,1) (bye,2)" \
    diff -u <(printf '(bye,1)\n(bye,2)\n') "$tmp/killed.out"
check_no_sanitizer_output "$tmp/killed.err"

# ---- restored from a final checkpoint, the job stays finished ----------------------------
# The run dies after its final checkpoint (before the end-of-job commit). Every subtask had
# finished there, so the checkpoint keeps no keyed state, and a restore from it (as in
# Flink, FLIP-147) finishes at once: the socket source is not opened again (no server is
# listening: connecting would fail), nothing is counted or printed twice.

start_server fin1 -N -l
SLUICE_FAILPOINTS=job.before_commit=n1 start_job fin1 \
    -D execution.checkpointing.interval=100ms -D state.checkpoints.dir="$tmp/fin.chk"
send "a b a"
send "b c"
exec 3>&-
wait_exit 10 "$job_pid" "word_count to die after its final checkpoint"
check "final checkpoint: the process died at the failpoint (exit $rc)" test "$rc" -eq 137
check "final checkpoint: the first run counted its words" \
    has_lines "$tmp/fin1.out" '(a,2)' '(b,2)' '(c,1)'
wait "$nc_pid" 2>/dev/null || true
fin_chk=$(find "$tmp/fin.chk" -mindepth 2 -maxdepth 2 -type d -name 'chk-*' | sort -V | tail -1)
check "final checkpoint: kept (${fin_chk:-none})" test -f "$fin_chk/_metadata"
check "final checkpoint: every subtask marked finished, no keyed state kept" \
    bash -c '"$1" checkpoint inspect "$2" | python3 -c "
import json, sys
m = json.load(sys.stdin)
subs = [s for o in m[\"operators\"] for s in o[\"subtasks\"]]
assert subs and all(s[\"finished\"] for s in subs), subs
assert all(s[\"keyed_bytes\"] == 0 for s in subs), subs
assert m[\"format_version\"] == 3
"' _ "$SL_BIN/sluice" "$fin_chk"
"$SL_BIN/word_count" -s "$fin_chk" 127.0.0.1 "$port" </dev/null >"$tmp/fin2.out" \
    2>"$tmp/fin2.err" &
job_pid=$!
sl_pids+=("$job_pid")
wait_exit 10 "$job_pid" "word_count restored from its final checkpoint to end at once"
check "restored: exit status 0 (got $rc; $(grep -v 'level=' "$tmp/fin2.err" | head -c 300))" \
    test "$rc" -eq 0
check "restored: nothing printed again" test ! -s "$tmp/fin2.out"
check "restored: the socket source did not connect" \
    bash -c '! grep -q "cannot connect" "$1"' _ "$tmp/fin2.err"
check_no_sanitizer_output "$tmp/fin1.err" "$tmp/fin2.err"

