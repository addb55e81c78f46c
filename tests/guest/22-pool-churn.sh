#!/bin/bash
# timeout: 400
# host-prepare: printf '%s\n' "${DMTHIN_IMPLS:-}" > "$OUTDIR/dmthin-impls"
# Churn and races, compared between implementations
# (tests/lib/compare.sh; DMTHIN_IMPLS selects them):
# - eight rounds of: snapshot the origin (suspended around it), write to
#   the origin and to the new snapshot, discard a range of an older
#   snapshot, delete the oldest; after each round the used data blocks
#   equal what upstream has; at the end every device is deleted: no data
#   block stays used, thin_check is clean, and the used metadata blocks
#   are back to their level right after the pool was created (plus the
#   same slack as upstream's: the records are compared);
# - discards racing with writes: fio writes (verified) to the first half
#   of an origin and to the middle of its snapshot while another process
#   discards random blocks of the origin's second half (shared with the
#   snapshot); fio must pass, the snapshot's unwritten parts keep the
#   origin's old data, and every discarded-half block of the origin reads
#   either zeros or its old data.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/compare.sh"
set -u
cmp_init "$@"

PAT="$CMP_INPUTS/pattern"
cmp_random 22 "$PAT" $((4 << 20)) || fail "pattern"
B=$((128 * 512))
TS=8192                   # 4 MiB thins

scenario() {
    local DS i old m0 rc
    cmp_loop META meta 8
    cmp_loop DATA data 64
    DS=$(dev_sectors "$DATA")
    cmp_create pool "0 $DS thin-pool $META $DATA 128 0"
    cmp_pool_status pool
    m0=$P_MUSED
    cmp_must "create_thin 0" dms message pool 0 "create_thin 0"
    cmp_create thin0 "0 $TS thin /dev/mapper/pool 0"
    cmp_ok "fill the origin" dd if="$PAT" of=/dev/mapper/thin0 bs=1M oflag=direct status=none
    for i in 1 2 3 4 5 6 7 8; do
        cmp_op ok suspend thin0
        cmp_op ok message pool 0 "create_snap $i 0"
        cmp_op ok resume thin0
        cmp_op ok create "thin$i" "0 $TS thin /dev/mapper/pool $i"
        cmp_op ok write /dev/mapper/thin0 $(( (i * 5 % 64) * B + 4096 )) 8192 "$PAT" $((i * 8192))
        cmp_op ok write "/dev/mapper/thin$i" $(( (i * 7 % 64) * B )) "$B" "$PAT" $((i * B))
        cmp_op ok remove "thin$i"
        cmp_batch "round $i: snapshot and writes"
        if [ "$i" -ge 3 ]; then
            old=$((i - 2))
            cmp_create "thin$old" "0 $TS thin /dev/mapper/pool $old"
            cmp_ok "discard thin$old" blkdiscard -o $((8 * B)) -l $((16 * B)) "/dev/mapper/thin$old"
            cmp_remove "thin$old"
            cmp_must "delete $old" dms message pool 0 "delete $old"
        fi
        cmp_pool_status pool
    done
    cmp_remove thin0
    for i in 0 7 8; do cmp_must "delete $i" dms message pool 0 "delete $i"; done
    cmp_pool_status pool
    cmp_check "no data block used after deleting everything (used $P_DUSED)" test "$P_DUSED" = 0
    cmp_check "used metadata back near its start ($m0 -> $P_MUSED)" test "$P_MUSED" -le $((m0 + 8))

    # Discards racing with writes on an origin and its snapshot (btree
    # shapes depend on the interleaving: used metadata masked).
    CMP_MASK_META_USED=1
    cmp_must "create_thin 10" dms message pool 0 "create_thin 10"
    cmp_create thin10 "0 $TS thin /dev/mapper/pool 10"
    cmp_ok "fill thin10" dd if="$PAT" of=/dev/mapper/thin10 bs=1M oflag=direct status=none
    cmp_ok "suspend thin10" dms suspend thin10
    cmp_must "create_snap 11 10" dms message pool 0 "create_snap 11 10"
    cmp_ok "resume thin10" dms resume thin10
    cmp_create thin11 "0 $TS thin /dev/mapper/pool 11"
    rc=0
    rm -f "$CMP_DIR/stop"
    python3 - "$CMP_DIR/stop" /dev/mapper/thin10 > "$CMP_DIR/discarder.out" 2>&1 <<'EOF' &
import fcntl, os, random, struct, sys
stop, dev = sys.argv[1], sys.argv[2]
BLKDISCARD = 0x1277
r = random.Random(22)
fd = os.open(dev, os.O_WRONLY)
n = 0
while not os.path.exists(stop) or n < 8:
    b = r.randrange(32, 64)
    fcntl.ioctl(fd, BLKDISCARD, struct.pack("=QQ", b * 65536, 65536))
    n += 1
print("discards", n)
EOF
    local discarder=$!
    fio --ioengine=libaio --direct=1 --iodepth=4 --verify=crc32c --verify_fatal=1 \
        --randrepeat=1 --randseed=2222 --bs=16k --size=2m --rw=randwrite \
        --name=origin --filename=/dev/mapper/thin10 \
        --name=snap --filename=/dev/mapper/thin11 --offset=1m \
        > "$CMP_DIR/fio.out" 2>&1 || rc=$?
    touch "$CMP_DIR/stop"
    wait "$discarder" || cmp__failed "the discarder failed: $(tail -3 "$CMP_DIR/discarder.out")"
    log "discarder: $(cat "$CMP_DIR/discarder.out")"
    local n_ok
    n_ok=$(grep -cE '^(origin|snap): .*err= *0\b' "$CMP_DIR/fio.out")
    cmp_rec "fio: rc=$rc jobs with err=0: $n_ok"
    if [ "$rc" != 0 ] || [ "$n_ok" != 2 ]; then
        grep -iE 'err=|verify|error|crc' "$CMP_DIR/fio.out" | head -20
        cmp__failed "fio: writes on an origin and its snapshot while the origin is discarded"
    fi
    # The snapshot's unwritten parts still hold the origin's data; the
    # origin's discarded half holds, per block, zeros or its old data.
    cmp_op ok cmp /dev/mapper/thin11 0 $((1 << 20)) "$PAT" 0
    cmp_op ok cmp /dev/mapper/thin11 $((3 << 20)) $((1 << 20)) "$PAT" $((3 << 20))
    cmp_batch "the snapshot's unwritten parts"
    cmp_ok "the origin's discarded half: zeros or old data per block" python3 -c '
import sys
pat = open(sys.argv[1], "rb").read()
with open(sys.argv[2], "rb") as f:
    f.seek(2 << 20); got = f.read(2 << 20)
bad = [i for i in range(32) if got[i * 65536:(i + 1) * 65536] not in (bytes(65536), pat[(2 << 20) + i * 65536:(2 << 20) + (i + 1) * 65536])]
print("blocks neither zero nor old data:", bad)
sys.exit(1 if bad else 0)' "$PAT" /dev/mapper/thin10
    cmp_remove thin11
    cmp_remove thin10
    cmp_pool_status pool
    local used=$P_DUSED
    cmp_teardown pool "$META" virt
    cmp_check "used data blocks $used = distinct data blocks in thin_dump $D_DISTINCT" \
        test "$used" = "$D_DISTINCT"
}

cmp_run scenario
cmp_finish
