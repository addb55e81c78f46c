#!/bin/bash
# timeout: 400
# host-prepare: printf '%s\n' "${DMTHIN_IMPLS:-}" > "$OUTDIR/dmthin-impls"
# Discards on thins, compared between implementations
# (tests/lib/compare.sh; DMTHIN_IMPLS selects them), with the pool's
# default (discard passdown), no_discard_passdown and ignore_discard:
# - the thin's queue limits (discard granularity, max discard bytes) and
#   the pool status words;
# - blkdiscard of less than a block and of partial blocks at both ends of
#   a range: the partial blocks keep their data, whole blocks read zeros
#   and are unmapped (used data blocks drop); every device equals a
#   reference file after each step;
# - a discard of blocks shared with a snapshot unmaps them from the
#   discarded device only (the snapshot keeps its data, used blocks stay);
#   the same discard on the snapshot then frees them; with passdown the
#   data device's backing file gives the space back (fewer allocated
#   bytes), without passdown it does not;
# - ignore_discard: blkdiscard is refused (EOPNOTSUPP), nothing changes;
# - ext4 mounted -o discard: deleting files returns blocks to the pool;
#   fstrim on a mount without -o discard does the same;
# - teardown: thin_check, thin_dump (distinct data blocks = used count).
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/compare.sh"
set -u
cmp_init "$@"

PAT="$CMP_INPUTS/pattern"
cmp_random 19 "$PAT" $((4 << 20)) || fail "pattern"
B=$((128 * 512))          # data block: 128 sectors
T=$((64 * B))             # thin: 64 blocks (4 MiB)
TS=$((T / 512))
MNT=/run/dmthin-discard-mnt

# disc <id> <offset> <length>: blkdiscard of thin<id> (recorded, must
# succeed), and the reference: whole blocks in the range become zeros.
disc() {
    local id="$1" off="$2" len="$3" b e
    cmp_ok "blkdiscard thin$id $off+$len" blkdiscard -o "$off" -l "$len" "/dev/mapper/thin$id"
    b=$(( (off + B - 1) / B )); e=$(( (off + len) / B ))
    if [ "$e" -gt "$b" ]; then
        dd if=/dev/zero of="$REF/$id" bs="$B" count=$((e - b)) seek="$b" conv=notrunc status=none
    fi
}
# same <id...>: each device equals its reference.
same() {
    local id
    for id in "$@"; do cmp_op ok cmp "/dev/mapper/thin$id" 0 "$T" "$REF/$id" 0; done
    cmp_batch "thins $* equal their references"
}
# alloc: bytes allocated to the data device's backing file.
alloc() { du -B1 "$DMTHIN_SCRATCH/data.img" | cut -f1; }

scenario() {
    local feat tag REF DS id used a0 a1 k
    cmp_loop META meta 8
    cmp_loop DATA data 40
    DS=$(( $(dev_sectors "$DATA") / 128 * 128 ))
    for feat in "" "1 no_discard_passdown" "1 ignore_discard"; do
        tag="${feat#1 }"; tag="${tag:-passdown}"
        cmp_rec "######## $tag"
        REF="$CMP_DIR/ref-$tag"; mkdir -p "$REF"
        zero_dev "$META" 1
        cmp_ok "blkdiscard data" blkdiscard "$DATA"
        cmp_create pool "0 $DS thin-pool $META $DATA 128 0${feat:+ $feat}"
        cmp_pool_status pool
        cmp_must "create_thin 0" dms message pool 0 "create_thin 0"
        cmp_create thin0 "0 $TS thin /dev/mapper/pool 0"
        for k in discard_granularity discard_max_bytes; do
            cmp_step "thin0 queue/$k" cat "/sys/block/$(basename "$(readlink -f /dev/mapper/thin0)")/queue/$k"
        done
        cmp_ok "fill thin0" dd if="$PAT" of=/dev/mapper/thin0 bs=1M oflag=direct status=none
        cp "$PAT" "$REF/0"
        if [ "$tag" = ignore_discard ]; then
            cmp_fails "Operation not supported" "blkdiscard refused" blkdiscard -o 0 -l "$((4 * B))" /dev/mapper/thin0
            same 0
            cmp_pool_status pool
            cmp_check "$tag: nothing unmapped (used $P_DUSED)" test "$P_DUSED" = 64
            cmp_remove thin0
            cmp_teardown pool "$META"
            continue
        fi
        disc 0 32768 $B                        # inside blocks 0 and 1: nothing
        disc 0 $((2 * B + 4096)) $((4 * B))    # partial 2 and 6, whole 3-5
        same 0
        cmp_pool_status pool
        cmp_check "$tag: 3 blocks unmapped (used $P_DUSED)" test "$P_DUSED" = 61

        # Shared with a snapshot: only the discarded device loses them.
        cmp_ok "suspend thin0" dms suspend thin0
        cmp_must "create_snap 1 0" dms message pool 0 "create_snap 1 0"
        cmp_ok "resume thin0" dms resume thin0
        cmp_create thin1 "0 $TS thin /dev/mapper/pool 1"
        cp "$REF/0" "$REF/1"
        a0=$(alloc)
        disc 0 $((16 * B)) $((32 * B))          # blocks 16-47 of thin0
        same 0 1
        cmp_pool_status pool
        cmp_check "$tag: shared blocks stay in use (used $P_DUSED)" test "$P_DUSED" = 61
        disc 1 $((16 * B)) $((32 * B))          # the same on the snapshot
        same 0 1
        cmp_pool_status pool
        used=$P_DUSED
        cmp_check "$tag: the last user's discard frees them (used $used)" test "$used" = 29
        a1=$(alloc)
        log "$tag: data file allocated $a0 -> $a1 bytes"
        if [ "$tag" = passdown ]; then
            cmp_check "$tag: passdown gave 32 blocks back to the data device ($a0 -> $a1)" \
                test "$a1" -le $((a0 - 32 * B))
        else
            cmp_check "$tag: no passdown: the data device keeps its space ($a0 -> $a1)" \
                test "$a1" = "$a0"
        fi
        # A discard of a whole device, then writes: new blocks, right data.
        disc 1 0 "$T"
        cmp_op ok write /dev/mapper/thin1 $((5 * B)) 4096 "$PAT" 0
        cmp_batch "write after discard"
        dd if="$PAT" of="$REF/1" bs=4096 count=1 seek=$((5 * B / 4096)) conv=notrunc status=none
        same 0 1
        cmp_remove thin1
        cmp_remove thin0
        cmp_pool_status pool
        used=$P_DUSED
        cmp_teardown pool "$META"
        cmp_check "$tag: used data blocks $used = distinct data blocks in thin_dump $D_DISTINCT" \
            test "$used" = "$D_DISTINCT"
    done

    # ext4: -o discard, then fstrim.
    cmp_rec "######## ext4"
    zero_dev "$META" 1
    cmp_create pool "0 $DS thin-pool $META $DATA 128 0"
    cmp_must "create_thin 0" dms message pool 0 "create_thin 0"
    cmp_create thin0 "0 65536 thin /dev/mapper/pool 0"
    cmp_ok "mkfs.ext4" mkfs.ext4 -q -F -b 4096 -U 0b6a3cc2-7f55-4d8e-9c1d-9f59e4a7d019 \
        -E "lazy_itable_init=0,lazy_journal_init=0,nodiscard,hash_seed=5e3b7e42-7d43-4a8e-8b5e-2f3c0c3b1a11" /dev/mapper/thin0
    cmp_mount /dev/mapper/thin0 "$MNT" -t ext4 -o discard
    cmp_ok "write 8 MiB" dd if=/dev/zero of="$MNT/f" bs=1M count=8 conv=fsync status=none
    cmp_pool_status pool
    a0=$P_DUSED
    cmp_ok "rm + sync" sh -c "rm $MNT/f && sync"
    cmp_pool_status pool
    cmp_check "ext4 -o discard: rm gives blocks back ($a0 -> $P_DUSED)" test "$P_DUSED" -le $((a0 - 120))
    cmp_umount "$MNT"
    cmp_mount /dev/mapper/thin0 "$MNT" -t ext4
    cmp_ok "write 8 MiB" dd if=/dev/zero of="$MNT/g" bs=1M count=8 conv=fsync status=none
    cmp_ok "rm + sync" sh -c "rm $MNT/g && sync"
    cmp_pool_status pool
    a0=$P_DUSED
    cmp_ok "fstrim" fstrim "$MNT"
    cmp_pool_status pool
    cmp_check "fstrim gives blocks back ($a0 -> $P_DUSED)" test "$P_DUSED" -le $((a0 - 120))
    cmp_umount "$MNT"
    cmp_ok "fsck.ext4 -fn" fsck.ext4 -fn /dev/mapper/thin0
    cmp_remove thin0
    cmp_teardown pool "$META"
}

cmp_run scenario
cmp_finish
