#!/usr/bin/env bash
# Unpack Debian's linux-source-6.12, apply rust/kernel-patches/*.patch,
# configure it from `vng --kconfig` plus qemu/kernel.config, and build
# bzImage and modules.  The result is cached outside the repository
# (scripts/kernel-env.sh); a second run with the same inputs does nothing.
# An interrupted build resumes: once the tree is unpacked, patched and
# configured (stamp .configured), a rerun only runs the incremental make.
set -euo pipefail
. "$(dirname "$0")/kernel-env.sh"

if [ -f "$KERNEL_CACHE/.built" ]; then
    say "kernel cached: $KDIR"
    exit 0
fi
TARBALL=/usr/src/linux-source-6.12.tar.xz
[ -f "$TARBALL" ] || die "$TARBALL missing: run scripts/install-deps.sh"
start=$(date +%s)
export RUSTC="$(rustup which --toolchain "$RUST_VERSION" rustc)"
RUSTFMT="$(rustup which --toolchain "$RUST_VERSION" rustfmt 2>/dev/null || echo rustfmt)"
MAKEVARS=(RUSTC="$RUSTC" RUSTFMT="$RUSTFMT" BINDGEN=bindgen)
if [ -f "$KERNEL_CACHE/.configured" ]; then
    say "resuming the interrupted build in $KDIR"
else
    rm -rf "$KERNEL_CACHE"
    mkdir -p "$KERNEL_CACHE"
    say "unpacking $TARBALL into $KERNEL_CACHE"
    tar -C "$KERNEL_CACHE" -xf "$TARBALL"
    mv "$KERNEL_CACHE/linux-source-6.12" "$KDIR"
    for p in "$REPO"/rust/kernel-patches/*.patch; do
        say "applying $(basename "$p")"
        patch -d "$KDIR" -p1 -s < "$p" || die "patch $(basename "$p") does not apply"
    done
    cd "$KDIR"
    say "configuring (vng --kconfig + qemu/kernel.config)"
    vng --kconfig >/dev/null 2>&1 || die "vng --kconfig failed"
    scripts/kconfig/merge_config.sh -m .config "$REPO/qemu/kernel.config" >/dev/null \
        || die "merging qemu/kernel.config failed"
    make "${MAKEVARS[@]}" olddefconfig >/dev/null
    for opt in CONFIG_RUST=y CONFIG_DM_THIN_PROVISIONING=m CONFIG_DM_BUFIO=m \
               CONFIG_PROVE_LOCKING=y CONFIG_DEBUG_ATOMIC_SLEEP=y CONFIG_DM_SNAPSHOT=m \
               CONFIG_VIRTIO_BLK=y CONFIG_BLK_DEV_LOOP=y CONFIG_EXT4_FS=y; do
        grep -qx "$opt" .config || die "kernel config lacks $opt (is Rust available? try: make rustavailable in $KDIR)"
    done
    touch "$KERNEL_CACHE/.configured"
fi
cd "$KDIR"
jobs=$(( $(nproc) + 1 ))
say "building bzImage and modules with -j$jobs (7-8 min on an idle 2-core machine)"
make "${MAKEVARS[@]}" -j"$jobs" bzImage modules >> "$KERNEL_CACHE/build.log" 2>&1 \
    || { tail -40 "$KERNEL_CACHE/build.log" >&2; die "kernel build failed, log: $KERNEL_CACHE/build.log"; }
touch "$KERNEL_CACHE/.built"
say "kernel built in $(( $(date +%s) - start )) s: $KDIR"
