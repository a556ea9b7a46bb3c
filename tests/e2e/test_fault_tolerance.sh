#!/usr/bin/env bash
# test_fault_tolerance.sh - automatic recovery, end to end (issue 3, items 4, 5 and 6):
#
#  - examples/state_demo_02 (the seed's StateDemo02): a source keeping its offset in operator
#    ListState fails at every 5th offset; with fixed-delay (2 attempts) the offsets continue
#    from the last checkpoint after each restart (1..5, 6..10, 11..15, never starting over),
#    then the job fails with an error giving the restarts, the strategy and the last failure;
#    the checkpoint is retained and `sluice checkpoint inspect` shows the source's state;
#  - examples/checkpoint_demo_02 (the seed's CheckpointDemo02_Restart) driven through a real
#    `nc -lk` on 127.0.0.1: the word counts continue after each `bug` from the restored state,
#    and after 3 restarts the job fails with exit status 1;
#  - the restart strategies, set with -D on tests/e2e/jobs/ft_counter failing on purpose:
#    the defaults (none without checkpointing; unlimited fixed-delay, 1 s, with it),
#    fixed-delay, failure-rate (exceeded and not), exponential-delay (growing delays, reset,
#    jitter), and that every restart restores the latest completed checkpoint.
#
# The other fault-tolerance tests: test_checkpoint_options.sh (item 2), test_restore.sh
# (item 7), test_bad_checkpoints.sh (item 10).
# shellcheck disable=SC2016 # awk programs in single quotes
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=ft_lib.sh
. "$(dirname "$0")/ft_lib.sh"

command -v nc >/dev/null || fail "nc not found (netcat-openbsd): run scripts/setup.sh"

# ---- state_demo_02: offsets continue from the last checkpoint -------------------------------

run sd2 "$SL_BIN/state_demo_02" "$tmp/sd2-ck" --sleep-ms 150 --restart-delay-ms 100 --interval-ms 20
check "state_demo_02: exit status 1 after the restarts are used up (got $rc)" test "$rc" -eq 1
for i in $(seq 1 15); do echo "subTaskId:0,当前的offset值为:$i"; done >"$tmp/sd2.want"
check "state_demo_02: offsets 1..5, then 6..10 and 11..15 after the restarts, none twice" \
    same_lines "$tmp/sd2.want" "$tmp/sd2.out"
check "state_demo_02: 2 restarts logged" test "$(n_events "$tmp/sd2.err" job_restarting)" -eq 2
check "state_demo_02: restart delay_ms=100 (the --restart-delay-ms flag)" \
    test "$(field "$tmp/sd2.err" job_restarting delay_ms | sort -u)" = 100
mapfile -t sd2_restored < <(grep 'event=restoring attempt=' "$tmp/sd2.err" | sed -nE 's/.* checkpoint=([0-9]+).*/\1/p')
check "state_demo_02: each restart restores a checkpoint (ids: ${sd2_restored[*]})" \
    test "${#sd2_restored[@]}" -eq 2
check "state_demo_02: the second restart restores a newer checkpoint than the first" \
    test "${sd2_restored[1]:-0}" -gt "${sd2_restored[0]:-0}"
last=$(tail -1 "$tmp/sd2.err")
check "state_demo_02: error says 2 restarts ($last)" grep -qF "job failed after 2 restarts" <<<"$last"
check "state_demo_02: error names the strategy" \
    grep -qF "restart strategy: fixed-delay (2 attempts, delay 100 ms)" <<<"$last"
check "state_demo_02: error gives the last failure" grep -qE "last failure: .*bug出现了" <<<"$last"
check "state_demo_02: the checkpoints_retained event says RETAIN_ON_CANCELLATION" \
    grep -q "event=checkpoints_retained .*policy=RETAIN_ON_CANCELLATION" "$tmp/sd2.err"
sd2_chk=$(latest_chk "$tmp/sd2-ck") || sd2_chk=
check "state_demo_02: a completed checkpoint is retained after the failure" test -n "$sd2_chk"
check "state_demo_02: exactly one chk dir (num-retained 1): $(chk_ids "$tmp/sd2-ck" | xargs)" \
    test "$(chk_ids "$tmp/sd2-ck" | wc -l)" -eq 1
check "state_demo_02: the event names the retained checkpoint" \
    grep -qF "latest=$sd2_chk " "$tmp/sd2.err"
rc=0
"$SL_BIN/sluice" checkpoint inspect "$sd2_chk" >"$tmp/sd2.json" 2>"$tmp/sd2-inspect.err" || rc=$?
check "state_demo_02: sluice checkpoint inspect exits 0 (got $rc)" test "$rc" -eq 0
check "state_demo_02: the JSON shows the source's operator state" python3 - "$tmp/sd2.json" "$sd2_chk" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["job_name"] == "state_demo_02", d["job_name"]
assert d["checkpoint_id"] == int(sys.argv[2].rsplit("chk-", 1)[1]), d["checkpoint_id"]
ops = {o["uid"]: o for o in d["operators"]}
src = ops["my-kafka-source"]
assert src["parallelism"] == 1, src
assert [s["subtask"] for s in src["subtasks"]] == [0], src
assert all(s["operator_state_bytes"] > 0 and s["keyed_bytes"] == 0 for s in src["subtasks"]), src
EOF

# ---- checkpoint_demo_02 with nc: counts continue after each bug ----------------------------

# start_server NAME: `nc -v -lk 127.0.0.1 PORT` on a free port, its stdin a fifo held open
# as fd 3; waits until it listens. Sets $port and $nc_pid; nc's stderr is $tmp/NAME.nc.err.
start_server() {
    local name=$1
    port=$(free_port)
    mkfifo "$tmp/$name.fifo"
    nc -v -lk 127.0.0.1 "$port" 3>&- <"$tmp/$name.fifo" >"$tmp/$name.nc.out" \
        2>"$tmp/$name.nc.err" &
    nc_pid=$!
    sl_pids+=("$nc_pid")
    exec 3>"$tmp/$name.fifo"
    wait_for 10 "nc listening on 127.0.0.1:$port" grep -q 'Listening on' "$tmp/$name.nc.err"
}

send() {
    printf '%s\n' "$1" >&3
}

connections() {
    grep -c 'Connection received' "$tmp/cd2.nc.err" || true
}

# connected N: nc has accepted N connections.
connected() {
    (($(connections) >= $1))
}

has_line() {
    grep -qxF -- "$2" "$1"
}

start_server cd2
start cd2 "$SL_BIN/checkpoint_demo_02" 127.0.0.1 "$port" "$tmp/cd2-ck" --restart-delay-ms 100
cd2_pid=$job_pid
wait_for 10 "checkpoint_demo_02 connected to nc" connected 1
# Each round: send words, see their counts, let a checkpoint be taken after them (two
# completions after the counts are printed: the second was triggered after the records),
# then send "bug". The counts of the next round continue from the restored state.
words=("hello world" "hello" "hello world" "hello")
want=("hello:::1" "world:::1" "hello:::2" "hello:::3" "world:::2" "hello:::4")
for round in 1 2 3 4; do
    send "${words[round - 1]}"
    wait_for 10 "hello:::$round printed" has_line "$tmp/cd2.out" "hello:::$round"
    done_before=$(n_events "$tmp/cd2.err" checkpoint_completed)
    wait_events 10 "$tmp/cd2.err" checkpoint_completed $((done_before + 2))
    send "bug"
    if ((round < 4)); then
        wait_events 10 "$tmp/cd2.err" job_restarting "$round"
        wait_for 10 "checkpoint_demo_02 reconnected after restart $round" connected $((round + 1))
    fi
done
wait_exit 10 "$cd2_pid" "checkpoint_demo_02 to fail after the 4th bug"
check "checkpoint_demo_02: exit status 1 after 3 restarts (got $rc)" test "$rc" -eq 1
printf '%s\n' "${want[@]}" >"$tmp/cd2.want"
check "checkpoint_demo_02: counts continue from the restored state after each bug" \
    same_lines "$tmp/cd2.want" "$tmp/cd2.out"
check "checkpoint_demo_02: 3 restarts logged" test "$(n_events "$tmp/cd2.err" job_restarting)" -eq 3
check "checkpoint_demo_02: 3 restores logged" \
    test "$(grep -c 'event=restoring attempt=' "$tmp/cd2.err" || true)" -eq 3
last=$(tail -1 "$tmp/cd2.err")
check "checkpoint_demo_02: error says 3 restarts and the strategy ($last)" \
    grep -qF "job failed after 3 restarts (restart strategy: fixed-delay (3 attempts, delay 100 ms))" <<<"$last"
check "checkpoint_demo_02: error gives the last failure (bug)" grep -qE "last failure: .*bug" <<<"$last"
check "checkpoint_demo_02: the checkpoint is retained on failure" test -n "$(complete_chk_ids "$tmp/cd2-ck")"
exec 3>&-
kill "$nc_pid" 2>/dev/null || true
wait "$nc_pid" 2>/dev/null || true

# ---- restart strategies --------------------------------------------------------------------

CKPT=(-D execution.checkpointing.interval=50ms)

# No checkpointing, no strategy: none. The first failure ends the job.
run none "$FT" -- --fail-every 100
check "no checkpointing: exit status 1 (got $rc)" test "$rc" -eq 1
check "no checkpointing: the failure is reported ($(err_excerpt "$tmp/none.err"))" \
    grep -qF "injected failure after 100 records" "$tmp/none.err"
check "no checkpointing: no restart" test "$(n_events "$tmp/none.err" job_restarting)" -eq 0
check "no checkpointing: the message does not talk of restarts" bash -c "! grep -qi restart '$tmp/none.err'"

# Checkpointing and no strategy: fixed-delay, unlimited attempts, 1 s (the fixed-delay keys are
# not read then, as in Flink: attempts=1 below changes nothing).
start default "$FT" "${CKPT[@]}" -D restart-strategy.fixed-delay.attempts=1 \
    -D restart-strategy.fixed-delay.delay=10ms -- --count -1 --fail-every 500
default_pid=$job_pid
wait_events 15 "$tmp/default.err" job_restarting 3
check "default strategy: still restarting after 3 restarts" running "$default_pid"
stop "$default_pid" INT
check "default strategy: SIGINT ends it with 130 (got $rc)" test "$rc" -eq 130
check "default strategy: every delay_ms=1000" \
    test "$(field "$tmp/default.err" job_restarting delay_ms | sort -u | xargs)" = 1000
check "default strategy: described as unlimited fixed-delay, 1 s" \
    grep -qF 'strategy="fixed-delay (unlimited attempts, delay 1 s' "$tmp/default.err"
g=$(event_ms "$tmp/default.err" job_start | gaps | min)
check "default strategy: the attempts start at least 1 s apart (shortest gap ${g}ms)" \
    test "${g:-0}" -ge 990

# fixed-delay: 3 attempts. Paced so checkpoints complete in every attempt: each restart must
# restore the latest completed checkpoint, at parallelism 2.
run fixed "$FT" -p 2 "${CKPT[@]}" -D restart-strategy=fixeddelay \
    -D restart-strategy.fixed-delay.attempts=3 -D restart-strategy.fixed-delay.delay=150ms \
    -- --count -1 --record-us 100 --fail-every 3000
check "fixed-delay: exit status 1 (got $rc)" test "$rc" -eq 1
check "fixed-delay: exactly 3 restarts" test "$(n_events "$tmp/fixed.err" job_restarting)" -eq 3
check "fixed-delay: delay_ms=150" \
    test "$(field "$tmp/fixed.err" job_restarting delay_ms | sort -u | xargs)" = 150
g=$(event_ms "$tmp/fixed.err" job_start | gaps | min)
check "fixed-delay: the attempts start at least 150 ms apart (shortest gap ${g}ms)" \
    test "${g:-0}" -ge 150
last=$(tail -1 "$tmp/fixed.err")
check "fixed-delay: error says 3 restarts and the strategy ($last)" \
    grep -qF "job failed after 3 restarts (restart strategy: fixed-delay (3 attempts, delay 150 ms)); last failure: " <<<"$last"
check "fixed-delay: error gives the last failure" \
    grep -qE "last failure: operator 'Counts' \(subtask [12]/2\) failed: injected failure after 3000 records \(attempt 3\)" <<<"$last"
# For every restart: the checkpoint restored is the newest one completed before it.
check "fixed-delay: each restart restores the latest completed checkpoint" awk '
    /event=checkpoint_completed / { match($0, /id=[0-9]+/); latest = substr($0, RSTART + 3, RLENGTH - 3) + 0 }
    /event=restoring attempt=/ { match($0, /checkpoint=[0-9]+/); got = substr($0, RSTART + 11, RLENGTH - 11) + 0
        n++; if (latest == 0 || got != latest) { print "restored " got ", latest completed " latest > "/dev/stderr"; bad = 1 } }
    END { exit bad || n != 3 }' "$tmp/fixed.err"
check "fixed-delay: no sequence error (state and source restored consistently)" \
    bash -c "! grep -q 'sequence error' '$tmp/fixed.err'"

# failure-rate: more than 2 failures in 10 s fail the job.
run rate "$FT" "${CKPT[@]}" -D restart-strategy.type=failure-rate \
    -D restart-strategy.failure-rate.max-failures-per-interval=2 \
    -D restart-strategy.failure-rate.failure-rate-interval=10s \
    -D restart-strategy.failure-rate.delay=50ms -- --count -1 --fail-every 500
check "failure-rate exceeded: exit status 1 (got $rc)" test "$rc" -eq 1
check "failure-rate exceeded: 2 restarts, then the third failure in 10 s fails the job" \
    test "$(n_events "$tmp/rate.err" job_restarting)" -eq 2
last=$(tail -1 "$tmp/rate.err")
check "failure-rate exceeded: error says 2 restarts and the strategy ($last)" \
    grep -qF "job failed after 2 restarts (restart strategy: failure-rate (max 2 failures per 10 s, delay 50 ms)); last failure: " <<<"$last"
check "failure-rate exceeded: error gives the last failure" \
    grep -qF "injected failure after 500 records (attempt 2)" <<<"$last"

# failure-rate not exceeded: 1 failure per 300 ms allowed, failures come 400 ms apart.
start rate_ok "$FT" "${CKPT[@]}" -D restart-strategy.type=failurerate \
    -D restart-strategy.failure-rate.max-failures-per-interval=1 \
    -D restart-strategy.failure-rate.failure-rate-interval=300ms \
    -D restart-strategy.failure-rate.delay=400ms -- --count -1 --fail-every 500
rate_pid=$job_pid
wait_events 15 "$tmp/rate_ok.err" job_restarting 3
check "failure-rate not exceeded: still running after 3 restarts" running "$rate_pid"
stop "$rate_pid" INT
check "failure-rate not exceeded: SIGINT ends it with 130 (got $rc)" test "$rc" -eq 130

# exponential-delay: 40, 80, 160, 320, 400, 400 ms (max 400), then 6 attempts are used up.
run expo "$FT" "${CKPT[@]}" -D restart-strategy.type=exponential-delay \
    -D restart-strategy.exponential-delay.initial-backoff=40ms \
    -D restart-strategy.exponential-delay.max-backoff=400ms \
    -D restart-strategy.exponential-delay.backoff-multiplier=2 \
    -D restart-strategy.exponential-delay.jitter-factor=0 \
    -D restart-strategy.exponential-delay.attempts-before-reset-backoff=6 \
    -- --count -1 --fail-every 500
check "exponential-delay: exit status 1 (got $rc)" test "$rc" -eq 1
check "exponential-delay: delays 40 80 160 320 400 400" \
    test "$(field "$tmp/expo.err" job_restarting delay_ms | xargs)" = "40 80 160 320 400 400"
paste <(field "$tmp/expo.err" job_restarting delay_ms) <(event_ms "$tmp/expo.err" job_start | gaps) \
    >"$tmp/expo.delays"
check "exponential-delay: each attempt starts after its delay (delay, gap: $(tr '\t\n' ', ' <"$tmp/expo.delays"))" \
    awk '$2 < $1 { bad = 1 } END { exit bad || NR != 6 }' "$tmp/expo.delays"
last=$(tail -1 "$tmp/expo.err")
check "exponential-delay: error says 6 restarts and the strategy ($last)" \
    grep -qF "job failed after 6 restarts (restart strategy: exponential-delay (initial backoff 40 ms, max backoff 400 ms, multiplier 2" <<<"$last"
check "exponential-delay: error gives the last failure" \
    grep -qF "injected failure after 500 records (attempt 6)" <<<"$last"

# exponential-delay reset: every attempt runs longer than the 150 ms threshold, so every
# failure starts over at the initial backoff and the 2 attempts-before-reset never run out.
start expo_reset "$FT" "${CKPT[@]}" -D restart-strategy.type=exponentialdelay \
    -D restart-strategy.exponential-delay.initial-backoff=50ms \
    -D restart-strategy.exponential-delay.backoff-multiplier=3 \
    -D restart-strategy.exponential-delay.jitter-factor=0 \
    -D restart-strategy.exponential-delay.reset-backoff-threshold=150ms \
    -D restart-strategy.exponential-delay.attempts-before-reset-backoff=2 \
    -- --count -1 --record-us 100 --fail-every 3000
reset_pid=$job_pid
wait_events 15 "$tmp/expo_reset.err" job_restarting 4
check "exponential-delay reset: still running after 4 restarts" running "$reset_pid"
stop "$reset_pid" INT
check "exponential-delay reset: SIGINT ends it with 130 (got $rc)" test "$rc" -eq 130
check "exponential-delay reset: every delay is the initial 50 ms ($(field "$tmp/expo_reset.err" job_restarting delay_ms | xargs))" \
    test "$(field "$tmp/expo_reset.err" job_restarting delay_ms | sort -u | xargs)" = 50

# exponential-delay jitter: multiplier 1, jitter 0.5: each delay within [100, 150] (a wait
# below the initial backoff is clamped to it).
run jitter "$FT" "${CKPT[@]}" -D restart-strategy.type=exponential-delay \
    -D restart-strategy.exponential-delay.initial-backoff=100ms \
    -D restart-strategy.exponential-delay.max-backoff=1s \
    -D restart-strategy.exponential-delay.backoff-multiplier=1 \
    -D restart-strategy.exponential-delay.jitter-factor=0.5 \
    -D restart-strategy.exponential-delay.attempts-before-reset-backoff=5 \
    -- --count -1 --fail-every 500
check "exponential-delay jitter: exit status 1 after 5 restarts (got $rc)" \
    test "$rc" -eq 1 -a "$(n_events "$tmp/jitter.err" job_restarting)" -eq 5
field "$tmp/jitter.err" job_restarting delay_ms >"$tmp/jitter.delays"
check "exponential-delay jitter: delays within [100, 150] ms ($(xargs <"$tmp/jitter.delays"))" \
    awk '$1 < 100 || $1 > 150 { bad = 1 } END { exit bad || NR != 5 }' "$tmp/jitter.delays"

check_no_sanitizer_output "$tmp"/*.err
