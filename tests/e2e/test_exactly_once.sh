#!/usr/bin/env bash
# test_exactly_once.sh - issue 3 items 8 and 9: exactly-once state and end-to-end
# exactly-once output, proven under failures, with $SL_TESTS/eo_job (tests/e2e/jobs/eo_job.c).
#
# eo_job reads a deterministic generator (COUNT records (key, seq, value) over KEYS keys,
# each key's seq 1, 2, 3, ... in source order) through a keyed process function that uses
# every keyed state kind and checks in ValueState that each key's seq advances by exactly
# one, and writes one row of running per-key results per record through the two-phase-commit
# file sink. The expected rows are computed here, independently, in python3.
#
#   a. EXACTLY_ONCE with failpoints in processing (task.record) and in checkpoints
#      (checkpoint.sync, checkpoint.async, checkpoint.notify), sources and sink at
#      parallelism 2 and the keyed operator at 3 (so the keyed tasks and the sink tasks each
#      align barriers from several inputs): at least 20 restarts; the
#      sequence check never fires; every key's final values are the expected ones; the
#      committed files hold every expected row exactly once; no hidden file is left.
#   a2. the same on the RocksDB state backend (state.backend.type=rocksdb).
#   a3. the same with incremental checkpoints (state.backend.incremental=true).
#   b. AT_LEAST_ONCE with the same failpoints: nothing is lost (every expected row is
#      committed at least once, final values as expected). The job skips (and counts)
#      records whose seq is already in state, as at-least-once may replay them; a gap still
#      fails it. The keyed operator runs at parallelism 2, chained with the sink.
#   c. kill -9 of the whole process at a random moment after some checkpoints completed,
#      then the same program with -s <latest completed chk-N> and the same output directory:
#      every expected row exactly once. Once at the same parallelism, once restarted at
#      another one (sources and sink -p 2 -> 1, keyed operator 2 -> 3).
#   d. the process dies (failpoint job.before_commit: _exit(137) as under kill -9) after the
#      job finished and its final checkpoint completed, before the output of the job's end was
#      committed; -s from the latest checkpoint (the final one) commits it without replaying:
#      every expected row exactly once.
#   e. the end-of-job commit fails (failpoint sink.commit): the job exits 1 naming its kept
#      final checkpoint; -s from it commits: every expected row exactly once.
#
# EO_FAILPOINTS and EO_SEED override the failpoint spec and seed; EO_KILL_DELAY_MS the
# random delay before kill -9.
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

command -v python3 >/dev/null || fail "python3 not found: run scripts/setup.sh"
job_bin=$SL_TESTS/eo_job
[[ -x $job_bin ]] || fail "$job_bin not built (cmake --build $SL_BUILD)"

count=200000
keys=1000
# A run without failures lasts about 3 s: each source subtask sleeps 1 ms every 40 records.
pace=(--sleep-every 40 --sleep-ms 1 --interval-ms 50 --restart-attempts 100
    --restart-delay-ms 50)
failpoints=${EO_FAILPOINTS:-"task.record=p0.0001,max10;checkpoint.sync=p0.04,max6;checkpoint.async=p0.04,max6;checkpoint.notify=p0.04,max6"}
seed=${EO_SEED:-20240611}

# ---- the expected output -----------------------------------------------------------------

cat >"$tmp/expected.py" <<'EOF'
# expected.py COUNT KEYS ROWS_OUT FINAL_OUT: the rows eo_job emits, computed without Sluice.
import sys

count, keys = int(sys.argv[1]), int(sys.argv[2])
last3, total, n, buckets, final = {}, {}, {}, {}, {}
with open(sys.argv[3], "w") as rows:
    for i in range(count):
        k, seq, v = i % keys, i // keys + 1, ((i * 2654435761) % 2**32) % 1000
        l3 = last3.setdefault(k, [])
        l3.append(v)
        del l3[:-3]
        total[k] = total.get(k, 0) + v
        n[k] = n.get(k, 0) + 1
        b = buckets.setdefault(k, [0] * 7)
        b[v % 7] += 1
        row = "(%d,%d,%d,%s,%d,%d,%d,%s)" % (k, seq, v, "/".join(map(str, l3)), total[k], n[k],
                                             total[k] // n[k], "/".join(map(str, b)))
        rows.write(row + "\n")
        final[k] = row
with open(sys.argv[4], "w") as f:
    for k in sorted(final):
        f.write(final[k] + "\n")
EOF
python3 "$tmp/expected.py" "$count" "$keys" "$tmp/expected.unsorted" "$tmp/expected.final"
LC_ALL=C sort "$tmp/expected.unsorted" >"$tmp/expected.rows"
rm -f "$tmp/expected.unsorted"

# ---- helpers -------------------------------------------------------------------------------

now_ms() {
    echo $((${EPOCHREALTIME//[.,]/} / 1000))
}

# committed DIR: the committed rows of DIR (visible part files), sorted.
committed() {
    find "$1" -maxdepth 1 -type f -name 'part-*' -exec cat {} + | LC_ALL=C sort
}

# finals FILE: per key, the row with the highest seq among the rows of FILE, ordered by key.
finals() {
    awk -F, '{ k = substr($1, 2) + 0; s = $2 + 0
        if (!(k in best) || s > best[k]) { best[k] = s; row[k] = $0 } }
        END { for (k in row) print k "\t" row[k] }' "$1" | sort -n -k1,1 | cut -f2-
}

# hidden_files DIR: the hidden files (in-progress or pending part files) left in DIR.
hidden_files() {
    find "$1" -maxdepth 1 -name '.*' ! -name . -printf '%f\n' | xargs
}

# count_lines PATTERN FILE: lines of FILE matching the extended regex PATTERN.
count_lines() {
    grep -cE -- "$1" "$2" || true
}

# check_exactly_once NAME DIR: the committed rows of DIR are exactly the expected rows, each
# once; the final per-key values are the expected ones; no hidden file is left.
check_exactly_once() {
    local name=$1 dir=$2
    committed "$dir" >"$tmp/$name.rows"
    local dups missing extra
    dups=$(uniq -d "$tmp/$name.rows" | wc -l)
    missing=$(LC_ALL=C comm -23 "$tmp/expected.rows" <(LC_ALL=C sort -u "$tmp/$name.rows") | wc -l)
    extra=$(LC_ALL=C comm -13 "$tmp/expected.rows" <(LC_ALL=C sort -u "$tmp/$name.rows") | wc -l)
    check "$name: $(wc -l <"$tmp/$name.rows") rows committed, $count expected" \
        test "$(wc -l <"$tmp/$name.rows")" -eq "$count"
    check "$name: no row committed twice ($dups duplicated)" test "$dups" -eq 0
    check "$name: no expected row missing ($missing missing)" test "$missing" -eq 0
    check "$name: no unexpected row ($extra unexpected)" test "$extra" -eq 0
    check "$name: committed output equals the expected output exactly" \
        cmp -s "$tmp/expected.rows" "$tmp/$name.rows"
    finals "$tmp/$name.rows" >"$tmp/$name.final"
    check "$name: all $keys keys have final values equal to the expected ones" \
        diff -q "$tmp/expected.final" "$tmp/$name.final"
    check "$name: no hidden in-progress/pending file left ($(hidden_files "$dir"))" \
        test -z "$(hidden_files "$dir")"
}

# check_seq_never_fired NAME ERRFILE
check_seq_never_fired() {
    local n
    n=$(count_lines 'SEQUENCE CHECK FAILED|sequence check failed' "$2")
    check "$1: the per-key sequence check never fired ($n times; $(grep -m1 -F 'SEQUENCE CHECK' "$2" || true))" \
        test "$n" -eq 0
}

# check_failures NAME ERRFILE: failpoints fired in processing and in checkpoints, and the
# job restarted at least 20 times.
check_failures() {
    local name=$1 err=$2 fired restarts restored kind k
    fired=$(count_lines 'event=failpoint_fired' "$err")
    restarts=$(count_lines 'event=job_restarting' "$err")
    restored=$(count_lines 'event=restoring attempt=' "$err")
    kind=$(grep -oE 'event=failpoint_fired name=[a-z.]+' "$err" | sed 's/.*name=//' | sort |
        uniq -c | awk '{ printf "%s%s=%d", sep, $2, $1; sep = " " }')
    echo "     $name: failpoints fired: $fired ($kind); restarts: $restarts;" \
        "restored from a checkpoint: $restored;" \
        "checkpoints completed: $(count_lines 'event=checkpoint_completed' "$err")"
    check "$name: at least 20 injected failures ($fired)" test "$fired" -ge 20
    check "$name: at least 20 restarts ($restarts)" test "$restarts" -ge 20
    for k in task.record checkpoint.sync checkpoint.async checkpoint.notify; do
        check "$name: failpoint $k fired ($(count_lines "event=failpoint_fired name=$k " "$err") times)" \
            grep -qF "event=failpoint_fired name=$k " "$err"
    done
    check "$name: restarts restored state from completed checkpoints ($restored)" \
        test "$restored" -ge 1
}

# run_failpoints NAME MODE KEYED_PARALLELISM: eo_job -p 2 in MODE under the failpoints, to
# completion. Sets $rc.
run_failpoints() {
    local name=$1 mode=$2 keyed=$3 backend=${4:-hashmap} incremental=${5:-false} t0
    t0=$(now_ms)
    rc=0
    SLUICE_LOG_LEVEL=info SLUICE_FAILPOINTS="$failpoints" SLUICE_FAILPOINT_SEED="$seed" \
        SLUICE_LOG_LEVEL=info "$job_bin" -p 2 -D "state.backend.type=$backend" \
        -D "state.backend.incremental=$incremental" -- \
        --out "$tmp/$name.out" --checkpoints "$tmp/$name.chk" \
        --count "$count" --keys "$keys" --keyed-parallelism "$keyed" --mode "$mode" "${pace[@]}" \
        </dev/null >"$tmp/$name.stdout" 2>"$tmp/$name.err" || rc=$?
    echo "     $name: $mode, $backend (incremental: $incremental), -p 2, keyed parallelism $keyed, $count records, $keys keys," \
        "failpoints \"$failpoints\"" \
        "seed $seed: exit $rc after $(($(now_ms) - t0)) ms"
}

# ---- a. EXACTLY_ONCE under failpoints ----------------------------------------------------

run_failpoints eo EXACTLY_ONCE 3
check "eo: exit status 0 (got $rc; $(grep -vE 'level=|duplicates skipped' "$tmp/eo.err" | tail -c 400))" \
    test "$rc" -eq 0
check_failures eo "$tmp/eo.err"
check_seq_never_fired eo "$tmp/eo.err"
check "eo: no duplicate skipped in EXACTLY_ONCE mode" bash -c "! grep -q 'duplicates skipped' '$tmp/eo.err'"
check_exactly_once eo "$tmp/eo.out"
check_no_sanitizer_output "$tmp/eo.err"

# ---- a2. the same on the RocksDB state backend ------------------------------------------------

run_failpoints eo-rocksdb EXACTLY_ONCE 3 rocksdb
check "eo-rocksdb: exit status 0 (got $rc; $(grep -vE 'level=|duplicates skipped' "$tmp/eo-rocksdb.err" | tail -c 400))" \
    test "$rc" -eq 0
check_failures eo-rocksdb "$tmp/eo-rocksdb.err"
check_seq_never_fired eo-rocksdb "$tmp/eo-rocksdb.err"
check_exactly_once eo-rocksdb "$tmp/eo-rocksdb.out"
check_no_sanitizer_output "$tmp/eo-rocksdb.err"

# ---- a3. the same on RocksDB with incremental checkpoints --------------------------------------

run_failpoints eo-rocksdb-incr EXACTLY_ONCE 3 rocksdb true
check "eo-rocksdb-incr: exit status 0 (got $rc; $(grep -vE 'level=|duplicates skipped' "$tmp/eo-rocksdb-incr.err" | tail -c 400))" \
    test "$rc" -eq 0
check_failures eo-rocksdb-incr "$tmp/eo-rocksdb-incr.err"
check_seq_never_fired eo-rocksdb-incr "$tmp/eo-rocksdb-incr.err"
check_exactly_once eo-rocksdb-incr "$tmp/eo-rocksdb-incr.out"
check_no_sanitizer_output "$tmp/eo-rocksdb-incr.err"
check "eo-rocksdb-incr: checkpoints stored SST files in shared/ and referenced them again" \
    grep -q 'event=db_files_stored .* reused_bytes=[1-9]' "$tmp/eo-rocksdb-incr.err"

# ---- b. AT_LEAST_ONCE under failpoints: nothing lost ----------------------------------------

run_failpoints alo AT_LEAST_ONCE 2
check "alo: exit status 0 (got $rc; $(grep -vE 'level=|duplicates skipped' "$tmp/alo.err" | tail -c 400))" \
    test "$rc" -eq 0
check_failures alo "$tmp/alo.err"
check_seq_never_fired alo "$tmp/alo.err"
skipped=$(grep -oE 'duplicates skipped=[0-9]+' "$tmp/alo.err" | awk -F= '{ s += $2 } END { print s + 0 }')
echo "     alo: records replayed into state that already had them (skipped): $skipped"
committed "$tmp/alo.out" >"$tmp/alo.rows"
LC_ALL=C sort -u "$tmp/alo.rows" >"$tmp/alo.urows"
missing=$(LC_ALL=C comm -23 "$tmp/expected.rows" "$tmp/alo.urows" | wc -l)
extra=$(LC_ALL=C comm -13 "$tmp/expected.rows" "$tmp/alo.urows" | wc -l)
twice=$(($(wc -l <"$tmp/alo.rows") - $(wc -l <"$tmp/alo.urows")))
check "alo: every expected row committed at least once ($missing of $count missing; $twice more than once)" \
    test "$missing" -eq 0
check "alo: no row with values other than the expected ones ($extra)" test "$extra" -eq 0
finals "$tmp/alo.urows" >"$tmp/alo.final"
check "alo: all $keys keys have final values equal to the expected ones" \
    diff -q "$tmp/expected.final" "$tmp/alo.final"
check "alo: no hidden in-progress/pending file left ($(hidden_files "$tmp/alo.out"))" \
    test -z "$(hidden_files "$tmp/alo.out")"
check_no_sanitizer_output "$tmp/alo.err"

# ---- c. kill -9 at a random moment, then -s from the latest retained checkpoint ---------------

# completed_checkpoints DIR: the completed chk-N directories under DIR/<job-id>/, oldest first.
completed_checkpoints() {
    find "$1" -mindepth 3 -maxdepth 3 -path '*/chk-*/_metadata' -printf '%h\n' 2>/dev/null |
        awk -F'chk-' '{ print $NF "\t" $0 }' | sort -n | cut -f2-
}

enough_checkpoints() {
    [[ $(completed_checkpoints "$1" | wc -l) -ge 3 ]]
}

# kill_and_restore NAME RESTORE_OPTIONS...: starts eo_job (-p 2, keyed 2) without
# failpoints, waits for three completed checkpoints, kill -9s it after a random delay, then
# runs it again with -s <latest completed chk-N> and RESTORE_OPTIONS (Sluice options, then
# job options after --) into the same output directory.
kill_and_restore() {
    local name=$1 t0 delay pid before latest
    shift
    t0=$(now_ms)
    SLUICE_LOG_LEVEL=info "$job_bin" -p 2 -- --out "$tmp/$name.out" --checkpoints "$tmp/$name.chk" --count "$count" \
        --keys "$keys" --keyed-parallelism 2 "${pace[@]}" </dev/null >"$tmp/$name.1.stdout" \
        2>"$tmp/$name.1.err" &
    pid=$!
    sl_pids+=("$pid")
    wait_for 20 "$name: three completed checkpoints" enough_checkpoints "$tmp/$name.chk"
    delay=${EO_KILL_DELAY_MS:-$((RANDOM % 1500))}
    sleep "$((delay / 1000)).$(printf '%03d' $((delay % 1000)))"
    if ! kill -0 "$pid" 2>/dev/null; then
        fail "$name: eo_job ended before kill -9 (after $(($(now_ms) - t0)) ms): make it slower"
    fi
    kill -9 "$pid"
    rc=0
    wait "$pid" 2>/dev/null || rc=$?
    before=$(committed "$tmp/$name.out" | wc -l)
    latest=$(completed_checkpoints "$tmp/$name.chk" | tail -1)
    echo "     $name: killed with SIGKILL $((delay)) ms after the third checkpoint," \
        "$(($(now_ms) - t0)) ms after start; $before rows committed then; restoring" \
        "${latest#"$tmp/"}"
    check "$name: killed by SIGKILL (exit $rc)" test "$rc" -eq 137
    check "$name: the kill came mid-run ($before of $count rows committed)" \
        test "$before" -lt "$count"
    [[ -n $latest ]] || fail "$name: no completed checkpoint under $tmp/$name.chk"
    check_no_sanitizer_output "$tmp/$name.1.err"

    t0=$(now_ms)
    local sl_opts=() job_opts=() seen_dashdash=0 a
    for a in "$@"; do
        if [[ $a == -- ]]; then
            seen_dashdash=1
        elif ((seen_dashdash)); then
            job_opts+=("$a")
        else
            sl_opts+=("$a")
        fi
    done
    rc=0
    SLUICE_LOG_LEVEL=info "$job_bin" -s "$latest" "${sl_opts[@]}" -- --out "$tmp/$name.out" \
        --checkpoints "$tmp/$name.chk" --count "$count" --keys "$keys" "${pace[@]}" \
        "${job_opts[@]}" </dev/null >"$tmp/$name.2.stdout" 2>"$tmp/$name.2.err" || rc=$?
    echo "     $name: restored run (${*}) exit $rc after $(($(now_ms) - t0)) ms;" \
        "checkpoints completed: $(count_lines 'event=checkpoint_completed' "$tmp/$name.2.err")"
    check "$name: restored run exits 0 (got $rc; $(grep -vE 'level=|duplicates skipped' "$tmp/$name.2.err" | tail -c 400))" \
        test "$rc" -eq 0
    check "$name: restored run says it restores ${latest##*/}" \
        grep -qF "event=restoring checkpoint=$latest id=${latest##*chk-}" "$tmp/$name.2.err"
    check_seq_never_fired "$name" "$tmp/$name.2.err"
    check_exactly_once "$name" "$tmp/$name.out"
    check_no_sanitizer_output "$tmp/$name.2.err"
}

kill_and_restore kill9 -p 2 -- --keyed-parallelism 2
kill_and_restore kill9-rescale -p 1 -- --keyed-parallelism 3

# ---- d. the process dies between the final checkpoint and the end-of-job commit -------------

rc=0
SLUICE_FAILPOINTS="job.before_commit=n1" SLUICE_LOG_LEVEL=info "$job_bin" -p 2 -- \
    --out "$tmp/endcrash.out" --checkpoints "$tmp/endcrash.chk" --count "$count" --keys "$keys" \
    --keyed-parallelism 2 "${pace[@]}" </dev/null >"$tmp/endcrash.1.stdout" \
    2>"$tmp/endcrash.1.err" || rc=$?
check "endcrash: the process died at the failpoint (exit $rc)" test "$rc" -eq 137
check "endcrash: it died before committing the end of the output" \
    test -n "$(hidden_files "$tmp/endcrash.out")"
latest=$(completed_checkpoints "$tmp/endcrash.chk" | tail -1)
[[ -n $latest ]] || fail "endcrash: no completed checkpoint under $tmp/endcrash.chk"
rc=0
SLUICE_LOG_LEVEL=info "$job_bin" -s "$latest" -p 2 -- --out "$tmp/endcrash.out" \
    --checkpoints "$tmp/endcrash.chk" --count "$count" --keys "$keys" --keyed-parallelism 2 \
    "${pace[@]}" </dev/null >"$tmp/endcrash.2.stdout" 2>"$tmp/endcrash.2.err" || rc=$?
check "endcrash: restored run exits 0 (got $rc; $(grep -v 'level=' "$tmp/endcrash.2.err" | tail -c 300))" \
    test "$rc" -eq 0
check_seq_never_fired endcrash "$tmp/endcrash.2.err"
check_exactly_once endcrash "$tmp/endcrash.out"
check_no_sanitizer_output "$tmp/endcrash.1.err" "$tmp/endcrash.2.err"

# ---- e. the end-of-job commit fails: the checkpoint is kept and a restore commits ------------

rc=0
SLUICE_FAILPOINTS="sink.commit=n1" SLUICE_LOG_LEVEL=info "$job_bin" -p 2 -- \
    --out "$tmp/commitfail.out" --checkpoints "$tmp/commitfail.chk" --count "$count" \
    --keys "$keys" --keyed-parallelism 2 "${pace[@]}" </dev/null >"$tmp/commitfail.1.stdout" \
    2>"$tmp/commitfail.1.err" || rc=$?
check "commitfail: the job fails when its output cannot be committed (exit $rc)" test "$rc" -eq 1
check "commitfail: the error says so and names the kept checkpoint" \
    grep -qE 'committing its output failed: file sink: failpoint sink.commit fired.*run the job with -s .*/chk-[0-9]+ to commit again' "$tmp/commitfail.1.err"
kept=$(grep -oE 'with -s [^ ]+/chk-[0-9]+' "$tmp/commitfail.1.err" | head -1 | cut -d' ' -f3)
check "commitfail: the named checkpoint exists ($kept)" test -f "$kept/_metadata"
rc=0
SLUICE_LOG_LEVEL=info "$job_bin" -s "$kept" -p 2 -- --out "$tmp/commitfail.out" \
    --checkpoints "$tmp/commitfail.chk" --count "$count" --keys "$keys" --keyed-parallelism 2 \
    "${pace[@]}" </dev/null >"$tmp/commitfail.2.stdout" 2>"$tmp/commitfail.2.err" || rc=$?
check "commitfail: restored run exits 0 (got $rc; $(grep -v 'level=' "$tmp/commitfail.2.err" | tail -c 300))" \
    test "$rc" -eq 0
check_exactly_once commitfail "$tmp/commitfail.out"
check_no_sanitizer_output "$tmp/commitfail.1.err" "$tmp/commitfail.2.err"
