#!/bin/bash
# timeout: 150
# Provisioning (with zeroing) on a data device stack whose lower
# layer stops supporting WRITE_ZEROES after a table reload.  Data device
# = dm-linear `dlin` over dm-linear `lower` over a loop device; after the
# pool is up, `lower` is reloaded as dm-flakey ALWAYS UP (every bio passes
# through unchanged; flakey just has no WRITE_ZEROES support).  A 4 KiB
# write to an unprovisioned block of a thin must still succeed, on
# upstream (which zeroes through the pool device, which never advertises
# WRITE_ZEROES) and on ours (which does the same since this was found by
# the interop/power-cut work); thin_check after each teardown.
. "$(dirname "$0")/../lib/common.sh"
set -u
modprobe dm-flakey || fail "flakey"
rcs=""
for impl in upstream ours; do
    unload_thin; "load_$impl" || fail "load $impl"
    make_loop META meta 8; make_loop DATA data 32
    S=$(dev_sectors "$DATA")
    dm_create lower "0 $S linear $DATA 0"
    dm_create dlin "0 $S linear /dev/mapper/lower 0"
    dm_create pool "0 $S thin-pool $META /dev/mapper/dlin 128 0"
    dms message pool 0 "create_thin 0"
    dm_create thin "0 16384 thin /dev/mapper/pool 0"
    dd if=/dev/urandom of=/dev/mapper/thin bs=4k count=1 oflag=direct status=none; r1=$?
    dms reload lower --table "0 $S flakey $DATA 0 3600 0"
    dms suspend lower; dms resume lower
    dms table lower
    m=$(kmsg_mark)
    dd if=/dev/urandom of=/dev/mapper/thin bs=4k count=1 seek=100 oflag=direct status=none; r2=$?
    dd if=/dev/urandom of=/dev/mapper/thin bs=4k count=1 seek=200 oflag=direct status=none; r3=$?
    echo "[$impl] write before reload rc=$r1, first write after reload rc=$r2, second rc=$r3"
    kmsg_since "$m" | grep -v dmthin | sed "s/^/[$impl] kernel: /"
    dms status pool
    dm_remove thin; dm_remove pool
    thin_check "$META" || fail "[$impl] thin_check"
    cleanup_all
    rcs+="$impl:$r1/$r2/$r3 "
done
echo "results: $rcs"
[ "$rcs" = "upstream:0/0/0 ours:0/0/0 " ] || fail "writes that provision blocks must succeed on both (got $rcs)"
