#!/usr/bin/env python3
"""Power cuts under a thin pool, in ONE process (tests/guest/21-power-cut*.sh).

Usage: powercut.py --meta DEV --data DEV --cuts N --seed S [options]
(see the argument parser below).  Runs with whichever dm-thin module is
loaded; the caller runs it once per implementation with the same seeds.

Device stack: `pc-cut` is a linear concatenation of the metadata loop
device then the data loop device; `pc-meta` and `pc-data` are linear
devices over its two halves; the pool is made on pc-meta and pc-data.
Cutting power = `pc-cut` suspended with noflush (bios already issued to
the loop devices complete, new ones are held) and resumed with an `error`
table (held and later bios fail) or a dm-flakey `drop_writes` table (held
and later writes are dropped and reported done, reads still work: the pool
goes on believing its writes and commits succeed).  One device for both
halves makes the cut atomic across metadata and data.

Each round: one thin (in turn) is removed, deleted and replaced by a new
thin id (its freed blocks are reused: stale data would show); optionally
a metadata snapshot is reserved or released; one writer thread per thin
writes O_DIRECT at seeded random offsets and lengths, each write either
plain, O_DSYNC (REQ_FUA) or followed by fsync (REQ_PREFLUSH); after a
seeded random delay the power is cut; the writers stop (errors or a stop
flag), the thins and the pool are removed, `pc-cut` gets its linear table
back, thin_check runs on the metadata, the pool is created again from the
surviving devices and every sector of every thin is read and judged.

Every 512-byte sector written holds a 32-byte stamp repeated 16 times:
magic, thin id (the device's own id: a new id per thin incarnation), the
write's generation (unique across the run), the sector's own number and a
check word.  After recovery, for every sector s of every thin:
  - its bytes are either the round's base (what the sector held after the
    previous recovery; zeros for a new thin) or the stamp of a write this
    round issued to s on this thin (any other content is foreign, stale,
    misplaced or torn data);
  - if some write to s was durably acknowledged (an O_DSYNC write that
    returned, or a write followed by an fsync that returned), the sector
    holds that write or a later one issued to s, never the base or an
    earlier write (a lost or rolled-back acknowledged write).
Also: thin_check passes after every teardown; the recovered pool is in
write mode, not needs_check; a thin deleted before the writes is gone and
its replacement present; a metadata snapshot held before the writes is
still held; nothing hangs (writers, removals).

Prints one deterministic verdict line per cut to stdout ("cut N ...: ok"
or "cut N ...: VIOLATION <class>" lines), details (timings, counts, the
first offending sectors) to --details.  Exit 1 on any violation.
"""
import argparse
import errno
import fcntl
import mmap
import os
import random
import stat
import struct
import subprocess
import sys
import threading
import time

# ---- device-mapper ioctls ----------------------------------------------------
HDR = struct.Struct("=3IIIIiII4xQ128s129s7s")
assert HDR.size == 312


def _iowr(nr):
    return (3 << 30) | (HDR.size << 16) | (0xFD << 8) | nr


DEV_CREATE, DEV_REMOVE, DEV_SUSPEND, TABLE_LOAD, TABLE_STATUS, TARGET_MSG = (
    _iowr(3), _iowr(4), _iowr(6), _iowr(9), _iowr(12), _iowr(14))
SUSPEND_FLAG, SKIP_LOCKFS, NOFLUSH = 1 << 1, 1 << 10, 1 << 11
SPEC = struct.Struct("=QQiI16s")
CTL = os.open("/dev/mapper/control", os.O_RDWR)


def dm(cmd, name, flags=0, payload=b"", count=0, size=16384):
    size = max(size, HDR.size + len(payload))
    buf = bytearray(size)
    HDR.pack_into(buf, 0, 4, 0, 0, size, HDR.size, count, 0, flags, 0, 0,
                  name.encode(), b"", b"")
    buf[HDR.size:HDR.size + len(payload)] = payload
    fcntl.ioctl(CTL, cmd, buf, True)
    return buf, HDR.unpack_from(buf, 0)


def table_payload(lines):
    out = b""
    for l in lines:
        f = l.split(None, 3)
        p = (f[3] if len(f) > 3 else "").encode() + b"\0"
        n = SPEC.size + len(p)
        n += (-n) % 8
        out += SPEC.pack(int(f[0]), int(f[1]), 0, n, f[2].encode()) + p + b"\0" * (n - SPEC.size - len(p))
    return out, len(lines)


def dm_load(name, lines):
    payload, count = table_payload(lines)
    dm(TABLE_LOAD, name, 0, payload, count)


def dm_resume(name):
    dm(DEV_SUSPEND, name)


def dm_suspend(name, noflush=False):
    dm(DEV_SUSPEND, name, SUSPEND_FLAG | SKIP_LOCKFS | (NOFLUSH if noflush else 0))


def node(name):
    return "/dev/mapper/" + name


def dm_create(name, lines):
    _, h = dm(DEV_CREATE, name)
    try:
        dm_load(name, lines)
        dm_resume(name)
    except OSError:
        dm(DEV_REMOVE, name)
        raise
    dev = h[9]
    try:
        os.unlink(node(name))
    except FileNotFoundError:
        pass
    os.mknod(node(name), 0o600 | stat.S_IFBLK, os.makedev(os.major(dev), os.minor(dev)))


def dm_remove(name, tries=20):
    for i in range(tries):
        try:
            dm(DEV_REMOVE, name)
            break
        except OSError as e:
            if e.errno != errno.EBUSY or i == tries - 1:
                raise
            time.sleep(0.25)
    try:
        os.unlink(node(name))
    except FileNotFoundError:
        pass


def dm_exists(name):
    try:
        dm(TABLE_STATUS, name)
        return True
    except OSError:
        return False


def dm_status(name):
    buf, h = dm(TABLE_STATUS, name)
    pos = h[4]
    _, _, _, _, tt = SPEC.unpack_from(buf, pos)
    return buf[pos + SPEC.size:buf.index(b"\0", pos + SPEC.size)].decode()


def dm_message(name, text):
    dm(TARGET_MSG, name, 0, struct.pack("=Q", 0) + text.encode() + b"\0")


def sectors_of(dev):
    fd = os.open(dev, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_END) // 512
    finally:
        os.close(fd)


# ---- sector stamps -----------------------------------------------------------
MAGIC = b"DMTCUT01"
STAMP = struct.Struct("<8sIIQQ")   # magic, thin id, generation, sector, check
assert STAMP.size == 32


def check_word(tid, gen, sector):
    return ((tid * 0x9E3779B97F4A7C15) ^ (gen * 0xC2B2AE3D27D4EB4F) ^ (sector * 0x165667B19E3779F9)) & ((1 << 64) - 1)


def stamp(tid, gen, sector):
    return STAMP.pack(MAGIC, tid, gen, sector, check_word(tid, gen, sector)) * 16


def parse(sec):
    """(thin id, generation, sector) of a well-formed stamped sector, else None."""
    if sec[:8] != MAGIC:
        return None
    m, tid, gen, s, c = STAMP.unpack_from(sec, 0)
    if c != check_word(tid, gen, s) or bytes(sec) != bytes(sec[:32]) * 16:
        return None
    return tid, gen, s


ZERO_SECTOR = bytes(512)


def describe(sec):
    if bytes(sec) == ZERO_SECTOR:
        return "zeros"
    p = parse(sec)
    if p is None:
        return "unrecognised bytes %s" % bytes(sec[:16]).hex()
    return "thin %d gen %d sector %d" % p


# ---- the run -----------------------------------------------------------------
class Violation(Exception):
    pass


class Thin:
    def __init__(self, tid, sectors):
        self.tid = tid
        self.name = "pc-t%d" % tid
        self.base = bytearray(sectors * 512)      # verified content (zeros: new)
        self.latest = bytearray(sectors * 512)    # base + every issued write
        self.hist = {}                            # sector -> [write ids], issue order
        self.error = None
        self.counts = dict(issued=0, acked=0, durable=0)


class Run:
    def __init__(self, a):
        self.a = a
        self.meta_sectors = sectors_of(a.meta)
        self.data_sectors = sectors_of(a.data)
        self.pool_sectors = self.data_sectors // a.block * a.block
        self.thin_sectors = a.thin_mb * 2048
        self.gen = 0
        self.gen_lock = threading.Lock()
        self.writes = {}      # write id (= generation) -> [thin id, start, n, durable]
        self.next_tid = 1
        self.thins = []
        self.held = False
        self.details = open(a.details, "a")
        self.bad = 0
        self.t_cut, self.cut_mode = 0.0, "error"

    def log(self, msg):
        self.details.write(msg + "\n")
        self.details.flush()

    # -- stack ----------------------------------------------------------------
    def linear_concat(self):
        m, d = self.meta_sectors, self.data_sectors
        return ["0 %d linear %s 0" % (m, self.a.meta), "%d %d linear %s 0" % (m, d, self.a.data)]

    def cut_table(self, mode):
        m, d = self.meta_sectors, self.data_sectors
        if mode == "error":
            return ["0 %d error" % (m + d)]
        return ["0 %d flakey %s 0 0 1 1 drop_writes" % (m, self.a.meta),
                "%d %d flakey %s 0 0 1 1 drop_writes" % (m, d, self.a.data)]

    def pool_line(self, meta, data):
        f = " ".join(self.a.features.split())
        n = len(f.split())
        return "0 %d thin-pool %s %s %d 0%s" % (self.pool_sectors, meta, data, self.a.block,
                                               (" %d %s" % (n, f)) if n else "")

    def stack_up(self):
        dm_create("pc-cut", self.linear_concat())
        dm_create("pc-meta", ["0 %d linear %s 0" % (self.meta_sectors, node("pc-cut"))])
        dm_create("pc-data", ["0 %d linear %s %d" % (self.data_sectors, node("pc-cut"), self.meta_sectors)])

    def stack_down(self):
        for n in ("pc-data", "pc-meta", "pc-cut"):
            if dm_exists(n):
                dm_remove(n)

    def pool_up(self, meta=None, data=None):
        dm_create("pc-pool", [self.pool_line(meta or node("pc-meta"), data or node("pc-data"))])
        for t in self.thins:
            dm_create(t.name, ["0 %d thin %s %d" % (self.thin_sectors, node("pc-pool"), t.tid)])

    def pool_down(self):
        for t in self.thins:
            if dm_exists(t.name):
                dm_remove(t.name)
        if dm_exists("pc-pool"):
            dm_remove("pc-pool")

    def thin_check(self, dev, what):
        r = subprocess.run(["thin_check", dev], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            out = r.stdout.decode(errors="replace").strip().replace("\n", " | ")
            raise Violation("thin_check %s: exit %d: %s" % (what, r.returncode, out[:500]))

    def pool_mode_ok(self, what):
        st = dm_status("pc-pool").split()
        # <trans> <meta used/total> <data used/total> <held root> <mode> ...
        if len(st) < 5 or st[4] != "rw" or "needs_check" in st:
            raise Violation("%s: pool status '%s' (expected write mode, no needs_check)" % (what, " ".join(st)))
        return st

    # -- writers --------------------------------------------------------------
    def writer(self, t, rng, stop, kinds, lens, align):
        n_sect = self.thin_sectors
        buf = mmap.mmap(-1, max(lens) * 512)
        try:
            fd = os.open(node(t.name), os.O_RDWR | os.O_DIRECT)
            fds = os.open(node(t.name), os.O_RDWR | os.O_DIRECT | os.O_DSYNC)
        except OSError as e:
            t.error = "open: %s" % os.strerror(e.errno)
            return
        pending = []          # acked, not yet durable (this thread's writes)
        try:
            while not stop.is_set():
                n = rng.choice(lens)
                start = rng.randrange(0, (n_sect - n) // align + 1) * align
                kind = rng.choice(kinds)
                with self.gen_lock:
                    self.gen += 1
                    g = self.gen
                data = b"".join(stamp(t.tid, g, start + i) for i in range(n))
                buf[:len(data)] = data
                self.writes[g] = [t.tid, start, n, None]
                for i in range(n):
                    t.hist.setdefault(start + i, []).append(g)
                t.latest[start * 512:(start + n) * 512] = data
                t.counts["issued"] += 1
                try:
                    w = os.pwrite(fds if kind == "fua" else fd, memoryview(buf)[:len(data)], start * 512)
                    if w != len(data):
                        t.error = "short write %d of %d" % (w, len(data))
                        break
                    t.counts["acked"] += 1
                    if kind == "fua":
                        self.writes[g][3] = time.monotonic()
                        t.counts["durable"] += 1
                    else:
                        pending.append(g)
                    if kind == "fsync":
                        os.fsync(fd)
                        now = time.monotonic()
                        for p in pending:
                            self.writes[p][3] = now
                        t.counts["durable"] += len(pending)
                        pending = []
                except OSError as e:
                    t.error = os.strerror(e.errno)
                    break
        finally:
            os.close(fd)
            os.close(fds)

    # -- verification ---------------------------------------------------------
    def durable(self, g):
        """Write g was durably acknowledged, so it must survive: with an
        error cut every such acknowledgement counts (nothing issued after
        the cut can succeed, and what completed before it is on the loop
        device); with a drop_writes cut only those that returned before
        the cut began (later ones were "acknowledged" by a device whose
        writes were already being dropped)."""
        ack = self.writes[g][3]
        return ack is not None and (self.cut_mode == "error" or ack < self.t_cut)

    def verify_thin(self, t, problems):
        """Read the whole thin; judge every sector; the content becomes the base."""
        n = self.thin_sectors * 512
        chunk = 1 << 20
        m = mmap.mmap(-1, chunk)
        got = bytearray(n)
        fd = os.open(node(t.name), os.O_RDONLY | os.O_DIRECT)
        try:
            off = 0
            while off < n:
                r = os.preadv(fd, [memoryview(m)[:min(chunk, n - off)]], off)
                if r <= 0:
                    raise Violation("thin %d: read at %d returned %d" % (t.tid, off, r))
                got[off:off + r] = m[:r]
                off += r
        finally:
            os.close(fd)
        stats = dict(latest=0, older=0, base=0)
        step = 64 << 10
        for c in range(0, n, step):
            if got[c:c + step] == t.latest[c:c + step]:
                continue
            for so in range(c, min(c + step, n), 512):
                sec = got[so:so + 512]
                if sec == t.latest[so:so + 512]:
                    continue
                s = so // 512
                ids = t.hist.get(s, [])
                dur = [k for k, g in enumerate(ids) if self.durable(g)]
                first_ok = dur[-1] if dur else None
                if sec == t.base[so:so + 512]:
                    if first_ok is not None:
                        problems.append("LOST: thin %d sector %d holds its base (%s), durable gen %d written there"
                                        % (t.tid, s, describe(sec), ids[first_ok]))
                    else:
                        stats["base"] += 1
                    continue
                p = parse(sec)
                if p is None or p[0] != t.tid or p[2] != s or p[1] not in ids:
                    problems.append("FOREIGN: thin %d sector %d holds %s (never written there this round; base %s)"
                                    % (t.tid, s, describe(sec), describe(t.base[so:so + 512])))
                    continue
                k = ids.index(p[1])
                if first_ok is not None and k < first_ok:
                    problems.append("STALE: thin %d sector %d holds gen %d, older than durable gen %d"
                                    % (t.tid, s, p[1], ids[first_ok]))
                    continue
                stats["older"] += 1
        t.base = got
        t.latest = bytearray(got)
        t.hist = {}
        return stats

    # -- rounds ---------------------------------------------------------------
    def new_thin(self):
        t = Thin(self.next_tid, self.thin_sectors)
        self.next_tid += 1
        dm_message("pc-pool", "create_thin %d" % t.tid)
        dm_create(t.name, ["0 %d thin %s %d" % (self.thin_sectors, node("pc-pool"), t.tid)])
        return t

    def round(self, r, rng, mode):
        a = self.a
        note = []
        self.writes = {}
        tr = time.monotonic()
        # Replace one thin (in turn): its blocks are freed, then reused.
        k = (r - 1) % len(self.thins)
        old = self.thins[k]
        dm_remove(old.name)
        dm_message("pc-pool", "delete %d" % old.tid)
        self.thins[k] = self.new_thin()
        deleted = old.tid
        note.append("thin %d -> %d" % (deleted, self.thins[k].tid))
        if a.metasnap and rng.random() < 0.5:
            dm_message("pc-pool", "release_metadata_snap" if self.held else "reserve_metadata_snap")
            self.held = not self.held
            note.append("metadata snap %s" % ("reserved" if self.held else "released"))
        # Writers, then the cut.
        t_msgs = time.monotonic() - tr
        stop = threading.Event()
        kinds = ["plain", "plain", "fua", "fsync"]
        threads = []
        for i, t in enumerate(self.thins):
            t.error = None
            t.counts = dict(issued=0, acked=0, durable=0)
            wr = random.Random(rng.getrandbits(64))
            th = threading.Thread(target=self.writer, args=(t, wr, stop, kinds, a.lens, a.align), daemon=True)
            threads.append(th)
        dm_load("pc-cut", self.cut_table(mode))     # inactive until the cut
        delay = rng.uniform(a.min_delay, a.max_delay)
        t0 = time.monotonic()
        for th in threads:
            th.start()
        time.sleep(delay)
        t_cut = time.monotonic()
        self.t_cut, self.cut_mode = t_cut, mode
        dm_suspend("pc-cut", noflush=True)
        dm_resume("pc-cut")
        t_cut_done = time.monotonic()
        # After an error cut the writers stop on their errors; after a
        # drop_writes cut they go on (their writes are lost) for a moment.
        time.sleep(0.2 if mode == "flakey" else 0.05)
        stop.set()
        for th in threads:
            th.join(60)
            if th.is_alive():
                raise Violation("writer still blocked 60 s after the cut (hang)")
        self.log("round %d: %s; cut (%s) %.3f s after the writers started, the switch took %.3f s" %
                 (r, ", ".join(note), mode, t_cut - t0, t_cut_done - t_cut))
        for t in self.thins:
            self.log("  thin %d: issued %d acked %d durable %d, stopped by: %s" %
                     (t.tid, t.counts["issued"], t.counts["acked"], t.counts["durable"], t.error or "stop flag"))
        # Tear down the crashed pool, restore the devices, check, recover.
        t1 = time.monotonic()
        self.pool_down()
        dm_load("pc-cut", self.linear_concat())
        dm_suspend("pc-cut")
        dm_resume("pc-cut")
        t2 = time.monotonic()
        self.thin_check(node("pc-meta"), "after the cut")
        t3 = time.monotonic()
        self.pool_up()
        st = self.pool_mode_ok("recovered pool")
        if (st[3] != "-") != self.held:
            raise Violation("recovered pool: held metadata root '%s', expected %s" %
                            (st[3], "one" if self.held else "none"))
        try:
            dm_create("pc-deleted", ["0 %d thin %s %d" % (self.thin_sectors, node("pc-pool"), deleted)])
            dm_remove("pc-deleted")
            raise Violation("recovered pool: thin %d deleted before the writes is back" % deleted)
        except OSError:
            pass
        problems = []
        agg = dict(latest=0, older=0, base=0)
        must = sum(1 for g in self.writes if self.durable(g))
        t4 = time.monotonic()
        for t in self.thins:
            for key, v in self.verify_thin(t, problems).items():
                agg[key] += v
        t5 = time.monotonic()
        self.log("  recovered: pool '%s'; %d writes had to survive; sectors not at their latest write: "
                 "%d at an older write, %d at their base; teardown %.2f s, thin_check %.2f s, "
                 "pool up %.2f s, verify %.2f s; messages %.2f s; round %.2f s"
                 % (" ".join(st[:5]), must, agg["older"], agg["base"], t2 - t1, t3 - t2, t4 - t3, t5 - t4,
                    t_msgs, t5 - tr))
        if problems:
            for p in problems[:20]:
                self.log("  " + p)
            classes = sorted({p.split(":")[0] for p in problems})
            raise Violation("%s (%d sectors; first: %s)" % ("/".join(classes), len(problems), problems[0]))

    def main(self):
        a = self.a
        t0 = time.monotonic()
        self.stack_up()
        try:
            dm_create("pc-pool", [self.pool_line(node("pc-meta"), node("pc-data"))])
            for _ in range(a.thins):
                self.thins.append(self.new_thin())
            self.log("set-up %.2f s" % (time.monotonic() - t0))
            for r in range(1, a.cuts + 1):
                rs = a.seed * 100003 + r
                rng = random.Random(rs)
                mode = a.modes[(r - 1) % len(a.modes)]
                label = "cut %d (seed %d, %s)" % (a.first + r - 1, rs, mode)
                try:
                    self.round(r, rng, mode)
                    print("%s: ok" % label, flush=True)
                except Violation as v:
                    self.bad += 1
                    self.log("  VIOLATION: %s" % v)
                    print("%s: VIOLATION %s" % (label, v), flush=True)
                    return
            # The end: a clean teardown and thin_check, then the pool
            # straight on the loop devices (no wrappers) must hold exactly
            # what was verified last.
            t1 = time.monotonic()
            if self.held:
                dm_message("pc-pool", "release_metadata_snap")
                self.held = False
            self.pool_down()
            self.thin_check(node("pc-meta"), "after the last teardown")
            self.stack_down()
            self.pool_up(a.meta, a.data)
            self.pool_mode_ok("pool on the loop devices")
            problems = []
            for t in self.thins:
                t.hist = {}
                self.verify_thin(t, problems)
            if problems:
                raise Violation("final read on the loop devices: %s" % problems[0])
            self.pool_down()
            self.thin_check(a.meta, "final")
            print("final pool on the loop devices: every thin as last verified, thin_check ok", flush=True)
            self.log("final teardown, check, read on the loop devices: %.2f s" % (time.monotonic() - t1))
        except Violation as v:
            self.bad += 1
            self.log("VIOLATION: %s" % v)
            print("VIOLATION %s" % v, flush=True)
        except OSError as e:
            self.bad += 1
            self.log("ERROR: %s" % e)
            print("ERROR (device operation failed): %s" % e, flush=True)
        finally:
            try:
                self.pool_down()
            except OSError:
                pass
            try:
                self.stack_down()
            except OSError:
                pass


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--meta", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--cuts", type=int, required=True)
    p.add_argument("--first", type=int, default=1, help="number of the first cut (labels)")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--block", type=int, default=128, help="pool data block size, sectors")
    p.add_argument("--features", default="", help="pool feature words")
    p.add_argument("--thins", type=int, default=3)
    p.add_argument("--thin-mb", type=int, default=4)
    p.add_argument("--lens", default="8,8,8,16,32", help="write lengths, sectors")
    p.add_argument("--align", type=int, default=8, help="write alignment, sectors")
    p.add_argument("--modes", default="error,flakey")
    p.add_argument("--metasnap", action="store_true", help="reserve/release a metadata snapshot between rounds")
    p.add_argument("--min-delay", type=float, default=0.05)
    p.add_argument("--max-delay", type=float, default=1.2)
    p.add_argument("--details", default="/dev/null")
    a = p.parse_args()
    a.lens = [int(x) for x in a.lens.split(",")]
    a.modes = a.modes.split(",")
    run = Run(a)
    run.main()
    sys.exit(1 if run.bad else 0)


if __name__ == "__main__":
    main()
