#!/usr/bin/env bash
# The project's test command (README Quick start; CI runs it through
# .ci/run): set-up (idempotent), host tests with cargo, the module build,
# and the guest suite under QEMU.  Ends with one line `N passed, N failed`
# summing the cargo tests and the guest tests; exits non-zero on any
# failure.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/lib.sh"
start=$(date +%s)
bash "$here/setup.sh" || die "set-up failed"
t_setup=$(( $(date +%s) - start ))

host_log="$(mktemp /tmp/dm-thin-rs-host-tests.XXXX)"
bash "$here/host-tests.sh" 2>&1 | tee "$host_log"
host_rc=${PIPESTATUS[0]}
host_pass=$(sed -n 's/^test result: .*\. \([0-9]*\) passed; \([0-9]*\) failed.*/\1/p' "$host_log" | paste -sd+ | bc)
host_fail=$(sed -n 's/^test result: .*\. \([0-9]*\) passed; \([0-9]*\) failed.*/\2/p' "$host_log" | paste -sd+ | bc)
host_pass=${host_pass:-0}; host_fail=${host_fail:-0}
[ "$host_rc" = 0 ] || [ "$host_fail" -gt 0 ] || host_fail=1
# Benchmarks are a separate command; this runs them at smoke size only
# (the host pdata benchmark, then the guest benchmark of upstream, ours
# and dm-linear), and each one's built-in correctness checks count as one
# test.
if bash "$here/bench.sh" --smoke; then
    host_pass=$((host_pass + 1))
else
    say "FAIL: scripts/bench.sh --smoke"
    host_fail=$((host_fail + 1))
fi
t_host=$(( $(date +%s) - start - t_setup ))

guest_log="$(mktemp /tmp/dm-thin-rs-guest-tests.XXXX)"
bash "$here/guest-tests.sh" 2>&1 | tee "$guest_log"
guest_rc=${PIPESTATUS[0]}
read -r guest_pass guest_fail < <(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$guest_log" | tail -1)
guest_pass=${guest_pass:-0}; guest_fail=${guest_fail:-0}
[ "$guest_rc" = 0 ] || [ "$guest_fail" -gt 0 ] || guest_fail=1
t_guest=$(( $(date +%s) - start - t_setup - t_host ))

# The guest benchmark at smoke size: upstream, ours and dm-linear side by
# side (ratios printed, never asserted); its correctness checks count.
if bash "$here/bench.sh" --guest --smoke; then
    guest_pass=$((guest_pass + 1))
else
    say "FAIL: scripts/bench.sh --guest --smoke"
    guest_fail=$((guest_fail + 1))
fi
t_bench=$(( $(date +%s) - start - t_setup - t_host - t_guest ))

say "times: set-up ${t_setup}s, host tests ${t_host}s, guest tests ${t_guest}s, guest benchmark ${t_bench}s"
say "host: $host_pass passed, $host_fail failed; guest: $guest_pass passed, $guest_fail failed"
echo "$(( host_pass + guest_pass )) passed, $(( host_fail + guest_fail )) failed"
[ "$host_fail" = 0 ] && [ "$guest_fail" = 0 ]
