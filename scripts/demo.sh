#!/usr/bin/env bash
# Demo: boot the project's kernel in a guest (software emulation, ~1 min
# with boot) and show our dm_thin_rs module loaded, its targets registered
# (`lsmod`, `dmsetup targets`), and a pool once the module can create one.
# Usage: scripts/demo.sh  (needs the kernel built and `make module` done)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
exec "$REPO/qemu/run-guest.sh" "$REPO/tests/demo/guest-demo.sh"
