#!/bin/bash
# Guest side of the guest benchmark (scripts/bench.sh --guest, which boots
# one guest through qemu/run-guest.sh with this script).  Not a test of
# the suite (tests/guest/ holds those).
#
# Reads its parameters from $OUTDIR/params (written by the host driver,
# scripts/bench-guest.sh) and the fio replay logs from $OUTDIR/iologs/.
# On two loop devices over a guest tmpfs (metadata, data) it runs every
# stack named in the per-repetition order lists (linear, upstream, ours),
# each built fresh on the same devices (blkdiscarded in between), runs the
# workloads with fio (JSON output into $OUTDIR/runs/rR-STACK/), records
# /proc/stat and the devices' /proc/diskstats lines around each fio run,
# the dm status lines at the end of the workloads, then tears the stack
# down and runs thin_check (thin stacks).  After that, on the thin stacks,
# the snapshot, discard and delete rows (run_extra) on one pool over the
# metadata thin_restore made on the host ($OUTDIR/delete-meta.img) and a
# sparse data device: a new thin prefilled, snapshotted and written 4k per
# block (copy-on-write), thin 3 discarded whole, thin 1 deleted while
# thin 2 runs fio (tests/bench/bench-ops.py times the discard ioctl and
# the delete message).  Any failed check (fio exit
# status, device counts, pool mode, thin_check, a kernel splat) ends the
# run with a non-zero exit; the host driver then fails.
. "$(dirname "$0")/../lib/common.sh"
set -u
[ -n "${OUTDIR:-}" ] || fail "OUTDIR not set (run through scripts/bench.sh --guest)"
. "$OUTDIR/params" || fail "no $OUTDIR/params"
IOLOGS="$OUTDIR/iologs"
RUNS="$OUTDIR/runs"
mkdir -p "$RUNS"
START=$SECONDS

# Layout of the virtual devices, the same names on every stack (the replay
# logs name them): rw (prefilled, then provisioned-block workloads), prov
# (4k writes, each to a new pool block), fsync (same with an fsync after
# each write), m0..m(MULTI_N-1) (concurrent fsync writers).  Sizes in
# sectors; on linear each is a separate range of the data device.
BS=$BLOCK_SECTORS
RW_SECT=$((SIZE_MB * 2048))
PROV_SECT=$((PROV_BLOCKS * BS))
FSYNC_SECT=$((FSYNC_BLOCKS * BS))
MULTI_SECT=$((MULTI_BLOCKS * BS))
NAMES=(rw prov fsync)
SECTS=($RW_SECT $PROV_SECT $FSYNC_SECT)
for ((i = 0; i < MULTI_N; i++)); do NAMES+=("m$i"); SECTS+=($MULTI_SECT); done
NDEV=${#NAMES[@]}

make_loop META meta "$META_MB" || fail "metadata loop device"
make_loop DATA data "$DATA_MB" || fail "data loop device"
# The snapshot/discard/delete pool's devices: metadata from the host's
# image (its used part, kept in the tmpfs), data sparse (written only by
# the snapshot row and the other thin's fio).
make_loop DMETA dmeta "$DM_META_MB" || fail "delete metadata loop device"
make_loop DDATA ddata $(( (DD_BLOCKS * BLOCK_SECTORS + 2047) / 2048 )) || fail "delete data loop device"
DM_HEAD="$DMTHIN_SCRATCH/delete-meta.head"
cp "$OUTDIR/delete-meta.img" "$DM_HEAD" || fail "copying the delete metadata"
for d in "$META" "$DATA" "$DMETA" "$DDATA"; do
    s=/sys/block/${d#/dev/}/queue/scheduler
    [ -w "$s" ] && echo none > "$s" 2>/dev/null
done
DS=$(dev_sectors "$DATA")
META_K=${META#/dev/}; DATA_K=${DATA#/dev/}
log "metadata $META (${META_MB} MiB), data $DATA (${DATA_MB} MiB, $DS sectors), block $BS sectors"
log "devices: ${NAMES[*]} (sectors ${SECTS[*]})"
{
    echo "kernel $(uname -r)"
    echo "fio $(fio --version)"
    echo "cpus $(nproc)"
    grep MemTotal /proc/meminfo
    echo "meta $META data $DATA"
} > "$OUTDIR/guest-info.txt"

# snap <file>: the aggregate cpu line of /proc/stat and the diskstats
# lines of the metadata and data devices (bash builtins only).
snap() {
    local l a b c rest
    {
        while read -r l; do
            case "$l" in "cpu "*) echo "$l"; break ;; esac
        done < /proc/stat
        while read -r a b c rest; do
            case "$c" in "$META_K"|"$DATA_K") echo "$a $b $c $rest" ;; esac
        done < /proc/diskstats
    } > "$1"
}

# The workloads: ONE fio run per stack (every fio start costs seconds
# under emulation), one stonewalled group per workload, in this order;
# job names are <workload>@<device>.  Before each group fio runs
# `cat /proc/stat /proc/diskstats` into <job>.prerun.txt (exec_prerun), so
# the host gets each workload's CPU and device-write figures from the
# snapshot before it and the next one (end.snap after the last).
# Time-based groups: runtime plus ramp; replayed groups (the logs hold the
# offsets: one write per new pool block) end at the end of their log or
# after the runtime, whichever comes first.
workloads() {
    local dir="$1" i rc=0 pre="--exec_prerun=cat /proc/stat /proc/diskstats"
    local tb=(--time_based=1 --runtime="${RUNTIME_MS}ms" --ramp_time="${RAMP_MS}ms")
    local rp=(--rw=randwrite --bs=4k --replay_no_stall=1 --runtime="${RUNTIME_MS}ms")
    local jobs=(
        --name=seqwrite-1M-new@rw --filename=/dev/mapper/rw "$pre"
            --rw=write --bs=1M --iodepth="$QD" --size="${SIZE_MB}M"
        --name=randread-4k@rw --stonewall --filename=/dev/mapper/rw "$pre"
            --rw=randread --bs=4k --iodepth="$QD" --norandommap=1 --randseed="$SEED" "${tb[@]}"
        --name=seqread-1M@rw --stonewall --filename=/dev/mapper/rw "$pre"
            --rw=read --bs=1M --iodepth="$QD" "${tb[@]}"
        --name=randwrite-4k@rw --stonewall --filename=/dev/mapper/rw "$pre"
            --rw=randwrite --bs=4k --iodepth="$QD" --norandommap=1 --randseed="$SEED" "${tb[@]}"
        --name=prov-randwrite-4k@prov --stonewall --filename=/dev/mapper/prov "$pre"
            --read_iolog="$IOLOGS/prov.log" --iodepth="$QD" "${rp[@]}"
        --name=fsync-randwrite-4k@fsync --stonewall --filename=/dev/mapper/fsync "$pre"
            --read_iolog="$IOLOGS/fsync.log" --iodepth=1 "${rp[@]}"
    )
    for ((i = 0; i < MULTI_N; i++)); do
        jobs+=(--name="multi-fsync-4k@m$i" --filename="/dev/mapper/m$i"
               --read_iolog="$IOLOGS/m$i.log" --iodepth=1 "${rp[@]}")
        [ "$i" = 0 ] && jobs+=(--stonewall "$pre")
    done
    ( cd "$dir" && exec fio --thread --ioengine=libaio --direct=1 --output-format=json \
        --output="$dir/fio.json" "${jobs[@]}" ) > "$dir/fio.err" 2>&1 || rc=$?
    snap "$dir/end.snap"
    [ "$rc" = 0 ] || { cat "$dir/fio.err" >&2; fail "fio on ${dir##*/} exited $rc"; }
    [ -s "$dir/fio.err" ] && sed "s/^/# fio: /" "$dir/fio.err"
    return 0
}

# warm_up: page in fio, dmsetup and thin_check (the guest reads them from
# the host through virtiofs: the first start of each costs seconds).
warm_up() {
    fio --name=warm --filename="$DATA" --rw=read --bs=1M --size=8M --ioengine=libaio \
        --direct=1 --output=/dev/null || fail "fio warm-up"
    thin_check -V > /dev/null; dms version > /dev/null; blkdiscard -V > /dev/null
    python3 "$TESTS_DIR/bench/bench-ops.py" > /dev/null 2>&1
}

# ms_to_s <ms>: "1.500" (for sleep).
ms_to_s() { printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)); }

# run_extra <rep> <stack>: the snapshot, discard and delete rows on a thin
# stack (its module loaded), all on one pool over the metadata restored on
# the host (thins 1, 2, 3) and a sparse data device: thin 4 (cow) created,
# prefilled, snapshotted (thin 5) and written; thin 3 (disc) discarded;
# thin 1 deleted while thin 2 (other) runs fio.  Files into
# runs/rR-STACK/: snap-fio.json, discard.txt, delete-fio.json,
# delete_clat.1.log (fio's per-I/O completion latencies, epoch ms),
# delete.txt, extra-status (checked by bench-report.py), extra-thin_check.
# Repetitions after EXTRA_REPS skip it.
run_extra() {
    local rep="$1" stack="$2" dir="$RUNS/r$1-$2" t0=$SECONDS rc=0 fpid i a n l
    local opts=(--thread --ioengine=libaio --direct=1 --output-format=json)
    log "rep $rep: $stack snapshot, discard, delete"
    # The restored metadata on a fresh device, a fresh sparse data device
    # (and the main workloads' data freed from the tmpfs).
    blkdiscard "$DATA" || fail "blkdiscard $DATA"
    blkdiscard "$DMETA" || fail "blkdiscard $DMETA"
    blkdiscard "$DDATA" || fail "blkdiscard $DDATA"
    dd if="$DM_HEAD" of="$DMETA" bs=1M oflag=direct conv=notrunc status=none || fail "writing the delete metadata"
    dms create dpool --table "0 $((DD_BLOCKS * BS)) thin-pool $DMETA $DDATA $BS 0 $POOL_FEATURES" \
        || fail "$stack: pool on the restored metadata"
    dms message dpool 0 "create_thin 4" || fail "$stack: create_thin 4"
    dms create --concise "cow,,,rw,0 $((COW_BLOCKS * BS)) thin /dev/mapper/dpool 4;disc,,,rw,0 $((DISC_MAP * BS)) thin /dev/mapper/dpool 3;other,,,rw,0 $((OTHER_BLOCKS * BS)) thin /dev/mapper/dpool 2" \
        || fail "$stack: creating cow, disc and other"
    # Snapshot: thin 4 prefilled by 1M writes, then create_snap with the
    # origin suspended around the message (lvm2's order), run by fio's
    # exec_prerun of the 4k group (one fio start for both groups).
    cat > "$dir/snap.sh" <<'EOF'
dmsetup --noudevsync suspend cow || exit 1
dmsetup --noudevsync message dpool 0 "create_snap 5 4"; rc=$?
dmsetup --noudevsync resume cow || exit 1
[ "$rc" = 0 ] && echo snap-ok
EOF
    ( cd "$dir" && exec fio "${opts[@]}" --output="$dir/snap-fio.json" \
        --name=cow-prefill@cow --filename=/dev/mapper/cow --rw=write --bs=1M --iodepth="$QD" --size="${COW_MB}M" \
        --name=cow-randwrite-4k@cow --stonewall --filename=/dev/mapper/cow --exec_prerun="sh $dir/snap.sh" \
            --read_iolog="$IOLOGS/cow.log" --iodepth="$QD" --rw=randwrite --bs=4k --replay_no_stall=1 \
            --runtime="${RUNTIME_MS}ms" ) > "$dir/snap-fio.err" 2>&1 || rc=$?
    [ "$rc" = 0 ] || { cat "$dir/snap-fio.err" >&2; fail "$stack: snapshot fio exited $rc"; }
    l=""; read -r l < "$dir/cow-randwrite-4k@cow.prerun.txt"
    [ "$l" = snap-ok ] || fail "$stack: create_snap in fio's prerun failed: $(<"$dir/cow-randwrite-4k@cow.prerun.txt")"
    echo "snapshot $((SECONDS - t0))" >> "$dir/times"
    # Discard of thin 3, whole, in one ioctl.
    python3 "$TESTS_DIR/bench/bench-ops.py" discard /dev/mapper/disc > "$dir/discard.txt" \
        || fail "$stack: discard of thin 3 failed"
    echo "discard $((SECONDS - t0))" >> "$dir/times"
    # Delete of thin 1 while the other thin (2) runs fio: started, then
    # once it completed I/O and ran DEL_IDLE_MS, the delete; DEL_IDLE_MS
    # later fio is stopped (SIGTERM: it writes its output and logs).
    n=""
    for i in /sys/block/dm-*/dm/name; do read -r l < "$i"; [ "$l" = other ] && n=${i%/dm/name}; done
    [ -n "$n" ] || fail "$stack: no sysfs entry of other"
    ( cd "$dir" && exec fio "${opts[@]}" --output="$dir/delete-fio.json" \
        --name=delete-other@other --filename=/dev/mapper/other --rw=randrw --bs=4k --iodepth="$DEL_QD" \
        --norandommap=1 --randseed="$SEED" --time_based=1 --runtime=3600 \
        --write_lat_log="$dir/delete" --log_unix_epoch=1 ) > "$dir/delete-fio.err" 2>&1 &
    fpid=$!
    a=0
    for ((i = 0; i < 300; i++)); do
        read -r a _ < "$n/stat"
        [ "${a:-0}" -gt 0 ] && break
        kill -0 "$fpid" 2>/dev/null || break
        sleep 0.2
    done
    [ "${a:-0}" -gt 0 ] || { kill "$fpid" 2>/dev/null; cat "$dir/delete-fio.err" >&2; fail "$stack: fio on other did no I/O"; }
    sleep "$(ms_to_s "$DEL_IDLE_MS")"
    rc=0
    python3 "$TESTS_DIR/bench/bench-ops.py" message dpool 0 "delete 1" > "$dir/delete.txt" || rc=$?
    sleep "$(ms_to_s "$DEL_IDLE_MS")"
    kill -TERM "$fpid" 2>/dev/null
    wait "$fpid"; echo "$?" > "$dir/delete-fio.rc"
    [ "$rc" = 0 ] || fail "$stack: delete 1 failed"
    [ -s "$dir/delete-fio.json" ] || { cat "$dir/delete-fio.err" >&2; fail "$stack: no fio output of the other thin"; }
    # One status for the checks of all three (bench-report.py): mapped
    # blocks of cow, disc (none left) and other, the pool's used blocks.
    dms status > "$dir/extra-status" || fail "$stack: dmsetup status"
    while read -r l; do case "$l" in dpool:*) check_pool_status "$l" ;; esac; done < "$dir/extra-status"
    dms remove cow disc other dpool || fail "$stack: removing cow, disc, other, dpool"
    thin_check "$DMETA" > "$dir/extra-thin_check" 2>&1 \
        || { cat "$dir/extra-thin_check" >&2; fail "$stack rep $rep: thin_check after the snapshot/discard/delete rows failed"; }
    # Their data out of the tmpfs before the next stack's main workloads
    # (at full size the copy-on-write rows leave 512 MiB in it, which the
    # next stack's zeroed blocks then may not find room beside).
    blkdiscard "$DMETA" || fail "blkdiscard $DMETA"
    blkdiscard "$DDATA" || fail "blkdiscard $DDATA"
    echo "extra $((SECONDS - t0))" >> "$dir/times"
    log "rep $rep: $stack snapshot, discard, delete done in $((SECONDS - t0)) s ($(<"$dir/delete.txt"))"
}

# count_dm: number of dm devices (dmsetup ls prints "No devices found" when none).
count_dm() { dms ls | grep -vc '^No devices found'; }

# check_pool_status <status line>: the pool must be in write mode, without
# needs_check (fields after the target name: transaction, meta used/total,
# data used/total, held root, mode, ...).
check_pool_status() {
    local -a f
    read -r -a f <<< "$1"
    [ "${f[3]}" = thin-pool ] || fail "pool status: $1"
    case " ${f[*]} " in *" rw "*) ;; *) fail "pool not in write mode: $1" ;; esac
    case " ${f[*]} " in *needs_check*|*" Fail "*) fail "pool status: $1" ;; esac
}

run_stack() {
    local rep="$1" stack="$2" dir conc="" off=0 i t0 n l pl=0
    dir="$RUNS/r$rep-$stack"
    mkdir -p "$dir"
    t0=$SECONDS
    log "rep $rep: $stack"
    # Fresh devices: discard (punches holes in the tmpfs files: reads
    # return zeros, so the metadata is blank, and the memory comes back).
    # (No dm device is left: the previous stack's teardown checked it.)
    blkdiscard "$DATA" || fail "blkdiscard $DATA"
    blkdiscard "$META" || fail "blkdiscard $META"
    case "$stack" in
        linear)
            for ((i = 0; i < NDEV; i++)); do
                conc+="${NAMES[$i]},,,rw,0 ${SECTS[$i]} linear $DATA $off;"
                off=$((off + SECTS[i]))
            done
            [ "$off" -le "$DS" ] || fail "linear layout needs $off sectors, data has $DS"
            ;;
        upstream|ours)
            if [ "$stack" = ours ]; then load_ours || fail "load_ours"
            else load_upstream || fail "load_upstream"; fi
            dms create pool --table "0 $DS thin-pool $META $DATA $BS 0 $POOL_FEATURES" \
                || fail "$stack: pool creation"
            for ((i = 0; i < NDEV; i++)); do
                dms message pool 0 "create_thin $i" || fail "$stack: create_thin $i"
                conc+="${NAMES[$i]},,,rw,0 ${SECTS[$i]} thin /dev/mapper/pool $i;"
            done
            ;;
        *) fail "unknown stack $stack" ;;
    esac
    dms create --concise "${conc%;}" || fail "$stack: creating ${NAMES[*]}"
    n=$(count_dm)
    [ "$stack" = linear ] && [ "$n" != "$NDEV" ] && fail "$stack: $n dm devices, expected $NDEV"
    [ "$stack" != linear ] && [ "$n" != $((NDEV + 1)) ] && fail "$stack: $n dm devices, expected $((NDEV + 1))"
    echo "setup $((SECONDS - t0))" > "$dir/times"
    workloads "$dir"
    echo "workloads $((SECONDS - t0))" >> "$dir/times"
    dms status > "$dir/status" || fail "$stack: dmsetup status"
    while read -r l; do case "$l" in Shmem:*) echo "$l" > "$dir/shmem" ;; esac; done < /proc/meminfo
    if [ "$stack" != linear ]; then
        while read -r l; do
            case "$l" in pool:*) check_pool_status "$l"; pl=1 ;; esac
        done < "$dir/status"
        [ "$pl" = 1 ] || fail "$stack: no pool status"
    fi
    dms remove "${NAMES[@]}" || fail "$stack: removing ${NAMES[*]}"
    if [ "$stack" != linear ]; then
        dms remove pool || fail "$stack: removing the pool"
        thin_check "$META" > "$dir/thin_check" 2>&1 \
            || { cat "$dir/thin_check" >&2; fail "$stack rep $rep: thin_check failed"; }
    fi
    [ "$(count_dm)" = 0 ] || fail "$stack: dm devices left after teardown: $(dms ls)"
    echo "total $((SECONDS - t0))" >> "$dir/times"
    log "rep $rep: $stack done in $((SECONDS - t0)) s"
    [ "$stack" = linear ] || [ "$rep" -gt "$EXTRA_REPS" ] || run_extra "$rep" "$stack"
}

kmark=$(kmsg_mark)
warm_up
rep=0
for order in $ORDERS; do
    rep=$((rep + 1))
    for stack in ${order//,/ }; do run_stack "$rep" "$stack"; done
done
unload_thin || fail "unload_thin"
dmesg_since=$(kmsg_since "$kmark")
if splats=$(find_splats <<< "$dmesg_since"); then
    echo "$splats" >&2
    fail "kernel splat during the benchmark"
fi
echo "$((SECONDS - START))" > "$OUTDIR/guest-seconds"
log "benchmark done in $((SECONDS - START)) s"
