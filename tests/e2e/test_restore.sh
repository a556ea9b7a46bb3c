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
