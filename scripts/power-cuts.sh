#!/usr/bin/env bash
# Many power cuts: the guest power-cut series (tests/guest/21-power-cut-*.sh)
# with N cuts per implementation each (the CI suite runs 18, 18 and 15,
# 51 in all), every series in its own guest boot (1 vCPU, 4G, software
# emulation), one after the other, with a VM timeout that grows with N.
# Usage: scripts/power-cuts.sh [-n CUTS] [series...]
#   series: a, b, c (default: all three); CUTS default 100
#   DMTHIN_IMPLS as for the differential tests (default "upstream ours")
#   e.g. scripts/power-cuts.sh -n 500      (1500 cuts on each implementation)
# Builds the module first.  A series fails on any violated invariant, any
# difference between the implementations' verdicts, or a kernel splat in
# its boot's log.  Logs: /tmp/dm-thin-rs-logs/power-cuts-*/<series>/.
# Measured: about 2.5 s per cut per implementation in a quiet guest.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"
cuts=100
while [ $# -gt 0 ]; do
    case "$1" in
        -n) cuts="${2:-}"; shift 2 ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) break ;;
    esac
done
[[ "$cuts" =~ ^[1-9][0-9]*$ ]] || die "-n needs a positive number of cuts"
series=("$@")
[ ${#series[@]} -gt 0 ] || series=(a b c)
impls="${DMTHIN_IMPLS:-upstream ours}"
nimpl=$(wc -w <<< "$impls")
bash "$here/build-module.sh" || die "module build failed"
mkdir -p /tmp/dm-thin-rs-logs
top="$(mktemp -d "/tmp/dm-thin-rs-logs/power-cuts-$(date -u +%Y%m%d-%H%M%S)-XXXX")"
say "$cuts cuts per series per implementation ($impls), series ${series[*]}; logs in $top"
bad=0
for s in "${series[@]}"; do
    t="$REPO/tests/guest/21-power-cut-$s.sh"
    [ -f "$t" ] || die "no series $s ($t)"
    out="$top/$s"; mkdir -p "$out"
    t0=$(date +%s)
    # shellcheck disable=SC2086
    bash "$REPO/qemu/run-guest.sh" -q -c 1 -m 4G -t $(( 300 + cuts * nimpl * 8 )) -o "$out" \
        "$t" "cuts=$cuts" $impls
    rc=$?
    splats=$( ( . "$REPO/tests/lib/common.sh"; trap - EXIT; find_splats < "$out/dmesg.txt" ) 2>/dev/null || true)
    verdict=PASS
    [ "$rc" = 0 ] || verdict="FAIL (exit $rc)"
    [ -z "$splats" ] || verdict="FAIL (kernel splat: $(head -1 <<< "$splats"))"
    [ "$verdict" = PASS ] || bad=1
    echo "$verdict 21-power-cut-$s, $cuts cuts x $nimpl implementation(s) ($(( $(date +%s) - t0 ))s)"
    grep -E '^(FAIL|MISMATCH|21-power)' "$out/guest.log" | head -20
    echo "  log: $out/guest.log"
done
exit "$bad"
