#!/bin/bash
# timeout: 300
# A pool stacked on thins of another pool, with a third pool busy at the
# same time.  Runs on OURS ONLY by default: upstream's dm-thin-pool, run
# through the same steps, makes lockdep report "possible recursive
# locking detected" (the upper pool's dm_pool_commit_metadata holds its
# pmd->root_lock while its I/O reaches the lower pool's thin_map, which
# takes the lower pool's root_lock: two instances of one lock class), and
# lockdep stops checking for the rest of the boot after a report.  Ours
# never waits for the metadata lock in map, and has none of that.
# `qemu/run-guest.sh tests/guest/30-pool-stack.sh upstream ours` compares
# them anyway (the test then fails on upstream's report).
# - pool "lower" on loop devices; pool "upper" whose metadata and data
#   devices are two thins of "lower": a thin of "upper" is written (every
#   write provisions in both pools), snapshotted, overwritten and
#   discarded, contents checked against the pattern;
# - a pool "side" on its own loop devices written at the same time;
# - status of the three pools; teardown top-down, thin_check and thin_dump
#   of both stacked metadata devices (the upper one read through the lower
#   pool) and of the side pool.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/compare.sh"
set -u
if [ $# -eq 0 ] && [ -z "${DMTHIN_IMPLS:-}" ]; then
    cmp_init ours
else
    cmp_init "$@"
fi

PAT="$CMP_INPUTS/pattern"
cmp_random 30 "$PAT" $((8 << 20)) || fail "pattern"
B=$((128 * 512))

scenario() {
    local LM LD SM SD DS SDS w1 w2
    cmp_loop LM lmeta 8
    cmp_loop LD ldata 64
    cmp_loop SM smeta 8
    cmp_loop SD sdata 32
    zero_dev "$LM" 1
    zero_dev "$SM" 1
    DS=$(( $(dev_sectors "$LD") / 128 * 128 ))
    SDS=$(( $(dev_sectors "$SD") / 128 * 128 ))

    # The lower pool and two of its thins as the upper pool's devices.
    cmp_create lower "0 $DS thin-pool $LM $LD 128 0"
    cmp_must "create_thin 1 (upper metadata)" dms message lower 0 "create_thin 1"
    cmp_must "create_thin 2 (upper data)" dms message lower 0 "create_thin 2"
    cmp_create umeta "0 16384 thin /dev/mapper/lower 1"
    cmp_create udata "0 65536 thin /dev/mapper/lower 2"
    cmp_ok "zero upper metadata" dd if=/dev/zero of=/dev/mapper/umeta bs=64k count=16 oflag=direct status=none
    cmp_create upper "0 65536 thin-pool /dev/mapper/umeta /dev/mapper/udata 128 0"
    cmp_must "upper create_thin 0" dms message upper 0 "create_thin 0"
    cmp_create u0 "0 16384 thin /dev/mapper/upper 0"
    cmp_create side "0 $SDS thin-pool $SM $SD 128 0"
    cmp_must "side create_thin 0" dms message side 0 "create_thin 0"
    cmp_create s0 "0 16384 thin /dev/mapper/side 0"

    # Two pools busy at once: the stacked one and the side one.
    dd if="$PAT" of=/dev/mapper/u0 bs=64k count=96 oflag=direct status=none & w1=$!
    dd if="$PAT" of=/dev/mapper/s0 bs=64k count=96 oflag=direct status=none & w2=$!
    cmp_check "writer on the stacked pool" wait "$w1"
    cmp_check "writer on the side pool" wait "$w2"
    cmp_ok "u0 = pattern" cmp -n $((96 * B)) /dev/mapper/u0 "$PAT"
    cmp_ok "s0 = pattern" cmp -n $((96 * B)) /dev/mapper/s0 "$PAT"
    cmp_pool_status upper
    cmp_pool_status lower
    cmp_pool_status side

    # Snapshot and discard in the stacked pool.
    cmp_ok "suspend u0" dms suspend u0
    cmp_must "upper create_snap 1 0" dms message upper 0 "create_snap 1 0"
    cmp_ok "resume u0" dms resume u0
    cmp_create u1 "0 16384 thin /dev/mapper/upper 1"
    cmp_ok "overwrite u0 blocks 10-19" dd if="$PAT" of=/dev/mapper/u0 bs=64k count=10 skip=100 seek=10 oflag=direct status=none
    cmp_ok "discard u1 blocks 40-71" blkdiscard -o $((40 * B)) -l $((32 * B)) /dev/mapper/u1
    cmp_ok "u1 blocks 0-39 = pattern" cmp -n $((40 * B)) /dev/mapper/u1 "$PAT"
    cmp_ok "u1 blocks 40-71 zero" cmp -n $((32 * B)) -i $((40 * B)):0 /dev/mapper/u1 /dev/zero
    cmp_ok "u0 blocks 10-19 rewritten" cmp -n $((10 * B)) -i $((10 * B)):$((100 * B)) /dev/mapper/u0 "$PAT"
    cmp_ok "u0 blocks 20-95 kept" cmp -n $((76 * B)) -i $((20 * B)):$((20 * B)) /dev/mapper/u0 "$PAT"
    cmp_pool_status upper
    cmp_check "upper: 96 + 10 blocks used, the discarded ones still u0's (used $P_DUSED)" test "$P_DUSED" = 106
    cmp_pool_status lower

    # Teardown top-down; the upper metadata is checked through the lower pool.
    cmp_remove u1
    cmp_remove u0
    cmp_teardown upper /dev/mapper/umeta
    cmp_remove umeta
    cmp_remove udata
    cmp_teardown lower "$LM"
    cmp_remove s0
    cmp_teardown side "$SM"
}

cmp_run scenario
cmp_finish
