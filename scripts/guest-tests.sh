#!/usr/bin/env bash
# Run the guest test suite (tests/guest/*.sh) in several virtme-ng boots of
# the project's kernel at once.  Usage: scripts/guest-tests.sh
# [substring|path.sh...] (only tests whose file name contains one of the
# substrings, plus test scripts given by path).  A test's header may hold
# "# timeout: N" (seconds, default 300) and "# host-prepare: <command>" (run
# once on the host before the first boot, with $OUTDIR set).
#
# Scheduling: DMTHIN_GUEST_JOBS guests run at once (default `nproc`, never
# more than there are tests), each with DMTHIN_GUEST_CPUS vCPUs (default 1)
# and DMTHIN_GUEST_MEM memory (default 4G).  The guests share a work queue
# in the suite directory: each one takes the next test nobody has taken (an
# atomic mkdir, see tests/lib/run-suite.sh), longest first by the times of
# the previous run (kept in ~/.cache/dm-thin-rs/guest-test-times; a test
# never timed counts as its timeout), until none is left.  A replacement
# guest is booted only when it would get a test before the running guests
# could take it.  DMTHIN_GUEST_JOBS=1 runs everything in one boot.
#
# A failing or crashing test fails alone: if a guest dies (panic), hangs in
# a test (no verdict DMTHIN_TEST_GRACE seconds, default 120, after the
# test's timeout: the guest is killed), oopses or has lockdep report (the
# guest then stops taking tests), that test is reported and a fresh guest
# takes the remaining tests.  A guest that dies before the script starts is
# booted again by qemu/run-guest.sh (DMTHIN_BOOT_TRIES); after
# DMTHIN_BOOT_FAILS (default 2) boots that never got to a test, no more
# boots are started and the tests left are reported as not run.
#
# Prints one line per test as it finishes, "PASS name (12.3s)" or
# "FAIL name (reason) (12.3s)" (followed by the paths of its output and
# kernel-log files), "#" lines about each boot (how it ended, kernel splats
# outside any test's window, lockdep already off), the suite wall time, and
# last a line "N passed, M failed".  Exit status 0 only if every test
# passed.  A test fails when its script fails or times out, or when the
# kernel log it produced shows a splat (BUG, WARNING, Oops, lockdep, RCU,
# sleeping in atomic context; see tests/lib/common.sh).
# Logs: /tmp/dm-thin-rs-logs/suite-*/ holds results.txt, timings.txt,
# <test>.log, <test>.dmesg, and boot-N/ per guest boot (console.log: the
# whole guest console; dmesg.txt; guest.log; run-guest.out).
# Environment: DMTHIN_SUITE_TIMEOUT (seconds for each VM; default: the sum
# of the timeouts of the tests still untaken when it boots + 180), DMTHIN_KO
# (module path, passed to the guests).
set -uo pipefail
. "$(dirname "$0")/lib.sh"

tests=()
pats=()
for a in "$@"; do
    # A path to a test script outside tests/guest is run as given.
    if [[ "$a" == *.sh ]] && [ -f "$a" ]; then tests+=("$(realpath "$a")"); else pats+=("$a"); fi
done
if [ $# -eq 0 ] || [ ${#pats[@]} -gt 0 ]; then
    declare -A pat_hits=()
    for t in "$REPO"/tests/guest/*.sh; do
        [ -f "$t" ] || continue
        if [ ${#pats[@]} -gt 0 ]; then
            keep=0
            for pat in "${pats[@]}"; do
                case "$(basename "$t")" in *"$pat"*) keep=1; pat_hits[$pat]=1 ;; esac
            done
            [ "$keep" = 1 ] || continue
        fi
        tests+=("$t")
    done
    for pat in "${pats[@]}"; do
        [ -n "${pat_hits[$pat]:-}" ] || die "no test in tests/guest matches '$pat'"
    done
fi
[ ${#tests[@]} -gt 0 ] || die "no tests selected"

# Per-test timeouts, and the estimates that order the queue.
TIMES_FILE="$CACHE_ROOT/guest-test-times"
declare -A TO=() EST=()
names=()
for t in "${tests[@]}"; do
    name=$(basename "$t" .sh)
    [ -z "${TO[$name]:-}" ] || die "two tests named $name selected"
    to=$(sed -n 's/^# timeout: *\([0-9][0-9]*\).*/\1/p' "$t" | head -1)
    TO[$name]=${to:-300}
    est=""
    [ -f "$TIMES_FILE" ] && est=$(awk -v n="$name" '$1 == n { e = $2 } END { print e }' "$TIMES_FILE")
    EST[$name]=${est:-${TO[$name]}}
    names+=("$name")
done
declare -A PATH_OF=()
for t in "${tests[@]}"; do PATH_OF[$(basename "$t" .sh)]="$t"; done
mapfile -t order < <(for n in "${names[@]}"; do echo "${EST[$n]} $n"; done | sort -k1,1gr -k2,2 | cut -d' ' -f2)

ncpu=$(nproc)
JOBS="${DMTHIN_GUEST_JOBS:-$ncpu}"
[[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || die "DMTHIN_GUEST_JOBS must be a positive number"
[ "$JOBS" -le ${#order[@]} ] || JOBS=${#order[@]}
# One vCPU per guest: under software emulation with the debug kernel a
# 2-vCPU guest ran the same tests 2x slower than a 1-vCPU one as soon as
# anything else used a core (QEMU's vCPU threads then preempt each other
# while holding guest spinlocks).
CPUS="${DMTHIN_GUEST_CPUS:-1}"
[ "$CPUS" -ge 1 ] 2>/dev/null || CPUS=1
MEM="${DMTHIN_GUEST_MEM:-4G}"
GRACE="${DMTHIN_TEST_GRACE:-120}"
BOOT_FAILS_MAX="${DMTHIN_BOOT_FAILS:-2}"

mkdir -p /tmp/dm-thin-rs-logs
SUITE="$(mktemp -d "/tmp/dm-thin-rs-logs/suite-$(date -u +%Y%m%d-%H%M%S)-XXXX")"
Q="$SUITE/queue"
mkdir -p "$Q"
for n in "${order[@]}"; do echo "${PATH_OF[$n]}"; done > "$Q/order"
: > "$SUITE/results.txt"
plan=$(for n in "${order[@]}"; do printf '%s~%ss ' "$n" "${EST[$n]}"; done)
say "${#order[@]} tests on $JOBS guest(s) at once ($CPUS vCPU, $MEM each, software emulation), longest first: $plan"
say "logs in $SUITE"

# Host-side preparation: a test may name a command in its header,
#     # host-prepare: <shell command>
# run here once (cwd $REPO, $OUTDIR and $REPO set) before the guests boot,
# e.g. to write an image the test then reads from $OUTDIR.  Its output goes
# to $OUTDIR/<test>.prepare.log; if it fails the test still runs (and
# should fail on the missing input), and the failure is shown here.
OUTDIR="$SUITE"
export OUTDIR REPO
for n in "${order[@]}"; do
    cmd=$(sed -n 's/^# host-prepare: *//p' "${PATH_OF[$n]}" | head -1)
    [ -n "$cmd" ] || continue
    say "host-prepare for $n: $cmd"
    if ! ( cd "$REPO" && bash -c "$cmd" ) > "$SUITE/$n.prepare.log" 2>&1; then
        echo "# host-prepare for $n failed: $SUITE/$n.prepare.log"
        tail -5 "$SUITE/$n.prepare.log" | sed 's/^/#   /'
    fi
done

# The splat detector of the guest tests, on the host.
host_find_splats() { ( . "$REPO/tests/lib/common.sh"; trap - EXIT; find_splats ); }
# Kernel log text without console timestamps or carriage returns.
strip_ts() { sed -E 's/\r$//; s/^\[ *[0-9]+\.[0-9]+\] //'; }

unclaimed() { local n; for n in "${order[@]}"; do [ -d "$Q/claim.$n" ] || echo "$n"; done; }

# Boots, by slot: run-guest pid, boot directory, start time, the test seen
# running and since when, why the host killed it, and its state (booting,
# in a test, test judged) and since when.
declare -A BPID=() BDIR=() BSTART=() BCUR=() BSINCE=() BKILL=() BSTATE=() BSTATE_SINCE=()
nboots=0
boot_fails=0
wall0=$(date +%s.%N)

# worth_a_boot <slot>: would a guest booted now in <slot> get a test?
# Simulates the queue: each running guest is free when its current test
# should end (by the estimates; one that overran by half is treated as
# busy for a while), a booting one after BOOT_EST seconds, the new one
# too; the untaken tests go, longest first, to whichever is free first.
# This avoids booting a guest (and slowing the others down) for a test
# that a running guest will take sooner.
BOOT_EST=30
worth_a_boot() {
    local s="$1" o now free=() n i best el est
    mapfile -t left < <(unclaimed)
    [ ${#left[@]} -gt 0 ] || return 1
    now=$(date +%s)
    for o in "${!BPID[@]}"; do
        [ "$o" != "$s" ] && [ -n "${BPID[$o]}" ] || continue
        [ ! -f "${BDIR[$o]}/stopped" ] && [ ! -f "${BDIR[$o]}/suite-finished" ] || continue
        if [ "${BSTATE[$o]}" = booting ]; then
            free+=( $(( BOOT_EST - (now - BSTART[$o]) )) )
        elif [ -n "${BCUR[$o]}" ] && [ "${BSTATE[$o]}" = "${BCUR[$o]}" ]; then
            el=$(( now - BSINCE[$o] ))
            est=${EST[${BCUR[$o]}]%.*}
            if [ $(( el * 2 )) -gt $(( est * 3 )) ]; then
                free+=( $(( BOOT_EST + 1 )) )
            else
                free+=( $(( est - el )) )
            fi
        else
            free+=(0)
        fi
    done
    free+=("$BOOT_EST")    # the new guest, last: ties go to running ones
    for n in "${left[@]}"; do
        best=0
        for (( i = 1; i < ${#free[@]}; i++ )); do
            [ "${free[$i]}" -lt "${free[$best]}" ] && best=$i
        done
        [ "$best" -eq $(( ${#free[@]} - 1 )) ] && return 0
        free[$best]=$(( ${free[$best]} + ${EST[$n]%.*} ))
    done
    return 1
}

start_boot() {
    local s="$1" n vmto bdir
    worth_a_boot "$s" || return 1
    vmto=180
    for n in "${left[@]}"; do vmto=$(( vmto + ${TO[$n]} )); done
    vmto="${DMTHIN_SUITE_TIMEOUT:-$vmto}"
    nboots=$(( nboots + 1 ))
    bdir="$SUITE/boot-$nboots"
    mkdir -p "$bdir"
    "$REPO/qemu/run-guest.sh" -q -o "$bdir" -s "$SUITE" -t "$vmto" -c "$CPUS" -m "$MEM" \
        "$REPO/tests/lib/run-suite.sh" "$SUITE" >"$bdir/run-guest.out" 2>&1 &
    BPID[$s]=$!; BDIR[$s]="$bdir"; BSTART[$s]=$(date +%s)
    BCUR[$s]=""; BSINCE[$s]=""; BKILL[$s]=""; BSTATE[$s]="booting"; BSTATE_SINCE[$s]=${BSTART[$s]}
    echo "# boot-$nboots started: ${#left[@]} tests untaken, VM timeout ${vmto}s"
}

declare -A PRINTED=()
print_results() {
    local n
    for n in "${order[@]}"; do
        [ -z "${PRINTED[$n]:-}" ] && [ -f "$SUITE/$n.result" ] || continue
        PRINTED[$n]=1
        cat "$SUITE/$n.result"
        cat "$SUITE/$n.result" >> "$SUITE/results.txt"
    done
}

# console_since_mark <console> <mark>: the console after the test's kernel
# log mark (after the last runner mark if <mark> is empty).
console_since_mark() {
    awk -v m="${2:-dmthin-mark-}" 'index($0, m) { n = 0; f = 1; next } f { buf[n++] = $0 }
         END { for (i = 0; i < n; i++) print buf[i] }' "$1" 2>/dev/null | strip_ts
}

# host_verdict <name> <reason> <seconds> <console> <mark>: a test the guest
# could not judge (it died or hung).  Its kernel log is the console after
# the test's mark.
host_verdict() {
    local n="$1" reason="$2" secs="$3" console="$4" mark="$5"
    [ -s "$SUITE/$n.dmesg" ] || console_since_mark "$console" "$mark" > "$SUITE/$n.dmesg"
    printf '%s\n' "FAIL $n ($reason) (${secs}s)" "  logs: $console $SUITE/$n.log $SUITE/$n.dmesg" \
        > "$SUITE/$n.result"
}

# A boot has ended: judge the test it left without a verdict, then check its
# whole kernel log.
finish_boot() {
    local s="$1" rc=0 bdir id n by ran=() secs line klog outside cnt mark re
    wait "${BPID[$s]}" || rc=$?
    BPID[$s]=""
    bdir="${BDIR[$s]}"; id=$(basename "$bdir")
    for n in "${order[@]}"; do
        by=$(cat "$Q/claim.$n/by" 2>/dev/null)
        [ "$by" = "$id" ] && ran+=("$n")
    done
    for n in "${ran[@]}"; do
        [ ! -f "$SUITE/$n.result" ] || continue
        secs="?"
        [ "${BCUR[$s]}" = "$n" ] && [ -n "${BSINCE[$s]}" ] && secs=$(( $(date +%s) - ${BSINCE[$s]} ))
        mark=""
        [ "$(cat "$bdir/current" 2>/dev/null)" = "$n" ] && mark=$(cat "$bdir/mark" 2>/dev/null)
        if [ -n "${BKILL[$s]}" ]; then
            host_verdict "$n" "${BKILL[$s]}" "$secs" "$bdir/console.log" "$mark"
        else
            line=""
            for re in 'Kernel panic' 'BUG:|Oops|general protection' 'sysrq: Trigger|WARNING:'; do
                line=$(console_since_mark "$bdir/console.log" "$mark" | grep -m1 -E "$re")
                [ -z "$line" ] || break
            done
            host_verdict "$n" "guest died during this test, run-guest exit $rc${line:+: ${line:0:160}}" \
                "$secs" "$bdir/console.log" "$mark"
        fi
    done
    print_results
    if [ ! -s "$bdir/guest-start-uptime" ]; then
        boot_fails=$(( boot_fails + 1 ))
        echo "# $id: the guest never reached the tests (run-guest exit $rc): $bdir/run-guest.out"
        tail -3 "$bdir/run-guest.out" | sed 's/^/#   /'
    elif [ ${#ran[@]} -eq 0 ] && [ ! -f "$bdir/suite-finished" ]; then
        boot_fails=$(( boot_fails + 1 ))
    fi
    # Splats in the boot's whole kernel log that no test's window holds
    # (during boot, between tests, at shutdown).
    klog="$bdir/dmesg.txt"
    [ -s "$klog" ] || klog="$bdir/console.log"
    if [ -f "$klog" ]; then
        outside=$(strip_ts < "$klog" | host_find_splats | sort -u \
                  | grep -vxF -f <(for n in "${ran[@]}"; do cat "$SUITE/$n.dmesg" 2>/dev/null; done; echo '#none#'))
        if [ -n "$outside" ]; then
            cnt=$(echo "$outside" | wc -l)
            echo "# $id: kernel splat outside any test's window ($cnt lines; see $klog): $(echo "$outside" | head -1 | cut -c1-200)"
        fi
    fi
    [ ! -f "$bdir/lockdep-off-at-start" ] || echo "# $id: lockdep had already reported (during boot) when its tests started, so it checked nothing in them: see $klog"
    [ ! -f "$bdir/stopped" ] || echo "# $id: $(cat "$bdir/stopped")"
    echo "# $id: ended after $(( $(date +%s) - BSTART[$s] ))s (run-guest exit $rc), ran: ${ran[*]:-nothing}"
}

# Watch a running boot: kill it if its test overran its timeout by GRACE
# seconds, if it has started no test for GRACE seconds after booting or
# after its last verdict, or if it has not powered off 90 s after its last
# test.
watch_boot() {
    local s="$1" bdir="${BDIR[$1]}" id cur="" now state limit
    id=$(basename "$bdir")
    now=$(date +%s)
    [ -s "$bdir/current" ] && cur=$(cat "$bdir/current" 2>/dev/null)
    if [ "$cur" != "${BCUR[$s]}" ]; then BCUR[$s]="$cur"; BSINCE[$s]=$now; fi
    state="$cur"
    [ -n "$cur" ] && [ -f "$SUITE/$cur.result" ] && state="$cur:judged"
    [ -s "$bdir/guest-start-uptime" ] || state="booting"
    if [ "$state" != "${BSTATE[$s]}" ]; then
        # Boot-time estimate: how long the latest boot took to reach its script.
        [ "${BSTATE[$s]}" != booting ] || BOOT_EST=$(( now - BSTART[$s] ))
        BSTATE[$s]="$state"; BSTATE_SINCE[$s]=$now
    fi
    [ -z "${BKILL[$s]}" ] || return 0
    if [ -f "$bdir/stopped" ] || [ -f "$bdir/suite-finished" ]; then
        if [ $(( now - BSTATE_SINCE[$s] )) -gt 90 ]; then
            BKILL[$s]="guest did not power off after its last test, killed"
            echo "# $id: did not power off 90s after its last test: killed"
            kill -TERM "${BPID[$s]}" 2>/dev/null
        fi
    elif [ "$state" = booting ]; then
        :   # qemu/run-guest.sh has its own boot timeout
    elif [ -n "$cur" ] && [ "$state" = "$cur" ]; then
        limit=$(( ${TO[$cur]:-300} + GRACE ))
        if [ $(( now - BSINCE[$s] )) -gt "$limit" ]; then
            BKILL[$s]="hung: no verdict $(( now - BSINCE[$s] ))s after it started (timeout ${TO[$cur]:-300}s + ${GRACE}s grace), guest killed"
            kill -TERM "${BPID[$s]}" 2>/dev/null
        fi
    elif [ $(( now - BSTATE_SINCE[$s] )) -gt "$GRACE" ]; then
        BKILL[$s]="guest stuck: no new test for ${GRACE}s, killed"
        echo "# $id: started no test ${GRACE}s after ${cur:+the verdict on $cur}${cur:-booting}: killed"
        kill -TERM "${BPID[$s]}" 2>/dev/null
    fi
}

on_abort() {
    local s
    echo "# interrupted: stopping the guests"
    for s in "${!BPID[@]}"; do [ -z "${BPID[$s]}" ] || kill -TERM "${BPID[$s]}" 2>/dev/null; done
    wait
    exit 130
}
trap on_abort INT TERM

while :; do
    print_results
    running=0
    for (( s = 1; s <= JOBS; s++ )); do
        if [ -n "${BPID[$s]:-}" ]; then
            if kill -0 "${BPID[$s]}" 2>/dev/null; then
                watch_boot "$s"; running=1
            else
                finish_boot "$s"
            fi
        fi
        if [ -z "${BPID[$s]:-}" ] && [ "$boot_fails" -lt "$BOOT_FAILS_MAX" ]; then
            start_boot "$s" && running=1
        fi
    done
    [ "$running" = 1 ] || break
    sleep 1
done
print_results
wall=$(awk -v a="$wall0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')

# Tests with no verdict: taken by a guest that died before it could say
# which test it was in, or never taken (no guest would boot).
for n in "${order[@]}"; do
    [ ! -f "$SUITE/$n.result" ] || continue
    if [ -d "$Q/claim.$n" ]; then
        why="taken by a guest that died before running it"
    else
        why="not run: the guest did not boot, see $SUITE/boot-*/run-guest.out"
    fi
    echo "FAIL $n ($why)" > "$SUITE/$n.result"
done
print_results

# Per-test times: this run's, and the estimates for the next run's order
# (a passing run's time; a failing run's only for a test never timed, as a
# failure can be much shorter or longer than the test).
declare -A NEW=()
: > "$SUITE/timings.txt"
sum=0
for n in "${order[@]}"; do
    secs=$(sed -n '1s/.* (\([0-9][0-9.]*\)s)$/\1/p' "$SUITE/$n.result")
    [ -n "$secs" ] || continue
    echo "$n $secs" >> "$SUITE/timings.txt"
    grep -q '^PASS ' "$SUITE/$n.result" || [ "${EST[$n]}" = "${TO[$n]}" ] && NEW[$n]=$secs
    sum=$(awk -v a="$sum" -v b="$secs" 'BEGIN { print a + b }')
done
if [ ${#NEW[@]} -gt 0 ]; then
    mkdir -p "$CACHE_ROOT"
    {
        [ -f "$TIMES_FILE" ] && awk 'NF == 2' "$TIMES_FILE" | while read -r n secs; do
            [ -n "${NEW[$n]:-}" ] || echo "$n $secs"
        done
        for n in "${!NEW[@]}"; do echo "$n ${NEW[$n]}"; done
    } | sort > "$TIMES_FILE.tmp.$$" && mv -f "$TIMES_FILE.tmp.$$" "$TIMES_FILE"
fi

passed=$(grep -c '^PASS ' "$SUITE/results.txt")
failed=$(grep -c '^FAIL ' "$SUITE/results.txt")
echo "# suite wall time ${wall}s: $nboots boot(s), $JOBS at once x $CPUS vCPU; the tests took ${sum}s together; per-test seconds in $SUITE/timings.txt"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
