#!/usr/bin/env bash
# Guest benchmark: upstream's C dm-thin against ours, with dm-linear as the
# ceiling, in ONE guest boot on the same devices (scripts/bench.sh --guest
# runs this; see docs in README and ../shared/docs/benchmark-plan.md).
#
# Usage: scripts/bench.sh --guest [options]
#   --smoke          smoke size (CI): 0.4 s runs, small devices, 3 repetitions
#   --reps N         repetitions (default 3); each runs linear, upstream and
#                    ours once; orders: a random one, then its rotations
#                    (every stack in every position once per 3 repetitions),
#                    reversed for repetitions 4-6
#   --size MB        size of the prefilled thin of the provisioned-block
#                    workloads (default 256, smoke 16)
#   --runtime T      time per workload, seconds or with ms (default 10,
#                    smoke 400ms); the
#                    replayed provisioning workloads stop earlier when
#                    their log ends
#   --ramp T         fio ramp_time of the time-based workloads (default 2,
#                    smoke 0)
#   --iodepth N      queue depth of the QD workloads (default 32)
#   --block-size S   pool block size in sectors (default 128 = 64 KiB)
#   --skip-zeroing   pool feature skip_block_zeroing (both thin stacks)
#   --multi N        thins written at once in multi-fsync-4k (default 4)
#   --cow-mb MB      size of the thin of the snapshot row (cow-randwrite-4k;
#                    default: --size)
#   --discard-mappings N   mapped blocks of the thin discarded whole in
#                    discard-whole (default 262144 = 16 GiB, smoke 16384)
#   --delete-mappings N    mapped blocks of the thin deleted in delete-thin
#                    (default 1000000, smoke 20000)
#   --other-mb MB    size of the thin doing 4k random I/O during the delete
#                    (default 256, smoke 16)
#   --delete-qd N    its queue depth (default 4)
#   --delete-idle T  its run before and after the delete, seconds (default 2,
#                    smoke 0.5)
#   --extra-reps N   run the snapshot, discard and delete rows in the first N
#                    repetitions only (default: all; smoke 1)
#   --seed N         seed of the stack orders and the replay logs
#                    (default: from the clock, printed)
#   --out DIR        results directory (default
#                    /tmp/dm-thin-rs-logs/bench-guest-<date>)
#   --cpus N, --mem SIZE   guest vCPUs (default 1) and memory (default 2G)
#   --clock icount|real    the guest's clock (default icount): with icount
#                    QEMU runs `-icount shift=2,sleep=off`, so guest time
#                    is the count of instructions the guest executed (4 ns
#                    each; idle time skipped to the next timer): fio's
#                    IOPS and latencies then measure each stack's CPU work
#                    in the guest and repeat to within 1% run after run,
#                    whatever else the host runs.  `real`: the host's
#                    clock, as a user's VM sees it (under software
#                    emulation on a shared host single runs swing by
#                    +-50%).  The guest's devices live in its own memory
#                    either way, so neither clock includes a disk's time.
#   --no-build       do not rebuild the module first
#   --report DIR     only (re)make the table and chart of a results directory
#
# Workloads (fio, libaio, direct), one row each in the table, on every
# stack: seqwrite-1M-new (prefill of a --size thin), randread-4k,
# seqread-1M and randwrite-4k on it, prov-randwrite-4k (4k writes each to
# a new block, replayed log), fsync-randwrite-4k (the same, QD1, fsync
# after each), multi-fsync-4k (that on --multi thins at once).  Then, on
# the two thin stacks only (dm-linear has no snapshots, so "-" there), on
# one pool of their own:
#   cow-randwrite-4k  a --cow-mb thin provisioned by 1M sequential writes,
#                     create_snap of it (origin suspended around the
#                     message, as lvm2 does), then 4k writes at QD32 each
#                     to a distinct block of the origin (replayed log):
#                     every write breaks sharing (copy-on-write); IOPS
#   discard-whole     BLKDISCARD of a whole thin with --discard-mappings
#                     mapped blocks (pool with discard passdown, the
#                     default); GiB/s of thin discarded (one ioctl timed)
#   delete-thin       `delete` of a thin with --delete-mappings mapped
#                     blocks (message timed in one process) while another
#                     thin runs 4k randrw at --delete-qd; seconds (lower
#                     is better)
#   delete-other-p99, delete-other-max  that other thin's fio completion
#                     latency (p99, max) over the I/Os in flight during the
#                     delete, from fio's per-I/O latency log; ms (lower is
#                     better)
# That pool's metadata is made on the host by thin_restore from a
# generated XML (the deleted, the discarded and the other thin; range
# mappings in runs of 64 blocks, the runs scattered over the data device;
# their data blocks are never written, the data device is a sparse file),
# copied onto a loop device before every stack; the snapshot row's thin
# is created in the guest.
#
# Devices: two loop devices over a tmpfs in the guest (metadata, data):
# memory-backed, so the figures show each target's CPU cost per I/O under
# the same emulated machine, not the host's disks (shared with other
# engineers' work, their noise would swamp the differences).  Every stack
# is rebuilt on the same devices after a blkdiscard.
#
# Output in DIR: params, iologs/ (the replay logs), runs/rR-STACK/ (fio
# JSON, stderr, /proc/stat and diskstats around each fio run, dm status at
# the end, thin_check output), results.csv (one row per run and
# workload), summary.csv (medians, quartiles, ratios), table.txt (also
# printed), ratios.png (gnuplot), guest.log, console.log, dmesg.txt.
# Exit status non-zero when a correctness check failed: fio exit status,
# fio job errors, dm device counts, pool mode, thin_check after every thin
# stack, mapped block counts against the writes fio made, a kernel splat.
# Speed is reported as ratios only, never checked.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$REPO"

SMOKE=0; REPS=3; SIZE_MB=""; RUNTIME=""; RAMP=""; QD=32; BLOCK=128
FEATURES=""; MULTI_N=4; COW_MB=""; DISC_MAP=""; DEL_MAP=""; OTHER_MB=""; DEL_QD=4
DEL_IDLE=""; EXTRA_REPS=""; SEED=""; OUT=""; CPUS=1; MEM=2G; BUILD=1; REPORT_ONLY=""
CLOCK=icount
while [ $# -gt 0 ]; do
    case "$1" in
        --guest) shift ;;
        --smoke) SMOKE=1; shift ;;
        --reps) REPS="$2"; shift 2 ;;
        --size) SIZE_MB="$2"; shift 2 ;;
        --runtime) RUNTIME="$2"; shift 2 ;;
        --ramp) RAMP="$2"; shift 2 ;;
        --iodepth) QD="$2"; shift 2 ;;
        --block-size) BLOCK="$2"; shift 2 ;;
        --skip-zeroing) FEATURES="1 skip_block_zeroing"; shift ;;
        --multi) MULTI_N="$2"; shift 2 ;;
        --cow-mb) COW_MB="$2"; shift 2 ;;
        --discard-mappings) DISC_MAP="$2"; shift 2 ;;
        --delete-mappings) DEL_MAP="$2"; shift 2 ;;
        --other-mb) OTHER_MB="$2"; shift 2 ;;
        --delete-qd) DEL_QD="$2"; shift 2 ;;
        --delete-idle) DEL_IDLE="$2"; shift 2 ;;
        --extra-reps) EXTRA_REPS="$2"; shift 2 ;;
        --seed) SEED="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --cpus) CPUS="$2"; shift 2 ;;
        --mem) MEM="$2"; shift 2 ;;
        --clock) CLOCK="$2"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --report) REPORT_ONLY="$2"; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done

report() {
    python3 "$REPO/scripts/bench-report.py" "$1"
}
if [ -n "$REPORT_ONLY" ]; then
    report "$REPORT_ONLY"
    exit $?
fi

if [ "$SMOKE" = 1 ]; then
    : "${SIZE_MB:=16}" "${RUNTIME:=400ms}" "${RAMP:=0}"
    : "${DISC_MAP:=16384}" "${DEL_MAP:=20000}" "${OTHER_MB:=16}" "${DEL_IDLE:=0.5}" "${EXTRA_REPS:=1}"
else
    : "${SIZE_MB:=256}" "${RUNTIME:=10}" "${RAMP:=2}"
    : "${DISC_MAP:=262144}" "${DEL_MAP:=1000000}" "${OTHER_MB:=256}" "${DEL_IDLE:=2}"
fi
: "${COW_MB:=$SIZE_MB}" "${EXTRA_REPS:=$REPS}"
[ -n "$SEED" ] || SEED=$(( $(date +%s) % 100000 ))
for v in REPS SIZE_MB QD BLOCK MULTI_N SEED CPUS COW_MB DISC_MAP DEL_MAP OTHER_MB DEL_QD EXTRA_REPS; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || die "--${v,,} needs a number: ${!v}"
done
# to_ms <time>: "10", "2.5" (seconds) or "500ms" -> milliseconds.
to_ms() {
    case "$1" in
        *ms) [[ "${1%ms}" =~ ^[0-9]+$ ]] && echo "${1%ms}" ;;
        *) [[ "$1" =~ ^[0-9]+(\.[0-9]+)?$ ]] && awk -v t="$1" 'BEGIN { printf "%d", t * 1000 }' ;;
    esac
}
RUNTIME_MS=$(to_ms "$RUNTIME") || die "--runtime: seconds or Nms, not $RUNTIME"
RAMP_MS=$(to_ms "$RAMP") || die "--ramp: seconds or Nms, not $RAMP"
DEL_IDLE_MS=$(to_ms "$DEL_IDLE") || die "--delete-idle: seconds or Nms, not $DEL_IDLE"
[ "$RUNTIME_MS" -ge 100 ] || die "--runtime must be at least 100ms"
[ "$REPS" -ge 1 ] || die "--reps must be at least 1"
[ "$MULTI_N" -ge 1 ] || die "--multi must be at least 1"
command -v gnuplot >/dev/null || die "gnuplot not found (scripts/install-deps.sh installs gnuplot-nox)"
command -v fio >/dev/null || die "fio not found (scripts/install-deps.sh)"
command -v thin_restore >/dev/null || die "thin_restore not found (thin-provisioning-tools)"

# Replay-log sizes: at most this many writes, each to a new pool block;
# the runtime usually ends the run first (caps at about twice the fastest
# rates seen under software emulation: 2000/s provisioning, 1000/s fsync,
# 250/s per thin in multi).  They are also bounded by the guest tmpfs
# (1200M, with the zeroed blocks counted whole): about 1000 MiB written
# per stack at most, half for prov, a sixth for fsync, a third for multi.
# The devices hold twice as many blocks; the writes go to a random half.
BLOCK_BYTES=$((BLOCK * 512))
BUDGET_BLOCKS=$(( (1000 - SIZE_MB) * 1048576 / BLOCK_BYTES ))
[ "$BUDGET_BLOCKS" -ge $((60 * MULTI_N)) ] || die "--size $SIZE_MB with --block-size $BLOCK leaves no room in the guest tmpfs"
min() { [ "$1" -le "$2" ] && echo "$1" || echo "$2"; }
PROV_IOS=$(min $((RUNTIME_MS * 2)) $((BUDGET_BLOCKS / 2)))
FSYNC_IOS=$(min "$RUNTIME_MS" $((BUDGET_BLOCKS / 6)))
MULTI_IOS=$(min $((RUNTIME_MS / 4)) $((BUDGET_BLOCKS / (3 * MULTI_N))))
META_MB=$([ "$SMOKE" = 1 ] && echo 16 || echo 64)
PROV_BLOCKS=$((PROV_IOS * 2)); FSYNC_BLOCKS=$((FSYNC_IOS * 2)); MULTI_BLOCKS=$((MULTI_IOS * 2))
# The data device holds the linear layout (every device side by side; the
# tmpfs file is sparse).
DATA_MB=$(( (SIZE_MB * 1048576 + (PROV_BLOCKS + FSYNC_BLOCKS + MULTI_N * MULTI_BLOCKS) * BLOCK_BYTES) / 1048576 + 16 ))
# The snapshot, discard and delete rows run on a pool of their own (after
# the main workloads' teardown, the main data device discarded): for the
# snapshot, the origin plus one copy per block.
COW_BLOCKS=$((COW_MB * 1048576 / BLOCK_BYTES))
[ "$COW_BLOCKS" -ge 16 ] || die "--cow-mb $COW_MB: fewer than 16 pool blocks"
[ "$COW_MB" -le 480 ] || die "--cow-mb $COW_MB: origin and copies must fit the guest tmpfs (at most 480)"
# That pool's metadata is made by thin_restore (thin 1: the deleted one,
# thin 3: the discarded one, thin 2: the other thin doing I/O during the
# delete); the snapshot row's origin is created in the guest; the data
# device (sparse) holds exactly their blocks.
OTHER_BLOCKS=$((OTHER_MB * 1048576 / BLOCK_BYTES))
[ "$OTHER_BLOCKS" -ge 16 ] || die "--other-mb $OTHER_MB: fewer than 16 pool blocks"
[ "$DISC_MAP" -ge 1 ] && [ "$DEL_MAP" -ge 1 ] || die "--discard-mappings and --delete-mappings must be at least 1"
[ "$DEL_QD" -ge 1 ] || die "--delete-qd must be at least 1"
# Free blocks for the snapshot row's origin and its copies.
DD_BLOCKS=$((DEL_MAP + DISC_MAP + OTHER_BLOCKS + 2 * COW_BLOCKS + 16))
# Metadata device: 256 MiB (32 MiB smoke), more for more than about 2.5M
# mappings (thin_restore used 32 MiB for 1M).
DM_META_MB=$([ "$SMOKE" = 1 ] && echo 32 || echo 256)
[ "$DM_META_MB" -ge $((DD_BLOCKS * 100 / 1048576 + 8)) ] || DM_META_MB=$((DD_BLOCKS * 100 / 1048576 + 8))
[ "$DM_META_MB" -le 16000 ] || die "too many mappings for a 16 GiB metadata device"

[ -n "$OUT" ] || OUT="/tmp/dm-thin-rs-logs/bench-guest-$(date -u +%Y%m%d-%H%M%S)"
[ ! -e "$OUT/runs" ] || die "$OUT already holds runs"
mkdir -p "$OUT/iologs"
OUT="$(realpath "$OUT")"

# Stack orders: a random permutation for the first repetition, then its
# rotations (each stack takes each position once every 3 repetitions),
# reversed in the next 3 (so each pair of stacks runs in both orders);
# then again from another random permutation.
ORDERS=$(python3 - "$SEED" "$REPS" <<'EOF'
import random, sys
r = random.Random(int(sys.argv[1]))
out = []
for i in range(int(sys.argv[2])):
    if i % 6 == 0:
        base = ["linear", "upstream", "ours"]
        r.shuffle(base)
    b = base if i % 6 < 3 else base[::-1]
    k = i % 3
    out.append(",".join(b[k:] + b[:k]))
print(" ".join(out))
EOF
)

# Replay logs (fio iolog v2): one 4 KiB write at a random 4 KiB slot of a
# distinct random block, in random order; the fsync ones an fsync after
# each write.
python3 - "$OUT/iologs" "$SEED" "$BLOCK_BYTES" "$PROV_IOS" "$FSYNC_IOS" "$MULTI_IOS" "$MULTI_N" <<'EOF'
import random, sys
d, seed, bb, prov, fs, multi, mn = sys.argv[1], *map(int, sys.argv[2:])
r = random.Random(seed * 7919 + 1)
def make(name, dev, n, sync):
    slots = bb // 4096
    with open(f"{d}/{name}.log", "w") as f:
        f.write(f"fio version 2 iolog\n{dev} add\n{dev} open\n")
        for b in r.sample(range(2 * n), n):
            f.write(f"{dev} write {b * bb + r.randrange(slots) * 4096} 4096\n")
            if sync:
                f.write(f"{dev} sync 0 0\n")
        f.write(f"{dev} close\n")
make("prov", "/dev/mapper/prov", prov, False)
make("fsync", "/dev/mapper/fsync", fs, True)
for i in range(mn):
    make(f"m{i}", f"/dev/mapper/m{i}", multi, True)
EOF

# The snapshot row's replay log: one 4 KiB write at a random 4 KiB slot of
# every block of the origin, in random order (each breaks sharing).
python3 - "$OUT/iologs" "$SEED" "$BLOCK_BYTES" "$COW_BLOCKS" <<'EOF'
import random, sys
d, seed, bb, n = sys.argv[1], *map(int, sys.argv[2:])
r = random.Random(seed * 7919 + 2)
slots = bb // 4096
with open(f"{d}/cow.log", "w") as f:
    f.write("fio version 2 iolog\n/dev/mapper/cow add\n/dev/mapper/cow open\n")
    for b in r.sample(range(n), n):
        f.write(f"/dev/mapper/cow write {b * bb + r.randrange(slots) * 4096} 4096\n")
    f.write("/dev/mapper/cow close\n")
EOF

# The discard/delete metadata: thin_restore of a generated XML, checked,
# then cut after its used part (the guest copies that onto a loop device
# of DM_META_MB for every stack; it reads it through the shared directory).
say "delete/discard metadata: $DEL_MAP + $DISC_MAP + $OTHER_BLOCKS mappings, ${DM_META_MB} MiB device"
python3 "$REPO/scripts/bench-meta.py" xml "$OUT/delete-meta.xml" "$SEED" "$BLOCK" "$DEL_MAP" "$DISC_MAP" "$OTHER_BLOCKS" $((2 * COW_BLOCKS + 16)) \
    || die "generating the delete metadata XML"
rm -f "$OUT/delete-meta.img"
truncate -s "${DM_META_MB}M" "$OUT/delete-meta.img"
thin_restore -q -i "$OUT/delete-meta.xml" -o "$OUT/delete-meta.img" > "$OUT/delete-meta.restore" 2>&1 \
    || { cat "$OUT/delete-meta.restore" >&2; die "thin_restore of the delete metadata failed"; }
thin_check "$OUT/delete-meta.img" > "$OUT/delete-meta.check" 2>&1 \
    || { cat "$OUT/delete-meta.check" >&2; die "thin_check of the restored delete metadata failed"; }
DM_META_USED=$(python3 "$REPO/scripts/bench-meta.py" trim "$OUT/delete-meta.img") || die "cutting the delete metadata"
gzip -f "$OUT/delete-meta.xml"

cat > "$OUT/params" <<EOF
SMOKE=$SMOKE
REPS=$REPS
ORDERS="$ORDERS"
SEED=$SEED
SIZE_MB=$SIZE_MB
RUNTIME_MS=$RUNTIME_MS
RAMP_MS=$RAMP_MS
QD=$QD
BLOCK_SECTORS=$BLOCK
POOL_FEATURES="$FEATURES"
MULTI_N=$MULTI_N
PROV_IOS=$PROV_IOS
PROV_BLOCKS=$PROV_BLOCKS
FSYNC_IOS=$FSYNC_IOS
FSYNC_BLOCKS=$FSYNC_BLOCKS
MULTI_IOS=$MULTI_IOS
MULTI_BLOCKS=$MULTI_BLOCKS
COW_MB=$COW_MB
COW_BLOCKS=$COW_BLOCKS
DISC_MAP=$DISC_MAP
DEL_MAP=$DEL_MAP
OTHER_MB=$OTHER_MB
OTHER_BLOCKS=$OTHER_BLOCKS
DEL_QD=$DEL_QD
DEL_IDLE_MS=$DEL_IDLE_MS
EXTRA_REPS=$EXTRA_REPS
DD_BLOCKS=$DD_BLOCKS
DM_META_MB=$DM_META_MB
DM_META_USED_MB=$DM_META_USED
META_MB=$META_MB
DATA_MB=$DATA_MB
GUEST_CPUS=$CPUS
GUEST_MEM=$MEM
CLOCK=$CLOCK
HOST_COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$REPO" diff --quiet HEAD 2>/dev/null || echo -dirty)
EOF

if [ "$BUILD" = 1 ]; then
    bash "$REPO/scripts/build-module.sh" >/dev/null 2>&1 || bash "$REPO/scripts/build-module.sh" || die "module build failed"
fi
[ -f "${DMTHIN_KO:-$REPO/dm_thin_rs.ko}" ] || die "module not built: run scripts/build-module.sh"

say "results in $OUT (seed $SEED, orders $ORDERS)"
say "booting the guest: $REPS repetitions x 3 stacks, ${RUNTIME_MS} ms (+ ${RAMP_MS} ms ramp) per workload; snapshot thin $COW_MB MiB, discard $DISC_MAP and delete $DEL_MAP mappings"
# VM timeout: generous (7 workloads, setup and teardown per stack run;
# then the snapshot, discard and delete rows per thin stack run, allowing
# 1 ms per mapping discarded or deleted).
TIMEOUT=$(( 300 + REPS * 3 * (7 * ((RUNTIME_MS + RAMP_MS) / 1000 + 15) + 60) ))
TIMEOUT=$(( TIMEOUT + EXTRA_REPS * 2 * (120 + RUNTIME_MS / 1000 + 2 * DEL_IDLE_MS / 1000 + (DISC_MAP + DEL_MAP) / 1000) ))
case "$CLOCK" in
    icount) export DMTHIN_QEMU_OPTS="${DMTHIN_QEMU_OPTS:+$DMTHIN_QEMU_OPTS }-icount shift=2,sleep=off" ;;
    real) ;;
    *) die "--clock: icount or real, not $CLOCK" ;;
esac
t0=$(date +%s)
rc=0
qemu/run-guest.sh -q -c "$CPUS" -m "$MEM" -t "$TIMEOUT" -o "$OUT" tests/bench/guest-bench.sh || rc=$?
t1=$(date +%s)
echo "$((t1 - t0))" > "$OUT/wall-seconds-total"
if [ "$rc" != 0 ]; then
    say "guest benchmark FAILED (exit $rc); the end of its log:"
    tail -30 "$OUT/guest.log" >&2 || true
    exit 1
fi
say "guest done in $((t1 - t0)) s wall (guest script $(cat "$OUT/guest-seconds" 2>/dev/null || echo ?) s)"
report "$OUT"
