#!/bin/bash
# timeout: 300
# host-prepare: printf '%s\n' "${DMTHIN_IMPLS:-}" > "$OUTDIR/dmthin-impls"
# External origins, compared between implementations
# (tests/lib/compare.sh; DMTHIN_IMPLS selects them), with zeroing on and
# with skip_block_zeroing.  The origin is a 3 MiB + 32 KiB linear device
# (it ends in the middle of block 48 of 64 KiB blocks); the thin is 4 MiB:
# - unprovisioned reads come from the origin, zeros past its end (a read
#   straddling the end gets both);
# - writes copy the origin's block first (partial write), skip the copy
#   (whole-block write), copy what the origin has of the block where it
#   ends and zero the rest, or just provision past the end; every write
#   is applied to a reference file the thin must equal;
# - the origin itself is never written;
# - a discarded block reads the origin's data again;
# - status and table (the origin named), teardown, thin_check, thin_dump,
#   and a rebuild that reads the same.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/compare.sh"
set -u
cmp_init "$@"

PAT="$CMP_INPUTS/pattern"
cmp_random 25 "$PAT" $((8 << 20)) || fail "pattern"
B=65536
OSIZE=$((48 * B + 32768))
T=$((64 * B)); TS=$((T / 512))

scenario() {
    local feat tag REF DS omd5 w
    cmp_loop META meta 8
    cmp_loop DATA data 16
    cmp_loop OLOOP originloop 4
    cmp_ok "origin contents" dd if="$PAT" of="$OLOOP" bs=1M count=4 oflag=direct status=none
    cmp_create origin "0 $((OSIZE / 512)) linear $OLOOP 0"
    ORIG=/dev/mapper/origin
    cmp_md5 "origin" "$ORIG"
    omd5=$CMP_MD5
    DS=$(dev_sectors "$DATA")
    for feat in "" "1 skip_block_zeroing"; do
        tag="${feat#1 }"; tag="${tag:-zeroing}"
        cmp_rec "######## $tag"
        REF="$CMP_DIR/ref-$tag"
        head -c "$OSIZE" "$PAT" > "$REF"; truncate -s "$T" "$REF"
        zero_dev "$META" 1
        # The data device holds a pattern: a tail left unzeroed shows.
        cmp_ok "fill data" dd if="$PAT" of="$DATA" bs=1M count=16 iflag=count_bytes,skip_bytes skip=4096 oflag=direct status=none
        cmp_create pool "0 $DS thin-pool $META $DATA 128 0${feat:+ $feat}"
        cmp_must "create_thin 0" dms message pool 0 "create_thin 0"
        cmp_create thin "0 $TS thin /dev/mapper/pool 0 $ORIG"
        cmp_step "thin table" dms table thin
        cmp_op ok cmp /dev/mapper/thin 0 "$T" "$REF" 0
        cmp_op ok cmp /dev/mapper/thin $((48 * B)) "$B" "$REF" $((48 * B))
        cmp_op ok status pool
        cmp_batch "$tag: reads from the origin"
        cmp_batch_out 3; cmp_parse_pool "${B_OUT[0]:-}"
        cmp_check "$tag: reads allocate nothing (used $P_DUSED)" test "$P_DUSED" = 0
        # offset:length:pattern offset
        for w in $((2 * B + 4096)):8192:100000 $((5 * B)):$B:200000 \
                 $((48 * B + 4096)):4096:300000 $((47 * B + 59904)):8192:400000 \
                 $((60 * B + 512)):1024:500000; do
            IFS=: read -r o l p <<< "$w"
            cmp_op ok write /dev/mapper/thin "$o" "$l" "$PAT" "$p"
            dd if="$PAT" of="$REF" bs="$l" count=1 skip="$p" seek="$o" iflag=skip_bytes \
                oflag=seek_bytes conv=notrunc status=none
        done
        if [ -z "$feat" ]; then
            cmp_op ok cmp /dev/mapper/thin 0 "$T" "$REF" 0
        else
            # Unzeroed tails hold old data: compare what was defined.
            cmp_op ok cmp /dev/mapper/thin 0 $((48 * B + 32768)) "$REF" 0
            cmp_op - cmp /dev/mapper/thin 0 "$T" "$REF" 0
        fi
        cmp_op ok status pool
        cmp_op ok status thin
        cmp_batch "$tag: writes"
        cmp_ok "$tag: discard block 2" blkdiscard -o $((2 * B)) -l "$B" /dev/mapper/thin
        dd if="$PAT" of="$REF" bs="$B" count=1 skip=2 seek=2 conv=notrunc status=none
        cmp_op ok cmp /dev/mapper/thin $((2 * B)) "$B" "$REF" $((2 * B))
        cmp_batch "$tag: a discarded block reads the origin again"
        cmp_md5 "origin after writes" "$ORIG"
        cmp_check "$tag: the origin is unchanged" test "$CMP_MD5" = "$omd5"
        cmp_md5 "thin" /dev/mapper/thin
        local before=$CMP_MD5
        cmp_remove thin
        cmp_teardown pool "$META"
        cmp_create pool "0 $DS thin-pool $META $DATA 128 0${feat:+ $feat}"
        cmp_create thin "0 $TS thin /dev/mapper/pool 0 $ORIG"
        cmp_md5 "thin after a rebuild" /dev/mapper/thin
        cmp_check "$tag: same after a rebuild" test "$CMP_MD5" = "$before"
        cmp_remove thin
        cmp_teardown pool "$META" none
    done
}

cmp_run scenario
cmp_finish
