#!/bin/bash
# Runs INSIDE the guest (scripts/guest-tests.sh starts it through
# qemu/run-guest.sh, in one or several guests at once).
# Usage: run-suite.sh <suite-dir>
#
# <suite-dir> is the host's suite directory, shared read-write with every
# guest of the run; $OUTDIR (set by qemu/guest-entry.sh) is this boot's own
# directory inside it.  The work queue is <suite-dir>/queue/order (test
# paths, longest first); a test is taken by creating the directory
# <suite-dir>/queue/claim.<name> (mkdir is atomic on the host, so each test
# runs in exactly one guest), which then holds the file `by` naming this
# boot.  The guest takes tests until none is left.
#
# For each test: mark the kernel log, run the test with a timeout (default
# 300 s; a line "# timeout: N" in the test's header overrides it) and with
# OUTDIR=<suite-dir> (where host-prepare left its inputs), save its output
# to <suite-dir>/<name>.log and the kernel log it produced to
# <suite-dir>/<name>.dmesg, and judge it: FAIL if it exited non-zero, timed
# out, or the kernel log shows a splat (tests/lib/common.sh: find_splats).
# The verdict goes to <suite-dir>/<name>.result ("PASS name (12.3s)" or
# "FAIL name (reason) (12.3s)" and a line with the log paths); the host
# prints it.  $OUTDIR/current names the running test (so the host can name
# the test that crashed or hung the guest) and $OUTDIR/mark its kernel-log
# mark (so the host can cut its kernel log from the console);
# $OUTDIR/timings.txt gets "name seconds".
#
# A kernel oops/BUG (taint D) usually leaves locks held, and lockdep checks
# nothing after its first report: after a test that did either, this guest
# takes no more tests ($OUTDIR/stopped says why) and the host boots a fresh
# one for the rest.  $OUTDIR/suite-finished is written when the queue is
# empty.
#
# Every process started costs 0.1-1 s under software emulation with the
# debug kernel, so the runner's own steps use shell builtins where they can.
. "${BASH_SOURCE[0]%/*}/common.sh"
trap - EXIT
SUITE="${1:?usage: run-suite.sh <suite-dir>}"
BOOT="${OUTDIR:?OUTDIR not set}"
BOOTID="${BOOT##*/}"
Q="$SUITE/queue"
export OUTDIR="$SUITE"
: > "$BOOT/timings.txt"
exec 8<> <(:)    # a pipe nobody writes: `read -t` on it is a builtin sleep
nap() { read -r -t "$1" -u 8 _; [ $? -gt 128 ]; }   # true when it timed out
FATAL_FLAG=/run/dmthin-runner-oops

# Write a test's verdict atomically (the host polls for it).
verdict() {
    local name="$1"; shift
    printf '%s\n' "$@" > "$SUITE/.$name.result.tmp"
    mv -f "$SUITE/.$name.result.tmp" "$SUITE/$name.result"
    printf '%s\n' "$@"
}

# The "# timeout: N" header line of a test (first 40 lines), or 300.
test_timeout() {
    local line i=0
    while IFS= read -r line && (( i++ < 40 )); do
        [[ "$line" =~ ^#\ timeout:\ *([0-9]+) ]] && { echo "${BASH_REMATCH[1]}"; return; }
    done < "$1"
    echo 300
}

reset_state() {
    # Leave a clean guest for the next test: no dm devices, no loops, no
    # thin module.  Each step runs only if there is something to undo.
    local left f
    if compgen -G '/sys/block/dm-*' >/dev/null; then
        left=$(dms ls 2>/dev/null | grep -v '^No devices found' || true)
        echo "# runner: test left dm devices behind: $(echo $left)"
        timeout 30 dmsetup --noudevsync remove_all --force >/dev/null 2>&1 || true
    fi
    for f in /sys/block/loop*/loop/backing_file; do
        [ -e "$f" ] || continue
        echo "# runner: test left loop devices behind"
        losetup -D 2>/dev/null || true
        break
    done
    for f in "$DMTHIN_SCRATCH"/*.img; do
        [ -e "$f" ] && rm -f "$DMTHIN_SCRATCH"/*.img 2>/dev/null
        break
    done
    while read -r f _; do
        case "$f" in
            dm_thin_rs|dm_thin_pool)
                timeout 30 bash -c ". '$TESTS_DIR/lib/common.sh'; trap - EXIT; unload_thin" >/dev/null 2>&1 || true
                break ;;
        esac
    done < /proc/modules
}

# lockdep_on: lockdep is still checking (it turns itself off after its
# first report).
lockdep_on() {
    local k v
    while read -r k v; do
        [ "$k" = "debug_locks:" ] && { [ "$v" = 1 ]; return; }
    done < /proc/lockdep_stats
    return 1
}
have_lockdep=0
[ -e /proc/lockdep_stats ] && have_lockdep=1
lockdep_note=""
if [ "$have_lockdep" = 1 ] && ! lockdep_on; then
    lockdep_note="lockdep was already off when this boot's tests started (it reported during boot, see the boot's console.log): it checked nothing in this test"
    echo "$lockdep_note" > "$BOOT/lockdep-off-at-start"
fi

stop=""
while IFS= read -r -u 9 t; do
    [ -n "$t" ] || continue
    name="${t##*/}"; name="${name%.sh}"
    mkdir "$Q/claim.$name" 2>/dev/null || continue
    echo "$BOOTID" > "$Q/claim.$name/by"
    echo "$name" > "$BOOT/current"
    to=$(test_timeout "$t")
    lockdep0=0
    [ "$have_lockdep" = 1 ] && lockdep_on && lockdep0=1
    # The kernel-log mark (kmsg_mark's format, without starting `date`).
    mark="dmthin-mark-$BASHPID-${EPOCHREALTIME/./}"
    echo "$mark" > /dev/kmsg
    echo "$mark" > "$BOOT/mark"
    t0=${EPOCHREALTIME/./}
    rc=0
    fatal=0
    : > "$SUITE/$name.log"
    read -r taint0 < /proc/sys/kernel/tainted
    [ ! -e "$FATAL_FLAG" ] || rm -f "$FATAL_FLAG"
    timeout --kill-after=10 "$to" bash "$t" >> "$SUITE/$name.log" 2>&1 8<&- 9<&- &
    tpid=$!
    # A watcher (a subshell: no process exec'd) checks the taint flags every
    # second: bit 7 ('D') is set by every oops/BUG (die()).  On an oops it
    # kills the test.
    (
        while nap 1; do
            read -r taint < /proc/sys/kernel/tainted
            if (( (taint & 128) && !(taint0 & 128) )); then
                nap 2    # let the rest of the report reach the log
                : > "$FATAL_FLAG"
                kill -KILL "$tpid" 2>/dev/null
                pkill -KILL -P "$tpid" 2>/dev/null
                exit 0
            fi
        done
    ) 9<&- &
    wpid=$!
    wait "$tpid" || rc=$?
    kill "$wpid" 2>/dev/null
    wait "$wpid" 2>/dev/null
    if [ -e "$FATAL_FLAG" ]; then
        fatal=1
        rc=137
        echo "# runner: kernel oops/BUG during this test: test killed; this guest takes no more tests" >> "$SUITE/$name.log"
    fi
    t1=${EPOCHREALTIME/./}
    if [ "$fatal" = 0 ]; then
        nap 0.2   # let deferred kernel messages (workqueues) land
        { echo "# runner: cleanup after $name"; reset_state; } >> "$SUITE/$name.log" 2>&1
    fi
    kmsg_since "$mark" > "$SUITE/$name.dmesg"
    ds=$(( (t1 - t0 + 50000) / 100000 ))
    secs="$(( ds / 10 )).$(( ds % 10 ))"
    echo "$name $secs" >> "$BOOT/timings.txt"
    splat=""
    [ -s "$SUITE/$name.dmesg" ] && splat=$(find_splats < "$SUITE/$name.dmesg" | head -1)
    reason=""
    if [ "$fatal" = 1 ]; then
        lastout=$(grep -v '^# runner' "$SUITE/$name.log" | grep -v '^[[:space:]]*$' | tail -1)
        reason="killed after kernel oops; last output: ${lastout:0:120}"
        stop="kernel oops/BUG during $name"
    elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        reason="timed out after ${to}s"
    elif [ "$rc" != 0 ]; then
        last=$(grep -E '^(FAIL|MISMATCH)' "$SUITE/$name.log" | head -1)
        [ -n "$last" ] || last=$(grep -v '^# runner' "$SUITE/$name.log" | grep -v '^[[:space:]]*$' | tail -1)
        reason="exit $rc: ${last:0:300}"
    fi
    if [ -n "$splat" ]; then
        [ -n "$reason" ] && reason="$reason; "
        reason="${reason}kernel: ${splat:0:200}"
    fi
    if [ "$lockdep0" = 1 ] && ! lockdep_on; then
        [ -n "$stop" ] || stop="lockdep reported during $name and turned itself off"
    fi
    lines=()
    if [ -z "$reason" ]; then
        lines+=("PASS $name (${secs}s)")
    else
        lines+=("FAIL $name ($reason) (${secs}s)")
        lines+=("  logs: $SUITE/$name.log $SUITE/$name.dmesg")
    fi
    [ -z "$lockdep_note" ] || lines+=("  note: $lockdep_note")
    verdict "$name" "${lines[@]}"
    if [ -n "$stop" ]; then
        echo "$stop: this guest takes no more tests (a fresh boot runs the rest)" > "$BOOT/stopped"
        break
    fi
done 9< "$Q/order"
rm -f "$BOOT/current"
[ -n "$stop" ] || echo done > "$BOOT/suite-finished"
sync 2>/dev/null
