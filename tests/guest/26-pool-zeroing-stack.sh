#!/bin/bash
# timeout: 150
# Provisioning (with zeroing) on a data device stack whose lower
# layer stops supporting WRITE_ZEROES after a table reload.  Data device
# = dm-linear `dlin` over dm-linear `lower` over a loop device; after the
# pool is up, `lower` is reloaded as dm-flakey ALWAYS UP (every bio passes
# through unchanged; flakey just has no WRITE_ZEROES support).  A 4 KiB
# write to an unprovisioned block of a thin must still succeed, on
# upstream (which zeroes through the pool device, which never advertises
# WRITE_ZEROES) and on ours (which zeroes with WRITE_ZEROES where the data
# device offers it: the failure is logged once and the block zeroed again
# with zero pages); each new block reads back as zeros around the data
# written (the data device is filled with 0xff first); thin_check after
# each teardown.
. "$(dirname "$0")/../lib/common.sh"
set -u
modprobe dm-flakey || fail "flakey"
rcs=""
for impl in upstream ours; do
    unload_thin; "load_$impl" || fail "load $impl"
    make_loop META meta 8; make_loop DATA data 32
    # Stale bytes everywhere: a new block must read back as zeros
    # around what was written to it.
    tr '\0' '\377' < /dev/zero | dd of="$DATA" bs=1M count=32 oflag=direct status=none
    S=$(dev_sectors "$DATA")
    dm_create lower "0 $S linear $DATA 0"
    dm_create dlin "0 $S linear /dev/mapper/lower 0"
    dm_create pool "0 $S thin-pool $META /dev/mapper/dlin 128 0"
    dms message pool 0 "create_thin 0"
    dm_create thin "0 16384 thin /dev/mapper/pool 0"
    head -c 4096 /dev/urandom > "$DMTHIN_SCRATCH/w0"
    head -c 4096 /dev/urandom > "$DMTHIN_SCRATCH/w100"
    head -c 4096 /dev/urandom > "$DMTHIN_SCRATCH/w200"
    dd if="$DMTHIN_SCRATCH/w0" of=/dev/mapper/thin bs=4k count=1 oflag=direct status=none; r1=$?
    dms reload lower --table "0 $S flakey $DATA 0 3600 0"
    dms suspend lower; dms resume lower
    dms table lower
    m=$(kmsg_mark)
    dd if="$DMTHIN_SCRATCH/w100" of=/dev/mapper/thin bs=4k count=1 seek=100 oflag=direct status=none; r2=$?
    dd if="$DMTHIN_SCRATCH/w200" of=/dev/mapper/thin bs=4k count=1 seek=200 oflag=direct status=none; r3=$?
    echo "[$impl] write before reload rc=$r1, first write after reload rc=$r2, second rc=$r3"
    log=$(kmsg_since "$m" | grep -v dmthin)
    [ -z "$log" ] || echo "$log" | sed "s/^/[$impl] kernel: /"
    # Each written 64 KiB block: zeros, the 4 KiB written, zeros.
    for w in 0 100 200; do
        blk=$((w / 16)) off=$((w % 16))
        { head -c $((off * 4096)) /dev/zero; cat "$DMTHIN_SCRATCH/w$w"
          head -c $(((15 - off) * 4096)) /dev/zero; } > "$DMTHIN_SCRATCH/want"
        dd if=/dev/mapper/thin bs=64k skip=$blk count=1 iflag=direct status=none > "$DMTHIN_SCRATCH/got"
        cmp -s "$DMTHIN_SCRATCH/want" "$DMTHIN_SCRATCH/got" \
            || fail "[$impl] the block written at 4k index $w does not read back as zeros around the data"
    done
    echo "[$impl] the three new blocks read back as zeros around their data"
    if [ "$impl" = ours ]; then
        # Ours zeroed the first block with WRITE_ZEROES, then found the
        # stack failing it: logged once, zeroed again with zero pages.
        echo "$log" | grep -q 'zeroing a new block with WRITE_ZEROES failed: zeroing with writes from now on' \
            || fail "[ours] the failed WRITE_ZEROES zeroing was not logged"
    fi
    dms status pool
    dm_remove thin; dm_remove pool
    thin_check "$META" || fail "[$impl] thin_check"
    cleanup_all
    rcs+="$impl:$r1/$r2/$r3 "
done
echo "results: $rcs"
[ "$rcs" = "upstream:0/0/0 ours:0/0/0 " ] || fail "writes that provision blocks must succeed on both (got $rcs)"
