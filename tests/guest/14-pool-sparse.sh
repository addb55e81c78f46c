#!/bin/bash
# timeout: 240
# host-prepare: printf '%s\n' "${DMTHIN_IMPLS:-}" > "$OUTDIR/dmthin-impls"
# A 1 TiB thin (2147483648 sectors) on a 32 MiB data device, compared
# between implementations (tests/lib/compare.sh; DMTHIN_IMPLS selects
# them): written at its start, in the middle (straddling the 512 GiB
# point), and at its end (last whole block, last sector); each range read
# back, unprovisioned neighbours read zeros; a write past the end fails;
# thin status (mapped sectors, highest mapped sector) checked after each
# step, pool status compared; after teardown thin_check and thin_dump; the
# pool rebuilt, the data still there; the thin's table reloaded at 2 TiB
# keeps its mappings.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/compare.sh"
set -u
cmp_init "$@"

LEN=2147483648              # sectors: 1 TiB
TB=$((LEN * 512))           # bytes
BS=128                      # 64 KiB blocks
B=$((BS * 512))
NB=$((LEN / BS))            # 16777216 virtual blocks
PAT="$CMP_INPUTS/pattern"
cmp_random 14 "$PAT" $((1 << 20)) || fail "pattern"

# wr <label> <offset bytes> <length> <pattern offset>: direct write.
wr() { cmp_ok "write $1" dd if="$PAT" of=/dev/mapper/thin bs="$3" count=1 skip="$4" seek="$2" \
           iflag=skip_bytes oflag=seek_bytes,direct conv=notrunc status=none; }
# rd <label> <offset> <length> <pattern offset>: must read back.
rd() { cmp_check "read back $1" cmp -n "$3" "$PAT" /dev/mapper/thin "$4" "$2"; }
zr() { cmp_check "zeros $1" cmp -n "$3" /dev/zero /dev/mapper/thin 0 "$2"; }
# st <mapped blocks> <highest block>: thin status.
st() {
    cmp_thin_status thin
    cmp_check "thin status '$T_MAPPED $T_HIGHEST' = '$(($1 * BS)) $((($2 + 1) * BS - 1))'" \
        test "$T_MAPPED $T_HIGHEST" = "$(($1 * BS)) $((($2 + 1) * BS - 1))"
}

scenario() {
    local DS mid=$((TB / 2))
    cmp_loop META meta 8
    cmp_loop DATA data 32
    DS=$(dev_sectors "$DATA")
    cmp_create pool "0 $DS thin-pool $META $DATA $BS 0"
    cmp_must "create_thin 0" dms message pool 0 "create_thin 0"
    cmp_create thin "0 $LEN thin /dev/mapper/pool 0"
    cmp_step "blockdev --getsz thin" blockdev --getsz /dev/mapper/thin
    cmp_check "thin is $LEN sectors (got ${CMP_OUT[0]:-})" test "${CMP_OUT[0]:-}" = "$LEN"
    cmp_thin_status thin
    cmp_check "empty thin status '0 -' (got '$T_MAPPED $T_HIGHEST')" test "$T_MAPPED $T_HIGHEST" = "0 -"

    wr start 0 $((3 * B)) 0
    st 3 2
    wr middle $((mid - B / 2)) "$B" $((3 * B))
    st 5 $((NB / 2))
    wr "last block" $((TB - B)) "$B" $((4 * B))
    st 6 $((NB - 1))
    wr "last sector" $((TB - 512)) 512 $((5 * B))
    st 6 $((NB - 1))
    wr "just below the middle" $((mid - 2 * B)) 4096 $((6 * B))
    st 7 $((NB - 1))
    cmp_fails "No space left on device" "write past the end" dd if="$PAT" of=/dev/mapper/thin bs=4096 count=1 \
        seek="$TB" oflag=seek_bytes,direct conv=notrunc status=none
    cmp_pool_status pool
    cmp_check "7 used data blocks (got $P_DUSED)" test "$P_DUSED" = 7

    rd start 0 $((3 * B)) 0
    rd middle $((mid - B / 2)) "$B" $((3 * B))
    rd "last block" $((TB - B)) $((B - 512)) $((4 * B))
    rd "last sector" $((TB - 512)) 512 $((5 * B))
    rd "below the middle" $((mid - 2 * B)) 4096 $((6 * B))
    zr "after the start" $((3 * B)) "$B"
    zr "block before the middle write, past the 4 KiB" $((mid - 2 * B + 4096)) $((B - 4096))
    zr "after the middle" $((mid + B / 2)) "$B"
    zr "before the last block" $((TB - 2 * B)) "$B"
    cmp_md5 "data device through the pool device" /dev/mapper/pool
    cmp_remove thin
    cmp_teardown pool "$META"
    cmp_check "dump: 7 mappings (got $D_MAPPINGS)" test "$D_MAPPINGS" = 7

    cmp_create pool "0 $DS thin-pool $META $DATA $BS 0"
    cmp_create thin "0 $LEN thin /dev/mapper/pool 0"
    st 7 $((NB - 1))
    rd "middle after rebuild" $((mid - B / 2)) "$B" $((3 * B))
    rd "last sector after rebuild" $((TB - 512)) 512 $((5 * B))
    # A bigger table exposes more unprovisioned space, keeps the mappings.
    cmp_ok "reload thin at 2 TiB" dms reload thin --table "0 $((2 * LEN)) thin /dev/mapper/pool 0"
    cmp_ok "resume thin" dms resume thin
    cmp_step "thin table" dms table thin
    st 7 $((NB - 1))
    zr "past the old end" "$TB" "$B"
    wr "past the old end" $((TB + B)) 4096 0
    st 8 $((NB + 1))
    cmp_pool_status pool
    cmp_remove thin
    cmp_teardown pool "$META"
}

cmp_run scenario
cmp_finish
