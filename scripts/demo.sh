#!/usr/bin/env bash
# Demo: boot the project's kernel in a guest (software emulation, ~1 min
# with boot) and show our dm_thin_rs module loaded, its targets registered
# (`lsmod`, `dmsetup targets`), and a pool once the module can create one.
# Usage: scripts/demo.sh  (does all set-up first: scripts/setup.sh)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bash "$REPO/scripts/setup.sh"
exec "$REPO/qemu/run-guest.sh" "$REPO/tests/demo/guest-demo.sh"
