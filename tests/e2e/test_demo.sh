#!/usr/bin/env bash
# test_demo.sh - what `make demo` runs, scripts/demo.sh (setup skipped with SL_SKIP_SETUP=1),
# finishes on its own within 60 s with exit 0 and shows every part: StateDemo01, the socket
# word count fed by nc, and the list, reducing, aggregating, map and broadcast state
# examples, each with its key result rows (with or without the "N> " subtask prefix).
#
# demo.sh runs the programs in build/bin under the directory above its own. When the
# programs under test are elsewhere (the sanitizer tree), the script is run from a copy of
# the repository's layout whose build/bin is a link to $SL_BIN, so the same script text runs
# against those programs.
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

demo=$SL_SRC/scripts/demo.sh
[[ -f $demo ]] || fail "no $demo"
if [[ $(realpath "$SL_BIN") == $(realpath -m "$SL_SRC/build/bin") ]]; then
    root=$SL_SRC
else
    root=$tmp/repo
    mkdir -p "$root/scripts" "$root/build"
    for f in "$SL_SRC"/*; do
        case ${f##*/} in build | build-* | scripts) ;; *) ln -s "$f" "$root/${f##*/}" ;; esac
    done
    for f in "$SL_SRC"/scripts/*; do
        ln -s "$f" "$root/scripts/${f##*/}"
    done
    ln -s "$SL_BIN" "$root/build/bin"
fi
echo "     running $root/scripts/demo.sh with programs from $SL_BIN"

# In a session of its own, so that whatever the demo leaves running (its nc when it stops
# early) is ended with it.
rc=0
t0=${EPOCHREALTIME/[.,]/}
(cd "$root" && SL_SKIP_SETUP=1 exec setsid timeout -k 5 60 bash scripts/demo.sh) </dev/null \
    >"$tmp/demo.out" 2>"$tmp/demo.err" &
demo_pid=$!
sl_pids+=("$demo_pid")
wait "$demo_pid" || rc=$?
kill -- "-$demo_pid" 2>/dev/null || true
elapsed_ms=$(((${EPOCHREALTIME/[.,]/} - t0) / 1000))
echo "     demo took ${elapsed_ms} ms"
check "demo finishes within 60 s (took ${elapsed_ms} ms)" test "$rc" -ne 124 -a "$rc" -ne 137
check "demo exits 0 (got $rc; stderr: $(head -c 400 "$tmp/demo.err" | tr '\n' ' '))" \
    test "$rc" -eq 0
check_no_sanitizer_output "$tmp/demo.err"
# The exactly-once part injects one failure on purpose; nothing else may fail.
check "demo reports no error other than the injected failure" \
    bash -c "! grep -iE 'error|failed|usage:' '$tmp/demo.out' '$tmp/demo.err' | grep -v 'injected failure'"
check "the exactly-once part shows checkpoints completing" \
    grep -qE '^  checkpoint [0-9]+ completed \([0-9]+ ms, [0-9]+ bytes\)$' "$tmp/demo.out"
check "the exactly-once part shows the injected failure and the restart" \
    grep -qE "^  FAILURE: operator 'Flat Map' \(subtask 1/1\) failed: injected failure at line [0-9]+" "$tmp/demo.out"
check "the exactly-once part restores from a checkpoint" \
    grep -qE '^  restored every subtask from checkpoint [0-9]+; the counts continue:$' "$tmp/demo.out"
check "the exactly-once part ends with the exact-count verdict" \
    grep -qE '^RESULT: exact: all [0-9]+ words' "$tmp/demo.out"

# contains_row ROW: ROW is a whole line of the demo's output, with or without "N> ".
contains_row() {
    grep -qE "^([0-9]+> )?$(printf '%s' "$1" | sed 's/[][().*^$+?{}|\\/]/\\&/g')\$" "$tmp/demo.out"
}

for row in \
    '(北京,6)' '(上海,8)' '(北京,1,1)' '(北京,6,6)' '(北京,3,6)' '(上海,4,8)' \
    '(hello,1)' '(hello,2)' '(world,1)' '(sluice,1)' '(to,2)' '(be,2)' '(or,1)' '(not,1)' \
    '(alice,10.0.0.1,3)' '(bob,192.168.1.7,3)' \
    '(ann,20.5)' '(ben,7.25)' '(cid,20.0)' \
    '(s1,22.0,3)' '(s2,30.0,2)' '(s3,-4.0,1)' \
    '(ann,/pay,1,3)' '(bo,/home,2,2)' \
    '(t-2,temperature,38.2,35.0)' '(t-1,temperature,41.0,35.0)' '(p-1,pressure,1.31,1.2)'; do
    check "demo prints $row" contains_row "$row"
done
check "the word count part prints every count, each once" \
    test "$(grep -cE '^([0-9]+> )?\((hello|world|sluice|to|be|or|not),[0-9]+\)$' "$tmp/demo.out")" \
    -eq 10
check "(hello,1) comes before (hello,2)" \
    diff -u <(printf '(hello,1)\n(hello,2)\n') <(sed -nE 's/^([0-9]+> )?(\(hello,[0-9]+\))$/\2/p' \
        "$tmp/demo.out")
check "StateDemo01 runs with -p 2 (lines carry 1> or 2>)" \
    grep -qE '^[12]> \(北京,6\)$' "$tmp/demo.out"
check "demo ends with its closing line" grep -q '== done' "$tmp/demo.out"
