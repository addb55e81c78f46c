#!/usr/bin/env bash
# Build dm_thin_rs.ko out of tree against the cached patched 6.12 tree, with
# the same rustc and bindgen that built the tree.  `clean` removes the
# build products.
set -euo pipefail
. "$(dirname "$0")/kernel-env.sh"
[ -f "$KERNEL_CACHE/.built" ] || die "kernel not built for this configuration: run scripts/build-kernel.sh"
RUSTC="$(rustup which --toolchain "$RUST_VERSION" rustc)"
target=modules
[ "${1:-}" = clean ] && target=clean
make -C "$KDIR" M="$REPO" RUSTC="$RUSTC" BINDGEN=bindgen "$target" >&2 \
    || die "module build failed"
[ "$target" = clean ] || say "built $REPO/dm_thin_rs.ko"
