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

emit() { echo "$*" >> "$RES"; echo "$*"; sync; }

reset_state() {
    # Leave a clean guest for the next test: no dm devices, no loops, no thin module.
    local left
    left=$(dms ls 2>/dev/null | grep -v '^No devices found' || true)
    if [ -n "$left" ]; then
        echo "# runner: test left dm devices behind: $(echo $left)"
        dms remove_all --force >/dev/null 2>&1 || true
    fi
    losetup -D 2>/dev/null || true
    rm -f "$DMTHIN_SCRATCH"/*.img 2>/dev/null || true
    unload_thin >/dev/null 2>&1 || true
}

lockdep_was_on=$(grep -c 'debug_locks:.*1' /proc/lockdep_stats 2>/dev/null || echo 0)

for t in "$@"; do
    name=$(basename "$t" .sh)
    to=$(sed -n 's/^# timeout: *\([0-9][0-9]*\).*/\1/p' "$t" | head -1)
    to=${to:-300}
    echo "$name" > "$OUTDIR/current"; sync
    mark=$(kmsg_mark)
    t0=$(date +%s.%N)
    rc=0
    timeout --kill-after=10 "$to" bash "$t" > "$OUTDIR/$name.log" 2>&1 || rc=$?
    t1=$(date +%s.%N)
    sleep 0.2   # let deferred kernel messages (workqueues) land
    kmsg_since "$mark" > "$OUTDIR/$name.dmesg"
    { echo "# runner: cleanup after $name"; reset_state; } >> "$OUTDIR/$name.log" 2>&1
    kmsg_since "$mark" > "$OUTDIR/$name.dmesg"
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')
    echo "$name $secs" >> "$OUTDIR/timings.txt"
    splat=$(find_splats < "$OUTDIR/$name.dmesg" | head -1)
    reason=""
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        reason="timed out after ${to}s"
    elif [ "$rc" != 0 ]; then
        last=$(grep -E '^(FAIL|MISMATCH)' "$OUTDIR/$name.log" | head -1)
        [ -n "$last" ] || last=$(grep -v '^# runner' "$OUTDIR/$name.log" | grep -v '^[[:space:]]*$' | tail -1)
        reason="exit $rc: ${last:0:200}"
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
echo done > "$OUTDIR/suite-finished"; sync
