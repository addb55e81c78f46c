#!/usr/bin/env bash
# Host-side checks of the shared Rust code: the pdata tree stays core-only,
# the host crates build with the kernel's lints as errors, and cargo test
# runs the unit, property, crash and compatibility tests.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$REPO"
# (Test modules, from a file's `#[cfg(test)]` line on, may use std.)
bad=$(find rust/pdata -name '*.rs' -print0 | xargs -0 awk '
    FNR == 1 { intest = 0 }
    /^#\[cfg\(test\)\]/ { intest = 1 }
    !intest && !/^[[:space:]]*\/\// && /(^|[^[:alnum:]_])(std|alloc|kernel)::/ { print FILENAME ":" FNR ": " $0 }')
[ -z "$bad" ] || { echo "$bad" >&2; die "rust/pdata must use core only (no std::, alloc::, kernel::)"; }
say "rustfmt --check (workspace and the module's crate)"
cargo +"$RUST_VERSION" fmt --all -- --check >/dev/null || die "Rust code is not formatted: run cargo fmt --all and rustfmt --edition 2021 rust/dm_thin_rs_main.rs"
rustfmt +"$RUST_VERSION" --edition 2021 --check rust/dm_thin_rs_main.rs >/dev/null || die "module code is not formatted: run rustfmt --edition 2021 rust/dm_thin_rs_main.rs"
# One compilation for both steps: the build uses cargo test's profile and
# flags, so `cargo test` reuses its artifacts (two profiles compiled the
# workspace twice).
export RUSTFLAGS="-D warnings"
say "cargo build with -D warnings"
cargo +"$RUST_VERSION" build --workspace --all-targets --profile test -q
say "cargo test"
cargo +"$RUST_VERSION" test --workspace 2>&1
