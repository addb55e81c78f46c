#!/bin/bash
# timeout: 400
# Opening pool metadata, ours against upstream's C dm-thin-pool in the same
# guest, on byte-identical metadata images:
# - a blank metadata device with `read_only` is refused (-EPERM);
# - metadata formatted by OUR kernel code passes thin_check, and upstream
#   then runs a pool on it (thin created, data written, thin_check again);
# - metadata formatted by upstream opens in ours (a working pool);
# - every superblock defect upstream checks is refused with upstream's
#   kernel log lines and errno, compared line by line: bad checksum, wrong
#   self location, wrong magic, unsupported incompat / compat_ro features,
#   changed data block size; fields upstream ignores (version, uuid,
#   metadata_block_size, metadata_nr_blocks, compat_flags) stay ignored.
. "$(dirname "$0")/../lib/common.sh"
set -u
POKE="python3 $TESTS_DIR/lib/sbpoke.py"

make_loop META meta 16 || fail "make_loop meta"
make_loop DATA data 64 || fail "make_loop data"
S=$(dev_sectors "$DATA")
IMG="$DMTHIN_SCRATCH/base.meta"
norm() { sed -E 's/^\[[ 0-9.]*\] //; s/[0-9]+:[0-9]+/MAJ:MIN/g' | grep -E 'device-mapper: (table|thin|block manager|btree|space map)' | grep -v 'ioctl: error adding'; }

# try <impl> <table args...>: dmsetup create on a fresh copy of $IMG (if
# given) and print the normalised kernel log lines it produced; removes
# the device if it was created.
try() {
    local impl="$1"; shift
    [ "$(thin_loaded)" = "$impl" ] || { unload_thin; load_$impl || fail "load $impl"; }
    local m; m=$(kmsg_mark)
    dms create t-pool --table "0 $S thin-pool $META $DATA $*" >/dev/null 2>&1 && dm_remove t-pool
    kmsg_since "$m" | norm
}

# compare <name> <prepare-command> <table args>: queue a case; run_cases
# runs every queued case on upstream, then on ours (one module swap in
# all, not two per case: each costs about a second here), each on a fresh
# copy of $IMG prepared by its command.  Expectation "logs": the log lines
# must be identical and non-empty; "opens": both must log nothing.
CASES=()
compare() { local IFS=' '; CASES+=("logs"$'\t'"$1"$'\t'"$2"$'\t'"${*:3}"); }
opens() { local IFS=' '; CASES+=("opens"$'\t'"$1"$'\t'"$2"$'\t'"${*:3}"); }
run_cases() {
    local impl i expect name prep args
    local -a A=() B=()
    for impl in upstream ours; do
        for i in "${!CASES[@]}"; do
            IFS=$'\t' read -r expect name prep args <<< "${CASES[$i]}"
            dd if="$IMG" of="$META" bs=1M conv=notrunc status=none; eval "$prep"
            # shellcheck disable=SC2086  # table arguments, split on purpose
            if [ "$impl" = upstream ]; then A[i]=$(try upstream $args); else B[i]=$(try ours $args); fi
        done
    done
    for i in "${!CASES[@]}"; do
        IFS=$'\t' read -r expect name prep args <<< "${CASES[$i]}"
        if [ "$expect" = logs ]; then
            log "$name: ${A[i]}"
            [ -n "${A[i]}" ] || fail "$name: upstream logged nothing"
            [ "${A[i]}" = "${B[i]}" ] || fail "$name: upstream [${A[i]}] ours [${B[i]}]"
        else
            [ -z "${A[i]}" ] || fail "upstream refused $name: ${A[i]}"
            [ -z "${B[i]}" ] || fail "ours refused $name: ${B[i]}"
        fi
    done
    CASES=()
}

# 1. Blank device, read_only: -EPERM from both.
zero_dev "$META" 16
up=$(try upstream 128 0 1 read_only); ours=$(try ours 128 0 1 read_only)
[ "$up" = "$ours" ] || fail "blank read_only: upstream [$up] ours [$ours]"
echo "$ours" | grep -q 'Error creating metadata object (-EPERM)' || fail "blank read_only: $ours"

# 2. Ours formats; thin_check; upstream runs a pool on it.
zero_dev "$META" 16
out=$(try ours 128 0)
[ -z "$out" ] || fail "ours on blank: $out"
assert "thin_check of metadata formatted by ours" thin_check_dev "$META"
thin_dump "$META" | grep -q 'data_block_size="128"' || fail "thin_dump of our format"
unload_thin; assert "load upstream" load_upstream
assert "upstream pool on our metadata" dm_create up-pool "0 $S thin-pool $META $DATA 128 0"
assert "create_thin" dms message up-pool 0 "create_thin 1"
assert "thin" dm_create up-thin "0 65536 thin /dev/mapper/up-pool 1"
assert "write" dd if=/dev/urandom of=/dev/mapper/up-thin bs=64k count=32 oflag=direct status=none
assert "remove thin" dm_remove up-thin
assert "teardown + thin_check" pool_teardown up-pool "$META"

# 3. The base image for the defects: formatted by upstream, one thin.
dd if="$META" of="$IMG" bs=1M status=none
out=$(try ours 128 0)
[ -z "$out" ] || fail "upstream-formatted metadata in ours: $out"

# 4. Defects (offsets: thin_disk_superblock).
compare "bad checksum" "printf '\x55' | dd of=$META bs=1 seek=100 conv=notrunc status=none" 128 0
compare "wrong location" "$POKE $META 8 8 5" 128 0
compare "wrong magic" "$POKE $META 32 8 27022011" 128 0
compare "incompat flag" "$POKE $META 360 4 1" 128 0
compare "compat_ro flag" "$POKE $META 356 4 2" 128 0
compare "data block size" ":" 256 0
# 5. Ignored fields: both open.
for f in "40 4 7" "16 8 0x1234" "340 4 16" "344 8 99" "352 4 0xff"; do
    opens "ignored field $f" "$POKE $META $f" 128 0
done
run_cases
cleanup_all
unload_thin
echo "metadata open OK"
