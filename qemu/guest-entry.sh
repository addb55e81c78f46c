#!/bin/bash
# Runs INSIDE the guest (started by qemu/run-guest.sh through vng --exec).
# Usage: guest-entry.sh <outdir> <script> [args...]
# Sets up the guest environment (no udev: DM_DISABLE_UDEV=1, a tmpfs for
# scratch files), runs <script> with its output in <outdir>/guest.log, then
# saves the whole kernel log to <outdir>/dmesg.txt and the exit status to
# <outdir>/rc.  <outdir> is a host directory shared read-write (--rwdir), so
# everything written there is on the host after the guest powers off
# (or resets: see the end).
# (Shell builtins where possible: every process started costs 0.1-1 s under
# software emulation.)
OUTDIR="$1"; shift
SCRIPT="$1"; shift
REPO="${BASH_SOURCE[0]%/*}/.."
REPO="$(cd "$REPO" && pwd)"
export REPO OUTDIR
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
export DM_DISABLE_UDEV=1
export LC_ALL=C
# Scratch space for loop-device backing files: a guest-only tmpfs.
export DMTHIN_SCRATCH=/run/dmthin-scratch
[ -d "$DMTHIN_SCRATCH" ] || mkdir -p "$DMTHIN_SCRATCH"
mounted=0
while read -r _ mp _; do [ "$mp" = "$DMTHIN_SCRATCH" ] && mounted=1; done < /proc/mounts
[ "$mounted" = 1 ] || mount -t tmpfs -o size=1200M tmpfs "$DMTHIN_SCRATCH"
# libdevmapper creates /dev/mapper nodes itself when udev is disabled.
[ -d /dev/mapper ] || mkdir -p /dev/mapper
[ -e /dev/mapper/control ] || dmsetup mknodes >/dev/null 2>&1 || true
read -r up _ < /proc/uptime; echo "$up" > "$OUTDIR/guest-start-uptime"
cd "$REPO"
rc=0
bash "$SCRIPT" "$@" > "$OUTDIR/guest.log" 2>&1 || rc=$?
dmesg > "$OUTDIR/dmesg.txt" 2>&1 || true
read -r up _ < /proc/uptime; echo "$up" > "$OUTDIR/guest-end-uptime"
echo "$rc" > "$OUTDIR/rc"
sync
# The project's kernel has no ACPI (qemu/kernel.config), so virtme-ng's
# power-off would only halt the CPU and leave QEMU running: reset the VM
# instead, which QEMU's -no-reboot (set by virtme-ng) turns into an exit.
# Everything above is already on the host (the shared directory is
# written through).
[ -d /sys/firmware/acpi ] || echo b > /proc/sysrq-trigger
exit "$rc"
