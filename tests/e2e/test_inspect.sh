#!/usr/bin/env bash
# test_inspect.sh - `sluice checkpoint inspect`: checkpoints written through the storage API
# by the test program make_checkpoint (the directory layout, retention of 2 out of 3) are
# printed as valid JSON with the right operators, subtasks, key-group ranges, files and
# sizes, from a directory, its _metadata or a file:// URI; a corrupt or truncated _metadata,
# a corrupt state file (with --verify) and paths that are not checkpoints exit 1 with a
# message on stderr naming the file; usage errors exit 2; help lists only the commands that
# exist.
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

job=0123456789abcdef0123456789abcdef
sluice=$SL_BIN/sluice
n=0

# inspect WANT_STATUS ARGS...: runs `sluice ARGS` with stdout in $out and stderr in $err
# and checks the exit status.
inspect() {
    local want=$1
    shift
    n=$((n + 1))
    out=$tmp/case$n.out
    err=$tmp/case$n.err
    local rc=0
    timeout 60 "$sluice" "$@" </dev/null >"$out" 2>"$err" || rc=$?
    check "sluice $* exits $want (got $rc: $(head -c 300 "$err" | tr '\n' ' '))" test "$rc" -eq "$want"
}

# flip FILE OFFSET: inverts one byte of FILE.
flip() {
    python3 -c 'import sys
p, i = sys.argv[1], int(sys.argv[2])
b = bytearray(open(p, "rb").read())
b[i] ^= 0xff
open(p, "wb").write(b)' "$1" "$2"
}

# ---- writing checkpoints -------------------------------------------------------------------

chk=$("$SL_TESTS/make_checkpoint" "$tmp/ckpts" "$job" 3 2 2>"$tmp/make.err")
check "make_checkpoint wrote chk-3" test "$chk" = "$tmp/ckpts/$job/chk-3"
check "chk-3 has _metadata" test -f "$chk/_metadata"
check "no _metadata.tmp left" test ! -e "$chk/_metadata.tmp"
check "job dir has shared/ and taskowned/" test -d "$tmp/ckpts/$job/shared" -a -d "$tmp/ckpts/$job/taskowned"
check "retention 2: chk-1 deleted" test ! -e "$tmp/ckpts/$job/chk-1"
check "retention 2: chk-2 kept" test -f "$tmp/ckpts/$job/chk-2/_metadata"

# ---- a good checkpoint ---------------------------------------------------------------------

inspect 0 checkpoint inspect "$chk"
good=$out
check "nothing on stderr" test ! -s "$err"
check "stdout is valid JSON" python3 -m json.tool "$good" >/dev/null
check "JSON fields" python3 - "$good" "$chk" "$job" <<'EOF'
import json, os, sys
d = json.load(open(sys.argv[1]))
chk, job = sys.argv[2], sys.argv[3]
assert d["job_id"] == job, d["job_id"]
assert d["job_name"] == 'make_checkpoint "test" job', d["job_name"]
assert d["checkpoint_id"] == 3 and d["savepoint"] is False
assert d["path"] == os.path.realpath(chk), d["path"]
assert d["duration_ms"] == 42
ops = {o["uid"]: o for o in d["operators"]}
assert list(ops) == ["source", "counts", "print"], list(ops)
for o in ops.values():
    assert o["parallelism"] == 2 and o["max_parallelism"] == 128
    assert [s["subtask"] for s in o["subtasks"]] == [0, 1]
counts = ops["counts"]["subtasks"]
assert [s["key_groups"] for s in counts] == [[0, 64], [64, 128]]
assert all(s["keyed_bytes"] > 0 and s["operator_state_bytes"] == 0 for s in counts)
src = ops["source"]["subtasks"]
assert all(s["operator_state_bytes"] > 0 and s["keyed_bytes"] == 0 for s in src)
assert all(s["file"] == "" and s["size"] == 0 for s in ops["print"]["subtasks"])
total = 0
for o in ops.values():
    for s in o["subtasks"]:
        if s["file"]:
            assert os.path.getsize(os.path.join(chk, s["file"])) == s["size"], s
            assert len(s["checksum"]) == 16
        total += s["size"]
assert d["total_size"] == total
EOF

inspect 0 checkpoint inspect "$chk/_metadata"
check "the _metadata path prints the same" cmp -s "$good" "$out"
inspect 0 checkpoint inspect "file://$chk/"
check "a file:// URI prints the same" cmp -s "$good" "$out"
inspect 0 checkpoint inspect --verify "$chk"
check "--verify prints the same" cmp -s "$good" "$out"
inspect 0 checkpoint inspect "$tmp/ckpts/$job/chk-2"
check "chk-2 has checkpoint_id 2" python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))["checkpoint_id"] == 2' "$out"

# ---- broken checkpoints --------------------------------------------------------------------

cp -r "$chk" "$tmp/bad"
flip "$tmp/bad/_metadata" 100
inspect 1 checkpoint inspect "$tmp/bad"
check "corrupt _metadata: stdout empty" test ! -s "$out"
check "corrupt _metadata: stderr names the file" grep -qF "$tmp/bad/_metadata" "$err"
check "corrupt _metadata: stderr says checksum mismatch" grep -qF "checksum mismatch" "$err"

cp "$chk/_metadata" "$tmp/bad/_metadata"
truncate -s 200 "$tmp/bad/_metadata"
inspect 1 checkpoint inspect "$tmp/bad"
check "truncated _metadata: stderr names the file" grep -qF "$tmp/bad/_metadata" "$err"
check "truncated _metadata: stderr says truncated" grep -qF "truncated" "$err"

cp "$chk/_metadata" "$tmp/bad/_metadata"
flip "$tmp/bad/counts-1.state" 50
inspect 0 checkpoint inspect "$tmp/bad"
check "a corrupt state file passes without --verify" test -s "$out"
inspect 1 checkpoint inspect --verify "$tmp/bad"
check "corrupt state file: stdout empty" test ! -s "$out"
check "corrupt state file: stderr names it" grep -qF "$tmp/bad/counts-1.state" "$err"

rm "$tmp/bad/source-0.state"
cp "$chk/counts-1.state" "$tmp/bad/counts-1.state"
inspect 1 checkpoint inspect --verify "$tmp/bad"
check "missing state file: stderr names it" grep -qF "$tmp/bad/source-0.state is missing" "$err"

# ---- paths that are not checkpoints --------------------------------------------------------

inspect 1 checkpoint inspect "$tmp/nonexistent"
check "nonexistent path: says not a checkpoint" grep -qF "$tmp/nonexistent is not a checkpoint" "$err"
mkdir "$tmp/empty"
inspect 1 checkpoint inspect "$tmp/empty"
check "empty directory: no _metadata in it" grep -qF "$tmp/empty is not a checkpoint: no _metadata in it" "$err"
inspect 1 checkpoint inspect "$tmp/ckpts/$job"
check "job directory: points at the latest checkpoint" grep -qF "$tmp/ckpts/$job/chk-3" "$err"
inspect 1 checkpoint inspect "$chk/counts-0.state"
check "a state file: says what it is" grep -qF "is not a checkpoint: it is a state file" "$err"
echo "hello" >"$tmp/hello.txt"
inspect 1 checkpoint inspect "$tmp/hello.txt"
check "a text file: not a checkpoint" grep -qF "$tmp/hello.txt is not a checkpoint" "$err"

# ---- usage ---------------------------------------------------------------------------------

inspect 0 --help
check "--help lists checkpoint inspect" grep -qF "checkpoint inspect" "$out"
check "--help lists no command that does not exist yet" bash -c \
    "! grep -qE '^  (run|list|cancel|savepoint|stop)( |\$)' '$out'"
inspect 0 help
check "help prints the usage" grep -qF "usage: sluice" "$out"
inspect 2 bogus
check "unknown command: named" grep -qF "unknown command 'bogus'" "$err"
check "unknown command: usage on stderr" grep -qF "usage: sluice" "$err"
check "unknown command: stdout empty" test ! -s "$out"
inspect 2
inspect 2 checkpoint
inspect 2 checkpoint list
inspect 2 checkpoint inspect
check "missing PATH: said" grep -qF "needs a PATH" "$err"
inspect 2 checkpoint inspect --bogus "$chk"

check_no_sanitizer_output "$tmp"/case*.err "$tmp/make.err"
