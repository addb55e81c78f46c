#!/usr/bin/env bash
# Boot the project's 6.12 kernel ($KDIR from scripts/kernel-env.sh) with
# virtme-ng and run one script inside the guest.
#
# Usage: qemu/run-guest.sh [options] [--] <script> [args...]
#   -o, --outdir DIR   host directory for results, shared read-write with the
#                      guest at the same path (default: a new directory under
#                      /tmp/dm-thin-rs-logs/)
#   -s, --share DIR    also share host directory DIR read-write at the same
#                      path (repeatable); an --outdir inside DIR is reached
#                      through it (scripts/guest-tests.sh shares the suite
#                      directory, each boot writing to its own subdirectory)
#   -t, --timeout SEC  kill the VM after SEC seconds (default 1500), per boot
#                      attempt
#   -b, --boot-timeout SEC  a boot attempt whose guest has not started the
#                      script after SEC seconds is killed and counts as a
#                      failed boot (default 300, or DMTHIN_BOOT_TIMEOUT)
#   -m, --memory SIZE  guest memory (default 2G)
#   -c, --cpus N       guest CPUs (default 2)
#   -q, --quiet        do not stream the script's output to stdout
#       --kvm          try KVM (does not boot on the reference machine; the
#                      default is software emulation, also via DMTHIN_KVM=1)
#
# DMTHIN_KO, when set on the host, is passed to the script in the guest (as
# an absolute path; the guest sees the host's files).  SIGTERM, SIGINT or
# SIGHUP to this script stops the VM (no boot retry) and exits 125: that is
# how scripts/guest-tests.sh kills a guest hung in a test.
#
# The guest sees the host root read-only (dmsetup, thin-provisioning-tools,
# fio, lvm2, mkfs come from the host) and runs <script> through
# qemu/guest-entry.sh, which sets DM_DISABLE_UDEV=1 (no udev in the guest) and
# a tmpfs at $DMTHIN_SCRATCH for loop-device backing files.  Files written
# in the guest to $OUTDIR appear on the host:
#   $OUTDIR/guest.log    the script's stdout+stderr (also streamed here)
#   $OUTDIR/console.log  the whole VM console (kernel messages included)
#   $OUTDIR/dmesg.txt    the guest kernel log at the end of the script
#   $OUTDIR/rc           the script's exit status
# Exit status: the script's, or 125 if the guest did not finish (crash,
# panic, timeout); then the tail of the console is printed.
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/scripts/kernel-env.sh"

OUTDIR=""
SHARES=()
TIMEOUT=1500
BOOT_TIMEOUT="${DMTHIN_BOOT_TIMEOUT:-300}"
MEMORY=2G
CPUS=2
QUIET=0
KVM="${DMTHIN_KVM:-0}"
while [ $# -gt 0 ]; do
    case "$1" in
        -o|--outdir) OUTDIR="$2"; shift 2 ;;
        -s|--share) SHARES+=("$(realpath "$2")"); shift 2 ;;
        -t|--timeout) TIMEOUT="$2"; shift 2 ;;
        -b|--boot-timeout) BOOT_TIMEOUT="$2"; shift 2 ;;
        -m|--memory) MEMORY="$2"; shift 2 ;;
        -c|--cpus) CPUS="$2"; shift 2 ;;
        -q|--quiet) QUIET=1; shift ;;
        --kvm) KVM=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        --) shift; break ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) break ;;
    esac
done
[ $# -ge 1 ] || die "usage: $0 [options] <script> [args...]"
SCRIPT="$(realpath "$1")"; shift
[ -f "$SCRIPT" ] || die "no such script: $SCRIPT"
[ -f "$KERNEL_CACHE/.built" ] || die "kernel not built (run scripts/build-kernel.sh): $KDIR"
command -v vng >/dev/null || die "vng (virtme-ng) not found"

if [ -z "$OUTDIR" ]; then
    mkdir -p /tmp/dm-thin-rs-logs
    OUTDIR="$(mktemp -d "/tmp/dm-thin-rs-logs/run-$(date -u +%Y%m%d-%H%M%S)-XXXX")"
fi
mkdir -p "$OUTDIR"
OUTDIR="$(realpath "$OUTDIR")"
rm -f "$OUTDIR/rc" "$OUTDIR/guest.log" "$OUTDIR/dmesg.txt" "$OUTDIR/guest-start-uptime" "$OUTDIR/guest-end-uptime"
: > "$OUTDIR/guest.log"

q() { printf '%q ' "$@"; }
guest_env=()
[ -z "${DMTHIN_KO:-}" ] || guest_env=(env "DMTHIN_KO=$(realpath -m "$DMTHIN_KO")")
guest_cmd="$(q "${guest_env[@]}" bash "$REPO/qemu/guest-entry.sh" "$OUTDIR" "$SCRIPT" "$@")"

# Shared directories: the --share ones, and OUTDIR unless it lies inside one.
rwdirs=()
out_shared=0
for d in "${SHARES[@]}"; do
    [ -d "$d" ] || die "no such directory to share: $d"
    rwdirs+=(--rwdir "$d")
    case "$OUTDIR/" in "$d"/*) out_shared=1 ;; esac
done
[ "$out_shared" = 1 ] || rwdirs+=(--rwdir "$OUTDIR")

# The guest's root is the host's, read-only, over 9p (--force-9p: the
# same on every machine, whether a virtiofsd is installed or not).
# virtme-ng mounts it uncached, so every exec, library load and path lookup
# is a round trip to QEMU; mounted with cache=loose instead (the last
# rootflags= wins), a process starts in about half the time (/bin/true
# 0.15 -> 0.08 s, dmsetup 0.22 -> 0.15 s).  Nothing on the host changes the
# root's files during a run: results go to the --rwdir/--outdir mounts,
# which stay uncached.
kargs="printk.devkmsg=on log_buf_len=16M panic=-1"
# (DMTHIN_ROOT_CACHE=none keeps virtme-ng's uncached mount.)
[ "${DMTHIN_ROOT_CACHE:-loose}" = none ] \
    || kargs+=" rootflags=version=9p2000.L,trans=virtio,access=any,msize=524288,cache=${DMTHIN_ROOT_CACHE:-loose}"
# DMTHIN_APPEND: more kernel arguments (for experiments).
kargs+="${DMTHIN_APPEND:+ $DMTHIN_APPEND}"
vng_args=(--run "$KDIR" --memory "$MEMORY" --cpus "$CPUS" "${rwdirs[@]}"
          --force-9p --verbose --append "$kargs")
[ "$KVM" = 1 ] || vng_args+=(--disable-kvm)
[ -z "${DMTHIN_QEMU_OPTS:-}" ] || vng_args+=("--qemu-opts=$DMTHIN_QEMU_OPTS")
vng_args+=(--exec "$guest_cmd")

# An early-boot guest crash under software emulation (seen once: an "Oops:
# int3" in patched kernel text, a QEMU TCG cross-modifying-code race) is
# not the test's fault: if the guest dies before the script starts, boot
# again (DMTHIN_BOOT_TRIES, default 3); the failed console is kept.
# A boot that hangs before the script starts is killed after BOOT_TIMEOUT
# seconds and retried the same way.
tries="${DMTHIN_BOOT_TRIES:-3}"
vpid=""
stopped=""
# `timeout` runs the VM in its own process group; a TERM to it is passed on
# to that whole group (vng, qemu, virtiofsd), then KILL after 15 s.
stop_vm() {
    stopped="$1"
    [ -z "$vpid" ] || kill -TERM "$vpid" 2>/dev/null || true
}
trap 'stop_vm SIGTERM' TERM
trap 'stop_vm SIGINT' INT
trap 'stop_vm SIGHUP' HUP
start=$(date +%s.%N)
for attempt in $(seq 1 "$tries"); do
    ( cd "$REPO" && exec timeout --kill-after=15 "$TIMEOUT" vng "${vng_args[@]}" ) \
        </dev/null >"$OUTDIR/console.log" 2>&1 &
    vpid=$!
    astart=$(date +%s)
    tpid=""
    if [ "$QUIET" = 0 ]; then
        tail -n +1 -F --pid="$vpid" "$OUTDIR/guest.log" 2>/dev/null &
        tpid=$!
    fi
    boot_hung=0
    while [ -z "$stopped" ] && kill -0 "$vpid" 2>/dev/null; do
        if [ "$boot_hung" = 0 ] && [ ! -s "$OUTDIR/guest-start-uptime" ] \
            && [ $(( $(date +%s) - astart )) -gt "$BOOT_TIMEOUT" ]; then
            boot_hung=1
            say "guest has not reached the script after ${BOOT_TIMEOUT}s: stopping this boot attempt"
            kill -TERM "$vpid" 2>/dev/null || true
        fi
        sleep 1 & wait $! 2>/dev/null || true
    done
    vrc=0
    wait "$vpid" || vrc=$?
    # A trapped signal interrupts `wait` (status > 128): wait for the VM to
    # be gone.
    while [ -n "$stopped" ] && [ "$vrc" -gt 128 ] && kill -0 "$vpid" 2>/dev/null; do
        vrc=0
        wait "$vpid" || vrc=$?
    done
    vpid=""
    [ -z "$tpid" ] || wait "$tpid" 2>/dev/null || true
    [ -z "$stopped" ] || break
    [ ! -s "$OUTDIR/guest-start-uptime" ] || break
    [ "$attempt" -lt "$tries" ] || break
    mv "$OUTDIR/console.log" "$OUTDIR/console-bootfail-$attempt.log"
    say "guest died before reaching the script (vng exit $vrc), boot attempt $attempt of $tries; console kept: $OUTDIR/console-bootfail-$attempt.log"
    grep -m2 -E 'Oops|BUG:|Kernel panic' "$OUTDIR/console-bootfail-$attempt.log" >&2 || true
done
trap - TERM INT HUP
end=$(date +%s.%N)

wall=$(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.1f", b-a}')
boot="?"
[ -s "$OUTDIR/guest-start-uptime" ] && boot=$(cat "$OUTDIR/guest-start-uptime")
echo "$wall" > "$OUTDIR/wall-seconds"
if [ -s "$OUTDIR/rc" ]; then
    rc=$(cat "$OUTDIR/rc")
    say "guest done: script exit $rc, wall ${wall}s (guest uptime at script start ${boot}s), results in $OUTDIR"
    exit "$rc"
fi
if [ -n "$stopped" ]; then
    say "guest stopped on $stopped (vng exit $vrc); wall ${wall}s"
elif [ "$boot_hung" = 1 ]; then
    say "guest did not reach the script within ${BOOT_TIMEOUT}s (boot attempt $attempt of $tries); wall ${wall}s"
else
    say "guest did not finish (vng exit $vrc: crash, panic or timeout after ${TIMEOUT}s); wall ${wall}s"
fi
say "console: $OUTDIR/console.log (last 40 lines follow)"
tail -40 "$OUTDIR/console.log" >&2
exit 125
