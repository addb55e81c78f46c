#!/bin/bash
# timeout: 300
# host-prepare: printf '%s\n' "${DMTHIN_IMPLS:-}" > "$OUTDIR/dmthin-impls"
# Table reloads under I/O, compared between implementations
# (tests/lib/compare.sh; DMTHIN_IMPLS selects them).  While a writer runs
# on a thin: the pool table reloaded with other features
# (skip_block_zeroing error_if_no_space no_discard_passdown, then
# skip_block_zeroing alone, then the defaults) and resumed each time, the
# thin's table reloaded with a larger size and resumed, a suspend/resume
# of the thin.  The writer never fails, the contents equal the pattern, the
# table lines and status words follow the features, the grown thin takes
# writes beyond its old end; thin_check and thin_dump after teardown.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/compare.sh"
set -u
cmp_init "$@"

PAT="$CMP_INPUTS/pattern"
cmp_random 31 "$PAT" $((8 << 20)) || fail "pattern"
B=$((128 * 512))

# features <pool>: the words of its status after the mode (discard
# passdown, no-space policy, needs_check, metadata low water mark).
features() { local a; read -r -a a < <(dms status "$1"); echo "${a[*]:8}"; }

scenario() {
    local SM SD SDS w f
    cmp_loop SM smeta 8
    cmp_loop SD sdata 32
    zero_dev "$SM" 1
    SDS=$(( $(dev_sectors "$SD") / 128 * 128 ))
    cmp_create side "0 $SDS thin-pool $SM $SD 128 0"
    cmp_must "side create_thin 0" dms message side 0 "create_thin 0"
    cmp_create s0 "0 16384 thin /dev/mapper/side 0"
    cmp_ok "write s0 blocks 0-31" dd if="$PAT" of=/dev/mapper/s0 bs=64k count=32 oflag=direct status=none

    dd if="$PAT" of=/dev/mapper/s0 bs=64k skip=32 seek=32 count=96 oflag=direct status=none & w=$!
    for f in "3 skip_block_zeroing error_if_no_space no_discard_passdown" "1 skip_block_zeroing" ""; do
        cmp_ok "reload side${f:+ ($f)}" dms reload side --table "0 $SDS thin-pool $SM $SD 128 0${f:+ $f}"
        cmp_ok "suspend side" dms suspend side
        cmp_ok "resume side" dms resume side
        cmp_ok "side table" dms table side
        cmp_step "side status words" features side
    done
    cmp_ok "reload s0 larger" dms reload s0 --table "0 32768 thin /dev/mapper/side 0"
    cmp_ok "suspend s0" dms suspend s0
    cmp_ok "resume s0" dms resume s0
    cmp_ok "suspend s0 again" dms suspend s0
    cmp_ok "resume s0 again" dms resume s0
    cmp_check "writer during the reloads" wait "$w"
    cmp_ok "s0 size" blockdev --getsz /dev/mapper/s0
    cmp_ok "s0 blocks 0-127 = pattern" cmp -n $((128 * B)) /dev/mapper/s0 "$PAT"
    cmp_ok "write s0 beyond the old end" dd if="$PAT" of=/dev/mapper/s0 bs=64k count=8 seek=200 oflag=direct status=none
    cmp_ok "s0 blocks 200-207 = pattern" cmp -n $((8 * B)) -i $((200 * B)):0 /dev/mapper/s0 "$PAT"
    cmp_pool_status side
    cmp_thin_status s0
    cmp_remove s0
    cmp_teardown side "$SM"
}

cmp_run scenario
cmp_finish
