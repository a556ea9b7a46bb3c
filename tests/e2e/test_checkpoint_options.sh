#!/usr/bin/env bash
# test_checkpoint_options.sh - every checkpoint option of the seed's CheckpointDemo01, set by
# configuration key on a running job (tests/e2e/jobs/ft_counter), checked in what the job
# does (issue 3, item 2):
#
#   execution.checkpointing.interval            checkpoint ids advance at about the rate
#   state.checkpoints.num-retained              exactly N chk dirs remain, the newest ones
#   execution.checkpointing.mode                AT_LEAST_ONCE accepted and used
#   the Flink 2.x spellings                     execution.checkpointing.dir / num-retained /
#                                               storage (and a file:// URI)
#   execution.checkpointing.timeout             a slow checkpoint expires and is counted failed
#   ...tolerable-failed-checkpoints             one failure more fails the job, handed to the
#                                               restart strategy, the key named in the message
#   ...max-concurrent-checkpoints               never more checkpoints in flight, and reached
#   execution.checkpointing.min-pause           the pause between a completion and the next
#                                               trigger
#   ...externalized-checkpoint-retention        on SIGINT RETAIN keeps the chk dirs, the other
#                                               two remove them; on failure DELETE keeps and
#                                               NO_EXTERNALIZED removes; on finish none stay
#   state.checkpoint-storage=jobmanager         restarts restore from memory, nothing on disk
#
# The checkpoint events are read from the job's stderr (SLUICE_LOG_LEVEL=info).
# shellcheck disable=SC2016 # awk programs in single quotes
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=ft_lib.sh
. "$(dirname "$0")/ft_lib.sh"

RUNNING=(--count -1 --record-us 50)
RETAIN=(-D execution.checkpointing.externalized-checkpoint-retention=RETAIN_ON_CANCELLATION)

# in_flight FILE: the largest number of checkpoints triggered and not yet completed or failed,
# over the job's life.
in_flight() {
    awk '/event=checkpoint_triggered / { n++; if (n > m) m = n }
         /event=checkpoint_(completed|failed) / { n-- }
         END { print m + 0 }' "$1"
}

# ---- interval, num-retained, RETAIN_ON_CANCELLATION -----------------------------------------

start iv "$FT" -D execution.checkpointing.interval=100ms -D state.checkpoints.dir="$tmp/iv" \
    -D state.checkpoints.num-retained=3 "${RETAIN[@]}" -- "${RUNNING[@]}"
iv_pid=$job_pid
wait_events 15 "$tmp/iv.err" checkpoint_completed 8
check "interval: 3 complete chk dirs while running (num-retained 3): $(complete_chk_ids "$tmp/iv" | xargs)" \
    test "$(complete_chk_ids "$tmp/iv" | wc -l)" -eq 3
stop "$iv_pid" INT
check "interval: SIGINT exits 130 (got $rc)" test "$rc" -eq 130
n=$(n_events "$tmp/iv.err" checkpoint_triggered)
check "interval: checkpoint ids 1, 2, 3, ... in order" \
    test "$(field "$tmp/iv.err" checkpoint_triggered id | xargs)" = "$(seq 1 "$n" | xargs)"
check "interval: no checkpoint failed" test "$(n_events "$tmp/iv.err" checkpoint_failed)" -eq 0
event_ms "$tmp/iv.err" checkpoint_triggered | gaps | sort -n >"$tmp/iv.gaps"
check "interval: triggers at least ~100 ms apart (shortest $(head -1 "$tmp/iv.gaps") ms)" \
    test "$(head -1 "$tmp/iv.gaps")" -ge 95
median=$(sed -n "$((($(wc -l <"$tmp/iv.gaps") + 1) / 2))p" "$tmp/iv.gaps")
check "interval: the median gap between triggers is about 100 ms (${median} ms)" \
    test "$median" -ge 95 -a "$median" -le 200
last3=$(field "$tmp/iv.err" checkpoint_completed id | tail -3 | xargs)
check "num-retained 3: exactly the 3 newest checkpoints remain ($(chk_ids "$tmp/iv" | xargs); newest completed: $last3)" \
    test "$(chk_ids "$tmp/iv" | xargs)" = "$last3"
check "RETAIN_ON_CANCELLATION: the retained chk dirs are complete" \
    test "$(complete_chk_ids "$tmp/iv" | xargs)" = "$last3"
check "RETAIN_ON_CANCELLATION: the checkpoints_retained event names the newest" \
    grep -qF "latest=$(latest_chk "$tmp/iv") policy=RETAIN_ON_CANCELLATION" "$tmp/iv.err"

# ---- Flink 2.x spellings, a file:// URI, AT_LEAST_ONCE ----------------------------------------

start v2 "$FT" -p 2 -D execution.checkpointing.interval=50ms \
    -D execution.checkpointing.dir="file://$tmp/v2" -D execution.checkpointing.num-retained=2 \
    -D execution.checkpointing.storage=filesystem -D execution.checkpointing.mode=at_least_once \
    "${RETAIN[@]}" -- "${RUNNING[@]}"
v2_pid=$job_pid
wait_events 15 "$tmp/v2.err" checkpoint_completed 4
stop "$v2_pid" INT
check "2.x keys: SIGINT exits 130 (got $rc; $(err_excerpt "$tmp/v2.err"))" test "$rc" -eq 130
v2_dir=$(job_dir "$tmp/v2") || v2_dir=
check "2.x keys: execution.checkpointing.dir (file:// URI) holds the job's checkpoints" \
    grep -qF "storage=$v2_dir" "$tmp/v2.err"
check "2.x keys: execution.checkpointing.num-retained=2 keeps 2 ($(chk_ids "$tmp/v2" | xargs))" \
    test "$(complete_chk_ids "$tmp/v2" | wc -l)" -eq 2 -a "$(chk_ids "$tmp/v2" | wc -l)" -eq 2
check "execution.checkpointing.mode=at_least_once: the job checkpoints AT_LEAST_ONCE" \
    grep -q "event=checkpointing .*mode=AT_LEAST_ONCE" "$tmp/v2.err"

# ---- timeout: a slow synchronous snapshot (300 ms) against a 100 ms timeout --------------------

start to "$FT" -D execution.checkpointing.interval=50ms -D execution.checkpointing.timeout=100ms \
    -D execution.checkpointing.tolerable-failed-checkpoints=1000 -- "${RUNNING[@]}" --snapshot-ms 300
to_pid=$job_pid
wait_events 15 "$tmp/to.err" checkpoint_failed 3
check "timeout: the job keeps running while checkpoints expire" running "$to_pid"
stop "$to_pid" INT
check "timeout: SIGINT exits 130 (got $rc)" test "$rc" -eq 130
check "timeout: no checkpoint completed" test "$(n_events "$tmp/to.err" checkpoint_completed)" -eq 0
check "timeout: every failure says expired after 100 ms and names the key" \
    test "$(grep 'event=checkpoint_failed ' "$tmp/to.err" | grep -vcF 'reason="expired after 100 ms (execution.checkpointing.timeout)"')" -eq 0
check "timeout: failures are counted, consecutive=1, 2, 3, ..." \
    test "$(field "$tmp/to.err" checkpoint_failed consecutive | head -3 | xargs)" = "1 2 3"
t1=$(event_ms "$tmp/to.err" checkpoint_triggered | head -1)
f1=$(event_ms "$tmp/to.err" checkpoint_failed | head -1)
check "timeout: checkpoint 1 expired about 100 ms after its trigger ($((f1 - t1)) ms)" \
    test $((f1 - t1)) -ge 95 -a $((f1 - t1)) -le 400
check "no checkpoint dir: checkpoints are kept in memory" grep -q "event=checkpointing .*storage=memory" "$tmp/to.err"

# ---- tolerable-failed-checkpoints exceeded: the job fails and the restart strategy acts ------

run tol "$FT" -D execution.checkpointing.interval=50ms -D execution.checkpointing.timeout=100ms \
    -D execution.checkpointing.tolerable-failed-checkpoints=2 -D restart-strategy.type=fixed-delay \
    -D restart-strategy.fixed-delay.attempts=1 -D restart-strategy.fixed-delay.delay=50ms \
    -- "${RUNNING[@]}" --snapshot-ms 300
check "tolerable 2: the job fails in the end, exit status 1 (got $rc)" test "$rc" -eq 1
check "tolerable 2: the third consecutive failure fails the job: 3 failed before the restart" \
    test "$(sed '/event=job_restarting /q' "$tmp/tol.err" | grep -c 'event=checkpoint_failed ')" -eq 3
check "tolerable 2: handed to the restart strategy (1 restart) with the reason" \
    grep -qF "event=job_restarting attempt=1 delay_ms=50 strategy=\"fixed-delay (1 attempt, delay 50 ms)\" failure=\"checkpoint 3 failed (expired after 100 ms (execution.checkpointing.timeout)) and 3 consecutive checkpoint failures exceed the tolerable number 2 (execution.checkpointing.tolerable-failed-checkpoints)" "$tmp/tol.err"
last=$(tail -1 "$tmp/tol.err")
check "tolerable 2: the error names the key ($last)" \
    grep -qE "job failed after 1 restart \(restart strategy: fixed-delay \(1 attempt, delay 50 ms\)\); last failure: checkpoint [0-9]+ failed \(expired after 100 ms \(execution.checkpointing.timeout\)\) and [0-9]+ consecutive checkpoint failures exceed the tolerable number 2 \(execution.checkpointing.tolerable-failed-checkpoints\)" <<<"$last"

# ---- max-concurrent-checkpoints: slow snapshots (200 ms) triggered every 50 ms ----------------

for mc in 1 3; do
    start "mc$mc" "$FT" -D execution.checkpointing.interval=50ms \
        -D execution.checkpointing.max-concurrent-checkpoints=$mc -- "${RUNNING[@]}" --snapshot-ms 200
    mc_pid=$job_pid
    wait_events 15 "$tmp/mc$mc.err" checkpoint_completed 5
    stop "$mc_pid" INT
    check "max-concurrent $mc: SIGINT exits 130 (got $rc)" test "$rc" -eq 130
    check "max-concurrent $mc: at most and at some point $mc in flight (max seen $(in_flight "$tmp/mc$mc.err"))" \
        test "$(in_flight "$tmp/mc$mc.err")" -eq $mc
    check "max-concurrent $mc: slow checkpoints still complete (default timeout), none failed" \
        test "$(n_events "$tmp/mc$mc.err" checkpoint_failed)" -eq 0
done

# ---- min-pause: 300 ms between a completion and the next trigger, with a 20 ms interval -------

start mp "$FT" -D execution.checkpointing.interval=20ms -D execution.checkpointing.min-pause=300ms \
    -- "${RUNNING[@]}"
mp_pid=$job_pid
wait_events 15 "$tmp/mp.err" checkpoint_completed 4
stop "$mp_pid" INT
check "min-pause: SIGINT exits 130 (got $rc)" test "$rc" -eq 130
# pause k: from the completion of checkpoint k to the trigger of k + 1
paste <(event_ms "$tmp/mp.err" checkpoint_completed) <(event_ms "$tmp/mp.err" checkpoint_triggered | tail -n +2) |
    awk 'NF == 2 { print $2 - $1 }' >"$tmp/mp.pauses"
check "min-pause: at least 3 pauses measured" test "$(wc -l <"$tmp/mp.pauses")" -ge 3
check "min-pause: every pause >= 300 ms ($(xargs <"$tmp/mp.pauses"))" \
    awk '$1 < 299 { bad = 1 } END { exit bad }' "$tmp/mp.pauses"

# ---- externalized retention on cancel, on failure and on finish ---------------------------------

# retention_run NAME POLICY HOW: a job with checkpoints in $tmp/NAME that ends by SIGINT
# (HOW=cancel), by failing with no restart (HOW=fail) or by finishing (HOW=finish).
retention_run() {
    local name=$1 policy=$2 how=$3
    local args=(-D execution.checkpointing.interval=50ms -D state.checkpoints.dir="$tmp/$name"
        -D execution.checkpointing.externalized-checkpoint-retention="$policy"
        -D restart-strategy.type=none)
    case $how in
    cancel)
        start "$name" "$FT" "${args[@]}" -- "${RUNNING[@]}"
        local pid=$job_pid
        wait_events 15 "$tmp/$name.err" checkpoint_completed 3
        check "$policy: a chk dir exists while the job runs" test -n "$(complete_chk_ids "$tmp/$name")"
        stop "$pid" INT
        check "$policy: SIGINT exits 130 (got $rc)" test "$rc" -eq 130
        ;;
    fail)
        run "$name" "$FT" "${args[@]}" -- --count -1 --record-us 100 --fail-every 4000
        check "$policy, failed job: exit status 1 (got $rc)" test "$rc" -eq 1
        check "$policy, failed job: checkpoints completed before the failure" \
            has_events "$tmp/$name.err" checkpoint_completed 2
        ;;
    finish)
        run "$name" "$FT" -p 2 "${args[@]}" -- --count 8000 --record-us 100
        check "$policy, finished job: exit status 0 (got $rc)" test "$rc" -eq 0
        check "$policy, finished job: checkpoints completed before the end" \
            has_events "$tmp/$name.err" checkpoint_completed 2
        ;;
    esac
}

retention_run del_cancel DELETE_ON_CANCELLATION cancel
check "DELETE_ON_CANCELLATION: no chk dir left after SIGINT ($(chk_ids "$tmp/del_cancel" | xargs))" \
    test -z "$(chk_ids "$tmp/del_cancel")"
retention_run none_cancel NO_EXTERNALIZED_CHECKPOINTS cancel
check "NO_EXTERNALIZED_CHECKPOINTS: no chk dir left after SIGINT ($(chk_ids "$tmp/none_cancel" | xargs))" \
    test -z "$(chk_ids "$tmp/none_cancel")"
retention_run del_fail DELETE_ON_CANCELLATION fail
check "DELETE_ON_CANCELLATION: the latest checkpoint is kept when the job fails" \
    test "$(complete_chk_ids "$tmp/del_fail" | xargs)" = "$(field "$tmp/del_fail.err" checkpoint_completed id | tail -1)"
retention_run none_fail NO_EXTERNALIZED_CHECKPOINTS fail
check "NO_EXTERNALIZED_CHECKPOINTS: no chk dir left when the job fails ($(chk_ids "$tmp/none_fail" | xargs))" \
    test -z "$(chk_ids "$tmp/none_fail")"
retention_run retain_finish RETAIN_ON_CANCELLATION finish
check "RETAIN_ON_CANCELLATION: no chk dir left when the job finishes, as in Flink ($(chk_ids "$tmp/retain_finish" | xargs))" \
    test -z "$(chk_ids "$tmp/retain_finish")"
check "RETAIN_ON_CANCELLATION, finished job: exact counts" \
    same_lines <(expected_counts 8000 12) <(final_counts "$tmp/retain_finish.out")

# ---- in-memory checkpoint storage (jobmanager): restarts restore, nothing is written ----------

run mem "$FT" -p 2 -D execution.checkpointing.interval=50ms -D state.checkpoints.dir="$tmp/mem" \
    -D state.checkpoint-storage=jobmanager -D restart-strategy.type=fixed-delay \
    -D restart-strategy.fixed-delay.attempts=1 -D restart-strategy.fixed-delay.delay=50ms \
    -- --count 24000 --record-us 50 --fail-at 12001
check "jobmanager storage: exit status 0 (got $rc; $(err_excerpt "$tmp/mem.err"))" test "$rc" -eq 0
check "jobmanager storage: event=checkpointing says storage=memory" \
    grep -q "event=checkpointing .*storage=memory" "$tmp/mem.err"
check "jobmanager storage: the injected failure happened" grep -qF "injected failure at record 12001" "$tmp/mem.err"
check "jobmanager storage: the restart restored checkpoint $(grep -o 'event=restoring attempt=1 checkpoint=[0-9]*' "$tmp/mem.err" | sed 's/.*=//')" \
    grep -qE "event=restoring attempt=1 checkpoint=[1-9][0-9]*" "$tmp/mem.err"
check "jobmanager storage: the restored attempt did not start over ($(processed "$tmp/mem.err") of 24000 records processed)" \
    test "$(processed "$tmp/mem.err")" -lt 24000 -a "$(grep -c 'restored=1' "$tmp/mem.err")" -eq 2
check "jobmanager storage: exact counts after the restart" \
    same_lines <(expected_counts 24000 12) <(final_counts "$tmp/mem.out")
check "jobmanager storage: nothing written under state.checkpoints.dir" \
    test -z "$(find "$tmp/mem" -type f 2>/dev/null)"

check_no_sanitizer_output "$tmp"/*.err
