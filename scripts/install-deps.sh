#!/usr/bin/env bash
# Install everything the build, the guest and the tests need, idempotently.
# Debian packages, the pinned Rust toolchain with rust-src, bindgen-cli and
# virtme-ng.  Each step says what it does; a missing prerequisite stops the
# run with a one-line reason.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

PKGS=(linux-source-6.12 qemu-system-x86 flex bison bc libelf-dev libssl-dev
      cpio libclang-dev clang lld llvm kmod dmsetup thin-provisioning-tools
      fio e2fsprogs util-linux lvm2 xz-utils make gcc python3 python3-pip
      busybox-static rsync gnuplot-nox)

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "apt: installing ${missing[*]}"
    [ "$(id -u)" = 0 ] || die "need root to install Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || die "apt-get install failed for: ${missing[*]}"
else
    say "apt: all ${#PKGS[@]} packages present"
fi

command -v rustup >/dev/null || die "rustup not found: the Rust toolchain $RUST_VERSION must be installed through rustup"
if ! rustup toolchain list | grep -q "^$RUST_VERSION"; then
    say "rustup: installing toolchain $RUST_VERSION"
    rustup toolchain install "$RUST_VERSION" --profile minimal >/dev/null || die "cannot install Rust $RUST_VERSION"
fi
if ! rustup component list --toolchain "$RUST_VERSION" --installed | grep -q '^rust-src'; then
    say "rustup: adding rust-src to $RUST_VERSION"
    rustup component add --toolchain "$RUST_VERSION" rust-src >/dev/null || die "cannot add rust-src"
fi
for c in rustfmt clippy; do
    rustup component list --toolchain "$RUST_VERSION" --installed | grep -q "^$c" \
        || rustup component add --toolchain "$RUST_VERSION" "$c" >/dev/null 2>&1 || true
done

if ! bindgen --version 2>/dev/null | grep -q "$BINDGEN_VERSION"; then
    say "cargo: installing bindgen-cli $BINDGEN_VERSION (about 1.5 min)"
    cargo +"$RUST_VERSION" install bindgen-cli --version "$BINDGEN_VERSION" --locked -q \
        || die "cannot install bindgen-cli $BINDGEN_VERSION"
else
    say "bindgen $BINDGEN_VERSION present"
fi

if ! vng --version 2>/dev/null | grep -q "$VNG_VERSION"; then
    say "pip: installing virtme-ng $VNG_VERSION"
    pip3 install -q "virtme-ng==$VNG_VERSION" >/dev/null 2>&1 \
        || python3 -m pip install -q --break-system-packages "virtme-ng==$VNG_VERSION" >/dev/null \
        || die "cannot install virtme-ng $VNG_VERSION from PyPI"
    command -v vng >/dev/null || die "virtme-ng installed but vng is not on PATH"
else
    say "virtme-ng $VNG_VERSION present"
fi
say "dependencies ready"
