#!/usr/bin/env bash
# All set-up on a fresh Debian 12 machine, idempotent: dependencies, the
# patched 6.12 kernel (cached outside the repository), and dm_thin_rs.ko.
set -euo pipefail
here="$(dirname "$0")"
bash "$here/install-deps.sh"
bash "$here/build-kernel.sh"
bash "$here/build-module.sh"
