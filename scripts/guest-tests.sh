#!/usr/bin/env bash
# Run the guest test suite (tests/guest/*.sh) inside ONE virtme-ng boot of
# the project's kernel.  Usage: scripts/guest-tests.sh [substring...]
# (only tests whose file name contains one of the substrings).
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
for t in "$REPO"/tests/guest/*.sh; do
    [ -f "$t" ] || continue
    if [ $# -gt 0 ]; then
        keep=0
        for pat in "$@"; do case "$(basename "$t")" in *"$pat"*) keep=1 ;; esac; done
        [ "$keep" = 1 ] || continue
    fi
    tests+=("$t")
done
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
        else
            line="FAIL $name (not run: guest died earlier)"
            echo "$line"; echo "$line" >> "$OUTDIR/results.txt"
        fi
    done
    tail -5 "$OUTDIR/run-guest.out" | sed 's/^/# /'
fi

passed=$(grep -c '^PASS ' "$OUTDIR/results.txt")
failed=$(grep -c '^FAIL ' "$OUTDIR/results.txt")
boot="?"
[ -s "$OUTDIR/guest-start-uptime" ] && boot=$(cat "$OUTDIR/guest-start-uptime")
echo "# suite wall time $(( end - start ))s (guest reached the suite at uptime ${boot}s); per-test seconds in $OUTDIR/timings.txt"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
