#!/bin/bash
# timeout: 300
# host-prepare: printf '%s\n' "${DMTHIN_IMPLS:-}" > "$OUTDIR/dmthin-impls"
# Concurrent copy-on-write under load, compared between implementations
# (tests/lib/compare.sh; DMTHIN_IMPLS selects them).  An origin (4 MiB,
# 64 blocks of 64 KiB) is filled with a known pattern R, then two
# snapshots of it are taken (origin suspended around each create_snap).
# Then, all at once:
# - fio on the origin and both snapshots (libaio, iodepth 8, randwrite
#   4 KiB over the whole device, a quarter of the 4 KiB units each, each
#   unit at most once, verify=crc32c, write log kept): every write breaks
#   sharing or lands on a block its device already owns;
# - a reader on both snapshots (O_DIRECT 64 KiB reads at random places)
#   recording what it saw.
# Checks: fio exits 0 and verified every job; every 4 KiB unit a device
# did not write still holds R (the copies are whole and from the right
# block); every unit the reader saw held either R or the device's final
# data there, never another device's (reads of shared blocks quiesce
# before sharing is broken); pool status (used data blocks) and thin
# statuses compared; teardown, thin_check, thin_dump compared by virtual
# ranges (data block numbers depend on the interleaving) and its distinct
# data blocks equal the used count.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/compare.sh"
set -u
cmp_init "$@"
CMP_MASK_META_USED=1

PAT="$CMP_INPUTS/pattern"
cmp_random 18 "$PAT" $((4 << 20)) || fail "pattern"
TS=8192

# The reader: random 64 KiB O_DIRECT reads of the given devices until the
# stop file exists; appends every read to the output file (device index,
# offset, the 64 KiB it got).
READER="$CMP_INPUTS/reader.py"
cat > "$READER" <<'EOF'
import mmap, os, random, struct, sys
stop, out, devs = sys.argv[1], sys.argv[2], sys.argv[3:]
r = random.Random(1818)
fds = [os.open(d, os.O_RDONLY | os.O_DIRECT) for d in devs]
size = os.lseek(fds[0], 0, os.SEEK_END)
buf = mmap.mmap(-1, 65536)
n = 0
with open(out, "wb") as f:
    while not os.path.exists(stop) or n < 8:
        i = r.randrange(len(devs))
        off = r.randrange(size // 65536) * 65536
        os.preadv(fds[i], [buf], off)
        f.write(struct.pack("=IQ", i, off) + buf[:])
        n += 1
print("reads", n)
EOF

# The checker: argv = pattern, reader output, then per device
# "<device>=<fio write log>" (the origin first, then the reader's devices
# in its order).  Prints a deterministic summary; exit 1 on any unit that
# breaks the rules.  A 4 KiB unit read while fio wrote it may mix old and
# new bytes; it passes when every byte is the origin's or the final one,
# and fails if it holds bytes from neither (another device's data).
CHECKER="$CMP_INPUTS/check.py"
cat > "$CHECKER" <<'EOF'
import struct, sys
pat = open(sys.argv[1], "rb").read()
U = 4096
final, bad, names = {}, 0, []
for spec in sys.argv[3:]:
    dev, log = spec.split("=", 1)
    names.append(dev)
    data = open(dev, "rb").read()
    final[dev] = data
    w = set()
    for line in open(log):
        # "[timestamp] <file> write <offset> <length>" (iolog v2 or v3)
        f = line.split()
        if len(f) >= 4 and f[-3] == "write":
            off, ln = int(f[-2]), int(f[-1])
            w.update(range(off // U, (off + ln) // U))
    keep = [u for u in range(len(pat) // U) if u not in w and data[u * U:(u + 1) * U] != pat[u * U:(u + 1) * U]]
    print("%s: %d units written by fio, %d unwritten units differ from the origin's data" % (dev, len(w), len(keep)))
    if keep:
        bad += 1
        print("  first: %s" % keep[:8])
reader_devs = names[1:3]
wrong, torn, reads = [], 0, 0
with open(sys.argv[2], "rb") as f:
    while True:
        h = f.read(12)
        if len(h) < 12: break
        i, off = struct.unpack("=IQ", h)
        buf = f.read(65536)
        reads += 1
        dev = reader_devs[i]
        for k in range(16):
            a = off + k * U
            got, old, new = buf[k * U:(k + 1) * U], pat[a:a + U], final[dev][a:a + U]
            if got == old or got == new: continue
            if all(g == o or g == n for g, o, n in zip(got, old, new)): torn += 1
            else: wrong.append((dev, a // U))
print("reader: %d units read held data that was never on that device" % len(wrong))
with open(sys.argv[2] + ".info", "w") as f:
    f.write("%d reads, %d units read mid-write\n" % (reads, torn))
if wrong:
    bad += 1
    print("  first: %s" % wrong[:8])
sys.exit(1 if bad else 0)
EOF

scenario() {
    local DS i rc
    cmp_loop META meta 8
    cmp_loop DATA data 64
    DS=$(dev_sectors "$DATA")
    cmp_create pool "0 $DS thin-pool $META $DATA 128 0"
    cmp_must "create_thin 0" dms message pool 0 "create_thin 0"
    cmp_create thin0 "0 $TS thin /dev/mapper/pool 0"
    cmp_ok "fill the origin" dd if="$PAT" of=/dev/mapper/thin0 bs=1M oflag=direct status=none
    for i in 1 2; do
        cmp_ok "suspend origin" dms suspend thin0
        cmp_must "create_snap $i 0" dms message pool 0 "create_snap $i 0"
        cmp_ok "resume origin" dms resume thin0
        cmp_create "thin$i" "0 $TS thin /dev/mapper/pool $i"
    done
    cmp_pool_status pool
    cmp_check "64 used data blocks before the writes (got $P_DUSED)" test "$P_DUSED" = 64

    rm -f "$CMP_DIR/stop"
    python3 "$READER" "$CMP_DIR/stop" "$CMP_DIR/reads" /dev/mapper/thin1 /dev/mapper/thin2 \
        > "$CMP_DIR/reader.out" 2>&1 &
    local reader=$!
    rc=0
    fio --ioengine=libaio --direct=1 --iodepth=8 --verify=crc32c --verify_fatal=1 \
        --randrepeat=1 --randseed=1818 --rw=randwrite --bs=4k --size=4m --io_size=1m \
        --name=j0 --filename=/dev/mapper/thin0 --write_iolog="$CMP_DIR/j0.iolog" \
        --name=j1 --filename=/dev/mapper/thin1 --write_iolog="$CMP_DIR/j1.iolog" \
        --name=j2 --filename=/dev/mapper/thin2 --write_iolog="$CMP_DIR/j2.iolog" \
        > "$CMP_DIR/fio.out" 2>&1 || rc=$?
    touch "$CMP_DIR/stop"
    wait "$reader" || cmp__failed "the reader failed: $(tail -3 "$CMP_DIR/reader.out")"
    log "reader: $(cat "$CMP_DIR/reader.out")"
    local n_ok n_read
    n_ok=$(grep -cE '^j[0-9]+: .*err= *0\b' "$CMP_DIR/fio.out")
    n_read=$(grep -cE '^ *read: IOPS=' "$CMP_DIR/fio.out")
    cmp_rec "fio: rc=$rc jobs with err=0: $n_ok, jobs that read (verified): $n_read"
    if [ "$rc" != 0 ] || [ "$n_ok" != 3 ] || [ "$n_read" != 3 ]; then
        grep -iE 'err=|verify|error|crc' "$CMP_DIR/fio.out" | head -20
        cmp__failed "fio on the origin and two snapshots at once"
    fi
    cmp_ok "every unit holds its device's data" python3 "$CHECKER" "$PAT" "$CMP_DIR/reads" \
        "/dev/mapper/thin0=$CMP_DIR/j0.iolog" "/dev/mapper/thin1=$CMP_DIR/j1.iolog" \
        "/dev/mapper/thin2=$CMP_DIR/j2.iolog"
    log "reader (not compared): $(cat "$CMP_DIR/reads.info" 2>/dev/null)"
    cmp_pool_status pool
    local used=$P_DUSED
    for i in 0 1 2; do cmp_thin_status "thin$i"; done
    for i in 0 1 2; do cmp_remove "thin$i"; done
    cmp_teardown pool "$META" virt
    cmp_check "used data blocks $used = distinct data blocks in thin_dump $D_DISTINCT" \
        test "$used" = "$D_DISTINCT"
}

cmp_run scenario
cmp_finish
