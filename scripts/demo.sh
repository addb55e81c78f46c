#!/usr/bin/env bash
# Demo: boot the project's kernel in a guest (software emulation, about a
# minute with boot) and show our dm_thin_rs module at work: a pool on blank
# metadata, a thin device with ext4 on it, files written and read back,
# status, teardown, thin_check, and the pool re-created with the files
# intact (tests/demo/guest-demo.sh).
# Usage: scripts/demo.sh  (does all set-up first: scripts/setup.sh)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bash "$REPO/scripts/setup.sh"
exec "$REPO/qemu/run-guest.sh" "$REPO/tests/demo/guest-demo.sh"
