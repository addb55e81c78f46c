#!/bin/bash
# timeout: 300
# host-prepare: printf '%s\n' "${DMTHIN_IMPLS:-}" > "$OUTDIR/dmthin-impls"; printf '%s\n' "${DMTHIN_CUTS:-}" > "$OUTDIR/dmthin-cuts"
# Power cuts, series b: a pool with 128 KiB blocks, 3 thins, writes of
# 4 KiB, 64 KiB and whole aligned 128 KiB blocks (whole-block writes to
# new blocks skip zeroing: the mapping must not be committed before the
# data write completed), and a metadata snapshot reserved or released
# between rounds (commits then shadow the held metadata); cuts start
# with the drop_writes model and alternate.  18 cuts per implementation
# by default (cuts 19-36 of the suite).
#
# Method, invariants and what the model does and does not catch: see
# 21-power-cut-a.sh and tests/lib/powercut.py.  Run on upstream's
# dm-thin-pool and on ours with the same seeds; verdicts compared.
# More cuts: `cuts=N`, DMTHIN_CUTS, or scripts/power-cuts.sh.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/compare.sh"
. "$(dirname "$0")/../lib/powercut.sh"
set -u
PC_ARGS=("$@")
pc_main 18 19 2 --block 256 --thins 3 --thin-mb 4 --lens 8,8,128,256,256 --align 8 \
    --modes flakey,error --metasnap --min-delay 0.05 --max-delay 1.0
