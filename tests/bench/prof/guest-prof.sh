#!/bin/bash
# Guest side of scripts/profile-guest.sh: one stack (ours or upstream),
# one fio workload on a thin of a fresh pool (64 KiB blocks, zeroing on,
# loop devices on the guest's tmpfs), then the guest's /proc/kallsyms
# into $OUTDIR so that the host can name the addresses the tbprof plugin
# counted.  Arguments: <ours|upstream> <workload> <seconds>; workloads:
# prov (4k random writes to new blocks, QD32), randread, randwrite (4k
# on provisioned blocks, QD32), fsync (4k writes to new blocks, fsync
# after each), discard (blkdiscard of a provisioned thin, repeated).
. "$(dirname "$0")/../../lib/common.sh"
set -u
STACK=$1 WL=$2 SECS=$3
scratch_init
make_loop META meta 64 || fail "metadata loop device"
make_loop DATA data 768 || fail "data loop device"
case "$STACK" in
    ours) load_ours || fail "insmod" ;;
    upstream) load_upstream || fail "modprobe" ;;
    *) fail "stack: ours or upstream" ;;
esac
DS=$(dev_sectors "$DATA")
zero_dev "$META" 1
dm_create pool "0 $DS thin-pool $META $DATA 128 0" || fail "pool"
dms message pool 0 "create_thin 0" || fail "create_thin"
THIN_SECT=$((256 * 2048))
dm_create thin "0 $THIN_SECT thin /dev/mapper/pool 0" || fail "thin"
T=/dev/mapper/thin
F=(fio --name=w --filename=$T --direct=1 --ioengine=libaio --output=/dev/null)
prefill() { "${F[@]}" --rw=write --bs=1M --iodepth=8 || fail "prefill"; }
case "$WL" in
    prov) "${F[@]}" --rw=randwrite --bs=4k --iodepth=32 --time_based=1 --runtime="$SECS" --norandommap=1 --randrepeat=0 ;;
    randread) prefill; "${F[@]}" --rw=randread --bs=4k --iodepth=32 --time_based=1 --runtime="$SECS" ;;
    randwrite) prefill; "${F[@]}" --rw=randwrite --bs=4k --iodepth=32 --time_based=1 --runtime="$SECS" ;;
    fsync) "${F[@]}" --rw=randwrite --bs=4k --iodepth=1 --fsync=1 --time_based=1 --runtime="$SECS" ;;
    discard)
        end=$((SECONDS + SECS))
        while [ $SECONDS -lt $end ]; do
            prefill; blkdiscard "$T" || fail "blkdiscard"
        done ;;
    *) fail "workload $WL" ;;
esac
rc=$?
dms status pool
cat /proc/kallsyms > "$OUTDIR/kallsyms.txt"
dm_remove thin; dm_remove pool
exit $rc
