#!/bin/bash
# timeout: 300
# host-prepare: printf '%s\n' "${DMTHIN_IMPLS:-}" > "$OUTDIR/dmthin-impls"; printf '%s\n' "${DMTHIN_CUTS:-}" > "$OUTDIR/dmthin-cuts"
# Power cuts, series c: a pool with 64 KiB blocks (zeroing on), 4 thins,
# whole-block writes only (64 and 128 KiB, block aligned: every write to
# a new block takes the overwrite path, no zeroing: the data goes to the
# new block first and the mapping must only be inserted, and committed,
# once that write completed), early cuts (20 ms to 600 ms after the
# writers start: close to the delete/create_thin commits and the first
# provisioning).  The blocks of the thin deleted each round are reused,
# so a mapping committed before its data write completed shows the
# deleted thin's sectors.  15 cuts per implementation by default (cuts
# 37-51 of the suite).
#
# Not with skip_block_zeroing: there upstream (and ours, the same design)
# inserts the mapping before the write is issued, so a cut can leave a
# committed mapping to a block whose old contents (another thin's) show;
# skip_block_zeroing accepts that, so it is no invariant to test.
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
pc_main 15 37 3 --block 128 --thins 4 --thin-mb 4 --lens 128,256 --align 128 \
    --modes error,flakey --min-delay 0.02 --max-delay 0.6
