#!/bin/bash
# timeout: 300
# host-prepare: printf '%s\n' "${DMTHIN_IMPLS:-}" > "$OUTDIR/dmthin-impls"
# Metadata corrupted where the pool only looks on first use, compared
# between implementations (tests/lib/compare.sh; DMTHIN_IMPLS selects
# them): a pool with two thins (metadata from thin_restore, the same
# layout on both) is torn down, one byte of thin 1's mapping
# tree root is flipped on the metadata device (its checksum no longer
# matches), the pool is activated again:
# - the pool and both thins activate (nothing reads that node yet);
# - thin 2 reads back intact;
# - reads and writes of thin 1 fail with EIO and the validator's log
#   lines, no panic, no hang;
# - `delete 1` succeeds with upstream's "btree delete failed" line (the
#   unreadable tree stays allocated);
# - status lines, kernel lines, errnos, thin_check's verdicts before and
#   after, all identical to upstream's.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/compare.sh"
set -u
cmp_init "$@"

PAT="$CMP_INPUTS/pattern"
cmp_random 32 "$PAT" $((2 << 20)) || fail "pattern"

# flip_root <metadata dev> <dev id>: flips one byte of the device's
# mapping tree root node (found from the superblock and the top-level
# leaf); prints the node's block number.
flip_root() {
    blockdev --flushbufs "$1"
    python3 - "$1" "$2" <<'EOF'
import os, struct, sys
path, dev = sys.argv[1], int(sys.argv[2])
fd = os.open(path, os.O_RDWR)
def rd(b):
    return os.pread(fd, 4096, b * 4096)
top = struct.unpack_from("<Q", rd(0), 320)[0]
t = rd(top)
flags, = struct.unpack_from("<I", t, 4)
nr, mx = struct.unpack_from("<II", t, 16)
if flags != 2:
    sys.exit("top-level node %d is not a leaf (flags %d)" % (top, flags))
keys = [struct.unpack_from("<Q", t, 32 + 8 * i)[0] for i in range(nr)]
if dev not in keys:
    sys.exit("device %d not in the top-level leaf: %r" % (dev, keys))
root = struct.unpack_from("<Q", t, 32 + 8 * mx + 8 * keys.index(dev))[0]
n = bytearray(rd(root))
n[100] ^= 0x40
os.pwrite(fd, bytes(n), root * 4096)
os.fsync(fd)
os.close(fd)
print("device %d root node: block %d" % (dev, root))
EOF
    blockdev --flushbufs "$1"
}

scenario() {
    local META DATA DS
    cmp_loop META meta 8
    cmp_loop DATA data 32
    DS=$(( $(dev_sectors "$DATA") / 128 * 128 ))
    # The metadata from thin_restore, so that its layout (which block
    # holds thin 1's root) does not depend on when commits happened; the
    # data written where the mappings point.
    printf '%s\n' \
        "<superblock uuid=\"\" time=\"0\" transaction=\"0\" flags=\"0\" version=\"2\" data_block_size=\"128\" nr_data_blocks=\"$((DS / 128))\">" \
        '  <device dev_id="1" mapped_blocks="32" transaction="0" creation_time="0" snap_time="0">' \
        '    <range_mapping origin_begin="0" data_begin="0" length="32" time="0"/>' \
        '  </device>' \
        '  <device dev_id="2" mapped_blocks="8" transaction="0" creation_time="0" snap_time="0">' \
        '    <range_mapping origin_begin="0" data_begin="32" length="8" time="0"/>' \
        '  </device>' \
        '</superblock>' > "$CMP_DIR/meta.xml"
    cmp_ok "thin_restore" thin_restore -q -i "$CMP_DIR/meta.xml" -o "$META"
    cmp_ok "thin 1's data" dd if="$PAT" of="$DATA" bs=64k oflag=direct status=none
    cmp_ok "thin 2's data" dd if="$PAT" of="$DATA" bs=64k count=8 seek=32 oflag=direct status=none
    cmp_create pool "0 $DS thin-pool $META $DATA 128 0"
    cmp_create thin1 "0 16384 thin /dev/mapper/pool 1"
    cmp_create thin2 "0 16384 thin /dev/mapper/pool 2"
    cmp_ok "thin1 = pattern" cmp -n $((32 * 65536)) /dev/mapper/thin1 "$PAT"
    cmp_remove thin1
    cmp_remove thin2
    cmp_teardown pool "$META"

    cmp_must "corrupt thin 1's root node" flip_root "$META" 1
    cmp_step "thin_check sees it" thin_check "$META"
    cmp_check "thin_check fails" test "$CMP_RC" != 0
    cmp_create pool "0 $DS thin-pool $META $DATA 128 0"
    cmp_create thin1 "0 16384 thin /dev/mapper/pool 1"
    cmp_create thin2 "0 16384 thin /dev/mapper/pool 2"
    cmp_ok "thin2 intact" cmp -n $((8 * 65536)) /dev/mapper/thin2 "$PAT"
    cmp_fails "Input/output error" "read thin1" dd if=/dev/mapper/thin1 of=/dev/null bs=64k count=1 iflag=direct status=none
    cmp_fails "Input/output error" "write thin1 (mapped block)" dd if="$PAT" of=/dev/mapper/thin1 bs=64k count=1 oflag=direct status=none
    cmp_fails "Input/output error" "write thin1 (unmapped block)" dd if="$PAT" of=/dev/mapper/thin1 bs=64k count=1 seek=100 oflag=direct status=none
    cmp_pool_status pool
    cmp_thin_status thin2
    cmp_remove thin1
    cmp_ok "delete 1" dms message pool 0 "delete 1"
    cmp_pool_status pool
    cmp_ok "thin2 still intact" cmp -n $((8 * 65536)) /dev/mapper/thin2 "$PAT"
    cmp_remove thin2
    cmp_remove pool
    cmp_step "thin_check after the delete" thin_check "$META"
}

cmp_run scenario
cmp_finish
