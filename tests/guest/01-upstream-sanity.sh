#!/bin/bash
# timeout: 240
# Reference sanity: upstream's C dm-thin-pool registers thin-pool and thin
# v1.23.0; a pool and a thin device on loop devices hold data written to
# them (read back identical); the metadata passes thin_check after the pool
# is torn down; the module unloads.
. "$(dirname "$0")/../lib/common.sh"
set -u

unload_thin || fail "could not unload a dm-thin module left loaded"
assert "modprobe dm-thin-pool" load_upstream
assert "thin-pool v1.23.0 registered" test "$(target_version thin-pool)" = v1.23.0
assert "thin v1.23.0 registered" test "$(target_version thin)" = v1.23.0
log "targets: $(dms targets | tr '\n' ' ')"

make_loop META meta 16 || fail "make_loop meta"
make_loop DATA data 128 || fail "make_loop data"
data_sectors=$(dev_sectors "$DATA")
log "metadata $META, data $DATA ($data_sectors sectors)"

# 64 KiB data blocks, low water mark 0.
assert "create pool" dm_create sanity-pool "0 $data_sectors thin-pool $META $DATA 128 0"
assert "pool status" dms status sanity-pool
assert "create_thin 0" dms message sanity-pool 0 "create_thin 0"
# A thin device bigger than the pool's data device (overprovisioned).
assert "activate thin 0" dm_create sanity-thin "0 409600 thin /dev/mapper/sanity-pool 0"
[ -b /dev/mapper/sanity-thin ] || fail "/dev/mapper/sanity-thin node missing (udev-less node creation)"

# Write a pattern at two places (one unaligned to data blocks), read back.
head -c $((3 * 1024 * 1024)) /dev/urandom > "$DMTHIN_SCRATCH/pattern"
assert "write 1" dd if="$DMTHIN_SCRATCH/pattern" of=/dev/mapper/sanity-thin bs=1M oflag=direct status=none
assert "write 2" dd if="$DMTHIN_SCRATCH/pattern" of=/dev/mapper/sanity-thin bs=4k seek=12345 oflag=direct status=none
sync
assert "read back 1" cmp -n $((3 * 1024 * 1024)) "$DMTHIN_SCRATCH/pattern" /dev/mapper/sanity-thin
assert "read back 2" cmp -n $((3 * 1024 * 1024)) "$DMTHIN_SCRATCH/pattern" /dev/mapper/sanity-thin 0 $((12345 * 4096))
# Unprovisioned space reads as zeroes.
assert "unprovisioned reads zero" cmp -n 65536 /dev/zero /dev/mapper/sanity-thin 0 $((300000 * 512))
status=$(dms status sanity-pool)
log "pool status: $status"
# status: 0 <len> thin-pool <trans id> <used meta>/<total meta> <used data>/<total data> ...
used=$(echo "$status" | awk '{ split($6, a, "/"); print a[1] }')
# 3 MiB at 0 = 48 blocks, 3 MiB at 12345*4k (unaligned) = 49 blocks.
assert "97 data blocks used (got $used)" test "$used" = 97

assert "remove thin" dm_remove sanity-thin
assert "pool teardown + thin_check" pool_teardown sanity-pool "$META"
thin_dump "$META" > "$DMTHIN_SCRATCH/dump.xml" || fail "thin_dump"
grep -q '<device dev_id="0" mapped_blocks="97"' "$DMTHIN_SCRATCH/dump.xml" \
    || fail "thin_dump does not show device 0 with 97 mapped blocks: $(head -3 "$DMTHIN_SCRATCH/dump.xml")"

rm -f "$DMTHIN_SCRATCH/pattern" "$DMTHIN_SCRATCH/dump.xml"
cleanup_all
assert "rmmod dm_thin_pool" unload_thin
assert "targets gone after rmmod" test -z "$(target_version thin-pool)$(target_version thin)"
echo "upstream sanity OK"
