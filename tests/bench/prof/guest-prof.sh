#!/bin/bash
# Guest side of scripts/profile-guest.sh: one stack (ours or upstream),
# one fio workload on a thin of a fresh pool (64 KiB blocks, zeroing on,
# loop devices on the guest's tmpfs), then the guest's /proc/kallsyms
# into $OUTDIR so that the host can name the addresses the tbprof plugin
# counted.  The files prof-start and prof-stop it creates in $OUTDIR
# around the workload (after set-up and prefill) tell the plugin which
# window to count.  Stack "linear" is dm-linear on the same data device
# (the ceiling; read and write workloads on written blocks only).
# Arguments: <ours|upstream|linear> <workload> <seconds>; workloads:
# prov (4k random writes, each to a new block, QD32: the replay log
# prov.log the host wrote), randread, randwrite (4k on provisioned
# blocks, QD32), fsync (the same with an fsync after each write, QD1),
# discard (blkdiscard of a provisioned thin, repeated), exec (100
# `dmsetup status` commands: what starting a process costs).
. "$(dirname "$0")/../../lib/common.sh"
set -u
STACK=$1 WL=$2 SECS=$3
scratch_init
make_loop META meta 64 || fail "metadata loop device"
make_loop DATA data 768 || fail "data loop device"
DS=$(dev_sectors "$DATA")
THIN_SECT=$((256 * 2048))
case "$STACK" in
    ours) load_ours || fail "insmod" ;;
    upstream) load_upstream || fail "modprobe" ;;
    linear) ;;
    *) fail "stack: ours, upstream or linear" ;;
esac
if [ "$STACK" = linear ]; then
    dm_create thin "0 $THIN_SECT linear $DATA 0" || fail "linear"
else
    zero_dev "$META" 1
    dm_create pool "0 $DS thin-pool $META $DATA 128 0" || fail "pool"
    dms message pool 0 "create_thin 0" || fail "create_thin"
    dm_create thin "0 $THIN_SECT thin /dev/mapper/pool 0" || fail "thin"
fi
T=/dev/mapper/thin
F=(fio --name=w --filename=$T --direct=1 --ioengine=libaio --output-format=json --output="$OUTDIR/fio.json")
prefill() { "${F[@]}" --output=/dev/null --rw=write --bs=1M --iodepth=8 || fail "prefill"; }
case "$WL" in
    randread|randwrite) prefill ;;
esac
# mark: create the file, then wait until the plugin has taken its snapshot
mark() {
    local i
    touch "$OUTDIR/$1"
    for ((i = 0; i < 3000; i++)); do
        [ -e "$OUTDIR/$1-seen" ] && return 0
        sleep 0.01
    done
    fail "the profiler did not see $1"
}
sync
mark prof-start
case "$WL" in
    prov) "${F[@]}" --read_iolog="$OUTDIR/prov.log" --replay_no_stall=1 --rw=randwrite --bs=4k --iodepth=32 --runtime="$SECS" ;;
    randread) "${F[@]}" --rw=randread --bs=4k --iodepth=32 --time_based=1 --runtime="$SECS" ;;
    randwrite) "${F[@]}" --rw=randwrite --bs=4k --iodepth=32 --time_based=1 --runtime="$SECS" ;;
    fsync) "${F[@]}" --read_iolog="$OUTDIR/fsync.log" --replay_no_stall=1 --rw=randwrite --bs=4k --iodepth=1 --runtime="$SECS" ;;
    discard)
        end=$((SECONDS + SECS))
        while [ $SECONDS -lt $end ]; do
            prefill; blkdiscard "$T" || fail "blkdiscard"
            echo '{"jobs": []}' > "$OUTDIR/fio.json"
        done ;;
    exec)
        # process start-up: `dmsetup status` of the thin, 100 times (the
        # cost of one command of a guest test; "per I/O" reads per command)
        for ((i = 0; i < 100; i++)); do dms status thin > /dev/null || fail "dmsetup status"; done
        echo '{"jobs": [{"read": {"total_ios": 100}}]}' > "$OUTDIR/fio.json" ;;
    *) fail "workload $WL" ;;
esac
rc=$?
mark prof-stop
[ "$STACK" = linear ] || dms status pool
cat /proc/kallsyms > "$OUTDIR/kallsyms.txt"
dm_remove thin
[ "$STACK" = linear ] || dm_remove pool
exit $rc
