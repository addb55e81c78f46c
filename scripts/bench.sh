#!/usr/bin/env bash
# Host benchmark of the persistent-data layer (rust/host-tests/bench/
# pdata_bench.rs): thin pool metadata over the in-memory block manager.
# Prints `name: N ops in T s = R ops/s` for insert (sequential, random),
# lookup (hot, cold cache), remove (random single, remove_range),
# create_snap of an N-mapping device followed by writes that break
# sharing, delete_thin, and commit latency (p50/p99) of small
# transactions.  Every result is checked; thin_check (and thin_dump at
# small sizes) verify the images.
#
# Usage: scripts/bench.sh [--size N | --smoke] [--seed S] [--help for more]
#   (arguments are passed to the benchmark; default N = 1000000)
#
# These are host figures of the shared Rust code only (no device I/O).
#
# scripts/bench.sh --guest [--smoke] [--reps N] [--size MB] [...] is the
# guest benchmark instead: upstream's C dm-thin, ours and dm-linear in one
# guest boot with fio (scripts/bench-guest.sh; --guest --help for options
# and the workloads: provisioning, reads, writes, fsync, and on the thin
# stacks copy-on-write after a snapshot, discard of a whole thin, delete of
# a thin with 1M mappings while another thin does I/O).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$REPO"
for a in "$@"; do
    [ "$a" = --guest ] && exec bash "$REPO/scripts/bench-guest.sh" "$@"
done
say "building and running pdata_bench (release)"
exec cargo +"$RUST_VERSION" run --release -q -p host-tests --bin pdata_bench -- "$@"
