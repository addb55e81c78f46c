#!/usr/bin/env bash
# Run the guest test suite (tests/guest/*.sh) inside ONE virtme-ng boot of
# the project's kernel.  Usage: scripts/guest-tests.sh [substring|path.sh...]
# (only tests whose file name contains one of the substrings, plus test
# scripts given by path).  A test's header may hold "# timeout: N" (seconds,
# default 300) and "# host-prepare: <command>" (run on the host before the
# boot, with $OUTDIR set).
#
# Prints one line per test, "PASS name" or "FAIL name (reason)" (followed
# by the paths of its output and kernel-log files), and last a line
# "N passed, M failed".  Exit status 0 only if every test passed.  A test
# fails when its script fails or times out, or when the kernel log it
# produced shows a splat (BUG, WARNING, Oops, lockdep, RCU, sleeping in
# atomic context; see tests/lib/common.sh).  If the guest dies, the running
# test and those not yet run fail.  Logs: /tmp/dm-thin-rs-logs/suite-*/
# (console.log has the whole guest console).
# Environment: DMTHIN_SUITE_TIMEOUT (seconds for the whole VM; default: sum
# of the per-test timeouts + 180, at most 1500), DMTHIN_KO (module path).
set -uo pipefail
. "$(dirname "$0")/lib.sh"

tests=()
pats=()
for a in "$@"; do
    # A path to a test script outside tests/guest is run as given.
    if [[ "$a" == *.sh ]] && [ -f "$a" ]; then tests+=("$(realpath "$a")"); else pats+=("$a"); fi
done
if [ $# -eq 0 ] || [ ${#pats[@]} -gt 0 ]; then
    for t in "$REPO"/tests/guest/*.sh; do
        [ -f "$t" ] || continue
        if [ ${#pats[@]} -gt 0 ]; then
            keep=0
            for pat in "${pats[@]}"; do case "$(basename "$t")" in *"$pat"*) keep=1 ;; esac; done
            [ "$keep" = 1 ] || continue
        fi
        tests+=("$t")
    done
fi
[ ${#tests[@]} -gt 0 ] || die "no tests selected"

total_to=180
for t in "${tests[@]}"; do
    to=$(sed -n 's/^# timeout: *\([0-9][0-9]*\).*/\1/p' "$t" | head -1)
    total_to=$(( total_to + ${to:-300} ))
done
[ "$total_to" -le 1500 ] || total_to=1500
TIMEOUT="${DMTHIN_SUITE_TIMEOUT:-$total_to}"

mkdir -p /tmp/dm-thin-rs-logs
OUTDIR="$(mktemp -d "/tmp/dm-thin-rs-logs/suite-$(date -u +%Y%m%d-%H%M%S)-XXXX")"
: > "$OUTDIR/results.txt"
say "${#tests[@]} tests, one guest boot (software emulation), VM timeout ${TIMEOUT}s, logs in $OUTDIR"

# Host-side preparation: a test may name a command in its header,
#     # host-prepare: <shell command>
# run here (cwd $REPO, $OUTDIR and $REPO set) before the guest boots, e.g. to
# write an image the test then reads from $OUTDIR.  Its output goes to
# $OUTDIR/<test>.prepare.log; if it fails the test still runs (and should
# fail on the missing input), and the failure is shown here.
export OUTDIR REPO
for t in "${tests[@]}"; do
    cmd=$(sed -n 's/^# host-prepare: *//p' "$t" | head -1)
    [ -n "$cmd" ] || continue
    name=$(basename "$t" .sh)
    say "host-prepare for $name: $cmd"
    if ! ( cd "$REPO" && bash -c "$cmd" ) > "$OUTDIR/$name.prepare.log" 2>&1; then
        echo "# host-prepare for $name failed: $OUTDIR/$name.prepare.log"
        tail -5 "$OUTDIR/$name.prepare.log" | sed 's/^/#   /'
    fi
done

start=$(date +%s)
"$REPO/qemu/run-guest.sh" -q -o "$OUTDIR" -t "$TIMEOUT" \
    "$REPO/tests/lib/run-suite.sh" "${tests[@]}" >"$OUTDIR/run-guest.out" 2>&1 &
gpid=$!
tail -n +1 -F --pid="$gpid" "$OUTDIR/results.txt" 2>/dev/null
wait "$gpid"; grc=$?
end=$(date +%s)

# Tests the guest never reported on (it crashed, hung or timed out).
if [ ! -f "$OUTDIR/suite-finished" ]; then
    cur=""
    [ -f "$OUTDIR/current" ] && cur=$(cat "$OUTDIR/current")
    for t in "${tests[@]}"; do
        name=$(basename "$t" .sh)
        grep -qE "^(PASS|FAIL) $name( |\$)" "$OUTDIR/results.txt" && continue
        if [ "$name" = "$cur" ]; then
            line="FAIL $name (guest died or hung during this test, run-guest exit $grc: see console.log)"
            echo "$line"; echo "$line" >> "$OUTDIR/results.txt"
            echo "  logs: $OUTDIR/console.log $OUTDIR/$name.log"
        elif [ ! -s "$OUTDIR/guest-start-uptime" ]; then
            line="FAIL $name (not run: the guest did not boot, run-guest exit $grc: see $OUTDIR/run-guest.out)"
        else
            line="FAIL $name (not run: guest died earlier)"
            echo "$line"; echo "$line" >> "$OUTDIR/results.txt"
        fi
    done
    grep -m4 -E 'Kernel panic|BUG:|Oops|WARNING:|RIP:|sysrq: Trigger' "$OUTDIR/console.log" | sed 's/^/# console: /'
    tail -2 "$OUTDIR/run-guest.out" | sed 's/^/# /'
fi

passed=$(grep -c '^PASS ' "$OUTDIR/results.txt")
failed=$(grep -c '^FAIL ' "$OUTDIR/results.txt")
boot="?"
[ -s "$OUTDIR/guest-start-uptime" ] && boot=$(cat "$OUTDIR/guest-start-uptime")
echo "# suite wall time $(( end - start ))s (guest reached the suite at uptime ${boot}s); per-test seconds in $OUTDIR/timings.txt"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
