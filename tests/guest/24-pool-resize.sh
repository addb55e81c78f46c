#!/bin/bash
# timeout: 300
# host-prepare: printf '%s\n' "${DMTHIN_IMPLS:-}" > "$OUTDIR/dmthin-impls"
# Online resize, compared between implementations (tests/lib/compare.sh;
# DMTHIN_IMPLS selects them), while a writer runs on a thin:
# - the metadata device grows (loop file grown, `losetup -c`, the pool
#   reloaded with the same line, suspend, resume): "growing the metadata
#   device" and the new total in the status;
# - the data device grows (pool reloaded with the new length): the
#   status' total data blocks grow;
# - a shorter pool table is refused at resume (EINVAL, upstream's
#   "too small" line) and the pool keeps working with the old table;
# - the writer's data read back, later writes work; thin_check and
#   thin_dump at teardown.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/compare.sh"
set -u
cmp_init "$@"

PAT="$CMP_INPUTS/pattern"
cmp_random 24 "$PAT" $((8 << 20)) || fail "pattern"

scenario() {
    local DS DS2 writer rc
    cmp_loop META meta 2
    cmp_loop DATA data 16
    DS=$(dev_sectors "$DATA")
    cmp_create pool "0 $DS thin-pool $META $DATA 128 0"
    cmp_must "create_thin 0" dms message pool 0 "create_thin 0"
    cmp_create thin "0 32768 thin /dev/mapper/pool 0"
    cmp_pool_status pool
    cmp_check "2 MiB metadata: 512 blocks ($P_MTOTAL)" test "$P_MTOTAL" = 512

    dd if="$PAT" of=/dev/mapper/thin bs=64k count=128 oflag=direct status=none 2> "$CMP_DIR/dd.err" &
    writer=$!
    cmp_ok "grow the metadata file" truncate -s 4M "$DMTHIN_SCRATCH/meta.img"
    cmp_ok "losetup -c meta" losetup -c "$META"
    cmp_ok "reload the pool (same line)" dms reload pool --table "0 $DS thin-pool $META $DATA 128 0"
    cmp_ok "suspend the pool" dms suspend pool
    cmp_ok "resume the pool" dms resume pool
    cmp_pool_status pool
    cmp_check "metadata total now 1024 ($P_MTOTAL)" test "$P_MTOTAL" = 1024

    cmp_ok "grow the data file" truncate -s 24M "$DMTHIN_SCRATCH/data.img"
    cmp_ok "losetup -c data" losetup -c "$DATA"
    DS2=$(dev_sectors "$DATA")
    cmp_ok "reload the pool (longer)" dms reload pool --table "0 $DS2 thin-pool $META $DATA 128 0"
    cmp_ok "suspend the pool" dms suspend pool
    cmp_ok "resume the pool" dms resume pool
    cmp_pool_status pool
    cmp_check "data total now 384 ($P_DTOTAL)" test "$P_DTOTAL" = 384

    cmp_ok "reload the pool (shorter)" dms reload pool --table "0 $DS thin-pool $META $DATA 128 0"
    cmp_ok "suspend the pool" dms suspend pool
    cmp_step "resume with a shorter table" dms resume pool
    cmp_check "refused (rc $CMP_RC)" test "$CMP_RC" != 0
    cmp_ok "reload the pool (longer again)" dms reload pool --table "0 $DS2 thin-pool $META $DATA 128 0"
    cmp_ok "resume the pool" dms resume pool
    rc=0; wait "$writer" || rc=$?
    cmp_rec "writer exit status $rc: $(cat "$CMP_DIR/dd.err")"
    cmp_check "the writer finished (rc $rc)" test "$rc" = 0
    cmp_op ok cmp /dev/mapper/thin 0 $((128 * 65536)) "$PAT" 0
    cmp_op ok write /dev/mapper/thin $((200 * 65536)) $((16 * 65536)) "$PAT" 0
    cmp_op ok cmp /dev/mapper/thin $((200 * 65536)) $((16 * 65536)) "$PAT" 0
    cmp_batch "the writer's data, and more writes"
    cmp_pool_status pool
    cmp_remove thin
    cmp_teardown pool "$META"
}

cmp_run scenario
cmp_finish
