#!/bin/bash
# Runs INSIDE the guest (scripts/guest-tests.sh starts it through
# qemu/run-guest.sh).  Usage: run-suite.sh <test.sh>...
# For each test: mark the kernel log, run the test with a timeout (default
# 300 s; a line "# timeout: N" in the test's header overrides it), save its
# output to $OUTDIR/<name>.log and the kernel log it produced to
# $OUTDIR/<name>.dmesg, and judge it: FAIL if it exited non-zero, timed out,
# or the kernel log shows a splat (tests/lib/common.sh: find_splats).
# Appends "PASS name" / "FAIL name (reason)" to $OUTDIR/results.txt; writes
# the name of the running test to $OUTDIR/current (so the host can name the
# test that crashed the guest).  The summary line is printed by the host.
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
trap - EXIT
: "${OUTDIR:?OUTDIR not set}"
RES="$OUTDIR/results.txt"
: > "$RES"
: > "$OUTDIR/timings.txt"

emit() { echo "$*" >> "$RES"; echo "$*"; sync "$RES" 2>/dev/null; }

reset_state() {
    # Leave a clean guest for the next test: no dm devices, no loops, no thin module.
    local left
    left=$(dms ls 2>/dev/null | grep -v '^No devices found' || true)
    if [ -n "$left" ]; then
        echo "# runner: test left dm devices behind: $(echo $left)"
        timeout 30 dmsetup --noudevsync remove_all --force >/dev/null 2>&1 || true
    fi
    losetup -D 2>/dev/null || true
    rm -f "$DMTHIN_SCRATCH"/*.img 2>/dev/null || true
    timeout 30 bash -c ". '$TESTS_DIR/lib/common.sh'; trap - EXIT; unload_thin" >/dev/null 2>&1 || true
}

lockdep_was_on=$(grep -c 'debug_locks:.*1' /proc/lockdep_stats 2>/dev/null || echo 0)

# A kernel oops/BUG usually leaves locks held: later tests would hang.  The
# runner watches the taint flags while a test runs; on an oops it kills the
# test and does not run the remaining tests.
fatal_in=""
for t in "$@"; do
    name=$(basename "$t" .sh)
    if [ -n "$fatal_in" ]; then
        emit "FAIL $name (not run: the kernel oopsed during $fatal_in)"
        continue
    fi
    to=$(sed -n 's/^# timeout: *\([0-9][0-9]*\).*/\1/p' "$t" | head -1)
    to=${to:-300}
    echo "$name" > "$OUTDIR/current"
    mark=$(kmsg_mark)
    t0=$(date +%s.%N)
    rc=0
    : > "$OUTDIR/$name.log"
    read -r taint0 < /proc/sys/kernel/tainted
    timeout --kill-after=10 "$to" bash "$t" >> "$OUTDIR/$name.log" 2>&1 &
    tpid=$!
    while kill -0 "$tpid" 2>/dev/null; do
        sleep 1
        # Taint bit 7 ('D') is set by every oops/BUG (die()): a cheap check.
        read -r taint < /proc/sys/kernel/tainted
        if (( (taint & 128) && !(taint0 & 128) )); then
            fatal_in="$name"
            sleep 2    # let the rest of the report reach the log
            kill -KILL "$tpid" 2>/dev/null
            pkill -KILL -P "$tpid" 2>/dev/null
            break
        fi
    done
    if [ -n "$fatal_in" ]; then
        rc=137
        echo "# runner: kernel oops/BUG during this test: test killed, remaining tests skipped" >> "$OUTDIR/$name.log"
    else
        wait "$tpid" || rc=$?
    fi
    t1=$(date +%s.%N)
    if [ -z "$fatal_in" ]; then
        sleep 0.2   # let deferred kernel messages (workqueues) land
        { echo "# runner: cleanup after $name"; reset_state; } >> "$OUTDIR/$name.log" 2>&1
    fi
    kmsg_since "$mark" > "$OUTDIR/$name.dmesg"
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')
    echo "$name $secs" >> "$OUTDIR/timings.txt"
    splat=$(find_splats < "$OUTDIR/$name.dmesg" | head -1)
    reason=""
    if [ -n "$fatal_in" ]; then
        lastout=$(grep -v '^# runner' "$OUTDIR/$name.log" | grep -v '^[[:space:]]*$' | tail -1)
        reason="killed after kernel oops; last output: ${lastout:0:120}"
    elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        reason="timed out after ${to}s"
    elif [ "$rc" != 0 ]; then
        last=$(grep -E '^(FAIL|MISMATCH)' "$OUTDIR/$name.log" | head -1)
        [ -n "$last" ] || last=$(grep -v '^# runner' "$OUTDIR/$name.log" | grep -v '^[[:space:]]*$' | tail -1)
        reason="exit $rc: ${last:0:300}"
    fi
    if [ -n "$splat" ]; then
        [ -n "$reason" ] && reason="$reason; "
        reason="${reason}kernel: ${splat:0:200}"
    fi
    if [ -z "$reason" ]; then
        emit "PASS $name"
    else
        emit "FAIL $name ($reason)"
        emit "  logs: $OUTDIR/$name.log $OUTDIR/$name.dmesg"
    fi
done
rm -f "$OUTDIR/current"
if [ "$lockdep_was_on" != 0 ] && ! grep -q 'debug_locks:.*1' /proc/lockdep_stats 2>/dev/null; then
    echo "# note: lockdep turned itself off during the run (after its first report)"
fi
echo done > "$OUTDIR/suite-finished"; sync "$OUTDIR/suite-finished" 2>/dev/null
