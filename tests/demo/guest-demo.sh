#!/bin/bash
# Runs INSIDE the guest (scripts/demo.sh): our dm_thin_rs module loaded and
# its targets registered, then a real pool at work: pool created on blank
# metadata, create_thin, mkfs.ext4, mount -o discard, files written, a
# snapshot of the mounted thin (suspended around create_snap), both sides
# written differently, files deleted (the pool's used data blocks drop),
# dmsetup status of pool and thins, teardown, thin_check clean, and the
# pool re-created from the same devices with the files still there.
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
step "mkfs.ext4 and mount -o discard"
show mkfs.ext4 -q -E nodiscard,lazy_itable_init=1 /dev/mapper/demo-thin || die "mkfs"
MNT="$DMTHIN_SCRATCH/mnt"; mkdir -p "$MNT"
show mount -o discard /dev/mapper/demo-thin "$MNT" || die "mount"
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

step "a snapshot (id 1) of the mounted thin: suspend (freezes ext4), create_snap, resume"
show dmsetup suspend demo-thin || die "suspend"
show dmsetup message demo-pool 0 "create_snap 1 0" || die "create_snap"
show dmsetup resume demo-thin || die "resume"
show dm_create demo-snap "0 2097152 thin /dev/mapper/demo-pool 1" || die "snapshot refused"
SNAP="$DMTHIN_SCRATCH/snap"; mkdir -p "$SNAP"
show mount -o discard /dev/mapper/demo-snap "$SNAP" || die "mount snapshot"
step "write to both sides: each sees its own change (copy-on-write)"
echo "changed on the origin" >> "$MNT"/hello.txt
echo "changed on the snapshot" >> "$SNAP"/hello.txt
show sync
show cat "$MNT"/hello.txt
show cat "$SNAP"/hello.txt
show dmsetup status demo-pool
step "a new 16 MiB file on the origin, then deleted: -o discard gives the space back"
show sh -c "head -c 16M /dev/zero > $MNT/scratch.bin && sync"
used() { dmsetup status demo-pool | awk '{ split($6, u, "/"); print u[1] }'; }
USED1=$(used)
echo "  used data blocks: $USED1"
show sh -c "rm $MNT/scratch.bin && sync"
# ext4 sends the discards after its journal commit: wait for them.
for i in $(seq 20); do
    USED2=$(used)
    [ "$USED2" -le $((USED1 - 200)) ] && break
    sleep 0.5
done
show dmsetup status demo-pool
echo "  used data blocks: $USED1 -> $USED2 (the 16 MiB file was 256 blocks)"
[ "$USED2" -le $((USED1 - 200)) ] || die "deleting a file did not return its blocks to the pool"
step "the snapshot still has the original random.bin"
show cmp "$DMTHIN_SCRATCH/pattern" "$SNAP"/random.bin && echo "  random.bin identical on the snapshot"
show umount "$SNAP"
show fsck.ext4 -fn /dev/mapper/demo-snap || die "fsck snapshot"
dm_remove demo-snap || die "remove snapshot"
step "delete the snapshot: its own blocks go back to the pool"
show dmsetup message demo-pool 0 "delete 1" || die "delete"
show dmsetup status demo-pool

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
