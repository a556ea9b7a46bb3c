# shellcheck shell=bash
# shellcheck disable=SC2034,SC2154 # tmp and sl_pids come from lib.sh; FT and rc are for the caller
# ft_lib.sh - helpers shared by the fault-tolerance e2e tests (test_fault_tolerance.sh,
# test_checkpoint_options.sh, test_restore.sh, test_bad_checkpoints.sh). Source it after
# lib.sh:
#
#   . "$(dirname "$0")/lib.sh"
#   . "$(dirname "$0")/ft_lib.sh"
#
# Jobs log at info level so that checkpoint_triggered / checkpoint_completed events are on
# stderr. Log lines start with the wall-clock time "HH:MM:SS.mmm" and carry "event=NAME".
# The job program most tests drive is $SL_TESTS/ft_counter (tests/e2e/jobs/ft_counter.c).

export SLUICE_LOG_LEVEL=info
FT=$SL_TESTS/ft_counter

# start NAME CMD [ARGS...]: starts CMD in the background, stdout in $tmp/NAME.out and
# stderr in $tmp/NAME.err; its pid is in $job_pid and it is killed when the test exits.
start() {
    local name=$1
    shift
    "$@" </dev/null >"$tmp/$name.out" 2>"$tmp/$name.err" &
    job_pid=$!
    sl_pids+=("$job_pid")
}

# run NAME CMD [ARGS...]: runs CMD to its end (at most 60 s), stdout in $tmp/NAME.out and
# stderr in $tmp/NAME.err; its exit status is in $rc.
run() {
    local name=$1
    shift
    rc=0
    timeout 60 "$@" </dev/null >"$tmp/$name.out" 2>"$tmp/$name.err" || rc=$?
}

# exited PID: true once PID has ended (gone, or a zombie not yet waited for).
exited() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    stat=${stat##*) }
    [[ ${stat%% *} == Z ]]
}

running() {
    ! exited "$1"
}

# wait_exit SECONDS PID DESCRIPTION: waits for PID to end; its exit status is then in $rc.
wait_exit() {
    wait_for "$1" "$3" exited "$2"
    rc=0
    wait "$2" || rc=$?
}

# stop PID SIGNAL: sends SIGNAL and waits (10 s at most) for PID to end; status in $rc.
stop() {
    kill -"$2" "$1"
    wait_exit 10 "$1" "pid $1 to end after SIG$2"
}

# n_events FILE EVENT: how many lines of FILE carry event=EVENT.
n_events() {
    local n
    n=$(grep -c "event=$2 " "$1" 2>/dev/null) || true
    echo "${n:-0}"
}

# has_events FILE EVENT N: FILE has at least N lines with event=EVENT.
has_events() {
    (($(n_events "$1" "$2") >= $3))
}

# wait_events SECONDS FILE EVENT N: waits for N events EVENT in FILE.
wait_events() {
    wait_for "$1" "$4 x event=$3 in $(basename "$2")" has_events "$2" "$3" "$4"
}

# event_ms FILE EVENT: the time of each event=EVENT line of FILE in ms since midnight.
event_ms() {
    grep "event=$2 " "$1" | awk '{ split($1, t, /[:.]/); print ((t[1] * 60 + t[2]) * 60 + t[3]) * 1000 + t[4] }'
}

# field FILE EVENT KEY: the value of KEY=... in each event=EVENT line of FILE (unquoted
# values only).
field() {
    grep "event=$2 " "$1" | sed -nE "s/.* $3=([^ ]*).*/\\1/p"
}

# gaps: reads numbers, one a line, and prints the differences of neighbours.
gaps() {
    awk 'NR > 1 { print $1 - prev } { prev = $1 }'
}

# min / max: of numbers read one a line (empty input prints nothing).
min() {
    sort -n | head -1
}
max() {
    sort -n | tail -1
}

# expected_counts N K: the final line per key ft_counter prints for --count N --keys K,
# sorted: (k<k>,<records of key k>).
expected_counts() {
    awk -v n="$1" -v k="$2" 'BEGIN { for (i = 0; i < k && i < n; i++) printf "(k%d,%d)\n", i, int((n - i + k - 1) / k) }' |
        LC_ALL=C sort
}

# final_counts FILE: the distinct final-count lines ft_counter printed, sorted.
final_counts() {
    grep -E '^\(k[0-9]+,[0-9]+\)$' "$1" | LC_ALL=C sort -u || true
}

# processed FILE: the records the counts subtasks processed in the last attempt (sum of the
# "ft_counter: processed=" lines).
processed() {
    sed -nE 's/^ft_counter: processed=([0-9]+) .*/\1/p' "$1" | awk '{ s += $1 } END { print s + 0 }'
}

# job_dir DIR: the one job directory (32 hex digits) under checkpoint directory DIR.
job_dir() {
    local d
    d=$(find "$1" -mindepth 1 -maxdepth 1 -type d -regextype egrep -regex '.*/[0-9a-f]{32}' 2>/dev/null)
    [[ -n $d && $(wc -l <<<"$d") -eq 1 ]] || return 1
    echo "$d"
}

# chk_ids DIR: the ids N of every chk-N directory under DIR/<job-id>/, sorted, one a line
# (complete or not).
chk_ids() {
    find "$1" -mindepth 2 -maxdepth 2 -type d -name 'chk-*' 2>/dev/null | sed 's/.*chk-//' | sort -n
}

# complete_chk_ids DIR: the same, only the chk-N that have a _metadata.
complete_chk_ids() {
    find "$1" -mindepth 3 -maxdepth 3 -name _metadata -path '*/chk-*/_metadata' 2>/dev/null |
        sed -E 's|.*/chk-([0-9]+)/_metadata|\1|' | sort -n
}

# latest_chk DIR: the path of the newest complete chk-N under DIR/<job-id>/.
latest_chk() {
    local id
    id=$(complete_chk_ids "$1" | tail -1)
    [[ -n $id ]] || return 1
    echo "$(job_dir "$1")/chk-$id"
}

# flip FILE OFFSET: inverts one byte of FILE (OFFSET < 0 counts from the end).
flip() {
    python3 -c 'import sys
p, i = sys.argv[1], int(sys.argv[2])
b = bytearray(open(p, "rb").read())
b[i] ^= 0xff
open(p, "wb").write(b)' "$1" "$2"
}

# same_lines A B: files A and B hold the same lines (diff shown when not).
same_lines() {
    diff -u "$1" "$2" >&2
}

# err_excerpt FILE: the first 400 characters of FILE without the info/debug lines, on one
# line, for check descriptions.
err_excerpt() {
    grep -vE 'level=(info|debug)' "$1" 2>/dev/null | head -c 400 | tr '\n' ' ' || true
}
