#!/usr/bin/env bash
# test_bad_checkpoints.sh - bad and broken checkpoints never lose data silently (issue 3,
# item 10), on tests/e2e/jobs/ft_counter (24000 records over 12 keys, 2000 each):
#
#  - restoring with -s from a checkpoint whose state file has a flipped byte, is missing or
#    comes from another checkpoint, or whose _metadata is truncated or corrupt: refused, the
#    file named, exit status 1, nothing counted; `sluice checkpoint inspect --verify` agrees;
#  - -s paths that are not checkpoints (empty dir, regular file, missing path, a job dir, a
#    state file) say so;
#  - automatic recovery with 2 retained checkpoints, the newest broken while the job runs
#    (a state file corrupted, or _metadata truncated), then one failure: the newer one is
#    found unusable, the older one restored, and the final counts are still exact;
#  - a checkpoint directory that cannot be created at start fails the job with a message;
#    one that becomes unwritable mid-run (the job directory replaced by a regular file: the
#    tests run as root, where chmod stops nothing), a full disk (a small tmpfs, when this
#    process may mount one) and the failpoint checkpoint.async (a failed write) decline
#    checkpoints, counted against tolerable failures, while the job keeps running and
#    checkpoints again once the disk is back; over the tolerable count the job fails with a
#    message naming the key.
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=ft_lib.sh
. "$(dirname "$0")/ft_lib.sh"

N=24000
SLOW=(--count "$N" --record-us 150)
FAST=(--count "$N" --record-us 20)
RETAIN=(-D execution.checkpointing.externalized-checkpoint-retention=RETAIN_ON_CANCELLATION)
RUNNING=(--count -1 --record-us 50)
expected_counts "$N" 12 >"$tmp/expected"

mnt=
sl_unmount() {
    if [[ -n $mnt ]]; then
        umount -l "$mnt" 2>/dev/null || true
    fi
}
# shellcheck disable=SC2154 # assigned in the trap itself
trap 'sl_exit_rc=$?; set +e; sl_unmount; (exit $sl_exit_rc); sl__on_exit' EXIT

# refused NAME: the run NAME exited 1 before counting anything.
refused() {
    check "$1: exit status 1 (got $rc)" test "$rc" -eq 1
    check "$1: no count printed" test -z "$(final_counts "$tmp/$1.out")"
}

# ---- a checkpoint to break: parallelism 2, 2 retained, cancelled in the middle ----------------

start p "$FT" -p 2 -D execution.checkpointing.interval=100ms -D state.checkpoints.dir="$tmp/p" \
    -D state.checkpoints.num-retained=2 "${RETAIN[@]}" -- "${SLOW[@]}"
p_pid=$job_pid
wait_events 15 "$tmp/p.err" checkpoint_completed 3
stop "$p_pid" INT
check "source checkpoint: SIGINT exits 130 (got $rc)" test "$rc" -eq 130
mapfile -t p_ids < <(complete_chk_ids "$tmp/p")
check "source checkpoint: 2 retained (${p_ids[*]})" test "${#p_ids[@]}" -eq 2
[[ ${#p_ids[@]} -eq 2 ]] || fail "no checkpoints to break"
p_job=$(job_dir "$tmp/p")
chk_old=$p_job/chk-${p_ids[0]}
chk_new=$p_job/chk-${p_ids[1]}
run good "$FT" -p 2 -s "$chk_new" -- "${FAST[@]}"
check "the intact checkpoint restores to the exact counts (exit $rc)" \
    same_lines "$tmp/expected" <(final_counts "$tmp/good.out")

# ---- -s from broken checkpoints -----------------------------------------------------------------

cp -r "$chk_new" "$tmp/flip"
flip "$tmp/flip/counts-1.state" 40
run flip "$FT" -p 2 -s "$tmp/flip" -- "${FAST[@]}"
refused flip
check "flipped byte in a state file: named, checksum mismatch ($(err_excerpt "$tmp/flip.err"))" \
    grep -qF "checksum mismatch in $tmp/flip/counts-1.state" "$tmp/flip.err"
rc=0
"$SL_BIN/sluice" checkpoint inspect --verify "$tmp/flip" >"$tmp/verify.out" 2>"$tmp/verify.err" || rc=$?
check "inspect --verify: exit status 1 (got $rc)" test "$rc" -eq 1
check "inspect --verify: names the corrupt state file" grep -qF "$tmp/flip/counts-1.state" "$tmp/verify.err"
rc=0
"$SL_BIN/sluice" checkpoint inspect --verify "$chk_new" >/dev/null 2>"$tmp/verify-good.err" || rc=$?
check "inspect --verify of the intact checkpoint: exit status 0 (got $rc)" test "$rc" -eq 0

cp -r "$chk_new" "$tmp/missing"
rm "$tmp/missing/counts-0.state"
run missing "$FT" -p 2 -s "$tmp/missing" -- "${FAST[@]}"
refused missing
check "missing state file: named ($(err_excerpt "$tmp/missing.err"))" \
    grep -qF "$tmp/missing/counts-0.state is missing" "$tmp/missing.err"

cp -r "$chk_new" "$tmp/swapped"
cp "$chk_old/counts-0.state" "$tmp/swapped/counts-0.state"
run swapped "$FT" -p 2 -s "$tmp/swapped" -- "${FAST[@]}"
refused swapped
check "state file of another checkpoint: named, refused ($(err_excerpt "$tmp/swapped.err"))" \
    grep -qF "$tmp/swapped/counts-0.state does not match the checkpoint metadata" "$tmp/swapped.err"

cp -r "$chk_new" "$tmp/trunc"
truncate -s 100 "$tmp/trunc/_metadata"
run trunc "$FT" -p 2 -s "$tmp/trunc" -- "${FAST[@]}"
refused trunc
check "truncated _metadata: named, says truncated ($(err_excerpt "$tmp/trunc.err"))" \
    grep -qE "$tmp/trunc/_metadata.*truncated" "$tmp/trunc.err"
check "truncated _metadata: refused before the job started" test "$(n_events "$tmp/trunc.err" job_start)" -eq 0
rc=0
"$SL_BIN/sluice" checkpoint inspect "$tmp/trunc" >/dev/null 2>"$tmp/inspect-trunc.err" || rc=$?
check "inspect of the truncated _metadata: exit status 1, named (got $rc)" \
    test "$rc" -eq 1 -a -n "$(grep -F "$tmp/trunc/_metadata" "$tmp/inspect-trunc.err")"

cp -r "$chk_new" "$tmp/metaflip"
flip "$tmp/metaflip/_metadata" 60
run metaflip "$FT" -p 2 -s "$tmp/metaflip" -- "${FAST[@]}"
refused metaflip
check "flipped byte in _metadata: named, checksum mismatch ($(err_excerpt "$tmp/metaflip.err"))" \
    grep -qF "checksum mismatch in $tmp/metaflip/_metadata" "$tmp/metaflip.err"

# ---- -s paths that are not checkpoints ---------------------------------------------------------

mkdir "$tmp/empty"
echo "hello" >"$tmp/hello.txt"
i=0
for path in "$tmp/empty" "$tmp/hello.txt" "$tmp/nonexistent" "$p_job" "$chk_new/counts-0.state"; do
    i=$((i + 1))
    run "notchk$i" "$FT" -s "$path" -- "${FAST[@]}"
    check "-s $path: exit status 1 (got $rc)" test "$rc" -eq 1
    check "-s $path: says it is not a checkpoint ($(err_excerpt "$tmp/notchk$i.err"))" \
        grep -qF "$path is not a checkpoint" "$tmp/notchk$i.err"
    check "-s $path: nothing ran" test ! -s "$tmp/notchk$i.out" -a "$(n_events "$tmp/notchk$i.err" job_start)" -eq 0
done
check "-s of a job dir points at its latest checkpoint" grep -qF "$chk_new" "$tmp/notchk4.err"

# ---- automatic recovery falls back to an older retained checkpoint ------------------------------

# fallback NAME HOW: a job with 2 retained checkpoints; once 2 are complete (min-pause keeps a
# third away for 700 ms) the newest is broken (HOW=state: a byte of counts-0.state flipped;
# HOW=metadata: _metadata truncated) and the job made to fail once. Sets $fb_new, $fb_old and
# $fb_job (the job's checkpoint directory).
fallback() {
    local name=$1 how=$2
    start "$name" "$FT" -p 2 -D execution.checkpointing.interval=100ms \
        -D execution.checkpointing.min-pause=700ms -D state.checkpoints.dir="$tmp/$name" \
        -D state.checkpoints.num-retained=2 -D restart-strategy.type=fixed-delay \
        -D restart-strategy.fixed-delay.attempts=3 -D restart-strategy.fixed-delay.delay=50ms \
        -D execution.buffer-timeout=5ms -- --count 36000 --record-us 100 \
        --fail-when-exists "$tmp/$name.fail"
    local pid=$job_pid ids
    wait_events 15 "$tmp/$name.err" checkpoint_completed 2
    mapfile -t ids < <(complete_chk_ids "$tmp/$name")
    fb_old=${ids[0]:-0}
    fb_new=${ids[1]:-0}
    fb_job=$(job_dir "$tmp/$name")
    if [[ $how == state ]]; then
        flip "$fb_job/chk-$fb_new/counts-0.state" 40
    else
        truncate -s 100 "$fb_job/chk-$fb_new/_metadata"
    fi
    touch "$tmp/$name.fail"
    check "$name: 2 checkpoints retained when the newest was broken (${ids[*]})" test "${#ids[@]}" -eq 2
    wait_exit 20 "$pid" "$name to finish"
    check "$name: the job finished, exit status 0 (got $rc; $(err_excerpt "$tmp/$name.err"))" test "$rc" -eq 0
    check "$name: it failed once on purpose" grep -qF "injected failure: $tmp/$name.fail exists" "$tmp/$name.err"
    check "$name: no checkpoint completed between the break and the failure" \
        test "$(sed '/event=job_restarting /q' "$tmp/$name.err" | grep -c 'event=checkpoint_completed ')" -eq 2
    check "$name: the older checkpoint $fb_old is restored in the end" \
        grep -qE "event=restoring attempt=[0-9]+ checkpoint=$fb_old\$" "$tmp/$name.err"
    check "$name: final counts exact" same_lines "$tmp/expected36" <(final_counts "$tmp/$name.out")
    check "$name: no sequence error" bash -c "! grep -q 'sequence error' '$tmp/$name.err'"
}
expected_counts 36000 12 >"$tmp/expected36"

fallback fb_state state
check "fb_state: the newer checkpoint $fb_new was tried and its corrupt state file named" \
    grep -qF "restoring from checkpoint $fb_new: checksum mismatch in $fb_job/chk-$fb_new/counts-0.state" "$tmp/fb_state.err"
check "fb_state: then the older one restored" \
    test "$(grep -o 'event=restoring attempt=[0-9]* checkpoint=[0-9]*' "$tmp/fb_state.err" | sed 's/.*=//' | xargs)" = "$fb_new $fb_old"

fallback fb_meta metadata
check "fb_meta: the newer checkpoint $fb_new is reported unusable, its _metadata named" \
    grep -qE "event=checkpoint_unusable id=$fb_new error=\".*$fb_job/chk-$fb_new/_metadata" "$tmp/fb_meta.err"
check "fb_meta: the older one restored at the first restart" \
    grep -qE "event=restoring attempt=1 checkpoint=$fb_old\$" "$tmp/fb_meta.err"

# ---- a checkpoint directory that cannot be created ----------------------------------------------

echo "not a directory" >"$tmp/plainfile"
run notdir "$FT" -D execution.checkpointing.interval=50ms -D state.checkpoints.dir="$tmp/plainfile/ckpt" \
    -- "${FAST[@]}"
refused notdir
check "uncreatable checkpoint dir: the message says so ($(err_excerpt "$tmp/notdir.err"))" \
    grep -qE "cannot create checkpoint directory $tmp/plainfile.*not a directory" "$tmp/notdir.err"

# ---- unwritable mid-run: the job directory becomes a regular file -------------------------------

# block NAME: replaces the job directory of $tmp/NAME by a regular file; unblock NAME: back.
block() {
    local d
    d=$(job_dir "$tmp/$1")
    mv "$d" "$d.away"
    echo "in the way" >"$d"
    blocked=$d
}
unblock() {
    rm "$blocked"
    mv "$blocked.away" "$blocked"
}

start unw "$FT" -D execution.checkpointing.interval=50ms -D state.checkpoints.dir="$tmp/unw" \
    -D execution.checkpointing.tolerable-failed-checkpoints=1000 "${RETAIN[@]}" -- "${RUNNING[@]}"
unw_pid=$job_pid
wait_events 15 "$tmp/unw.err" checkpoint_completed 2
block unw
wait_events 15 "$tmp/unw.err" checkpoint_failed 3
check "unwritable: the job keeps running while checkpoints are declined" running "$unw_pid"
done_blocked=$(n_events "$tmp/unw.err" checkpoint_completed)
unblock
wait_events 15 "$tmp/unw.err" checkpoint_completed $((done_blocked + 2))
stop "$unw_pid" INT
check "unwritable: SIGINT exits 130 (got $rc)" test "$rc" -eq 130
check "unwritable: the failures say why ($(grep -m1 'event=checkpoint_failed ' "$tmp/unw.err" | cut -c1-300))" \
    grep -qE "event=checkpoint_failed id=[0-9]+ reason=\"cannot create checkpoint directory .*: not a directory\" consecutive=1 tolerable=1000" "$tmp/unw.err"
check "unwritable: checkpoints complete again once the directory is back" \
    test "$(sed -n '/event=checkpoint_failed /,$p' "$tmp/unw.err" | grep -c 'event=checkpoint_completed ')" -ge 2
check "unwritable: no incomplete chk dir left ($(chk_ids "$tmp/unw" | xargs) / complete: $(complete_chk_ids "$tmp/unw" | xargs))" \
    test "$(chk_ids "$tmp/unw" | xargs)" = "$(complete_chk_ids "$tmp/unw" | xargs)"
check "unwritable: the retained checkpoint is the newest completed" \
    test "$(complete_chk_ids "$tmp/unw" | xargs)" = "$(field "$tmp/unw.err" checkpoint_completed id | tail -1)"

start unw2 "$FT" -D execution.checkpointing.interval=50ms -D state.checkpoints.dir="$tmp/unw2" \
    -D execution.checkpointing.tolerable-failed-checkpoints=2 -D restart-strategy.type=none \
    -- "${RUNNING[@]}"
unw2_pid=$job_pid
wait_events 15 "$tmp/unw2.err" checkpoint_completed 2
block unw2
wait_exit 15 "$unw2_pid" "the job to fail after 3 declined checkpoints"
unblock
check "unwritable, tolerable 2: exit status 1 (got $rc)" test "$rc" -eq 1
check "unwritable, tolerable 2: 3 failed checkpoints" test "$(n_events "$tmp/unw2.err" checkpoint_failed)" -eq 3
check "unwritable, tolerable 2: the error names the reason and the key ($(tail -1 "$tmp/unw2.err"))" \
    grep -qE "not a directory\) and 3 consecutive checkpoint failures exceed the tolerable number 2 \(execution.checkpointing.tolerable-failed-checkpoints\)" "$tmp/unw2.err"

# ---- a full disk: a 64 KiB tmpfs filled up while the job runs ---------------------------------

mkdir "$tmp/small"
if mount -t tmpfs -o size=64k sluice-e2e "$tmp/small" 2>"$tmp/mount.err"; then
    mnt=$tmp/small
    start full "$FT" -D execution.checkpointing.interval=50ms -D state.checkpoints.dir="$mnt/ckpt" \
        -D execution.checkpointing.tolerable-failed-checkpoints=1000 "${RETAIN[@]}" -- "${RUNNING[@]}"
    full_pid=$job_pid
    wait_events 15 "$tmp/full.err" checkpoint_completed 2
    dd if=/dev/zero of="$mnt/filler" bs=4k 2>/dev/null || true
    wait_events 15 "$tmp/full.err" checkpoint_failed 3
    check "full disk: the job keeps running while checkpoints are declined" running "$full_pid"
    done_full=$(n_events "$tmp/full.err" checkpoint_completed)
    rm "$mnt/filler"
    wait_events 15 "$tmp/full.err" checkpoint_completed $((done_full + 2))
    stop "$full_pid" INT
    check "full disk: SIGINT exits 130 (got $rc)" test "$rc" -eq 130
    check "full disk: the failures say no space left on device, counted ($(grep -m1 'event=checkpoint_failed ' "$tmp/full.err" | cut -c1-300))" \
        grep -qE "event=checkpoint_failed id=[0-9]+ reason=\".*no space left on device\" consecutive=1 tolerable=1000" "$tmp/full.err"
    check "full disk: no incomplete chk dir left ($(chk_ids "$mnt/ckpt" | xargs))" \
        test "$(chk_ids "$mnt/ckpt" | xargs)" = "$(complete_chk_ids "$mnt/ckpt" | xargs)"
    check "full disk: the retained checkpoint is the newest completed" \
        test "$(complete_chk_ids "$mnt/ckpt" | xargs)" = "$(field "$tmp/full.err" checkpoint_completed id | tail -1)"
    sl_unmount
    mnt=
else
    echo "skip full disk (cannot mount a tmpfs here: $(head -c 200 "$tmp/mount.err"))"
fi

# ---- failed writes through the failpoint checkpoint.async --------------------------------------

SLUICE_FAILPOINTS="checkpoint.async=p1,max6" start fp "$FT" -D execution.checkpointing.interval=50ms \
    -D state.checkpoints.dir="$tmp/fp" -D execution.checkpointing.tolerable-failed-checkpoints=10 \
    -- "${RUNNING[@]}"
fp_pid=$job_pid
wait_events 15 "$tmp/fp.err" checkpoint_completed 2
check "checkpoint.async: the job keeps running" running "$fp_pid"
stop "$fp_pid" INT
check "checkpoint.async: SIGINT exits 130 (got $rc)" test "$rc" -eq 130
check "checkpoint.async: the failed writes declined checkpoints ($(n_events "$tmp/fp.err" checkpoint_failed))" \
    grep -qE 'event=checkpoint_failed id=1 reason="failpoint checkpoint.async fired writing [a-z]+ subtask 0" consecutive=1 tolerable=10' "$tmp/fp.err"
check "checkpoint.async: completions reset the consecutive count" \
    test "$(sed -n '/event=checkpoint_completed /,$p' "$tmp/fp.err" | grep -c 'event=checkpoint_failed .*consecutive=[2-9]')" -eq 0

SLUICE_FAILPOINTS="checkpoint.async=p1" run fp2 "$FT" -D execution.checkpointing.interval=50ms \
    -D state.checkpoints.dir="$tmp/fp2" -D execution.checkpointing.tolerable-failed-checkpoints=2 \
    -D restart-strategy.type=none -- "${RUNNING[@]}"
check "checkpoint.async always, tolerable 2: exit status 1 (got $rc)" test "$rc" -eq 1
check "checkpoint.async always, tolerable 2: the error names the key ($(tail -1 "$tmp/fp2.err"))" \
    grep -qF "and 3 consecutive checkpoint failures exceed the tolerable number 2 (execution.checkpointing.tolerable-failed-checkpoints)" "$tmp/fp2.err"

check_no_sanitizer_output "$tmp"/*.err
