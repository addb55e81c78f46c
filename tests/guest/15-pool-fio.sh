#!/bin/bash
# timeout: 300
# host-prepare: printf '%s\n' "${DMTHIN_IMPLS:-}" > "$OUTDIR/dmthin-impls"
# Concurrent I/O on three thins of one pool, compared between
# implementations (tests/lib/compare.sh; DMTHIN_IMPLS selects them): one
# fio run with three jobs at once (libaio, direct=1, randwrite 4 KiB over
# the first 4 MiB of each 8 MiB thin, iodepth 8, verify=crc32c read back
# after writing, verify_fatal); fio must exit 0, report err=0 for every job
# and have verified (read) every job; then a second concurrent round over
# provisioned blocks and new ones (randwrite 16 KiB over 2-6 MiB) with
# verification.  Pool status (used data blocks; used metadata
# masked: btree shapes depend on the interleaving) and every thin's status
# compared and checked (64 then 96 mapped blocks per thin); teardown,
# thin_check, thin_dump compared by virtual ranges (data block numbers
# depend on the interleaving).
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/compare.sh"
set -u
cmp_init "$@"
CMP_MASK_META_USED=1
BS=128

# run_fio <tag> <fio options...>: three jobs, one per thin, at once; output
# kept in $CMP_DIR/fio-<tag>.out (not recorded: it holds timings).
run_fio() {
    local tag="$1" out="$CMP_DIR/fio-$1.out" rc=0 n_ok n_read; shift
    fio --ioengine=libaio --direct=1 --iodepth=8 --verify=crc32c --verify_fatal=1 \
        --randrepeat=1 --randseed=4242 "$@" \
        --name=j0 --filename=/dev/mapper/thin0 --name=j1 --filename=/dev/mapper/thin1 \
        --name=j2 --filename=/dev/mapper/thin2 > "$out" 2>&1 || rc=$?
    n_ok=$(grep -cE '^j[0-9]+: .*err= *0\b' "$out")
    n_read=$(grep -cE '^ *read: IOPS=' "$out")
    cmp_rec "fio $tag: rc=$rc jobs with err=0: $n_ok, jobs that read (verified): $n_read"
    if [ "$rc" != 0 ] || [ "$n_ok" != 3 ] || [ "$n_read" != 3 ] || grep -qiE 'verify.*(fail|bad)|bad magic|crc32c.*fail' "$out"; then
        sed 's/^/    fio: /' "$out" | grep -iE 'err=|verify|error|crc' | head -20
        return 1
    fi
}

scenario() {
    local DS i
    cmp_loop META meta 8
    cmp_loop DATA data 64
    DS=$(dev_sectors "$DATA")
    cmp_create pool "0 $DS thin-pool $META $DATA $BS 0"
    for i in 0 1 2; do
        cmp_must "create_thin $i" dms message pool 0 "create_thin $i"
        cmp_create "thin$i" "0 16384 thin /dev/mapper/pool $i"
    done
    cmp_check "fio round 1: randwrite 4k, 3 thins at once, verified" \
        run_fio 1 --rw=randwrite --bs=4k --size=4m
    cmp_pool_status pool
    cmp_check "192 used data blocks after round 1 (got $P_DUSED)" test "$P_DUSED" = 192
    for i in 0 1 2; do
        cmp_thin_status "thin$i"
        cmp_check "thin$i: '8192 8191' after round 1 (got '$T_MAPPED $T_HIGHEST')" test "$T_MAPPED $T_HIGHEST" = "8192 8191"
    done
    cmp_check "fio round 2: randwrite 16k over provisioned and new blocks, verified" \
        run_fio 2 --rw=randwrite --bs=16k --offset=2m --size=4m
    cmp_pool_status pool
    cmp_check "288 used data blocks after round 2 (got $P_DUSED)" test "$P_DUSED" = 288
    for i in 0 1 2; do
        cmp_thin_status "thin$i"
        cmp_check "thin$i: '12288 12287' after round 2 (got '$T_MAPPED $T_HIGHEST')" test "$T_MAPPED $T_HIGHEST" = "12288 12287"
        cmp_remove "thin$i"
    done
    cmp_teardown pool "$META" virt
    cmp_check "dump: 3 devices, 288 mappings, 288 data blocks (got $D_DEVICES $D_MAPPINGS $D_DISTINCT)" \
        test "$D_DEVICES $D_MAPPINGS $D_DISTINCT" = "3 288 288"
}

cmp_run scenario
cmp_finish
