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
#   --seed N         seed of the stack orders and the replay logs
#                    (default: from the clock, printed)
#   --out DIR        results directory (default
#                    /tmp/dm-thin-rs-logs/bench-guest-<date>)
#   --cpus N, --mem SIZE   guest vCPUs (default 1) and memory (default 2G)
#   --no-build       do not rebuild the module first
#   --report DIR     only (re)make the table and chart of a results directory
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
FEATURES=""; MULTI_N=4; SEED=""; OUT=""; CPUS=1; MEM=2G; BUILD=1; REPORT_ONLY=""
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
        --seed) SEED="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --cpus) CPUS="$2"; shift 2 ;;
        --mem) MEM="$2"; shift 2 ;;
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
else
    : "${SIZE_MB:=256}" "${RUNTIME:=10}" "${RAMP:=2}"
fi
[ -n "$SEED" ] || SEED=$(( $(date +%s) % 100000 ))
for v in REPS SIZE_MB QD BLOCK MULTI_N SEED CPUS; do
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
[ "$RUNTIME_MS" -ge 100 ] || die "--runtime must be at least 100ms"
[ "$REPS" -ge 1 ] || die "--reps must be at least 1"
[ "$MULTI_N" -ge 1 ] || die "--multi must be at least 1"
command -v gnuplot >/dev/null || die "gnuplot not found (scripts/install-deps.sh installs gnuplot-nox)"
command -v fio >/dev/null || die "fio not found (scripts/install-deps.sh)"

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
META_MB=$META_MB
DATA_MB=$DATA_MB
GUEST_CPUS=$CPUS
GUEST_MEM=$MEM
HOST_COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$REPO" diff --quiet HEAD 2>/dev/null || echo -dirty)
EOF

if [ "$BUILD" = 1 ]; then
    bash "$REPO/scripts/build-module.sh" >/dev/null 2>&1 || bash "$REPO/scripts/build-module.sh" || die "module build failed"
fi
[ -f "${DMTHIN_KO:-$REPO/dm_thin_rs.ko}" ] || die "module not built: run scripts/build-module.sh"

say "results in $OUT (seed $SEED, orders $ORDERS)"
say "booting the guest: $REPS repetitions x 3 stacks, ${RUNTIME_MS} ms (+ ${RAMP_MS} ms ramp) per workload"
# VM timeout: generous (7 workloads, setup and teardown per stack run).
TIMEOUT=$(( 300 + REPS * 3 * (7 * ((RUNTIME_MS + RAMP_MS) / 1000 + 15) + 60) ))
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
