#!/bin/bash
# timeout: 300
# host-prepare: printf '%s\n' "${DMTHIN_IMPLS:-}" > "$OUTDIR/dmthin-impls"
# WRITE_ZEROES on thins (beyond upstream, which has none: the block layer
# writes zero pages to upstream's thins instead), compared between
# implementations (tests/lib/compare.sh; DMTHIN_IMPLS selects them):
# - `blkdiscard -z` (BLKZEROOUT: WRITE_ZEROES with REQ_NOUNMAP, the range
#   must stay allocated) at unaligned offsets on a thin whose blocks are
#   shared with a snapshot, on a thin of its own and on a never-written
#   thin: contents (equal to reference files), pool and thin status lines
#   and thin_dump are recorded and must be identical to upstream's (ours
#   provisions and zeroes through WRITE_ZEROES what upstream gets as
#   writes of zeros);
# - `fallocate -p` (WRITE_ZEROES without REQ_NOUNMAP, no fallback): ours
#   unmaps the whole blocks (used data blocks drop by exactly those, the
#   data device's file gives the space back through passdown) and zeroes
#   the partial edges, a snapshot sharing the blocks keeps its data;
#   upstream refuses it (EOPNOTSUPP) and nothing changes;
# - the thin's write_zeroes_max_bytes: 1024 blocks on ours, 0 upstream;
#   with ignore_discard ours offers none either;
# - the same pool made read-only: `fallocate -p` cannot unmap and fails,
#   `blkdiscard -z` of mapped blocks still works (falls back to writes);
# - thin_check after each teardown, used blocks = distinct thin_dump blocks.
# The implementation-specific outcomes are checks (same wording in every
# run) rather than records.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/compare.sh"
set -u
cmp_init "$@"

B=$((128 * 512))          # data block: 128 sectors (64 KiB)
NB=64                     # thin: 64 blocks (4 MiB)
T=$((NB * B))
TS=$((T / 512))
PAT="$CMP_INPUTS/pattern"
cmp_random 28 "$PAT" "$T" || fail "pattern"

# zero_ref <id> <offset> <length>: the reference of thin<id> gets zeros.
zero_ref() {
    python3 -c '
import sys
f, off, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(f, "r+b") as h:
    h.seek(off); h.write(bytes(n))' "$REF/$1" "$2" "$3"
}
# zeroout <id> <offset> <length>: blkdiscard -z (recorded, must succeed).
zeroout() {
    local t0=$EPOCHREALTIME
    cmp_ok "blkdiscard -z thin$1 $2+$3" blkdiscard -z -o "$2" -l "$3" "/dev/mapper/thin$1"
    log "[$CMP_IMPL] blkdiscard -z thin$1 $2+$3: $(( ${EPOCHREALTIME/./} / 1000 - ${t0/./} / 1000 )) ms"
    zero_ref "$1" "$2" "$3"
}
# same <id...>: each device equals its reference.
same() {
    local id
    for id in "$@"; do cmp_op ok cmp "/dev/mapper/thin$id" 0 "$T" "$REF/$id" 0; done
    cmp_batch "thins $* equal their references"
}
# status_of <dm name>: its status line (not recorded).
status_of() { dms status "$1"; }
used_blocks() { local a; read -r -a a < <(status_of pool); echo "${a[5]%/*}"; }
mapped_blocks() { local a; read -r -a a < <(status_of "$1"); echo $(( a[3] / 128 )); }
# wz_max <dm name>: its queue's write_zeroes_max_bytes.
wz_max() {
    local d nm
    for d in /sys/block/dm-*; do
        read -r nm < "$d/dm/name" 2>/dev/null || continue
        [ "$nm" = "$1" ] && { cat "$d/queue/write_zeroes_max_bytes"; return; }
    done
    echo "no dm device $1" >&2
    return 1
}
alloc() { du -B1 "$DMTHIN_SCRATCH/data.img" | cut -f1; }

# expect_wz_limit <dm name> <ours: bytes>: upstream offers none.
expect_wz_limit() {
    local want=0 got
    [ "$CMP_IMPL" = ours ] && want="$2"
    got=$(wz_max "$1")
    [ "$got" = "$want" ] || { echo "write_zeroes_max_bytes of $1: $got, want $want"; return 1; }
}

# pool_wz_ok: ours offers the data device's WRITE_ZEROES, upstream none.
pool_wz_ok() {
    local p; p=$(wz_max pool)
    if [ "$CMP_IMPL" = ours ]; then [ "$p" -gt 0 ]; else [ "$p" = 0 ]; fi \
        || { echo "pool write_zeroes_max_bytes $p"; return 1; }
}
# distinct_blocks: distinct data blocks in thin_dump of the metadata (not
# recorded).
distinct_blocks() {
    local x d
    read -r x x x d < <(thin_dump "$META" | awk "$CMP_DUMP_AWK" | tail -n 1)
    echo "${d#*=}"
}

# punch <id> <offset> <length>: fallocate -p (not recorded: upstream
# refuses it).  Ours: the whole blocks inside are unmapped, the edges
# zeroed; sets PUNCH_RC.
punch() {
    PUNCH_RC=0
    fallocate -p -o "$2" -l "$3" "/dev/mapper/thin$1" 2> "$CMP_DIR/punch.err" || PUNCH_RC=$?
    [ "$CMP_IMPL" = ours ] && [ "$PUNCH_RC" = 0 ] && zero_ref "$1" "$2" "$3"
    return 0
}
# punch_as_expected <what>: ours succeeds, upstream fails with EOPNOTSUPP.
punch_as_expected() {
    if [ "$CMP_IMPL" = ours ]; then
        [ "$PUNCH_RC" = 0 ] || { echo "fallocate -p failed: $(cat "$CMP_DIR/punch.err")"; return 1; }
    else
        [ "$PUNCH_RC" != 0 ] && grep -Eq "unsupported|not supported" "$CMP_DIR/punch.err" \
            || { echo "upstream fallocate -p: rc $PUNCH_RC, $(cat "$CMP_DIR/punch.err")"; return 1; }
    fi
}
# expect <what> <got> <ours> <upstream>
expect() {
    local want="$4"
    [ "$CMP_IMPL" = ours ] && want="$3"
    [ "$2" = "$want" ] || { echo "$1: $2, want $want"; return 1; }
}

scenario() {
    local REF DS u0 m0 a0 a1
    REF="$CMP_DIR/ref"; mkdir -p "$REF"
    cmp_loop META meta 8
    cmp_loop DATA data 48
    DS=$(( $(dev_sectors "$DATA") / 128 * 128 ))
    zero_dev "$META" 1
    cmp_create pool "0 $DS thin-pool $META $DATA 128 0"
    cmp_check "pool passes WRITE_ZEROES on (ours only)" pool_wz_ok
    cmp_must "create_thin 0" dms message pool 0 "create_thin 0"
    cmp_create thin0 "0 $TS thin /dev/mapper/pool 0"
    cmp_check "thin write_zeroes_max_bytes" expect_wz_limit thin0 $((1024 * B))
    cmp_ok "fill thin0" dd if="$PAT" of=/dev/mapper/thin0 bs=1M oflag=direct status=none
    cp "$PAT" "$REF/0"

    # Shared with a snapshot: the zeroed range breaks sharing.
    cmp_ok "suspend thin0" dms suspend thin0
    cmp_must "create_snap 1 0" dms message pool 0 "create_snap 1 0"
    cmp_ok "resume thin0" dms resume thin0
    cmp_create thin1 "0 $TS thin /dev/mapper/pool 1"
    cp "$REF/0" "$REF/1"
    zeroout 0 $((B + 4096)) $((3 * B))          # partial 1 and 4, whole 2-3
    zeroout 0 $((10 * B)) $((2 * B))            # whole 10-11
    zeroout 0 $((20 * B + 512)) 1024            # inside block 20
    same 0 1
    cmp_pool_status pool
    cmp_thin_status thin0
    cmp_thin_status thin1

    # Unshared blocks, and a never-written thin.
    cmp_must "create_thin 2" dms message pool 0 "create_thin 2"
    cmp_create thin2 "0 $TS thin /dev/mapper/pool 2"
    : > "$REF/2"; truncate -s "$T" "$REF/2"
    zeroout 1 $((30 * B - 2048)) $((5 * B))     # partial 29 and 34
    zeroout 2 $((4 * B + 8192)) $((3 * B))      # unmapped: provisioned zeros
    zeroout 2 $((40 * B)) 4096                  # unmapped, part of a block
    same 0 1 2
    cmp_pool_status pool
    cmp_thin_status thin1
    cmp_thin_status thin2

    # Punching holes (WRITE_ZEROES that may unmap): ours only.
    u0=$(used_blocks); m0=$(mapped_blocks thin1); a0=$(alloc)
    punch 1 $((50 * B + 4096)) $((8 * B))       # partial 50 and 58, whole 51-57
    cmp_check "fallocate -p thin1 (shared blocks)" punch_as_expected
    cmp_check "thin1 lost exactly the 7 whole blocks" expect "thin1 mapped" "$(mapped_blocks thin1)" $((m0 - 7)) "$m0"
    cmp_check "shared blocks stay in use, the 2 edges are copied" \
        expect "used" "$(used_blocks)" $((u0 + 2)) "$u0"
    same 0 1 2
    cmp_remove thin1
    cmp_ok "delete 1" dms message pool 0 "delete 1"
    u0=$(used_blocks); m0=$(mapped_blocks thin0)
    punch 0 $((24 * B)) $((16 * B))             # whole 24-39
    punch 0 $((52 * B)) $((NB * B - 52 * B))    # 52 to the end
    cmp_check "fallocate -p thin0 (its own blocks)" punch_as_expected
    cmp_check "thin0 lost 16 + 12 blocks" expect "thin0 mapped" "$(mapped_blocks thin0)" $((m0 - 28)) "$m0"
    a1=$(alloc)
    log "[$CMP_IMPL] data file allocated $a0 -> $a1 bytes"
    cmp_check "their data blocks are free again" expect "used" "$(used_blocks)" $((u0 - 28)) "$u0"
    if [ "$CMP_IMPL" = ours ]; then
        cmp_check "passdown gave the data device's space back" test "$a1" -le $((a0 - 24 * B))
    else
        cmp_check "passdown gave the data device's space back" true
    fi
    same 0 2

    # Read-only: nothing can be unmapped; zeroing mapped blocks still works.
    cmp_ok "reload pool read_only" dms reload pool --table "0 $DS thin-pool $META $DATA 128 0 1 read_only"
    cmp_ok "suspend pool" dms suspend pool
    cmp_ok "resume pool" dms resume pool
    punch 2 $((4 * B)) $((4 * B))
    cmp_check "read-only: fallocate -p fails" test "$PUNCH_RC" != 0
    zeroout 2 $((4 * B)) $((2 * B))             # mapped by the zeroouts above
    same 0 2
    cmp_ok "reload pool writable" dms reload pool --table "0 $DS thin-pool $META $DATA 128 0"
    cmp_ok "suspend pool" dms suspend pool
    cmp_ok "resume pool" dms resume pool

    cmp_remove thin2
    cmp_remove thin0
    u0=$(used_blocks)
    cmp_teardown pool "$META" none
    cmp_check "used data blocks = distinct data blocks in thin_dump" test "$u0" = "$(distinct_blocks)"

    # ignore_discard: no WRITE_ZEROES on ours either.
    zero_dev "$META" 1
    cmp_create pool "0 $DS thin-pool $META $DATA 128 0 1 ignore_discard"
    cmp_must "create_thin 0" dms message pool 0 "create_thin 0"
    cmp_create thin0 "0 $TS thin /dev/mapper/pool 0"
    cmp_check "ignore_discard: thin write_zeroes_max_bytes 0" test "$(wz_max thin0)" = 0
    cmp_remove thin0
    cmp_teardown pool "$META"
}

cmp_run scenario
cmp_finish
