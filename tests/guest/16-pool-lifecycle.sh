#!/bin/bash
# timeout: 300
# host-prepare: printf '%s\n' "${DMTHIN_IMPLS:-}" > "$OUTDIR/dmthin-impls"
# Pool and thin lifecycle, compared between implementations
# (tests/lib/compare.sh; DMTHIN_IMPLS selects them):
# - `dmsetup reload` + `resume` of the pool with the same line under an
#   active thin keeps the pool: the thin's data and status stay, it takes
#   new writes; a reload with a new low water mark and features
#   (error_if_no_space, no_discard_passdown) shows in table and status; a
#   reload with another block size keeps the pool's (table shows it);
# - a second pool on the same metadata device is refused ("metadata device
#   already in use by a pool"); removing a pool under an active thin is
#   refused (EBUSY);
# - thin tables refused: pool device not a pool (linear), unknown device
#   id, pool suspended, pool loaded but never resumed;
# - a suspended pool: `dmsetup status --noflush` and plain status, its
#   info, the active thin's status; after resume a thin activates;
# - after teardown thin_check and thin_dump.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/compare.sh"
set -u
cmp_init "$@"

PAT="$CMP_INPUTS/pattern"
cmp_random 16 "$PAT" $((1 << 20)) || fail "pattern"

scenario() {
    local DS OS LS P1
    cmp_loop META meta 8
    cmp_loop DATA data 32
    cmp_loop META2 meta2 8
    cmp_loop OTHER other 16
    cmp_loop LINB linbase 8
    DS=$(dev_sectors "$DATA"); OS=$(dev_sectors "$OTHER"); LS=$(dev_sectors "$LINB")
    P1="0 $DS thin-pool $META $DATA 128 0"
    cmp_create pool "$P1"
    cmp_must "create_thin 0" dms message pool 0 "create_thin 0"
    cmp_must "create_thin 1" dms message pool 0 "create_thin 1"
    cmp_create thin "0 8192 thin /dev/mapper/pool 0"
    cmp_ok "write 256 KiB" dd if="$PAT" of=/dev/mapper/thin bs=256k count=1 oflag=direct status=none
    cmp_pool_status pool
    cmp_thin_status thin

    # Reload with the same line under the active thin.
    cmp_ok "reload pool, same line" dms reload pool --table "$P1"
    cmp_step "pool table after reload, before resume" dms table pool
    cmp_step "pool inactive table" dms table --inactive pool
    cmp_ok "resume pool" dms resume pool
    cmp_pool_status pool
    cmp_thin_status thin
    cmp_check "thin mapped 512 sectors after reload (got $T_MAPPED)" test "$T_MAPPED" = 512
    cmp_ok "write after reload" dd if="$PAT" of=/dev/mapper/thin bs=256k count=1 skip=1 seek=1 oflag=direct status=none
    cmp_check "thin reads back after reload" cmp -n $((512 * 1024)) "$PAT" /dev/mapper/thin

    # Reload with a new low water mark and features.
    cmp_ok "reload pool, lwm 16, 2 features" dms reload pool --table "0 $DS thin-pool $META $DATA 128 16 2 error_if_no_space no_discard_passdown"
    cmp_ok "resume pool" dms resume pool
    cmp_step "pool table" dms table pool
    cmp_pool_status pool
    cmp_check "status shows error_if_no_space ('$P_LINE')" eval '[[ "$P_LINE" == *" error_if_no_space "* ]]'
    cmp_check "status shows no_discard_passdown ('$P_LINE')" eval '[[ "$P_LINE" == *" no_discard_passdown "* ]]'
    # Reload with another block size: the pool keeps its own.
    cmp_ok "reload pool, block size 256" dms reload pool --table "0 $DS thin-pool $META $DATA 256 0"
    cmp_ok "resume pool" dms resume pool
    cmp_step "pool table" dms table pool
    cmp_pool_status pool
    cmp_thin_status thin
    cmp_check "thin still reads back" cmp -n $((512 * 1024)) "$PAT" /dev/mapper/thin

    # Refusals.
    cmp_fails "metadata device already in use by a pool" "second pool on the same metadata device" \
        dm_create pool2 "0 $OS thin-pool $META $OTHER 128 0"
    cmp_create lin "0 $LS linear $LINB 0"
    cmp_fails "Couldn't find pool object" "thin on a linear device" dm_create bad "0 8192 thin /dev/mapper/lin 0"
    cmp_fails "Couldn't open thin internal device" "thin with an unknown id" dm_create bad "0 8192 thin /dev/mapper/pool 5"
    cmp_fails "Device or resource busy" "remove the pool under an active thin" dms remove pool

    # Suspended pool.
    cmp_ok "suspend pool" dms suspend pool
    cmp_step "pool info while suspended" dms info -c --noheadings -o name,attr,open pool
    cmp_pool_status pool --noflush
    cmp_pool_status pool
    cmp_thin_status thin
    cmp_fails "Unable to activate thin device while pool is suspended" "thin while the pool is suspended" \
        dm_create thin1 "0 8192 thin /dev/mapper/pool 1"
    cmp_ok "resume pool" dms resume pool
    cmp_create thin1 "0 8192 thin /dev/mapper/pool 1"
    cmp_ok "write thin1" dd if="$PAT" of=/dev/mapper/thin1 bs=64k count=2 oflag=direct status=none
    cmp_thin_status thin1

    # A pool loaded but never resumed counts as suspended (its metadata
    # made by an earlier pool on the same devices, holding thin 0).
    cmp_create pool2 "0 $OS thin-pool $META2 $OTHER 128 0"
    cmp_ok "create_thin 0 on pool2" dms message pool2 0 "create_thin 0"
    cmp_teardown pool2 "$META2" none
    cmp_ok "create pool2 without a table" dms create pool2 --notable
    _DMDEVS+=(pool2)
    cmp_ok "load pool2 (not resumed)" dms load pool2 --table "0 $OS thin-pool $META2 $OTHER 128 0"
    # (A device without a live table gets no /dev/mapper node: by number.)
    cmp_step "pool2 numbers" dms info -c --noheadings -o major,minor --separator : pool2
    cmp_fails "Unable to activate thin device while pool is suspended" "thin on a never-resumed pool" \
        dm_create bad "0 8192 thin ${CMP_OUT[0]:-none} 0"
    cmp_teardown pool2 "$META2" none

    cmp_pool_status pool
    cmp_remove thin1
    cmp_remove thin
    cmp_remove lin
    cmp_teardown pool "$META"
}

cmp_run scenario
cmp_finish
