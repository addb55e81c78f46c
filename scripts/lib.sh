# Shared helpers for the scripts: messages, failure, and the paths the
# build uses (kernel cache outside the repository).
say() { echo "[$(basename "$0")] $*" >&2; }
die() { echo "[$(basename "$0")] error: $*" >&2; exit 1; }
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_ROOT="${DMTHIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dm-thin-rs}"
export PATH="$HOME/.cargo/bin:$PATH"
# Pinned tool versions, in one place: the kernel cache key and the installer
# both read them (the kernel's Rust metadata is locked to this rustc).
RUST_VERSION=1.95.0
BINDGEN_VERSION=0.69.5
VNG_VERSION=1.42
