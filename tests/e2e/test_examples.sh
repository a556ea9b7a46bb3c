#!/usr/bin/env bash
# test_examples.sh - the bounded example job programs print exactly what their input data
# gives, at parallelism 1 (no -p, -p 1) and above (-p 2, and -p 4 for state_demo_01).
#
# The expected rows below were worked out by hand from the input rows in examples/*.c, in
# the order one subtask processes them. With parallelism above 1 every line carries the
# 1-based subtask index ("2> "), which is stripped before comparing. Across keys (and across
# the subtasks of a sink) the order is not deterministic, but the rows of one key from one
# operator are: they are compared in order. A sink is told apart from another by the arity
# of its rows (state_demo_01 prints two-field and three-field rows).
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

declare -A expected

# StateDemo01 in AUTOMATIC -> BATCH: max_by(1) prints the final row per city only; the
# ValueState map prints (city, current, max) for each of the six input rows.
expected[state_demo_01]='(北京,6)
(上海,8)
(北京,1,1)
(北京,6,6)
(北京,3,6)
(上海,2,2)
(上海,8,8)
(上海,4,8)'

# ListState: an IP is reported on its third login from that user (alice's 10.0.0.1 comes a
# fourth time and is not reported again); carol and 10.0.0.2 never reach three.
expected[login_ips]='(alice,10.0.0.1,3)
(bob,192.168.1.7,3)'

# ReducingState: running totals; f64 prints as Java does (3.0, not 3).
expected[order_totals]='(ann,12.5)
(ann,20.0)
(ann,20.5)
(ben,3.0)
(ben,7.25)
(cid,20.0)'

# AggregatingState then max_by(2) in BATCH: one final (sensor, average, readings) each.
# s1: (20+22+24)/3, s2: (30.5+29.5)/2, s3: -4 alone.
expected[sensor_average]='(s1,22.0,3)
(s2,30.0,2)
(s3,-4.0,1)'

# MapState: (user, page, visits of the page, distinct pages so far) per visit.
expected[page_visits]='(ann,/home,1,1)
(ann,/cart,1,2)
(ann,/home,2,2)
(ann,/pay,1,3)
(bo,/home,1,1)
(bo,/help,1,2)
(bo,/home,2,2)'

# Broadcast state: temperature > 35.0 and pressure > 1.2 alert; humidity has no rule.
expected[threshold_alerts]='(t-2,temperature,38.2,35.0)
(t-1,temperature,41.0,35.0)
(p-1,pressure,1.31,1.2)'

# group_rows: each row prefixed by "key|arity<TAB>" (key = first field), then stably sorted
# by that group, so that the rows of one key from one operator keep their relative order.
group_rows() {
    awk -F, '{ k = substr($1, 2); printf "%s|%d\t%s\n", k, NF, $0 }' "$1" |
        LC_ALL=C sort -s -t "$(printf '\t')" -k1,1
}

# key_prefix_conflicts FILE: prints the keys whose lines carry more than one subtask prefix.
key_prefix_conflicts() {
    awk '{
        p = $1; sub(/>$/, "", p); row = substr($0, length($1) + 2)
        split(row, f, ","); k = substr(f[1], 2)
        if (k in seen && seen[k] != p) bad[k] = 1
        seen[k] = p
    } END { for (k in bad) print k }' "$1"
}

# run_example NAME P: runs build/bin/NAME with -p P (no -p when P is "none") and checks its
# exit status, stderr and stdout against expected[NAME].
run_example() {
    local name=$1 p=$2
    local base=$tmp/$name.p$p
    local args=()
    [[ $p == none ]] || args=(-p "$p")
    local rc=0 t0=$EPOCHREALTIME
    timeout 60 "$SL_BIN/$name" "${args[@]}" </dev/null >"$base.out" 2>"$base.err" || rc=$?
    local label="$name ${args[*]:-(no -p)}"
    echo "     $label took $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.2f", b - a}') s"
    if ((rc == 124)); then
        sl_failed=$((sl_failed + 1))
        echo "FAIL $label did not finish within 60 s" >&2
    else
        check "$label exits 0 (got $rc; stderr: $(head -c 300 "$base.err"))" test "$rc" -eq 0
    fi
    check "$label writes nothing to stderr" test ! -s "$base.err"
    check_no_sanitizer_output "$base.err"

    printf '%s\n' "${expected[$name]}" >"$base.expected"
    if [[ $p == none || $p == 1 ]]; then
        check "$label: no line has a subtask prefix" bash -c "! grep -qE '^[0-9]+> ' '$base.out'"
        cp "$base.out" "$base.rows"
    else
        check "$label: every line starts with a subtask prefix 1> .. $p> " \
            bash -c "! grep -qvE '^[1-$p]> ' '$base.out'"
        local bad
        bad=$(key_prefix_conflicts "$base.out" | xargs)
        check "$label: each key is printed by one subtask (keys on several: '$bad')" \
            test -z "$bad"
        sed -E 's/^[0-9]+> //' "$base.out" >"$base.rows"
        awk '{ print $1 }' "$base.out" >>"$tmp/prefixes.p$p"
    fi
    check "$label prints exactly the expected rows" \
        diff -u <(LC_ALL=C sort "$base.expected") <(LC_ALL=C sort "$base.rows")
    check "$label prints the rows of each key in input order" \
        diff -u <(group_rows "$base.expected") <(group_rows "$base.rows")
}

for name in state_demo_01 login_ips order_totals sensor_average page_visits threshold_alerts; do
    for p in none 1 2; do
        run_example "$name" "$p"
    done
done
run_example state_demo_01 4

# The keys spread over the subtasks: with -p 2, across all examples, both subtasks print.
check "with -p 2 both subtasks print rows (prefixes seen: $(sort -u "$tmp/prefixes.p2" | xargs))" \
    test "$(sort -u "$tmp/prefixes.p2" | xargs)" = "1> 2>"
