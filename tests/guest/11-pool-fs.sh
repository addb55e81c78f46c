#!/bin/bash
# timeout: 240
# host-prepare: printf '%s\n' "${DMTHIN_IMPLS:-}" > "$OUTDIR/dmthin-impls"
# A filesystem on a thin device, compared between implementations
# (tests/lib/compare.sh; DMTHIN_IMPLS selects them): mkfs.ext4 on a 48 MiB
# thin (fixed UUID and hash seed, inode tables and journal written by mkfs,
# no discard), mount without -o discard, copy a tree of known files (large
# and small), umount, `fsck.ext4 -fn` clean; pool and thin status; teardown
# (thin_check); the counts agree with thin_dump (thin mapped blocks = the
# device's mappings in the dump = its mapped_blocks, pool used data blocks =
# distinct data blocks in the dump); rebuilt from the same devices, the
# files are identical and the status unchanged.  The dump is compared by
# virtual ranges only: which data block a mapping got depends on the order
# writeback reached the pool.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/compare.sh"
set -u
cmp_init "$@"

SRC="$CMP_INPUTS/files"
MNT="$CMP_INPUTS/mnt"
UUID=6d5e1c8a-0b1f-4b7e-9c1a-1234567890ab
SEED=6d5e1c8a-0b1f-4b7e-9c1a-1234567890ac
mkdir -p "$SRC/sub/deeper" "$SRC/many" || fail "mkdir"
cmp_random 11 "$SRC/big" $((1 << 20)) "$SRC/sub/mid" $((200 * 1024 + 123)) \
    "$SRC/sub/deeper/third" $((300 * 1024)) || fail "input files"
for i in $(seq 1 40); do printf 'small file %d\n%0*d\n' "$i" $((i * 97)) "$i" > "$SRC/many/f$i"; done
printf 'hello, thin world\n' > "$SRC/hello.txt"

BS=128
THIN=98304    # 48 MiB

scenario() {
    local DS thin_blocks before_pool before_thin d
    cmp_loop META meta 8
    cmp_loop DATA data 96
    DS=$(dev_sectors "$DATA")
    cmp_create pool "0 $DS thin-pool $META $DATA $BS 0"
    cmp_must "create_thin 0" dms message pool 0 "create_thin 0"
    cmp_create thin "0 $THIN thin /dev/mapper/pool 0"
    cmp_ok "mkfs.ext4" mkfs.ext4 -q -F -b 4096 -U "$UUID" \
        -E "lazy_itable_init=0,lazy_journal_init=0,nodiscard,hash_seed=$SEED" /dev/mapper/thin
    cmp_pool_status pool
    cmp_thin_status thin
    cmp_mount /dev/mapper/thin "$MNT" -t ext4
    # One CPU: ext4's small-file allocation uses per-CPU groups.
    cmp_ok "copy files" taskset -c 0 cp -a "$SRC/." "$MNT/"
    cmp_umount "$MNT"
    cmp_ok "fsck.ext4 -fn" fsck.ext4 -fn /dev/mapper/thin
    cmp_pool_status pool
    before_pool="$P_LINE"
    cmp_thin_status thin
    before_thin="$T_LINE"
    thin_blocks=$((T_MAPPED / BS))
    cmp_remove thin
    cmp_teardown pool "$META" virt
    cmp_check "one device in the dump (got $D_DEVICES)" test "$D_DEVICES" = 1
    read -r d d d <<< "${CMP_DUMP[0]}"
    cmp_check "dump: device 0 mapped_blocks=$thin_blocks mappings=$thin_blocks (thin status $before_thin; dump '${CMP_DUMP[0]}')" \
        test "$d" = "mapped_blocks=$thin_blocks mappings=$thin_blocks"
    cmp_check "pool used data blocks $P_DUSED = distinct data blocks in the dump $D_DISTINCT" test "$P_DUSED" = "$D_DISTINCT"
    cmp_check "some blocks mapped ($thin_blocks), fewer than the thin has" test "$thin_blocks" -gt 0 -a "$thin_blocks" -lt $((THIN / BS))

    cmp_create pool "0 $DS thin-pool $META $DATA $BS 0"
    cmp_create thin "0 $THIN thin /dev/mapper/pool 0"
    cmp_mount /dev/mapper/thin "$MNT" -t ext4 -o ro
    cmp_check "files identical after rebuild" diff -r -x lost+found "$SRC" "$MNT"
    cmp_umount "$MNT"
    cmp_pool_status pool
    cmp_check "pool status after rebuild '$P_LINE' = before '$before_pool'" test "$P_LINE" = "$before_pool"
    cmp_thin_status thin
    cmp_check "thin status after rebuild '$T_LINE' = before '$before_thin'" test "$T_LINE" = "$before_thin"
    cmp_remove thin
    cmp_teardown pool "$META" none
}

cmp_run scenario
cmp_finish
