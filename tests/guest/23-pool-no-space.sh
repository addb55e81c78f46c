#!/bin/bash
# timeout: 300
# host-prepare: printf '%s\n' "${DMTHIN_IMPLS:-}" > "$OUTDIR/dmthin-impls"
# Out of data space, compared between implementations
# (tests/lib/compare.sh; DMTHIN_IMPLS selects them).  The knob is the
# module parameter no_space_timeout: /sys/module/dm_thin_pool/parameters/
# for upstream, /sys/module/dm_thin_rs/parameters/ for ours.
# - queue_if_no_space with no_space_timeout=10: a writer that runs out of
#   space waits (status out_of_data_space), reads and overwrites of mapped
#   blocks carry on meanwhile, after the timeout the waiting write fails
#   with ENOSPC and the pool says "(error IO)"; the knob reads back;
# - no_space_timeout=0 (queue forever): a noflush suspend of the thin
#   returns at once (the waiting bios handed back to dm core), resume;
#   then the data device grows, the pool is
#   reloaded with the new length and resumed: the waiting writes complete,
#   nothing lost (the thin equals what was written), the pool is back in
#   write mode;
# - error_if_no_space: the write fails at once with ENOSPC, and the
#   events it raises (low water mark, mode change) wake a `dmsetup wait`
#   started before, the event number grows;
# - thin_check and thin_dump after each teardown.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/compare.sh"
set -u
cmp_init "$@"

PAT="$CMP_INPUTS/pattern"
cmp_random 23 "$PAT" $((4 << 20)) || fail "pattern"

# nst [value]: the loaded implementation's no_space_timeout (set it, or
# print it).
nst() {
    local f
    case "$(thin_loaded)" in
        upstream) f=/sys/module/dm_thin_pool/parameters/no_space_timeout ;;
        *) f=/sys/module/dm_thin_rs/parameters/no_space_timeout ;;
    esac
    if [ $# -gt 0 ]; then echo "$1" > "$f"; else cat "$f"; fi
}
# wait_writer: wait for the writer ($WRITER), print its errors.
wait_writer() { local rc=0; wait "$WRITER" || rc=$?; cat "$CMP_DIR/dd.err"; return "$rc"; }
# still_waiting: after 4 s, the writer ($WRITER) has not finished.
still_waiting() { sleep 4; kill -0 "$WRITER"; }
# wait_mode <word> <seconds>: until the pool status holds <word>.
wait_mode() {
    local i
    for ((i = 0; i < $2 * 5; i++)); do
        case " $(dms status pool) " in *" $1 "*) return 0 ;; esac
        sleep 0.2
    done
    echo "pool status never showed $1: $(dms status pool)"
    return 1
}

scenario() {
    local DS writer rc
    cmp_loop META meta 8
    cmp_loop DATA data 2
    cmp_step "no_space_timeout default" nst
    DS=$(dev_sectors "$DATA")

    # 1. Queue, then fail after the timeout.
    cmp_ok "no_space_timeout=10" nst 10
    cmp_step "no_space_timeout" nst
    cmp_create pool "0 $DS thin-pool $META $DATA 128 0"
    cmp_must "create_thin 0" dms message pool 0 "create_thin 0"
    cmp_create thin "0 16384 thin /dev/mapper/pool 0"
    dd if="$PAT" of=/dev/mapper/thin bs=64k count=40 oflag=direct status=none 2> "$CMP_DIR/dd.err" &
    writer=$!
    cmp_ok "out_of_data_space while the writer waits" wait_mode out_of_data_space 30
    cmp_pool_status pool
    cmp_op ok cmp /dev/mapper/thin 0 65536 "$PAT" 0
    cmp_op ok write /dev/mapper/thin 65536 4096 "$PAT" 65536
    cmp_op ok cmp /dev/mapper/thin 0 $((32 * 65536)) "$PAT" 0
    cmp_batch "mapped blocks are read and written while out of space"
    WRITER=$writer
    cmp_step "the writer ends" wait_writer
    rc=$CMP_RC
    cmp_check "the waiting write failed after the timeout (rc $rc)" test "$rc" != 0
    cmp_check "with ENOSPC" grep -q "No space left on device" "$CMP_DIR/dd.err"
    cmp_pool_status pool
    cmp_remove thin
    cmp_teardown pool "$META"

    # 2. Queue forever; growing the data device releases the writes.
    cmp_ok "no_space_timeout=0" nst 0
    zero_dev "$META" 1
    cmp_create pool "0 $DS thin-pool $META $DATA 128 0"
    cmp_must "create_thin 0" dms message pool 0 "create_thin 0"
    cmp_create thin "0 16384 thin /dev/mapper/pool 0"
    dd if="$PAT" of=/dev/mapper/thin bs=64k count=40 oflag=direct status=none 2> "$CMP_DIR/dd.err" &
    writer=$!
    cmp_ok "out_of_data_space while the writer waits" wait_mode out_of_data_space 30
    WRITER=$writer
    cmp_ok "still waiting after 4 s" still_waiting
    # A noflush suspend of the thin hands the waiting bios back to dm
    # core (upstream's requeue mode) instead of waiting for space; they
    # are issued again at resume and wait again.
    cmp_ok "noflush suspend of the thin" timeout 20 env DM_DISABLE_UDEV=1 dmsetup suspend --noflush --noudevsync thin
    cmp_ok "thin suspended" sh -c "dmsetup info -c --noheadings -o suspended thin"
    cmp_ok "resume the thin" dms resume thin
    cmp_ok "still waiting after the resume" still_waiting
    cmp_ok "grow the data file" truncate -s 4M "$DMTHIN_SCRATCH/data.img"
    cmp_ok "losetup -c" losetup -c "$DATA"
    DS=$(dev_sectors "$DATA")
    cmp_ok "reload the pool" dms reload pool --table "0 $DS thin-pool $META $DATA 128 0"
    cmp_ok "suspend the pool" dms suspend pool
    cmp_ok "resume the pool" dms resume pool
    rc=0; wait "$writer" || rc=$?
    cmp_rec "writer exit status $rc: $(cat "$CMP_DIR/dd.err")"
    cmp_check "the waiting writes completed (rc $rc)" test "$rc" = 0
    cmp_op ok cmp /dev/mapper/thin 0 $((40 * 65536)) "$PAT" 0
    cmp_batch "nothing lost"
    cmp_pool_status pool
    cmp_check "write mode again ($P_MODE)" test "$P_MODE" = rw
    cmp_remove thin
    cmp_teardown pool "$META"

    # 3. error_if_no_space: fails at once.
    cmp_ok "shrink the data file" truncate -s 2M "$DMTHIN_SCRATCH/data.img"
    cmp_ok "losetup -c" losetup -c "$DATA"
    DS=$(dev_sectors "$DATA")
    zero_dev "$META" 1
    cmp_create pool "0 $DS thin-pool $META $DATA 128 0 1 error_if_no_space"
    cmp_must "create_thin 0" dms message pool 0 "create_thin 0"
    cmp_create thin "0 16384 thin /dev/mapper/pool 0"
    cmp_step "event number before" cmp_events pool
    local ev0=${CMP_OUT[0]:-x} waiter
    dms wait pool "$ev0" > "$CMP_DIR/wait.out" 2>&1 &
    waiter=$!
    cmp_step "write past the end of the space" dd if="$PAT" of=/dev/mapper/thin bs=64k count=40 oflag=direct status=none
    cmp_check "fails (rc $CMP_RC)" test "$CMP_RC" != 0
    WAIT_PID=$waiter
    cmp_ok "dmsetup wait returned (events raised)" wait_bounded 20
    cmp_step "event number after" cmp_events pool
    cmp_check "events were raised (${CMP_OUT[0]:-x} > $ev0)" test "${CMP_OUT[0]:-0}" -gt "$ev0"
    cmp_pool_status pool
    cmp_remove thin
    cmp_teardown pool "$META"
    cmp_ok "no_space_timeout=60" nst 60
}

cmp_run scenario
cmp_finish
