#!/bin/bash
# Runs INSIDE the guest (scripts/demo.sh): shows our dm_thin_rs module
# loaded and its targets registered, then tries a pool; once the module can
# create pools, it shows a pool, a thin device, data written and read back,
# pool status and thin_check of the metadata.
. "$(dirname "$0")/../lib/common.sh"
set -u
step() { echo; echo "==> $*"; }
show() { echo "\$ $*"; "$@" 2>&1 | sed 's/^/  /'; return "${PIPESTATUS[0]}"; }

step "guest kernel"
show uname -r
step "our module: $DMTHIN_KO"
if [ ! -f "$DMTHIN_KO" ]; then echo "  module not built: run 'make module' on the host"; exit 1; fi
show modinfo "$DMTHIN_KO" | grep -E '^  (filename|description|license|depends|name|vermagic|author):' || true
step "loading it (after its dependencies dm-bufio and libcrc32c)"
echo "\$ modprobe dm-bufio; modprobe libcrc32c; insmod $DMTHIN_KO"
load_ours || { echo "  insmod failed"; dmesg | tail -5 | sed 's/^/  /'; exit 1; }
step "lsmod"
echo "\$ lsmod | grep -E '^(Module|dm_thin_rs|dm_bufio|libcrc32c)'"
lsmod | grep -E '^(Module|dm_thin_rs|dm_bufio|libcrc32c)' | sed 's/^/  /'
step "device-mapper targets (thin-pool and thin are ours: dm_thin_pool is not loaded)"
show dmsetup targets
echo "  dm_thin_pool (upstream C) loaded: $(grep -q '^dm_thin_pool ' /proc/modules && echo yes || echo no)"

step "a pool: 16 MiB metadata + 256 MiB data loop devices, 64 KiB blocks"
make_loop META meta 16 && make_loop DATA data 256 || exit 1
DS=$(dev_sectors "$DATA")
echo "\$ dmsetup create demo-pool --table \"0 $DS thin-pool $META $DATA 128 0\""
mark=$(kmsg_mark)
if ! dm_create demo-pool "0 $DS thin-pool $META $DATA 128 0" 2>&1 | sed 's/^/  /'; then :; fi
if ! dms info demo-pool >/dev/null 2>&1; then
    echo "  refused; kernel says:"
    kmsg_since "$mark" | grep -v dmthin-mark | sed 's/^/    /'
    step "the constructor formatted the blank metadata device (our Rust persistent-data code, through dm-bufio) before refusing"
    show thin_check "$META"
    show sh -c "thin_dump $META"
else
    step "pool status"
    show dmsetup status demo-pool
    step "a thin device (id 0), 1 GiB virtual on 256 MiB of data"
    show dmsetup message demo-pool 0 "create_thin 0"
    show dm_create demo-thin "0 2097152 thin /dev/mapper/demo-pool 0"
    step "write 8 MiB of random data, read it back"
    head -c 8M /dev/urandom > "$DMTHIN_SCRATCH/pattern"
    show dd if="$DMTHIN_SCRATCH/pattern" of=/dev/mapper/demo-thin bs=1M oflag=direct
    show cmp -n 8388608 "$DMTHIN_SCRATCH/pattern" /dev/mapper/demo-thin && echo "  identical"
    step "pool and thin status"
    show dmsetup status demo-pool
    show dmsetup status demo-thin
    step "tear down, thin_check the metadata"
    dm_remove demo-thin; dm_remove demo-pool
    show thin_check "$META"
    show sh -c "thin_dump $META | head -5"
    rm -f "$DMTHIN_SCRATCH/pattern"
fi
cleanup_all
step "rmmod dm_thin_rs"
show rmmod dm_thin_rs
show dmsetup targets
if dmesg | find_splats >/dev/null; then
    step "kernel log splats:"; dmesg | find_splats | sed 's/^/  /'; exit 1
fi
echo; echo "demo finished, kernel log clean"
