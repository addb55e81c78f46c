#!/usr/bin/env bash
# Quick iteration on the module: build dm_thin_rs.ko (scripts/build-module.sh),
# then run the named guest tests in ONE boot and print their results.
# Usage: scripts/dev.sh <test-name-substring|path.sh>...
#   e.g. scripts/dev.sh 02          (tests/guest/02-ours-load.sh)
#        scripts/dev.sh load open   (every test whose name contains either)
# The tests run through scripts/guest-tests.sh with DMTHIN_GUEST_JOBS=1 (one
# guest; its other settings apply, e.g. DMTHIN_KO, DMTHIN_GUEST_CPUS).  For
# a failed test, the end of its output and of its kernel log are shown.
# Needs the kernel built (scripts/setup.sh or scripts/build-kernel.sh).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"
[ $# -ge 1 ] || die "usage: $0 <test-name-substring|path.sh>... (the whole suite: scripts/guest-tests.sh)"
case "$1" in -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac

t0=$(date +%s)
bash "$here/build-module.sh" || die "module build failed"
say "module built in $(( $(date +%s) - t0 ))s"

out="$(mktemp /tmp/dm-thin-rs-dev.XXXX)"
DMTHIN_GUEST_JOBS=1 bash "$here/guest-tests.sh" "$@" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
# For each failure, the end of the test's output and kernel log.
grep -A1 '^FAIL ' "$out" | sed -n 's/^  logs: //p' | while read -r -a logs; do
    for f in "${logs[@]}"; do
        case "$f" in
            *.log|*.dmesg) [ -s "$f" ] || continue
                echo "---- last lines of $f"
                tail -n 25 "$f" ;;
        esac
    done
done
rm -f "$out"
say "total $(( $(date +%s) - t0 ))s"
exit "$rc"
