# Computes where the patched, configured and built 6.12 tree lives: a cache
# directory outside the repository keyed by every input of the build (kernel
# package version, patches, config fragment, rustc, bindgen, gcc, virtme-ng).
# Sourced by the build scripts; sets KERNEL_KEY, KERNEL_CACHE and KDIR.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
kernel_key() {
    {
        dpkg-query -W -f='${Version}\n' linux-source-6.12 2>/dev/null || echo none
        cat "$REPO"/rust/kernel-patches/*.patch "$REPO"/qemu/kernel.config
        rustc +"$RUST_VERSION" --version 2>/dev/null
        bindgen --version 2>/dev/null
        gcc --version 2>/dev/null | head -1
        vng --version 2>/dev/null | head -1
    } | sha256sum | cut -c1-16
}
KERNEL_KEY="$(kernel_key)"
KERNEL_CACHE="$CACHE_ROOT/kernel-$KERNEL_KEY"
KDIR="$KERNEL_CACHE/linux"
export KDIR
