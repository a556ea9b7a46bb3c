#!/usr/bin/env bash
# test_restore.sh - manual restore with -s (issue 3, item 7), on tests/e2e/jobs/ft_counter:
# a bounded, replayable source of 24000 records over 12 keys (2000 each) into a keyed count
# that checks each key's sequence (a gap or a duplicate fails the job), plus an operator with
# operator state (uid "extra") and a stateless one (uid "noop").
#
#  A  parallelism 2, RETAIN_ON_CANCELLATION, SIGINT in the middle: exit 130, chk kept
#  B1 -s A's checkpoint at parallelism 2, runs to the end
#  B2 -s A's checkpoint at parallelism 3 (key groups redistributed), runs to the end, and
#     takes checkpoints meanwhile
#  A3 parallelism 3, SIGTERM in the middle: exit 143, chk kept
#  C  -s A3's checkpoint at parallelism 1, runs to the end
#  R  RocksDB with incremental checkpoints: SIGINT, then -s at parallelism 2, 3 and 1 (heap)
#  F  a run to the end that dies after its final checkpoint (failpoint job.before_commit):
#     every subtask is marked finished there and no keyed state is kept (as Flink, FLIP-147);
#     -s from it at parallelism 2 and 3 ends at once without emitting anything again; a job
#     changed so that a new source would feed the finished counts operator is refused
#  S  a job whose socket branch (unioned into the counts) has finished fails later: the
#     automatic restart keeps the socket source finished (it does not connect again: the
#     server is gone) and the job runs to exact counts
# Every run that ends prints the final count of every key: they must equal the counts of a
# run without interruption, and the restored runs must not have started over. Then the
# refusals: another max parallelism; state of an operator uid the job no longer has (unless
# --allow-non-restored-state, which then runs); and a removed operator that had no state,
# which Flink accepts without the flag.
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=ft_lib.sh
. "$(dirname "$0")/ft_lib.sh"

N=24000
JOB=(--count "$N" --record-us 150) # slow enough to cancel in the middle
FAST=(--count "$N" --record-us 20)  # for the runs that go to the end
CKPT=(-D execution.checkpointing.interval=100ms
    -D execution.checkpointing.externalized-checkpoint-retention=RETAIN_ON_CANCELLATION)
expected_counts "$N" 12 >"$tmp/expected"

# restored_run NAME CHK PARALLELISM ARGS...: checks a run restored from CHK that ran to its
# end: exit 0, the restore logged, exact final counts, and fewer than N records processed
# (the rest came from the checkpoint) by PARALLELISM restored subtasks.
restored_run() {
    local name=$1 chk=$2 p=$3
    check "$name: exit status 0 (got $rc; $(err_excerpt "$tmp/$name.err"))" test "$rc" -eq 0
    check "$name: restored from $chk" grep -qF "event=restoring checkpoint=$chk id=" "$tmp/$name.err"
    check "$name: final counts equal those of an uninterrupted run" \
        same_lines "$tmp/expected" <(final_counts "$tmp/$name.out")
    check "$name: $p counts subtasks, all restored" \
        test "$(grep -c "^ft_counter: processed=.* subtask=[0-9]*/$p attempt=0 restored=1" "$tmp/$name.err")" -eq "$p"
    local n
    n=$(processed "$tmp/$name.err")
    check "$name: continued from the checkpoint, not from the start ($n of $N records processed)" \
        test "$n" -gt 0 -a "$n" -lt "$N"
}

# ---- A: parallelism 2, cancelled in the middle ------------------------------------------------

start a "$FT" -p 2 "${CKPT[@]}" -D state.checkpoints.dir="$tmp/a" -- "${JOB[@]}" --extra --noop
a_pid=$job_pid
wait_events 15 "$tmp/a.err" checkpoint_completed 3
stop "$a_pid" INT
check "A: SIGINT exits 130 (got $rc)" test "$rc" -eq 130
check "A: cancelled in the middle (no key finished)" test -z "$(final_counts "$tmp/a.out")"
chk_a=$(latest_chk "$tmp/a") || chk_a=
check "A: the checkpoint is retained: ${chk_a:-none}" test -n "$chk_a" -a -f "$chk_a/_metadata"
check "A: the log names the retained checkpoint" grep -qF "event=checkpoints_retained latest=$chk_a " "$tmp/a.err"
[[ -n $chk_a ]] || fail "no checkpoint to restore"

# ---- B1: same parallelism ------------------------------------------------------------------

run b1 "$FT" -p 2 -s "$chk_a" -- "${FAST[@]}" --extra --noop
restored_run b1 "$chk_a" 2

# ---- B2: parallelism 2 -> 3 (key groups redistributed), with checkpointing, to the end ------
# A's source had 2 streams (index mod 2): at parallelism 3 one source subtask has none and
# ends at once. The job must still checkpoint while it runs (about 1.4 s, interval 100 ms).

run b2 "$FT" -p 3 -s "$chk_a" "${CKPT[@]}" -D state.checkpoints.dir="$tmp/b2" -- "${JOB[@]}" --extra --noop
restored_run b2 "$chk_a" 3
check "B2: checkpoints completed during the restored run at parallelism 3 ($(n_events "$tmp/b2.err" checkpoint_completed) completed, $(n_events "$tmp/b2.err" checkpoint_triggered) triggered)" \
    has_events "$tmp/b2.err" checkpoint_completed 3

# ---- A3: parallelism 3, cancelled in the middle by SIGTERM, then C: 3 -> 1 -------------------

start a3 "$FT" -p 3 "${CKPT[@]}" -D state.checkpoints.dir="$tmp/a3" -- "${JOB[@]}" --extra --noop
a3_pid=$job_pid
wait_events 15 "$tmp/a3.err" checkpoint_completed 2
stop "$a3_pid" TERM
check "A3: SIGTERM exits 143 (got $rc)" test "$rc" -eq 143
check "A3: cancelled in the middle (no key finished)" test -z "$(final_counts "$tmp/a3.out")"
chk_a3=$(latest_chk "$tmp/a3") || chk_a3=
check "A3: the checkpoint is retained: ${chk_a3:-none}" test -n "$chk_a3"
[[ -n $chk_a3 ]] || fail "no checkpoint to restore"
rc=0
"$SL_BIN/sluice" checkpoint inspect "$chk_a3" >"$tmp/a3.json" 2>"$tmp/a3-inspect.err" || rc=$?
check "A3: sluice checkpoint inspect exits 0 (got $rc)" test "$rc" -eq 0
check "A3: its checkpoint has the counts at parallelism 3 over all 128 key groups" python3 - "$tmp/a3.json" <<'EOF2'
import json, sys
d = json.load(open(sys.argv[1]))
ops = {o["uid"]: o for o in d["operators"]}
c = ops["counts"]
assert c["parallelism"] == 3 and c["max_parallelism"] == 128, c
assert [s["key_groups"] for s in c["subtasks"]] == [[0, 43], [43, 86], [86, 128]], c["subtasks"]
assert all(s["keyed_bytes"] > 0 for s in c["subtasks"]), c["subtasks"]
assert ops["source"]["parallelism"] == 3 and ops["extra"]["parallelism"] == 3
assert all(s["operator_state_bytes"] > 0 for s in ops["source"]["subtasks"])
EOF2

run c "$FT" -p 1 -s "$chk_a3" -- "${FAST[@]}" --extra --noop
restored_run c "$chk_a3" 1

# ---- R: RocksDB with incremental checkpoints, restored at 2, 3 and 1 (into the heap) --------
# A database's files are the checkpoint: the restore at the same parallelism adopts them, at
# parallelism 3 each subtask adopts the files of the old subtask it overlaps most (deleting
# the key groups it does not own) and reads the others' key groups, and the heap backend
# reads them all through the canonical form.

ROCKS=(-D state.backend.type=rocksdb -D state.backend.incremental=true
    -D state.backend.rocksdb.localdir="$tmp/rocks")
start r "$FT" -p 2 "${ROCKS[@]}" "${CKPT[@]}" -D state.checkpoints.num-retained=3 \
    -D state.checkpoints.dir="$tmp/r" -- "${JOB[@]}" --extra --noop
r_pid=$job_pid
wait_events 15 "$tmp/r.err" checkpoint_completed 4
stop "$r_pid" INT
check "R: SIGINT exits 130 (got $rc)" test "$rc" -eq 130
chk_r=$(latest_chk "$tmp/r") || chk_r=
check "R: the checkpoint is retained: ${chk_r:-none}" test -n "$chk_r" -a -f "$chk_r/_metadata"
[[ -n $chk_r ]] || fail "no checkpoint to restore"
check "R: the working directories were removed" test -z "$(ls -A "$tmp/rocks")"
rc=0
"$SL_BIN/sluice" checkpoint inspect --verify "$chk_r" >"$tmp/r.json" 2>"$tmp/r-inspect.err" || rc=$?
check "R: sluice checkpoint inspect --verify exits 0 (got $rc; $(head -c 300 "$tmp/r-inspect.err"))" test "$rc" -eq 0
check "R: the keyed state is database files, SST files in shared/, the rest in chk-N" \
    python3 - "$tmp/r.json" "$chk_r" <<'EOF2'
import json, os, sys
d = json.load(open(sys.argv[1]))
c = {o["uid"]: o for o in d["operators"]}["counts"]
for s in c["subtasks"]:
    files = s["db_files"]
    assert s["keyed_bytes"] == 0 and s["db_bytes"] > 0, s
    assert any(f["path"].startswith("../shared/") and f["name"].endswith(".sst") for f in files), files
    assert all(f["name"].endswith(".sst") == f["path"].startswith("../shared/") for f in files), files
    for f in files:
        assert os.path.getsize(os.path.join(sys.argv[2], f["path"])) == f["size"], f
EOF2

run r2 "$FT" -p 2 "${ROCKS[@]}" -s "$chk_r" -- "${FAST[@]}" --extra --noop
restored_run r2 "$chk_r" 2
run r3 "$FT" -p 3 "${ROCKS[@]}" -s "$chk_r" "${CKPT[@]}" -D state.checkpoints.dir="$tmp/r3" \
    -- "${JOB[@]}" --extra --noop
restored_run r3 "$chk_r" 3
check "R3: checkpoints completed after the rescaled restore" has_events "$tmp/r3.err" checkpoint_completed 2
run r1 "$FT" -p 1 -s "$chk_r" -- "${FAST[@]}" --extra --noop
restored_run r1 "$chk_r" 1
rc=0
"$SL_BIN/sluice" checkpoint inspect --verify "$chk_r" >/dev/null 2>"$tmp/r-inspect2.err" || rc=$?
check "R: the checkpoint still verifies after three restores from it (got $rc)" test "$rc" -eq 0
check "R: the working directories were removed after the restored runs" test -z "$(ls -A "$tmp/rocks")"

# ---- F: the final checkpoint of a finished job ------------------------------------------------

SLUICE_FAILPOINTS=job.before_commit=n1 run f "$FT" -p 2 "${CKPT[@]}" \
    -D state.checkpoints.dir="$tmp/f" -- "${FAST[@]}"
check "F: the process died after the final checkpoint (exit $rc)" test "$rc" -eq 137
check "F: it counted every key to the end" same_lines "$tmp/expected" <(final_counts "$tmp/f.out")
chk_f=$(latest_chk "$tmp/f") || chk_f=
[[ -n $chk_f ]] || fail "F: no final checkpoint under $tmp/f"
"$SL_BIN/sluice" checkpoint inspect "$chk_f" >"$tmp/f.json" 2>"$tmp/f-inspect.err"
# subtasks UID FIELD: FIELD of each subtask of operator UID in f.json, one per line
subtasks() {
    python3 -c 'import json, sys
ops = json.load(open(sys.argv[1]))["operators"]
for o in ops:
    for s in o["subtasks"] if o["uid"] == sys.argv[2] else []:
        print(str(s[sys.argv[3]]).lower())' "$tmp/f.json" "$1" "$2"
}
check "F: every counts and source subtask is marked finished" \
    test "$(subtasks counts finished; subtasks source finished)" = "$(printf 'true\n%.0s' 1 2 3 4)"
check "F: no keyed state of the finished counts operator is kept" \
    test "$(subtasks counts keyed_bytes | sort -u)" = 0
check "F: ... but the source's positions are (operator state)" \
    test "$(subtasks source operator_state_bytes | sort -n | head -1)" -gt 0
run f2 "$FT" -p 2 -s "$chk_f" -- "${FAST[@]}"
check "F: -s from it exits 0 (got $rc; $(err_excerpt "$tmp/f2.err"))" test "$rc" -eq 0
check "F: ... emits nothing again" test ! -s "$tmp/f2.out"
check "F: ... and processes nothing (no counts subtask ran)" \
    test "$(grep -c '^ft_counter: processed=' "$tmp/f2.err")" -eq 0
run f3 "$FT" -p 3 -s "$chk_f" -- "${FAST[@]}"
check "F: -s from it at parallelism 3 exits 0 (got $rc; $(err_excerpt "$tmp/f3.err"))" \
    test "$rc" -eq 0
check "F: ... and emits nothing again" test ! -s "$tmp/f3.out"
run f4 "$FT" -p 2 -s "$chk_f" --allow-non-restored-state -- "${FAST[@]}" --source-uid source2
check "F: a new source feeding the finished counts is refused (exit $rc)" test "$rc" -eq 1
check "F: ... before anything ran" \
    test ! -s "$tmp/f4.out" -a "$(n_events "$tmp/f4.err" job_start)" -eq 0
check "F: ... saying why ($(err_excerpt "$tmp/f4.err"))" \
    grep -qF "operator 'Counts' (uid 'counts') had finished there, but its input" "$tmp/f4.err"

# ---- S: a finished socket branch across an automatic restart ------------------------------

s_port=$(free_port)
printf 'a\nb\na\n' | timeout 60 nc -v -N -l 127.0.0.1 "$s_port" >/dev/null 2>"$tmp/s.nc.err" &
s_nc=$!
sl_pids+=("$s_nc")
wait_for 10 "nc listening on 127.0.0.1:$s_port" grep -q 'Listening on' "$tmp/s.nc.err"
start s "$FT" -p 2 -D execution.checkpointing.interval=100ms -D state.checkpoints.dir="$tmp/s" \
    -D restart-strategy.type=fixed-delay -D restart-strategy.fixed-delay.delay=10ms -- \
    --count "$N" --record-us 400 --socket "$s_port" --fail-when-exists "$tmp/s.fail"
s_pid=$job_pid
wait_for 15 "the socket's lines counted" has_lines "$tmp/s.out" '(s:a,2)' '(s:b,1)'
wait "$s_nc" 2>/dev/null || true
n0=$(n_events "$tmp/s.err" checkpoint_completed)
wait_events 15 "$tmp/s.err" checkpoint_completed $((n0 + 2))
touch "$tmp/s.fail"
wait_exit 60 "$s_pid" "the job with the socket branch to run to its end"
check "S: exit status 0 after the restart (got $rc; $(err_excerpt "$tmp/s.err"))" test "$rc" -eq 0
check "S: it failed once and restarted" test "$(n_events "$tmp/s.err" job_restarting)" -ge 1
check "S: the restarted socket source did not connect again" \
    bash -c '! grep -q "cannot connect" "$1"' _ "$tmp/s.err"
check "S: final counts equal those of an uninterrupted run" \
    same_lines "$tmp/expected" <(final_counts "$tmp/s.out")
check "S: the socket's counts were kept: (s:a,2) once, no count started over" \
    test "$(grep -c '^(s:a,2)$' "$tmp/s.out")" -eq 1 -a "$(grep -c '^(s:a,1)$' "$tmp/s.out")" -eq 1

# ---- refusals --------------------------------------------------------------------------------

# refused NAME WHAT: the run NAME was refused before the job started.
refused() {
    check "$1: exit status 1 (got $rc)" test "$rc" -eq 1
    check "$1: nothing ran" test ! -s "$tmp/$1.out" -a "$(n_events "$tmp/$1.err" job_start)" -eq 0
}

run maxpar "$FT" -p 2 -D pipeline.max-parallelism=64 -s "$chk_a" -- "${JOB[@]}" --extra --noop
refused maxpar
check "another max parallelism: the message says so ($(err_excerpt "$tmp/maxpar.err"))" \
    grep -qE "checkpoint $chk_a was taken with max parallelism 128 for operator '[a-z]+'; this job has 64 \(pipeline.max-parallelism\)" "$tmp/maxpar.err"

run gone "$FT" -p 2 -s "$chk_a" -- "${JOB[@]}" --noop
refused gone
check "uid gone: the message names the uid and the option ($(err_excerpt "$tmp/gone.err"))" \
    grep -qF "checkpoint $chk_a holds state of operator uid 'extra' ('Map') that this job does not have; pass --allow-non-restored-state to start without it" "$tmp/gone.err"

run allow "$FT" -p 2 -s "$chk_a" --allow-non-restored-state -- "${FAST[@]}" --noop
restored_run allow "$chk_a" 2
check "--allow-non-restored-state: the skipped state is logged" \
    grep -qF "event=state_not_restored checkpoint=$chk_a uid=extra" "$tmp/allow.err"

# The "noop" map has no state (no keyed state, no operator state declared): like Flink, a
# restore without it needs no --allow-non-restored-state.
run stateless "$FT" -p 2 -s "$chk_a" -- "${FAST[@]}" --extra
check "removed stateless operator: accepted without --allow-non-restored-state (got $rc; $(err_excerpt "$tmp/stateless.err"))" \
    test "$rc" -eq 0
if ((rc == 0)); then
    restored_run stateless "$chk_a" 2
fi

check_no_sanitizer_output "$tmp"/*.err
