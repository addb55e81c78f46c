#!/usr/bin/env bash
# An exact profile of the guest kernel under one workload: which functions
# execute how many guest instructions.  Boots one guest (1 vCPU) with
# QEMU's instruction-counting clock and the tbprof plugin
# (tests/bench/prof/tbprof.c, built here), runs one fio workload on a thin
# of ours or upstream's pool (tests/bench/prof/guest-prof.sh), then maps
# the counted addresses to symbols with the guest's /proc/kallsyms.
# Counts repeat run after run (icount), so two profiles compare exactly.
#
# Only the workload's window is counted (the guest marks its start and
# stop in the output directory; boot, set-up and prefill are left out).
#
# Usage: scripts/profile-guest.sh <ours|upstream|linear> <prov|randread|randwrite|fsync|discard|exec> [seconds] [top]
#   seconds: guest time of the workload (default 10); top: lines (default 40)
# Output: /tmp/dm-thin-rs-logs/profile-<stack>-<workload>-<date>/ with
# tbprof.txt (address, instructions), kallsyms.txt, profile.txt (printed).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$REPO"
[ $# -ge 2 ] || die "usage: $0 <ours|upstream> <workload> [seconds] [top]"
STACK=$1 WL=$2 SECS=${3:-10} TOP=${4:-40}
OUT=/tmp/dm-thin-rs-logs/profile-$STACK-$WL-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
SO="$OUT/tbprof.so"
gcc -O2 -shared -fPIC -o "$SO" tests/bench/prof/tbprof.c || die "building the plugin"
[ "$STACK" != ours ] || [ -f "${DMTHIN_KO:-$REPO/dm_thin_rs.ko}" ] || die "module not built: run scripts/build-module.sh"
# Replay logs for prov and fsync (as the guest benchmark's): one 4 KiB
# write at a random slot of each 64 KiB block of the 256 MiB thin, in
# random order (the fsync one with an fsync after each write).
python3 - "$OUT" <<'EOF'
import random, sys
r = random.Random(7)
for name, sync in (("prov", False), ("fsync", True)):
    with open(f"{sys.argv[1]}/{name}.log", "w") as f:
        f.write("fio version 2 iolog\n/dev/mapper/thin add\n/dev/mapper/thin open\n")
        for b in r.sample(range(4096), 4096):
            f.write(f"/dev/mapper/thin write {b * 65536 + r.randrange(16) * 4096} 4096\n")
            if sync:
                f.write("/dev/mapper/thin sync 0 0\n")
        f.write("/dev/mapper/thin close\n")
EOF
export DMTHIN_QEMU_OPTS="${DMTHIN_QEMU_OPTS:+$DMTHIN_QEMU_OPTS }-icount shift=2,sleep=off -plugin $SO,out=$OUT/tbprof.txt,mark=$OUT"
qemu/run-guest.sh -q -c 1 -t $((600 + SECS * 20)) -o "$OUT" tests/bench/prof/guest-prof.sh "$STACK" "$WL" "$SECS" \
    || die "guest run failed (logs in $OUT)"
[ -s "$OUT/tbprof.txt" ] || die "the plugin wrote no counts"
python3 - "$OUT" "$TOP" <<'PY' | tee "$OUT/profile.txt"
import bisect, collections, json, sys
out, top = sys.argv[1], int(sys.argv[2])
syms = []
for line in open(f"{out}/kallsyms.txt"):
    p = line.split()
    if len(p) >= 3 and p[1] in "tTwW":
        mod = p[3].strip("[]") if len(p) > 3 else "kernel"
        syms.append((int(p[0], 16), p[2], mod))
syms.sort()
addrs = [s[0] for s in syms]
by_sym, by_mod, calls, total = collections.Counter(), collections.Counter(), collections.Counter(), 0
for line in open(f"{out}/tbprof.txt"):
    a, n, length = (int(x, 16 if i == 0 else 10) for i, x in enumerate(line.split()))
    total += n
    i = bisect.bisect_right(addrs, a) - 1
    name, mod = (syms[i][1], syms[i][2]) if i >= 0 and a - syms[i][0] < (1 << 20) else ("?", "?")
    if a < (1 << 47):
        name, mod = "(user space)", "user"
    by_sym[(name, mod)] += n
    by_mod[mod] += n
    if i >= 0 and a == syms[i][0] and length:
        calls[(name, mod)] += n // length
ios = 0
try:
    for job in json.load(open(f"{out}/fio.json")).get("jobs", []):
        ios += sum(job[d]["total_ios"] for d in ("read", "write", "trim") if d in job)
except (OSError, ValueError, KeyError):
    pass
print(f"guest instructions: {total}")
if ios:
    print(f"I/Os completed: {ios}, guest instructions per I/O: {total / ios:.0f}")
print("by module:")
for m, n in by_mod.most_common(12):
    print(f"  {100 * n / total:6.2f}%  {m}")
print(f"top {top} functions:")
for (s, m), n in by_sym.most_common(top):
    print(f"  {100 * n / total:6.2f}%  {s} [{m}]")
if ios:
    print(f"most called functions, calls per I/O:")
    for (s, m), n in calls.most_common(top):
        print(f"  {n / ios:8.2f}  {s} [{m}]")
PY
