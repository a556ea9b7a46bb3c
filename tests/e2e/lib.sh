# shellcheck shell=bash
# lib.sh - helpers for the end-to-end tests. Source it first:
#
#   . "$(dirname "$0")/lib.sh"
#   port=$(free_port)
#   spawn "$tmp/job.log" "$SL_BIN/socket_wordcount" --port "$port"
#   wait_for 10 "job listening" grep -q listening "$tmp/job.log"
#   check "counts printed" grep -qx '(a,2)' "$tmp/job.log"
#   check_no_sanitizer_output "$tmp/job.log"
#
# It gives: $tmp, a fresh directory removed on exit (kept when SL_KEEP_TMP=1); processes
# started with `spawn` are killed on exit; and the script always ends with the closing line
# "N passed, M failed", exiting 1 if any check failed or the script stopped on an error.
# ctest sets SL_BIN, SL_SRC and SL_BUILD; run by hand, they default to the source tree and
# its build/.

set -euo pipefail

SL_SRC=${SL_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
SL_BUILD=${SL_BUILD:-$SL_SRC/build}
SL_BIN=${SL_BIN:-$SL_BUILD/bin}
SL_TESTS=${SL_TESTS:-$SL_BUILD/tests}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sl-e2e.XXXXXX")
sl_passed=0
sl_failed=0
sl_pids=()

sl__on_exit() {
    local rc=$?
    local pid
    for pid in "${sl_pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${sl_pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ ${SL_KEEP_TMP:-} == 1 ]]; then
        echo "kept $tmp"
    else
        rm -rf "$tmp"
    fi
    if ((rc != 0 && sl_failed == 0)); then
        echo "FAIL: stopped with exit status $rc" >&2
        sl_failed=1
    fi
    echo "$sl_passed passed, $sl_failed failed"
    if ((sl_failed > 0)); then
        exit 1
    fi
    exit 0
}
trap sl__on_exit EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# pass DESCRIPTION: counts a check that passed.
pass() {
    sl_passed=$((sl_passed + 1))
    echo "ok   $*"
}

# fail MESSAGE: counts a failed check and stops the test.
fail() {
    sl_failed=$((sl_failed + 1))
    echo "FAIL $*" >&2
    exit 1
}

# check DESCRIPTION CMD [ARGS...]: runs CMD; counts a pass, or a failure and goes on.
check() {
    local desc=$1
    shift
    if "$@"; then
        pass "$desc"
    else
        sl_failed=$((sl_failed + 1))
        echo "FAIL $desc (command: $*)" >&2
    fi
}

# free_port: prints a TCP port on 127.0.0.1 that the kernel reports free.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# has_lines FILE LINE...: every LINE is a whole line of FILE.
has_lines() {
    local f=$1 l
    shift
    for l in "$@"; do
        grep -qxF -- "$l" "$f" || return 1
    done
}

# wait_for SECONDS DESCRIPTION CMD [ARGS...]: polls CMD every 0.1 s until it succeeds;
# fails the test when SECONDS pass first.
wait_for() {
    local timeout=$1 desc=$2
    shift 2
    local now_ms deadline_ms
    deadline_ms=$((${EPOCHREALTIME//[.,]/} / 1000 + timeout * 1000))
    until "$@"; do
        now_ms=$((${EPOCHREALTIME//[.,]/} / 1000))
        if ((now_ms >= deadline_ms)); then
            fail "timed out after ${timeout}s waiting for: $desc"
        fi
        sleep 0.1
    done
}

# spawn LOGFILE CMD [ARGS...]: starts CMD in the background with stdout and stderr in LOGFILE
# and stdin from /dev/null; its pid is in $spawned and it is killed when the test exits.
spawn() {
    local log=$1
    shift
    "$@" </dev/null >"$log" 2>&1 &
    spawned=$!
    sl_pids+=("$spawned")
}

# check_no_sanitizer_output FILE...: a check that no sanitizer reported anything in FILE.
check_no_sanitizer_output() {
    local f
    for f in "$@"; do
        if grep -qE 'ERROR: AddressSanitizer|runtime error:|LeakSanitizer|WARNING: ThreadSanitizer' "$f"; then
            sl_failed=$((sl_failed + 1))
            echo "FAIL sanitizer report in $f:" >&2
            grep -E -A20 'ERROR: AddressSanitizer|runtime error:|LeakSanitizer|WARNING: ThreadSanitizer' "$f" |
                head -60 >&2
        else
            pass "no sanitizer report in $(basename "$f")"
        fi
    done
}
