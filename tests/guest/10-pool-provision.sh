#!/bin/bash
# timeout: 600
# host-prepare: printf '%s\n' "${DMTHIN_IMPLS:-}" > "$OUTDIR/dmthin-impls"
# Provisioning, compared between implementations (tests/lib/compare.sh;
# DMTHIN_IMPLS selects them, default "upstream ours").  For data block
# sizes 128, 384 (192 KiB, not a power of two) and 2048 sectors, each with
# and without skip_block_zeroing, on a data device prefilled with a
# non-zero pattern: pool on a zeroed metadata device, create_thin 0, a thin
# of 12.5 blocks + 8 sectors (not a multiple of the block size) active;
# - reading the whole unprovisioned thin gives zeros and allocates nothing
#   (0 used data blocks, thin status "0 -");
# - ten direct writes (partial blocks, whole blocks, straddling blocks,
#   512-byte aligned, an overwrite, the last sectors of the thin);
# - with zeroing the thin equals a reference file the same writes were
#   applied to; with skip_block_zeroing every written range reads back, an
#   unwritten block reads zeros, and the thin differs from the reference
#   (the prefill shows through);
# - used data blocks = blocks touched by the writes; mapped sectors too;
# - pool/thin status and table, md5 of the thin, kernel log, thin_check
#   and thin_dump after teardown compared; the pool rebuilt from the same
#   devices keeps every byte (md5) and the same status.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/compare.sh"
set -u
cmp_init "$@"

DATA_MB=16
W="$CMP_INPUTS"
PAT="$W/pattern"; FILL="$W/fill"
# The data device's prefill: non-zero, different from the pattern.
cmp_random 10 "$PAT" $((13 << 20)) "$FILL" $((DATA_MB << 20)) || fail "inputs"

# geometry <block size sectors>: B (block bytes), THIN_SECTORS (12.5 blocks
# and 8 sectors: not a multiple of the block size), T (thin bytes), and
# WRITES, the write list "offset:length ..." (bytes).
geometry() {
    B=$(($1 * 512))
    THIN_SECTORS=$((12 * $1 + $1 / 2 + 8))
    T=$((THIN_SECTORS * 512))
    WRITES="0:4096 $((2 * B + 12288)):20480 $((4 * B)):$B $((6 * B - 8192)):16384"
    WRITES+=" $((7 * B)):$((2 * B)) $((10 * B + 1536)):3584 $((4 * B + B / 2)):4096"
    WRITES+=" $((11 * B + B - 512)):512 $((T - 4096)):4096 $((T - 1024)):1024"
}

# Reference files (the writes applied to a zero file) and the expected
# number of touched blocks, per block size.
declare -A EXPECT_BLOCKS
for bs in 128 384 2048; do
    geometry "$bs"
    truncate -s "$T" "$W/ref-$bs"
    declare -A touched=()
    for w in $WRITES; do
        off=${w%:*}; len=${w#*:}
        dd if="$PAT" of="$W/ref-$bs" bs="$len" count=1 skip="$off" seek="$off" \
            iflag=skip_bytes oflag=seek_bytes conv=notrunc status=none || fail "reference $bs"
        for ((b = off / B; b <= (off + len - 1) / B; b++)); do touched[$b]=1; done
    done
    EXPECT_BLOCKS[$bs]=${#touched[@]}
    unset touched
    log "block size $bs: thin $THIN_SECTORS sectors, writes $WRITES; expect ${EXPECT_BLOCKS[$bs]} blocks"
done

scenario() {
    local bs feat PLEN tag w before_md5 before_pool before_thin
    cmp_loop META meta 4
    cmp_loop DATA data "$DATA_MB"
    for bs in 128 384 2048; do
        for feat in "" "1 skip_block_zeroing"; do
            geometry "$bs"
            PLEN=$(( (DATA_MB * 2048) / bs * bs ))
            tag="bs=$bs${feat:+ skip_block_zeroing}"
            cmp_rec "######## $tag"
            zero_dev "$META" 1
            dd if="$FILL" of="$DATA" bs=1M oflag=direct status=none || cmp__failed "prefill data"
            cmp_create pool "0 $PLEN thin-pool $META $DATA $bs 0${feat:+ $feat}"
            cmp_pool_status pool
            cmp_step "pool table" dms table pool
            cmp_must "create_thin 0" dms message pool 0 "create_thin 0"
            cmp_create thin "0 $THIN_SECTORS thin /dev/mapper/pool 0"

            # Reads, writes, statuses and read-back checks in one python
            # process (cmp_batch; op numbers on the right).
            cmp_op ok cmp /dev/mapper/thin 0 "$T" /dev/zero 0             # 1: unprovisioned = zeros
            cmp_op ok status pool                                          # 2
            cmp_op ok status thin                                          # 3
            for w in $WRITES; do                                           # 4-13
                cmp_op ok write /dev/mapper/thin "${w%:*}" "${w#*:}" "$PAT" "${w%:*}"
            done
            cmp_op ok status pool                                          # 14
            cmp_op ok status thin                                          # 15
            if [ -z "$feat" ]; then
                cmp_op ok cmp /dev/mapper/thin 0 "$T" "$W/ref-$bs" 0       # the reference
            else
                for w in $WRITES; do                                       # each write reads back
                    cmp_op ok cmp /dev/mapper/thin "${w%:*}" "${w#*:}" "$PAT" "${w%:*}"
                done
                cmp_op ok cmp /dev/mapper/thin $((3 * B)) "$B" /dev/zero 0 # unwritten block 3
                cmp_op fail:DIFFERENT cmp /dev/mapper/thin 0 "$T" "$W/ref-$bs" 0   # the prefill shows
            fi
            cmp_batch "$tag: reads, writes, statuses"
            cmp_batch_out 2; cmp_parse_pool "${B_OUT[0]:-}"
            cmp_check "$tag: reads allocate nothing (used '$P_DUSED')" test "$P_DUSED" = 0
            cmp_batch_out 3; cmp_parse_thin "${B_OUT[0]:-}"
            cmp_check "$tag: thin status after reads '0 -' (got '$T_MAPPED $T_HIGHEST')" test "$T_MAPPED $T_HIGHEST" = "0 -"
            cmp_batch_out 14; cmp_parse_pool "${B_OUT[0]:-}"
            before_pool="$P_LINE"
            cmp_check "$tag: used data blocks ${EXPECT_BLOCKS[$bs]} (got '$P_DUSED')" test "$P_DUSED" = "${EXPECT_BLOCKS[$bs]}"
            cmp_batch_out 15; cmp_parse_thin "${B_OUT[0]:-}"
            before_thin="$T_LINE"
            cmp_check "$tag: mapped sectors $((EXPECT_BLOCKS[$bs] * bs)) (got '$T_MAPPED')" test "$T_MAPPED" = $((EXPECT_BLOCKS[$bs] * bs))
            cmp_md5 "thin ($tag)" /dev/mapper/thin
            before_md5="$CMP_MD5"
            cmp_remove thin
            cmp_teardown pool "$META"

            # Rebuilt from the same devices: same bytes, same status.
            cmp_create pool "0 $PLEN thin-pool $META $DATA $bs 0${feat:+ $feat}"
            cmp_create thin "0 $THIN_SECTORS thin /dev/mapper/pool 0"
            cmp_md5 "thin after rebuild ($tag)" /dev/mapper/thin
            cmp_check "$tag: md5 after rebuild ($CMP_MD5) = before ($before_md5)" test "$CMP_MD5" = "$before_md5"
            cmp_pool_status pool
            cmp_check "$tag: pool status after rebuild '$P_LINE' = before '$before_pool'" test "$P_LINE" = "$before_pool"
            cmp_thin_status thin
            cmp_check "$tag: thin status after rebuild '$T_LINE' = before '$before_thin'" test "$T_LINE" = "$before_thin"
            cmp_remove thin
            cmp_teardown pool "$META" none
        done
    done
}

cmp_run scenario
cmp_finish
