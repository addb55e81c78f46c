#!/bin/bash
# timeout: 300
# host-prepare: printf '%s\n' "${DMTHIN_IMPLS:-}" > "$OUTDIR/dmthin-impls"; printf '%s\n' "${DMTHIN_CUTS:-}" > "$OUTDIR/dmthin-cuts"
# Power cuts, series a: small writes (512 B to 16 KiB, 512-byte aligned:
# partial blocks, so every new block goes through kcopyd zeroing) on 3
# thins of a pool with 64 KiB blocks; cuts alternate between the error
# and the drop_writes model.  18 cuts per implementation by default
# (cuts 1-18 of the suite; 21-power-cut-b and -c hold the other 33).
#
# The series (tests/lib/powercut.py, driven by tests/lib/powercut.sh) runs
# once on upstream's dm-thin-pool and once on ours, with the same seeds
# (the same write plans, cut delays and cut models; where each cut falls
# depends on timing).  Per cut: one thin is deleted and replaced by a new
# thin id (its blocks are freed and reused), one writer thread per thin
# writes O_DIRECT stamped sectors (plain writes, O_DSYNC = FUA writes,
# writes followed by fsync = FLUSH), and at a seeded random moment power
# is cut to the metadata and data devices at once: both are linear
# devices over ONE dm device (`pc-cut`, the two loop devices
# concatenated), which is suspended with noflush (bios already issued
# complete, later ones are held) and resumed with an `error` table (held
# and later bios fail) or a dm-flakey drop_writes table (they are dropped
# and reported done; the pool carries on unaware).  Then the thins and the
# pool are removed, `pc-cut` gets its linear table back, thin_check runs
# on the metadata, the pool is created again from the surviving devices
# and every 512-byte sector of every thin is read back and judged:
# - it holds either what it held after the previous recovery (zeros for a
#   new thin) or the stamp of a write issued to that sector of that thin
#   in this round (anything else is another device's data, stale data
#   from a deleted thin, misplaced or torn data);
# - every durably acknowledged write (an O_DSYNC write that returned, or
#   a write followed by an fsync that returned; with drop_writes only
#   those that returned before the cut began) is there or overwritten by
#   a later write to the same sector: nothing acknowledged is lost or
#   rolled back;
# - thin_check passes after every teardown, the recovered pool is in
#   write mode without needs_check, the thin deleted before the writes
#   stays deleted, a held metadata snapshot stays held;
# - at the end the pool is made straight on the loop devices (no
#   wrappers) and holds exactly what was last verified; thin_check.
# Each implementation's verdict lines ("cut N (seed, model): ok") are
# recorded and compared (tests/lib/compare.sh); counts and timings are
# printed, not compared.  Any violation, in either implementation, fails.
#
# The model, honestly: the loop devices sit on tmpfs and have no volatile
# write cache, so a cut keeps every write that completed before it,
# flushed or not, and drops everything issued after it (bios in flight at
# the cut complete).  This catches commit-ordering bugs (a superblock
# committed before the btree nodes or the data it points to were
# written, a mapping committed before its zeroing or its data write
# completed, a FLUSH/FUA acknowledged before its commit, blocks freed in
# the running transaction reused, a recovery that reads the wrong root,
# leaks that thin_check sees) and acknowledgements given for writes that
# never reached the devices.  It does NOT catch a missing FLUSH before a
# commit or a missing FUA on the superblock (completed = durable here),
# torn 4 KiB metadata writes, or reordering by a real disk's cache; the
# host tests' block manager (power cuts keeping any subset of unflushed
# writes, torn writes) covers those for the metadata code.
#
# More cuts: `cuts=N` as the script's argument, DMTHIN_CUTS in the guest,
# or DMTHIN_CUTS on the host through scripts/guest-tests.sh (host-prepare
# above; the timeout header stays 300 s, so for big N use
# scripts/power-cuts.sh, which sets the VM timeout from N).
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/compare.sh"
. "$(dirname "$0")/../lib/powercut.sh"
set -u
PC_ARGS=("$@")
pc_main 18 1 1 --block 128 --thins 3 --thin-mb 4 --lens 1,8,8,8,16,32 --align 1 \
    --modes error,flakey --min-delay 0.05 --max-delay 1.0
