#!/usr/bin/env bash
# Regenerates rust/host-tests/fixtures/upstream.meta.xz (+ its thin_dump
# XML): a metadata image written by upstream's C dm-thin-pool in the guest
# (tests/fixtures/upstream-image.sh), which the host tests open with our
# persistent-data code.  Needs the kernel built (scripts/setup.sh).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
out="$(mktemp -d /tmp/dm-thin-rs-fixture.XXXX)"
"$REPO/qemu/run-guest.sh" -o "$out" -t 900 "$REPO/tests/fixtures/upstream-image.sh" \
    || die "fixture generation failed (logs in $out)"
dst="$REPO/rust/host-tests/fixtures"
mkdir -p "$dst"
xz -9 -c "$out/upstream.meta" > "$dst/upstream.meta.xz"
cp "$out/upstream.xml" "$dst/upstream.xml"
cp "$out/upstream-snap.xml" "$dst/upstream-snap.xml"
cp "$out/pool-status.txt" "$dst/upstream-pool-status.txt"
say "wrote $dst/upstream.meta.xz ($(stat -c %s "$dst/upstream.meta.xz") bytes) and its dumps"
