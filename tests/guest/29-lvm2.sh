#!/bin/bash
# timeout: 400
# host-prepare: printf '%s\n' "${DMTHIN_IMPLS:-}" > "$OUTDIR/dmthin-impls"
# lvm2 on top of the module, unmodified, compared between implementations
# (tests/lib/compare.sh; DMTHIN_IMPLS selects them).  lvm2 runs with its
# own lvm.conf ($LVM_SYSTEM_DIR: only the test's loop device, no udev, no
# monitoring, no backups) and drives the kernel as it does in production:
# - lvcreate --type thin-pool, a thin LV, data written;
# - lvcreate -s (thin snapshot, activated), written on both sides;
# - lvextend of the pool's data, then of its metadata (table reloads of a
#   live pool);
# - lvremove of the snapshot, deactivation and activation of the volume
#   group (lvm2 runs thin_check on the pool's metadata when it activates
#   it), contents read back;
# - the command outputs, `lvs` fields, the pool's table and status lines
#   and the kernel log lines of every step must be identical to upstream's.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/compare.sh"
set -u
cmp_init "$@"

VG=dmthinvg
PAT="$CMP_INPUTS/pattern"
cmp_random 29 "$PAT" $((4 << 20)) || fail "pattern"
export LVM_SYSTEM_DIR="$DMTHIN_SCRATCH/lvm29"
export DM_DISABLE_UDEV=1
export LVM_SUPPRESS_FD_WARNINGS=1

# lvm.conf: the test's loop device only, lvm2 makes the device nodes
# itself (no udev in the guest), no dmeventd, no metadata backups.
write_lvm_conf() {
    mkdir -p "$LVM_SYSTEM_DIR" "$LVM_SYSTEM_DIR/lock" "$LVM_SYSTEM_DIR/run"
    cat > "$LVM_SYSTEM_DIR/lvm.conf" <<EOF
devices {
    filter = [ "a|^$1\$|", "r|.*|" ]
    obtain_device_list_from_udev = 0
    external_device_info_source = "none"
    use_devicesfile = 0
}
activation {
    udev_sync = 0
    udev_rules = 0
    verify_udev_operations = 1
    monitoring = 0
}
global {
    locking_dir = "$LVM_SYSTEM_DIR/lock"
    use_lvmpolld = 0
    thin_check_executable = "/usr/sbin/thin_check"
}
backup {
    backup = 0
    archive = 0
}
EOF
}

# lv <label> <lvm command...>: an lvm2 command (recorded, must succeed).
lv() { local l="$1"; shift; cmp_ok "$l" "$@"; }
# lvs_rec: the fields lvm2 reports for the volume group (recorded).
lvs_rec() {
    cmp_ok "lvs" lvs --noheadings --nosuffix --units k \
        -o lv_name,lv_attr,lv_size,data_percent,metadata_percent,chunk_size "$VG"
}
# pool_rec: the thin-pool device's table and status (recorded).  The
# status (without --noflush) commits the pool, so the used metadata that
# lvs_rec reports next does not depend on when the periodic commit ran.
pool_rec() {
    cmp_ok "tpool table" dms table "$VG-pool-tpool"
    cmp_ok "tpool status" dms status "$VG-pool-tpool"
}

scenario() {
    local PV REF="$CMP_DIR/ref"
    mkdir -p "$REF"
    cmp_loop PV pv 96
    write_lvm_conf "$PV"
    lv "pvcreate" pvcreate -q "$PV"
    lv "vgcreate" vgcreate -q -s 1m "$VG" "$PV"
    lv "lvcreate thin-pool" lvcreate -q --type thin-pool -L 32m --poolmetadatasize 4m \
        --chunksize 64k -n pool "$VG"
    lv "lvcreate thin" lvcreate -q -V 16m -T "$VG/pool" -n thin1
    _DMDEVS+=("$VG-pool_tmeta" "$VG-pool_tdata" "$VG-pool-tpool" "$VG-pool" "$VG-thin1")
    cmp_ok "write thin1" dd if="$PAT" of="/dev/mapper/$VG-thin1" bs=1M oflag=direct status=none
    cp "$PAT" "$REF/thin1"; truncate -s 16M "$REF/thin1"
    pool_rec
    lvs_rec

    lv "lvcreate -s" lvcreate -q -s -kn "$VG/thin1" -n snap1
    _DMDEVS+=("$VG-snap1")
    cp "$REF/thin1" "$REF/snap1"
    cmp_ok "write snap1" dd if="$PAT" of="/dev/mapper/$VG-snap1" bs=64k count=16 seek=40 oflag=direct status=none
    dd if="$PAT" of="$REF/snap1" bs=64k count=16 seek=40 conv=notrunc status=none
    cmp_ok "write thin1" dd if="$PAT" of="/dev/mapper/$VG-thin1" bs=64k count=8 skip=8 seek=100 oflag=direct status=none
    dd if="$PAT" of="$REF/thin1" bs=64k count=8 skip=8 seek=100 conv=notrunc status=none
    cmp_ok "thin1 = reference" cmp "/dev/mapper/$VG-thin1" "$REF/thin1"
    cmp_ok "snap1 = reference" cmp "/dev/mapper/$VG-snap1" "$REF/snap1"
    pool_rec
    lvs_rec

    lv "lvextend data" lvextend -q -L +16m "$VG/pool"
    pool_rec
    lv "lvextend metadata" lvextend -q --poolmetadatasize +4m "$VG/pool"
    pool_rec
    lvs_rec
    cmp_ok "write snap1 after the resizes" dd if="$PAT" of="/dev/mapper/$VG-snap1" bs=64k count=32 skip=32 seek=200 oflag=direct status=none
    dd if="$PAT" of="$REF/snap1" bs=64k count=32 skip=32 seek=200 conv=notrunc status=none

    lv "lvremove snap1" lvremove -q -y "$VG/snap1"
    pool_rec
    lvs_rec
    lv "vgchange -an" vgchange -q -an "$VG"
    cmp_ok "dm devices left" sh -c "dmsetup ls | grep -c $VG || true"
    lv "vgchange -ay (thin_check runs)" vgchange -q -ay "$VG"
    cmp_ok "thin1 = reference after reactivation" cmp "/dev/mapper/$VG-thin1" "$REF/thin1"
    pool_rec
    lvs_rec
    lv "lvremove thin1" lvremove -q -y "$VG/thin1"
    lvs_rec
    lv "vgchange -an" vgchange -q -an "$VG"
    lv "vgremove" vgremove -q -y "$VG"
    lv "pvremove" pvremove -q "$PV"
}

cmp_run scenario
cmp_finish
