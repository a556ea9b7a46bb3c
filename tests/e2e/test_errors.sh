#!/usr/bin/env bash
# test_errors.sh - bad input to the job programs: unknown or malformed options and
# configuration keys, configuration files that are missing or wrong, a socket nobody listens
# on, missing arguments. Each must give a clear message on stderr naming what was wrong and
# what is accepted, print nothing on stdout, and exit non-zero (2 for usage and
# configuration errors, 1 for a failed job) without a crash or a sanitizer report.
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

n=0

# expect_error STATUS DESCRIPTION CMD [ARGS...] -- PATTERN...: runs CMD (a program in
# $SL_BIN) and checks its exit status is STATUS, stdout is empty, stderr matches every
# PATTERN (fixed strings), and nothing crashed.
expect_error() {
    local want=$1 desc=$2
    shift 2
    local cmd=()
    while (($#)) && [[ $1 != -- ]]; do
        cmd+=("$1")
        shift
    done
    shift
    n=$((n + 1))
    local out=$tmp/case$n.out err=$tmp/case$n.err rc=0
    local prog=$SL_BIN/${cmd[0]}
    [[ -x $prog ]] || prog=$SL_TESTS/${cmd[0]}
    timeout 60 "$prog" "${cmd[@]:1}" </dev/null >"$out" 2>"$err" || rc=$?
    local msg
    msg=$(head -c 400 "$err" | tr '\n' ' ')
    check "$desc: exit status $want (got $rc; stderr: $msg)" test "$rc" -eq "$want"
    if [[ ${allow_stdout:-0} != 1 ]]; then
        check "$desc: stdout is empty" test ! -s "$out"
    fi
    local p
    for p in "$@"; do
        check "$desc: stderr names '$p'" grep -qF -- "$p" "$err"
    done
    check "$desc: no crash report on stderr" bash -c "! grep -qE \
        'Segmentation fault|AddressSanitizer|runtime error:|Aborted|core dumped' '$err'"
    check_no_sanitizer_output "$err"
}

expect_error 2 "-D no.such.key=1" state_demo_01 -D no.such.key=1 -- \
    no.such.key
expect_error 2 "-D execution.runtime-mode=fast" state_demo_01 -D execution.runtime-mode=fast -- \
    execution.runtime-mode fast STREAMING BATCH AUTOMATIC
expect_error 2 "-p 0" state_demo_01 -p 0 -- \
    parallelism '"0"'
expect_error 2 "-p abc" login_ips -p abc -- \
    parallelism abc
expect_error 2 "-p without a value" order_totals -p -- \
    -p
expect_error 2 "--conf /nonexistent.yaml" state_demo_01 --conf /nonexistent.yaml -- \
    /nonexistent.yaml

# A configuration file with an unknown key on its third line, flat and nested.
printf '%s\n' '# a comment' 'parallelism.default: 2' 'no.such.key: 3' >"$tmp/flat.yaml"
expect_error 2 "YAML file with an unknown flat key" state_demo_01 --conf "$tmp/flat.yaml" -- \
    "$tmp/flat.yaml:3" no.such.key
printf '%s\n' 'parallelism:' '  default: 2' '  bogus: 3' >"$tmp/nested.yaml"
expect_error 2 "YAML file with an unknown nested key" state_demo_01 --conf "$tmp/nested.yaml" -- \
    "$tmp/nested.yaml:3" parallelism.bogus
printf '%s\n' 'parallelism.default: 2' 'execution.runtime-mode: fast' >"$tmp/value.yaml"
expect_error 2 "YAML file with a bad value" state_demo_01 --conf "$tmp/value.yaml" -- \
    "$tmp/value.yaml:2" execution.runtime-mode STREAMING
printf '%s\n' 'parallelism.default: [1' 'x: 2' >"$tmp/syntax.yaml"
expect_error 2 "YAML file that does not parse" state_demo_01 --conf "$tmp/syntax.yaml" -- \
    "$tmp/syntax.yaml"

# A port on 127.0.0.1 that nobody listens on: the kernel refuses the connection.
port=$(free_port)
expect_error 1 "word_count, nobody listening" word_count 127.0.0.1 "$port" -- \
    "Connection refused" "'Source: Socket Stream'" "127.0.0.1:$port"
expect_error 1 "word_count -p 2, nobody listening" word_count -p 2 127.0.0.1 "$port" -- \
    "Connection refused" "'Source: Socket Stream'"

expect_error 2 "word_count without arguments" word_count -- \
    usage HOST PORT
expect_error 2 "word_count with one argument" word_count 127.0.0.1 -- \
    usage

# Mistakes in the job program itself (tests/e2e/jobs/bad_job.c): reported before the job
# starts (exit 2) with the operator or field and what is accepted.
expect_error 2 "key_by on a field out of range" bad_job key-out-of-range -- \
    "sl_key_by: field index 2 is out of range" '"city:str,value:i64"' "accepted 0 to 1"
expect_error 2 "sum on a string field" bad_job sum-string -- \
    "sum: field 0 (city)" "is str" "sum accepts i64 or f64 fields"
expect_error 2 "sum on a stream that is not keyed" bad_job not-keyed -- \
    "sum needs a keyed stream" "sl_key_by"
# Failures while running (exit 1) name the operator, the subtask and the message; rows
# processed before the failure may have been printed.
allow_stdout=1
expect_error 1 "a user function fails" bad_job user-error -- \
    "operator 'Validator' (subtask 1/2) failed: cannot handle 3"
expect_error 1 "keyed state on a stream that is not keyed" bad_job keyed-state-unkeyed -- \
    'keyed state "count" needs a keyed stream'
allow_stdout=0
