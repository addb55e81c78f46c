#!/bin/bash
# timeout: 400
# host-prepare: printf '%s\n' "${DMTHIN_IMPLS:-}" > "$OUTDIR/dmthin-impls"
# Snapshots and copy-on-write, compared between implementations
# (tests/lib/compare.sh; DMTHIN_IMPLS selects them), with zeroing on and
# with skip_block_zeroing.  Every write is also applied to a reference
# file per device (a snapshot copies its origin's reference), and every
# device must equal its reference after each phase:
# - create_snap of an active origin (suspended around the message, as
#   lvm2 does) and of an inactive device, snapshots of snapshots (depth 3);
# - writes that break sharing: partial (a copy of the whole block),
#   whole-block (no copy), spanning two blocks, to unshared and to
#   unprovisioned blocks, on the origin and on snapshots at every depth;
# - four concurrent writes to one shared block of one device: one copy
#   (used data blocks grow by exactly one);
# - delete of an open device refused (EBUSY); delete of a closed snapshot
#   frees the blocks no other device uses (used data blocks drop);
# - after every phase the pool's used data blocks; at teardown thin_check
#   and thin_dump, whose distinct data blocks must equal the used count
#   (thin_check verifies every block's reference count against the
#   mappings).
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/compare.sh"
set -u
cmp_init "$@"

PAT="$CMP_INPUTS/pattern"
PAT_LEN=$((8 << 20))
cmp_random 17 "$PAT" "$PAT_LEN" || fail "pattern"

B=$((128 * 512))          # data block: 128 sectors
T=$((32 * B))             # every thin: 32 blocks (2 MiB)
TS=$((T / 512))

SRC=0
# wr <thin id> <offset> <length>: queue a write of the next pattern bytes
# to thin<id> and apply it to that device's reference file.
wr() {
    local id="$1" off="$2" len="$3"
    [ $((SRC + len)) -le "$PAT_LEN" ] || SRC=0
    cmp_op ok write "/dev/mapper/thin$id" "$off" "$len" "$PAT" "$SRC"
    dd if="$PAT" of="$REF/$id" bs="$len" count=1 skip="$SRC" seek="$off" \
        iflag=skip_bytes oflag=seek_bytes conv=notrunc status=none || cmp__failed "reference write $id"
    SRC=$((SRC + len + 4096))
}
# verify <id...>: queue a read-back of each device against its reference.
verify() {
    local id
    for id in "$@"; do cmp_op ok cmp "/dev/mapper/thin$id" 0 "$T" "$REF/$id" 0; done
}
# snap <new id> <origin id> <active?>: create_snap (origin suspended
# around it when active), then the snapshot's reference.
snap() {
    if [ "$3" = active ]; then cmp_op ok suspend "thin$2"; fi
    cmp_op ok message pool 0 "create_snap $1 $2"
    if [ "$3" = active ]; then cmp_op ok resume "thin$2"; fi
    cp "$REF/$2" "$REF/$1"
}
# used <label>: the pool's used data blocks, into USED (a status commits).
used() {
    cmp_pool_status pool
    USED=$P_DUSED
    log "$1: used data blocks $USED"
}

scenario() {
    local feat tag id before REF PLEN
    cmp_loop META meta 8
    cmp_loop DATA data 16
    PLEN=$(( $(dev_sectors "$DATA") / 128 * 128 ))
    for feat in "" "1 skip_block_zeroing"; do
        tag="${feat:+skip_block_zeroing}"; tag="${tag:-zeroing}"
        cmp_rec "######## $tag"
        REF="$CMP_DIR/ref-$tag"; mkdir -p "$REF"
        zero_dev "$META" 1
        cmp_create pool "0 $PLEN thin-pool $META $DATA 128 0${feat:+ $feat}"
        cmp_must "create_thin 0" dms message pool 0 "create_thin 0"
        truncate -s "$T" "$REF/0"
        cmp_create thin0 "0 $TS thin /dev/mapper/pool 0"

        # The origin: blocks 0-15 written whole, 20 partly, the rest holes.
        wr 0 0 $((16 * B)); wr 0 $((20 * B + 4096)) 8192
        snap 1 0 active
        cmp_op ok create thin1 "0 $TS thin /dev/mapper/pool 1"
        _DMDEVS+=(thin1)
        verify 0 1
        cmp_batch "$tag: origin written, snapshot 1 of the active origin"
        used "$tag: after snapshot 1"
        before=$USED
        cmp_check "$tag: a snapshot allocates no data ($before = 17)" test "$before" = 17

        # Breaking sharing, both sides.
        wr 0 8192 4096                                  # partial: copy block 0
        wr 1 $((2 * B)) "$B"                            # whole block 2: no copy
        wr 1 $((3 * B + 512)) 1024                      # partial: copy block 3
        wr 1 $((5 * B - 4096)) 8192                     # spans blocks 4 and 5
        wr 1 $((24 * B)) 4096                           # a hole: provision
        wr 0 $((20 * B)) 4096                           # shared partial block 20
        wr 0 8192 4096                                  # block 0 again: unshared now
        verify 0 1
        cmp_batch "$tag: writes breaking sharing"
        used "$tag: after breaking sharing"
        cmp_check "$tag: 7 blocks more after breaking sharing ($before -> $USED)" test "$USED" = $((before + 7))

        # Snapshots of snapshots, and of an inactive device.
        snap 2 1 active
        cmp_op ok create thin2 "0 $TS thin /dev/mapper/pool 2"
        _DMDEVS+=(thin2)
        wr 2 $((3 * B)) 4096                             # shared by 1 and 2
        wr 1 $((3 * B + 8192)) 4096                      # the other side of it
        wr 2 $((6 * B)) "$B"                             # shared by 0, 1, 2
        snap 3 2 inactive                                # 2 is active but untouched
        cmp_op ok create thin3 "0 $TS thin /dev/mapper/pool 3"
        _DMDEVS+=(thin3)
        wr 3 $((7 * B + 100 * 512)) 512
        wr 2 $((7 * B)) 4096
        wr 0 $((7 * B + 4096)) 4096
        wr 3 $((25 * B)) 4096                            # a hole of 3
        verify 0 1 2 3
        cmp_batch "$tag: snapshots of snapshots"
        used "$tag: after snapshots of snapshots"

        # Four concurrent writes into one shared block of thin3: one copy.
        before=$USED
        local pids=() i
        for i in 0 1 2 3; do
            dd if="$PAT" of=/dev/mapper/thin3 bs=4096 count=1 skip=$((1000 + i)) seek=$((8 * 16 + i * 3)) \
                oflag=direct status=none &
            pids+=($!)
            dd if="$PAT" of="$REF/3" bs=4096 count=1 skip=$((1000 + i)) seek=$((8 * 16 + i * 3)) \
                conv=notrunc status=none
        done
        for i in "${pids[@]}"; do wait "$i" || cmp__failed "$tag: concurrent write to thin3 failed"; done
        verify 0 1 2 3
        cmp_batch "$tag: after concurrent writes to one shared block"
        used "$tag: after concurrent writes"
        cmp_check "$tag: concurrent writes to one shared block copy it once ($before -> $USED)" test "$USED" = $((before + 1))

        # Delete: refused while open, frees what nobody else uses.
        cmp_op fail:EBUSY message pool 0 "delete 2"
        cmp_batch "$tag: delete of an open device"
        cmp_remove thin2
        before=$USED
        cmp_must "delete 2" dms message pool 0 "delete 2"
        used "$tag: after deleting 2"
        cmp_check "$tag: deleting 2 frees its own blocks ($before -> $USED)" test "$USED" -lt "$before"
        verify 0 1 3
        cmp_batch "$tag: the others intact after the delete"
        cmp_remove thin3
        cmp_remove thin1
        cmp_remove thin0
        cmp_teardown pool "$META"
        cmp_check "$tag: used data blocks $USED = distinct data blocks in thin_dump $D_DISTINCT" \
            test "$USED" = "$D_DISTINCT"

        # Rebuilt: every device still equals its reference.
        cmp_create pool "0 $PLEN thin-pool $META $DATA 128 0${feat:+ $feat}"
        for id in 0 1 3; do
            cmp_op ok create "thin$id" "0 $TS thin /dev/mapper/pool $id"
        done
        verify 0 1 3
        for id in 0 1 3; do cmp_op ok remove "thin$id"; done
        cmp_batch "$tag: after a rebuild"
        cmp_teardown pool "$META" none
    done
}

cmp_run scenario
cmp_finish
