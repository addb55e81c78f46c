#!/bin/bash
# Runs INSIDE the guest (scripts/demo.sh): our dm_thin_rs module loaded and
# its targets registered, then a real pool at work: pool created on blank
# metadata, create_thin, mkfs.ext4, mount, files written and read back,
# dmsetup status of pool and thin, teardown, thin_check clean, and the pool
# re-created from the same devices with the files still there.
. "$(dirname "$0")/../lib/common.sh"
set -u
step() { echo; echo "==> $*"; }
show() { echo "\$ $*"; "$@" 2>&1 | sed 's/^/  /'; return "${PIPESTATUS[0]}"; }
die() { echo "DEMO FAILED: $*"; dmesg | tail -20 | sed 's/^/  /'; exit 1; }

step "guest kernel"
show uname -r
step "our module: $DMTHIN_KO"
if [ ! -f "$DMTHIN_KO" ]; then echo "  module not built: run 'make module' on the host"; exit 1; fi
show modinfo "$DMTHIN_KO" | grep -E '^  (filename|description|license|depends|name|vermagic|author):' || true
step "loading it (after its dependencies dm-bufio and libcrc32c)"
echo "\$ modprobe dm-bufio; modprobe libcrc32c; insmod $DMTHIN_KO"
load_ours || die "insmod failed"
step "device-mapper targets (thin-pool and thin are ours: dm_thin_pool is not loaded)"
show dmsetup targets
echo "  dm_thin_pool (upstream C) loaded: $(grep -q '^dm_thin_pool ' /proc/modules && echo yes || echo no)"

step "a pool: 16 MiB metadata + 256 MiB data loop devices, 64 KiB blocks"
make_loop META meta 16 && make_loop DATA data 256 || die "loop devices"
DS=$(dev_sectors "$DATA")
show dm_create demo-pool "0 $DS thin-pool $META $DATA 128 0" || die "pool refused"
show dmsetup table demo-pool
show dmsetup status demo-pool
step "a thin device (id 0): 1 GiB virtual on 256 MiB of data"
show dmsetup message demo-pool 0 "create_thin 0" || die "create_thin"
show dm_create demo-thin "0 2097152 thin /dev/mapper/demo-pool 0" || die "thin refused"
show dmsetup status demo-thin
step "mkfs.ext4 and mount (no -o discard: thin discards are not implemented yet)"
show mkfs.ext4 -q -E nodiscard,lazy_itable_init=1 /dev/mapper/demo-thin || die "mkfs"
MNT="$DMTHIN_SCRATCH/mnt"; mkdir -p "$MNT"
show mount /dev/mapper/demo-thin "$MNT" || die "mount"
step "write files: 8 MiB of random data and a text file"
head -c 8M /dev/urandom > "$DMTHIN_SCRATCH/pattern"
show cp "$DMTHIN_SCRATCH/pattern" "$MNT"/random.bin
echo "hello from a Rust thin device" > "$MNT"/hello.txt
show sync
show ls -l "$MNT"
show df -h "$MNT"
step "pool and thin status (used data blocks grew)"
show dmsetup status demo-pool
show dmsetup status demo-thin
step "umount, fsck, tear down, thin_check the metadata"
show umount "$MNT"
show fsck.ext4 -fn /dev/mapper/demo-thin || die "fsck"
dm_remove demo-thin || die "remove thin"
dm_remove demo-pool || die "remove pool"
show thin_check "$META" || die "thin_check"
show sh -c "thin_dump $META | head -4"
step "re-create the pool and thin from the same devices: the files are still there"
show dm_create demo-pool "0 $DS thin-pool $META $DATA 128 0" || die "pool reopen"
show dm_create demo-thin "0 2097152 thin /dev/mapper/demo-pool 0" || die "thin reopen"
show mount /dev/mapper/demo-thin "$MNT" || die "mount again"
show cat "$MNT"/hello.txt
show cmp "$DMTHIN_SCRATCH/pattern" "$MNT"/random.bin && echo "  random.bin identical"
show umount "$MNT"
dm_remove demo-thin; dm_remove demo-pool
show thin_check "$META" || die "thin_check"
rm -f "$DMTHIN_SCRATCH/pattern"
cleanup_all
step "rmmod dm_thin_rs"
show rmmod dm_thin_rs
if dmesg | find_splats >/dev/null; then
    step "kernel log splats:"; dmesg | find_splats | sed 's/^/  /'; exit 1
fi
echo; echo "demo finished, kernel log clean"
