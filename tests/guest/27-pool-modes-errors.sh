#!/bin/bash
# timeout: 600
# host-prepare: printf '%s\n' "${DMTHIN_IMPLS:-}" > "$OUTDIR/dmthin-impls"
# Pool modes and I/O errors, compared between implementations
# (tests/lib/compare.sh; DMTHIN_IMPLS selects them).  64 KiB blocks,
# small devices.
# 1. read_only: a pool reloaded with `read_only` says `ro`, writes to
#    unprovisioned blocks fail (EIO), mapped blocks are read and
#    overwritten, messages are refused (EOPNOTSUPP); reloaded without it
#    the pool is back in write mode and provisions again; a pool created
#    read_only on existing metadata comes up `ro`.
# 2. Metadata write errors: the metadata device sits under a dm-linear
#    that is swapped live for dm-flakey `error_writes`; a provisioning
#    write, then a commit (status): the commit fails, the transaction is
#    aborted, needs_check set, the pool goes read-only (the aborted
#    mapping is gone); the good path restored, the pool torn down (the
#    needs_check flag reaches the disk) and created again: read-only with
#    needs_check, a longer table does not grow the data device ("unable to
#    grow the data device until repaired"); after `thin_check --clear-needs-check-flag` it opens in
#    write mode.  Then the metadata path swapped for `error` (reads fail
#    too): the abort cannot reread the metadata, the pool fails (`Fail`,
#    every bio EIO); restored and recreated, the last commit is intact.
# 3. Metadata exhaustion and the metadata low water mark: on a 64-block
#    metadata device thins are created one by one; a `dmsetup wait`
#    started before is woken by the threshold event ("reached low water
#    mark for metadata device", pool still rw, event number recorded),
#    then more thins until the pool runs out of metadata space
#    (read-only, messages refused, unprovisioned writes EIO, mapped
#    blocks still written); the metadata device grown, the pool reloaded
#    and resumed: write mode again, thins and blocks provisioned.
# 4. Data device errors: the data device under a dm-linear swapped for
#    `error`: reads and writes of mapped blocks and provisioning writes
#    fail with EIO; the pool's mode afterwards; restored, everything
#    written before reads back.
# thin_check (and thin_dump) after every teardown.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/compare.sh"
set -u
cmp_init "$@"

PAT="$CMP_INPUTS/pattern"
ZERO="$CMP_INPUTS/zero"
cmp_random 27 "$PAT" $((1 << 20)) || fail "pattern"
head -c 65536 /dev/zero > "$ZERO" || fail "zero file"
B=65536    # block size in bytes (128 sectors)

# One process that creates thins one by one through DM ioctls until the
# pool's event number changes ("event") or a create_thin fails ("fail");
# prints every create_thin's errno and the event number after it.
FILL="$CMP_INPUTS/fill.py"
cat > "$FILL" <<'EOF' || fail "fill.py"
import errno, fcntl, os, struct, sys
HDR = struct.Struct("=3IIIIiII4xQ128s129s7s")
def iowr(nr): return (3 << 30) | (HDR.size << 16) | (0xfd << 8) | nr
DEV_STATUS, TARGET_MSG = iowr(7), iowr(14)
ctl = os.open("/dev/mapper/control", os.O_RDWR)
def dm(cmd, name, payload=b""):
    size = max(16384, HDR.size + len(payload))
    buf = bytearray(size)
    HDR.pack_into(buf, 0, 4, 0, 0, size, HDR.size, 0, 0, 0, 0, 0, name.encode(), b"", b"")
    buf[HDR.size:HDR.size + len(payload)] = payload
    fcntl.ioctl(ctl, cmd, buf, True)
    return HDR.unpack_from(buf, 0)
def events(name): return dm(DEV_STATUS, name)[8]
pool, first, until, limit = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
ev0 = events(pool)
print("events before: %d" % ev0)
for i in range(first, first + limit):
    try:
        dm(TARGET_MSG, pool, struct.pack("=Q", 0) + ("create_thin %d" % i).encode() + b"\0")
        rc = "0"
    except OSError as e:
        rc = errno.errorcode.get(e.errno, str(e.errno))
    ev = events(pool)
    print("create_thin %d: rc=%s events=%d" % (i, rc, ev))
    if until == "event" and ev != ev0: sys.exit(0)
    if until == "fail" and rc != "0": sys.exit(0)
print("limit of %d thins reached" % limit)
sys.exit(1)
EOF

# swap <name> <table>: load a new table into a dm device, suspend, resume.
swap() { dms reload "$1" --table "$2" && dms suspend "$1" && dms resume "$1"; }
# klog_has <text>: the last step's kernel lines hold <text>.
klog_has() { [[ "${CMP_KLOG[*]}" == *"$1"* ]]; }
# write_then_status <offset>: a 4 KiB O_DIRECT write to the thin, then
# the pool status without a commit (`--noflush`) until the mode leaves
# `rw` (at most 30 s), then printed once.  The commit that fails is
# thus always the worker's periodic one: a status that commits would
# race it, and upstream's status prints `Error` instead of `Fail` when
# its own commit is the one that switches the pool to fail mode.
write_then_status() {
    local i s
    dd if="$PAT" of=/dev/mapper/thin bs=4k count=1 seek=$(($1 / 4096)) oflag=direct conv=notrunc status=none || return
    for ((i = 0; i < 150; i++)); do
        s=$(dms status --noflush pool) || return
        case "$s" in *" rw "*) sleep 0.2 ;; *) break ;; esac
    done
    echo "$s"
}
# teardown_thin_check <pool> <metadata dev>: like cmp_teardown, but the
# thin_check outcome is only recorded (compared with upstream's), not
# required: after aborted provisioning upstream may leave leaked blocks.
teardown_recorded() {
    cmp_remove "$1" || return 1
    cmp_step "thin_check after removing $1" thin_check "$2"
    cmp_dump "$1-x$CMP_RC" "$2"
}

# (Python names errno 95 ENOTSUP, the same number as EOPNOTSUPP.)
# thin_status_after_abort: the thin's status after the aborted
# transaction.  A known, documented difference (README, "Where we deviate
# from upstream on purpose"): upstream's abort keeps the open thin's
# in-core details, so its mapped count still holds the aborted block (3
# blocks, 384 sectors) while the highest mapped block comes from the
# reverted btree (block 1); ours rereads the details from the committed
# metadata (2 blocks).  Checked per implementation, kept out of the record.
thin_status_after_abort() {
    local s want
    s=$(dms status thin) || return 1
    case "$CMP_IMPL" in
        upstream) want="0 8192 thin 384 255" ;;
        *) want="0 8192 thin 256 255" ;;
    esac
    [ "$s" = "$want" ] || { echo "thin status [$s], expected [$want]"; return 1; }
}
EIO=fail:EIO; EOPNOTSUPP=fail:ENOTSUP

scenario() {
    local DS MS ev0

    # ---- 1. read_only -------------------------------------------------
    cmp_loop META meta 2
    cmp_loop DATA data 4
    DS=$(dev_sectors "$DATA")
    cmp_create pool "0 $DS thin-pool $META $DATA 128 0"
    cmp_must "create_thin 0" dms message pool 0 "create_thin 0"
    cmp_create thin "0 8192 thin /dev/mapper/pool 0"
    cmp_op ok write /dev/mapper/thin 0 $((2 * B)) "$PAT" 0
    cmp_batch "two blocks written"
    cmp_ok "reload the pool read_only" swap pool "0 $DS thin-pool $META $DATA 128 0 1 read_only"
    cmp_pool_status pool
    cmp_check "read_only: ro ($P_MODE)" test "$P_MODE" = ro
    cmp_step "pool table" dms table pool
    cmp_op ok cmp /dev/mapper/thin 0 $((2 * B)) "$PAT" 0
    cmp_op ok cmp /dev/mapper/thin $((5 * B)) $B "$ZERO" 0
    cmp_op $EIO write /dev/mapper/thin $((5 * B)) 4096 "$PAT" $((5 * B))
    cmp_op $EIO write /dev/mapper/thin $((6 * B)) $B "$PAT" $((6 * B))
    cmp_op ok write /dev/mapper/thin $B 4096 "$PAT" $((8 * B))
    cmp_op ok cmp /dev/mapper/thin $B 4096 "$PAT" $((8 * B))
    cmp_op $EOPNOTSUPP message pool 0 "create_thin 1"
    cmp_op $EOPNOTSUPP message pool 0 "set_transaction_id 0 1"
    cmp_op - status thin
    cmp_batch "read_only: reads, overwrites, refused writes and messages"
    cmp_ok "reload the pool without read_only" swap pool "0 $DS thin-pool $META $DATA 128 0"
    cmp_pool_status pool
    cmp_check "write mode again ($P_MODE)" test "$P_MODE" = rw
    cmp_op ok write /dev/mapper/thin $((5 * B)) 4096 "$PAT" $((5 * B))
    cmp_op ok cmp /dev/mapper/thin $((5 * B)) 4096 "$PAT" $((5 * B))
    cmp_op ok message pool 0 "create_thin 1"
    cmp_op - status thin
    cmp_batch "write mode: provisioning and messages again"
    cmp_pool_status pool
    cmp_remove thin
    cmp_teardown pool "$META"
    cmp_create pool "0 $DS thin-pool $META $DATA 128 0 1 read_only"
    cmp_pool_status pool
    cmp_check "created read_only: ro ($P_MODE)" test "$P_MODE" = ro
    cmp_create thin "0 8192 thin /dev/mapper/pool 0"
    cmp_op ok cmp /dev/mapper/thin $((5 * B)) 4096 "$PAT" $((5 * B))
    cmp_op $EIO write /dev/mapper/thin $((7 * B)) 4096 "$PAT" 0
    cmp_op $EOPNOTSUPP message pool 0 "delete 1"
    cmp_batch "created read_only"
    cmp_remove thin
    cmp_teardown pool "$META"

    # ---- 2. metadata write errors, needs_check, then fail mode ---------
    cmp_loop META2 meta2 2
    MS=$(dev_sectors "$META2")
    cmp_create metal "0 $MS linear $META2 0"
    cmp_create pool "0 $DS thin-pool /dev/mapper/metal $DATA 128 0"
    cmp_must "create_thin 0" dms message pool 0 "create_thin 0"
    cmp_create thin "0 8192 thin /dev/mapper/pool 0"
    cmp_op ok write /dev/mapper/thin 0 $((2 * B)) "$PAT" 0
    cmp_batch "two blocks written"
    cmp_pool_status pool
    cmp_ok "metadata writes fail (flakey error_writes)" swap metal "0 $MS flakey $META2 0 0 1 1 error_writes"
    cmp_step "provisioning write, then a commit" write_then_status $((3 * B))
    cmp_check "the write succeeded (rc $CMP_RC)" test "$CMP_RC" = 0
    cmp_check "the commit failed" klog_has "metadata operation 'dm_pool_commit_metadata' failed"
    cmp_pool_status pool
    cmp_check "read-only ($P_MODE)" test "$P_MODE" = ro
    cmp_check "needs_check ($P_LINE)" eval '[[ "$P_LINE" == *" needs_check "* ]]'
    cmp_op ok cmp /dev/mapper/thin 0 $((2 * B)) "$PAT" 0
    cmp_op ok cmp /dev/mapper/thin $((3 * B)) $B "$ZERO" 0
    cmp_op $EIO write /dev/mapper/thin $((4 * B)) 4096 "$PAT" 0
    cmp_op ok write /dev/mapper/thin 0 4096 "$PAT" $((9 * B))
    cmp_op $EOPNOTSUPP message pool 0 "create_thin 1"
    cmp_batch "after the failed commit: the aborted block is gone, read-only"
    cmp_check "thin status after the abort (upstream's count keeps the aborted block)" thin_status_after_abort
    cmp_ok "metadata path restored" swap metal "0 $MS linear $META2 0"
    cmp_remove thin
    teardown_recorded pool /dev/mapper/metal
    cmp_create pool "0 $DS thin-pool /dev/mapper/metal $DATA 128 0"
    cmp_pool_status pool
    cmp_check "needs_check on disk: read-only ($P_MODE)" test "$P_MODE" = ro
    cmp_check "needs_check in the status" eval '[[ "$P_LINE" == *" needs_check "* ]]'
    cmp_op $EOPNOTSUPP message pool 0 "create_thin 1"
    cmp_batch "needs_check pool refuses messages"
    # Resizing is refused until repaired (upstream's line, size kept).
    cmp_ok "data device doubled" sh -c "truncate -s 8M '$DMTHIN_SCRATCH/data.img' && losetup -c '$DATA'"
    cmp_ok "reload the pool longer" swap pool "0 $((2 * DS)) thin-pool /dev/mapper/metal $DATA 128 0"
    cmp_pool_status pool
    cmp_check "needs_check: the data device is not grown ($P_DTOTAL)" test "$P_DTOTAL" = $((DS / 128))
    cmp_remove pool
    cmp_ok "thin_check --clear-needs-check-flag" thin_check --clear-needs-check-flag /dev/mapper/metal
    cmp_create pool "0 $DS thin-pool /dev/mapper/metal $DATA 128 0"
    cmp_pool_status pool
    cmp_check "repaired: write mode ($P_MODE)" test "$P_MODE" = rw
    cmp_create thin "0 8192 thin /dev/mapper/pool 0"
    cmp_op ok cmp /dev/mapper/thin 0 4096 "$PAT" $((9 * B))
    cmp_op ok cmp /dev/mapper/thin 4096 $((2 * B - 4096)) "$PAT" 4096
    cmp_op ok write /dev/mapper/thin $((4 * B)) $B "$PAT" $((4 * B))
    cmp_op ok message pool 0 "create_thin 1"
    cmp_batch "write mode after repair"
    cmp_pool_status pool
    # Now reads fail too: the abort cannot reread the superblock.
    cmp_ok "metadata path fails (error)" swap metal "0 $MS error"
    cmp_step "provisioning write, then a commit" write_then_status $((6 * B))
    cmp_pool_status pool
    cmp_check "fail mode ($P_LINE)" test "${P_LINE##* }" = Fail
    cmp_op $EIO cmp /dev/mapper/thin 0 4096 "$PAT" $((9 * B))
    cmp_op $EIO write /dev/mapper/thin $((4 * B)) 4096 "$PAT" 0
    cmp_op $EOPNOTSUPP message pool 0 "create_thin 2"
    cmp_op - status thin
    cmp_batch "fail mode: every bio fails"
    cmp_remove thin
    cmp_remove pool
    cmp_ok "metadata path restored" swap metal "0 $MS linear $META2 0"
    cmp_ok "thin_check" thin_check /dev/mapper/metal
    cmp_create pool "0 $DS thin-pool /dev/mapper/metal $DATA 128 0"
    cmp_pool_status pool
    cmp_create thin "0 8192 thin /dev/mapper/pool 0"
    cmp_op ok cmp /dev/mapper/thin 0 4096 "$PAT" $((9 * B))
    cmp_op ok cmp /dev/mapper/thin $((4 * B)) $B "$PAT" $((4 * B))
    cmp_op ok cmp /dev/mapper/thin $((6 * B)) $B "$ZERO" 0
    cmp_batch "the last commit intact"
    cmp_remove thin
    cmp_teardown pool /dev/mapper/metal
    cmp_remove metal

    # ---- 3. metadata low water mark and exhaustion ---------------------
    cmp_loop META3 meta3 1
    cmp_ok "64-block metadata device" truncate -s 256K "$DMTHIN_SCRATCH/meta3.img"
    cmp_ok "losetup -c" losetup -c "$META3"
    zero_dev "$DATA" 1
    cmp_create pool "0 $DS thin-pool $META3 $DATA 128 0"
    cmp_must "create_thin 0" dms message pool 0 "create_thin 0"
    cmp_create thin "0 8192 thin /dev/mapper/pool 0"
    cmp_op ok write /dev/mapper/thin 0 $((2 * B)) "$PAT" 0
    cmp_batch "two blocks written"
    cmp_pool_status pool
    cmp_step "event number before" cmp_events pool
    ev0=${CMP_OUT[0]:-x}
    dms wait pool "$ev0" > "$CMP_DIR/wait.out" 2>&1 &
    WAIT_PID=$!
    cmp_step "create thins until an event" python3 "$FILL" pool 1 event 200
    local l next=1
    for l in "${CMP_OUT[@]}"; do [[ "$l" == create_thin* ]] && next=$((next + 1)); done
    cmp_check "stopped at an event (rc $CMP_RC)" test "$CMP_RC" = 0
    cmp_check "the metadata low water mark was reached" klog_has "reached low water mark for metadata device"
    cmp_ok "dmsetup wait returned" wait_bounded 20
    cmp_step "event number after" cmp_events pool
    cmp_check "events raised (${CMP_OUT[0]:-x} > $ev0)" test "${CMP_OUT[0]:-0}" -gt "$ev0"
    cmp_pool_status pool
    cmp_check "still write mode ($P_MODE)" test "$P_MODE" = rw
    cmp_step "create thins until one fails" python3 "$FILL" pool "$next" fail 200
    cmp_check "stopped at a failure (rc $CMP_RC)" test "$CMP_RC" = 0
    cmp_check "out of metadata space" klog_has "No free metadata blocks"
    cmp_pool_status pool
    cmp_check "read-only ($P_MODE)" test "$P_MODE" = ro
    cmp_op ok cmp /dev/mapper/thin 0 $((2 * B)) "$PAT" 0
    cmp_op $EIO write /dev/mapper/thin $((3 * B)) 4096 "$PAT" 0
    cmp_op ok write /dev/mapper/thin 0 4096 "$PAT" $((9 * B))
    cmp_op $EOPNOTSUPP message pool 0 "create_thin 1000"
    cmp_batch "out of metadata space"
    cmp_ok "grow the metadata file" truncate -s 1M "$DMTHIN_SCRATCH/meta3.img"
    cmp_ok "losetup -c" losetup -c "$META3"
    cmp_ok "reload the pool" swap pool "0 $DS thin-pool $META3 $DATA 128 0"
    cmp_pool_status pool
    cmp_check "write mode again ($P_MODE)" test "$P_MODE" = rw
    cmp_op ok message pool 0 "create_thin 1000"
    cmp_op ok write /dev/mapper/thin $((3 * B)) $B "$PAT" $((3 * B))
    cmp_op ok cmp /dev/mapper/thin 0 4096 "$PAT" $((9 * B))
    cmp_op ok cmp /dev/mapper/thin $((3 * B)) $B "$PAT" $((3 * B))
    cmp_batch "metadata grown: provisioning and messages again"
    cmp_pool_status pool
    cmp_remove thin
    cmp_teardown pool "$META3"

    # ---- 4. data device errors ----------------------------------------
    cmp_loop META4 meta4 2
    cmp_create datal "0 $DS linear $DATA 0"
    cmp_create pool "0 $DS thin-pool $META4 /dev/mapper/datal 128 0"
    cmp_must "create_thin 0" dms message pool 0 "create_thin 0"
    cmp_create thin "0 8192 thin /dev/mapper/pool 0"
    cmp_op ok write /dev/mapper/thin 0 $((2 * B)) "$PAT" 0
    cmp_batch "two blocks written"
    cmp_pool_status pool
    cmp_ok "data path fails (error)" swap datal "0 $DS error"
    cmp_op $EIO cmp /dev/mapper/thin 0 4096 "$PAT" 0
    cmp_op $EIO write /dev/mapper/thin $B 4096 "$PAT" 0
    cmp_op $EIO write /dev/mapper/thin $((4 * B)) 4096 "$PAT" 0
    cmp_op $EIO write /dev/mapper/thin $((5 * B)) $B "$PAT" 0
    cmp_op ok cmp /dev/mapper/thin $((7 * B)) $B "$ZERO" 0
    cmp_batch "data device errors reach readers and writers"
    cmp_pool_status pool
    cmp_ok "data path restored" swap datal "0 $DS linear $DATA 0"
    cmp_op ok cmp /dev/mapper/thin 0 $((2 * B)) "$PAT" 0
    cmp_op ok write /dev/mapper/thin $((6 * B)) 4096 "$PAT" $((6 * B))
    cmp_op ok cmp /dev/mapper/thin $((6 * B)) 4096 "$PAT" $((6 * B))
    cmp_op - status thin
    cmp_batch "data path restored"
    cmp_pool_status pool
    cmp_remove thin
    teardown_recorded pool "$META4"
    cmp_remove datal
}

cmp_run scenario
cmp_finish
