#!/usr/bin/env python3
"""Report of a guest benchmark run (scripts/bench.sh --guest).

Usage: bench-report.py DIR

Reads DIR/params and DIR/runs/rR-STACK/ (fio JSON, /proc/stat and
/proc/diskstats snapshots, dm status), checks every run (fio job errors,
mapped block counts of the thin stacks against the writes fio completed,
pool used data blocks), writes DIR/results.csv (one row per run and
workload), DIR/summary.csv (median and quartiles per workload and stack,
ratios of the medians), DIR/table.txt (printed too) and DIR/ratios.png
(gnuplot).  Exits 1 if a check failed (the table is still written).

The thin stacks also have the snapshot, discard and delete rows (EXTRA):
snap-fio.json, discard.txt, delete.txt and the other thin's per-I/O
latency log delete_clat.1.log; their checks: mapped and used blocks
after each step (every completed copy-on-write write allocated one block,
the discarded thin maps nothing and its blocks are free, the deleted
thin's blocks are free).
"""
import csv
import json
import os
import re
import statistics
import subprocess
import sys

STACKS = ["linear", "upstream", "ours"]
# workload -> (unit of the main figure, what it measures)
WORKLOADS = [
    ("seqwrite-1M-new", "MiB/s", "1M sequential writes to new blocks (prefill, whole blocks)"),
    ("randread-4k", "IOPS", "4k random reads, provisioned blocks, QD{qd}"),
    ("seqread-1M", "MiB/s", "1M sequential reads, provisioned blocks, QD{qd}"),
    ("randwrite-4k", "IOPS", "4k random writes, provisioned blocks, QD{qd}"),
    ("prov-randwrite-4k", "IOPS", "4k random writes, each to a new block, QD{qd}"),
    ("fsync-randwrite-4k", "IOPS", "4k writes to new blocks, fsync after each, QD1"),
    ("multi-fsync-4k", "IOPS", "the same on {multi} thins at once (sum)"),
]
# Thin stacks only: workload -> (unit, higher or lower is better, what).
EXTRA = [
    ("cow-randwrite-4k", "IOPS", "hi", "4k writes each to a distinct block shared with a snapshot "
     "(copy-on-write), QD{qd}, {cow} MiB origin"),
    ("discard-whole", "GiB/s", "hi", "BLKDISCARD of a whole thin with {disc} mapped blocks (passdown)"),
    ("delete-thin", "s", "lo", "`delete` of a thin with {dele} mapped blocks, another thin doing "
     "4k randrw QD{dqd}"),
    ("delete-other-p99", "ms", "lo", "that other thin: p99 completion latency of its I/Os in flight "
     "during the delete"),
    ("delete-other-max", "ms", "lo", "that other thin: max completion latency of those I/Os"),
]
LOWER = {wl for wl, _, b, _ in EXTRA if b == "lo"}
USER_HZ = os.sysconf("SC_CLK_TCK")


def load_params(d):
    p = {}
    with open(os.path.join(d, "params")) as f:
        for line in f:
            m = re.match(r'^(\w+)="?(.*?)"?$', line.strip())
            if m:
                p[m.group(1)] = m.group(2)
    return p


def load_json(path):
    with open(path) as f:
        t = f.read()
    i = t.find("{")  # fio may print warnings before the JSON
    if i < 0:
        raise ValueError(f"{path}: no JSON")
    return json.loads(t[i:])


def read_snap(path, devs):
    """(cpu jiffies list, {dev: sectors written}) of one snapshot file:
    the `cat /proc/stat /proc/diskstats` of fio's exec_prerun, or the
    guest's end.snap (the cpu line and the two devices' lines)."""
    cpu, disk = None, {}
    with open(path) as f:
        for line in f:
            x = line.split()
            if x and x[0] == "cpu":
                cpu = list(map(int, x[1:]))
            elif len(x) > 9 and x[2] in devs:
                disk[x[2]] = int(x[9])  # sectors written
    return cpu, disk


def cpu_busy(a, b):
    """(busy jiffies, total jiffies) between two cpu lines."""
    d = [y - x for x, y in zip(a, b)]
    user, nice, system, idle, iowait, irq, softirq = d[:7]
    steal = d[7] if len(d) > 7 else 0
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


def parse_status(path):
    """{name: fields after 'start len'} of `dmsetup status`."""
    out = {}
    with open(path) as f:
        for line in f:
            name, rest = line.split(":", 1)
            out[name] = rest.split()[2:]
    return out


def kv(path):
    """{key: float} of a "k=v k=v" line file (bench-ops.py output)."""
    with open(path) as f:
        return {k: float(v) for k, v in (x.split("=", 1) for x in f.read().split())}


def nearest_rank(vals, q):
    v = sorted(vals)
    return v[max(0, min(len(v) - 1, int(-(-q * len(v) // 100)) - 1))]


def lat_window(path, start, end):
    """The other thin's I/Os from fio's latency log (epoch ms, ns): those in
    flight at some moment of [start, end] (completed at or after start,
    issued at or before end) and those completed before start."""
    during, before = [], []
    with open(path) as f:
        for line in f:
            x = line.split(",")
            if len(x) < 2:
                continue
            t = int(x[0]) / 1000.0
            ms = int(x[1]) / 1e6
            if t >= start and t - ms / 1000.0 <= end:
                during.append(ms)
            elif t < start:
                before.append(ms)
    return during, before


def extra_rows(run, rep, stack, rd, p, bs, errors):
    """The EXTRA rows of one thin run, with their checks."""
    out = []

    def row(wl, unit, value, **kw):
        r = dict(rep=int(rep), stack=stack, workload=wl, unit=unit, value=value)
        r.update(kw)
        out.append(r)

    def status(name):
        try:
            return parse_status(os.path.join(rd, name))
        except OSError as e:
            errors.append(f"{run}: {name}: {e}")
            return {}

    def mapped(st, dev):
        f = st.get(dev)
        if not f or f[0] != "thin":
            errors.append(f"{run}: no thin status for {dev}")
            return None
        return int(f[1]) // bs

    def used(st, pool):
        f = st.get(pool)
        if not f or f[0] != "thin-pool":
            errors.append(f"{run}: no status for {pool}")
            return None
        return int(f[3].split("/")[0])

    def expect(what, got, want):
        if got is not None and got != want:
            errors.append(f"{run}: {what}: {got}, expected {want}")

    cow_blocks, dele = int(p["COW_BLOCKS"]), int(p["DEL_MAP"])
    other = int(p["OTHER_BLOCKS"])
    cow_ios = None
    # Snapshot: copy-on-write writes.
    try:
        jobs = {j["jobname"].partition("@")[0]: j for j in load_json(os.path.join(rd, "snap-fio.json"))["jobs"]}
        j = jobs["cow-randwrite-4k"]
        w = j["write"]
        if j.get("error", 0):
            errors.append(f"{run}: cow-randwrite-4k: fio error {j['error']}")
        pc = w.get("clat_ns", {}).get("percentile", {})
        cow_ios = w["total_ios"]
        row("cow-randwrite-4k", "IOPS", w["iops"], iops=w["iops"], mib_s=w["bw"] / 1024.0,
            ios=w["total_ios"], runtime_ms=j["job_runtime"],
            clat_p99_us=pc.get("99.000000", 0) / 1000.0, fio_usr_pct=j["usr_cpu"], fio_sys_pct=j["sys_cpu"])
    except (OSError, KeyError, ValueError) as e:
        errors.append(f"{run}: cow-randwrite-4k: {e!r}")
    # Discard of a whole thin.
    try:
        d = kv(os.path.join(rd, "discard.txt"))
        row("discard-whole", "GiB/s", d["bytes"] / 2**30 / d["seconds"], seconds=d["seconds"])
    except (OSError, KeyError, ValueError, ZeroDivisionError) as e:
        errors.append(f"{run}: discard-whole: {e!r}")
    # Delete, and the other thin's latency meanwhile.
    try:
        d = kv(os.path.join(rd, "delete.txt"))
        during, before = lat_window(os.path.join(rd, "delete_clat.1.log"), d["start"], d["end"])
        base = dict(base_p99_ms=nearest_rank(before, 99) if before else None,
                    base_max_ms=max(before) if before else None, lat_ios=len(during))
        row("delete-thin", "s", d["seconds"], seconds=d["seconds"], **base)
        if during:
            row("delete-other-p99", "ms", nearest_rank(during, 99), **base)
            row("delete-other-max", "ms", max(during), **base)
        else:
            errors.append(f"{run}: the other thin had no I/O in flight during the delete")
        for j in load_json(os.path.join(rd, "delete-fio.json"))["jobs"]:
            if j.get("error", 0):
                errors.append(f"{run}: delete-other: fio error {j['error']}")
    except (OSError, KeyError, ValueError) as e:
        errors.append(f"{run}: delete-thin: {e!r}")
    # One status at the end: the origin still maps every block, the
    # discarded thin nothing, the other thin all its blocks; the pool uses
    # the other's, the origin's and one block per copy-on-write write (the
    # snapshot holds the originals); the deleted thin's are free.
    st = status("extra-status")
    expect("cow: mapped blocks", mapped(st, "cow"), cow_blocks)
    expect("disc: mapped blocks after the discard", mapped(st, "disc"), 0)
    expect("other: mapped blocks", mapped(st, "other"), other)
    if cow_ios is not None:
        expect("dpool: used blocks (other + origin + one per copy; deleted and discarded freed)",
               used(st, "dpool"), other + cow_blocks + cow_ios)
    if dele and not os.path.exists(os.path.join(rd, "extra-thin_check")):
        errors.append(f"{run}: no extra-thin_check output")
    return out


def pct(vals, q):
    if len(vals) == 1:
        return vals[0]
    return statistics.quantiles(vals, n=4, method="inclusive")[q - 1]


def fmt(v):
    if v is None:
        return "-"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def main():
    d = sys.argv[1]
    p = load_params(d)
    qd, multi = p.get("QD", "?"), p.get("MULTI_N", "?")
    bs = int(p["BLOCK_SECTORS"])
    errors = []
    rows = []
    runs_dir = os.path.join(d, "runs")
    runs = sorted(os.listdir(runs_dir), key=lambda s: (int(s[1:].split("-")[0]), s))
    want = [f"r{i + 1}-{st}" for i, o in enumerate(p["ORDERS"].split()) for st in o.split(",")]
    for r in want:
        if r not in runs:
            errors.append(f"{r}: run missing")
    meta_dev = data_dev = None
    gi = os.path.join(d, "guest-info.txt")
    if os.path.exists(gi):
        for line in open(gi):
            if line.startswith("meta "):
                x = line.split()
                meta_dev, data_dev = x[1].split("/")[-1], x[3].split("/")[-1]
    for run in runs:
        rep, stack = run[1:].split("-", 1)
        rd = os.path.join(runs_dir, run)
        wl_ios = {}
        jp = os.path.join(rd, "fio.json")
        if not os.path.exists(jp):
            errors.append(f"{run}: no fio output")
            continue
        jobs = {}
        for job in load_json(jp)["jobs"]:
            wl, _, dev = job["jobname"].partition("@")
            jobs.setdefault(wl, []).append((dev, job))
        devs = {meta_dev, data_dev}
        snaps = []
        for wl, _, _ in WORKLOADS:
            if wl in jobs:
                snaps.append(os.path.join(rd, f"{wl}@{jobs[wl][0][0]}.prerun.txt"))
        snaps.append(os.path.join(rd, "end.snap"))
        for k, (wl, unit, _) in enumerate(WORKLOADS):
            if wl not in jobs:
                errors.append(f"{run}: {wl}: no fio job")
                continue
            iops = bw = usr = sys_ = 0.0
            ios = 0
            p99 = 0.0
            rt_ms = 0
            per_job = []
            for dev, job in jobs[wl]:
                if job.get("error", 0):
                    errors.append(f"{run}: {wl}: fio job {job['jobname']} error {job['error']}")
                for dirn in ("read", "write"):
                    s_ = job[dirn]
                    iops += s_["iops"]
                    bw += s_["bw"] / 1024.0  # KiB/s -> MiB/s
                    ios += s_["total_ios"]
                    pc = s_.get("clat_ns", {}).get("percentile", {})
                    if s_["total_ios"] and "99.000000" in pc:
                        p99 = max(p99, pc["99.000000"] / 1000.0)
                per_job.append((dev, job["write"]["total_ios"]))
                usr += job["usr_cpu"]
                sys_ += job["sys_cpu"]
                rt_ms = max(rt_ms, job["job_runtime"])
            wl_ios[wl] = per_job
            busy_pct = us_per_io = meta_kib = data_kib = None
            try:
                c0, d0 = read_snap(snaps[k], devs)
                c1, d1 = read_snap(snaps[k + 1], devs)
                busy, total = cpu_busy(c0, c1)
                if total:
                    busy_pct = 100.0 * busy / total
                    if ios:
                        us_per_io = busy_pct / 100.0 * rt_ms * 1000.0 / ios
                if meta_dev in d0 and meta_dev in d1:
                    meta_kib = (d1[meta_dev] - d0[meta_dev]) / 2.0
                if data_dev in d0 and data_dev in d1:
                    data_kib = (d1[data_dev] - d0[data_dev]) / 2.0
            except (OSError, IndexError, ValueError, TypeError) as e:
                errors.append(f"{run}: {wl}: CPU/disk snapshots: {e}")
            rows.append(dict(rep=int(rep), stack=stack, workload=wl, unit=unit,
                             value=bw if unit == "MiB/s" else iops,
                             iops=iops, mib_s=bw, ios=ios, runtime_ms=rt_ms,
                             clat_p99_us=p99, fio_usr_pct=usr, fio_sys_pct=sys_,
                             guest_busy_pct=busy_pct, guest_cpu_us_per_io=us_per_io,
                             meta_kib_written=meta_kib, data_kib_written=data_kib))
        # Thin stacks: mapped blocks against the writes fio completed.
        sp = os.path.join(rd, "status")
        if stack != "linear":
            tc = os.path.join(rd, "thin_check")
            if not os.path.exists(tc):
                errors.append(f"{run}: no thin_check output")
            if not os.path.exists(sp):
                errors.append(f"{run}: no dm status")
                continue
            st = parse_status(sp)
            expect = {"rw": int(p["SIZE_MB"]) * 2048 // bs}
            for wl in ("prov-randwrite-4k", "fsync-randwrite-4k", "multi-fsync-4k"):
                for name, n in wl_ios.get(wl, []):
                    expect[name] = n
            total = 0
            for name, n in expect.items():
                f = st.get(name)
                if not f or f[0] != "thin":
                    errors.append(f"{run}: no thin status for {name}")
                    continue
                mapped = int(f[1]) // bs
                total += mapped
                if mapped != n:
                    errors.append(f"{run}: {name}: {mapped} mapped blocks, fio wrote {n} new blocks")
            pf = st.get("pool")
            if not pf or pf[0] != "thin-pool":
                errors.append(f"{run}: no pool status")
            else:
                used = int(pf[3].split("/")[0])
                if used != total:
                    errors.append(f"{run}: pool uses {used} data blocks, the thins map {total}")
            if int(rep) <= int(p.get("EXTRA_REPS", 0)):
                rows.extend(extra_rows(run, rep, stack, rd, p, bs, errors))

    keys = ["rep", "stack", "workload", "unit", "value", "iops", "mib_s", "ios", "runtime_ms",
            "clat_p99_us", "fio_usr_pct", "fio_sys_pct", "guest_busy_pct", "guest_cpu_us_per_io",
            "meta_kib_written", "data_kib_written", "seconds", "lat_ios", "base_p99_ms", "base_max_ms"]
    with open(os.path.join(d, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, restval="")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in r.items()})

    def med(wl, stack, key):
        v = [r[key] for r in rows if r["workload"] == wl and r["stack"] == stack and r[key] is not None]
        return statistics.median(v) if v else None

    def quart(wl, stack, key):
        v = sorted(r[key] for r in rows if r["workload"] == wl and r["stack"] == stack)
        return (pct(v, 1), pct(v, 3)) if v else (None, None)

    def ratio(a, b):
        return a / b if a is not None and b else None

    nreps = len({r["rep"] for r in rows})
    summ = []
    for wl, unit, _ in WORKLOADS + [(w, u, x) for w, u, _, x in EXTRA]:
        s = {"workload": wl, "unit": unit, "better": "lower" if wl in LOWER else "higher"}
        for st in STACKS:
            s[st] = med(wl, st, "value")
            s[st + "_q1"], s[st + "_q3"] = quart(wl, st, "value")
        s["ours/upstream"] = ratio(s["ours"], s["upstream"])
        s["ours/linear"] = ratio(s["ours"], s["linear"])
        s["upstream/linear"] = ratio(s["upstream"], s["linear"])
        # Paired: the ratio within each repetition (runs close in time,
        # under the same host load), then the median of those.
        per_rep = {}
        for r in rows:
            if r["workload"] == wl:
                per_rep.setdefault(r["rep"], {})[r["stack"]] = r["value"]
        pr = [v["ours"] / v["upstream"] for v in per_rep.values()
              if v.get("ours") is not None and v.get("upstream")]
        s["ours/upstream_paired"] = statistics.median(pr) if pr else None
        summ.append(s)
    skeys = ["workload", "unit", "better"] + [k for st in STACKS for k in (st, st + "_q1", st + "_q3")] + \
        ["ours/upstream", "ours/upstream_paired", "ours/linear", "upstream/linear"]
    with open(os.path.join(d, "summary.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=skeys)
        w.writeheader()
        for s in summ:
            w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in s.items()})

    out = []
    out.append(f"Guest benchmark: {nreps} repetitions, median [IQR] per stack; ratios of the medians "
               "(paired: median of the per-repetition ours/upstream ratios)")
    out.append(f"  pool block {bs} sectors, features '{p.get('POOL_FEATURES', '')}', low water mark 0; "
               f"runtime {p['RUNTIME_MS']} ms (ramp {p['RAMP_MS']} ms), prefilled thin {p['SIZE_MB']} MiB, "
               f"QD{qd}, {multi} thins in multi; guest {p.get('GUEST_CPUS', '?')} vCPU, "
               f"{p.get('GUEST_MEM', '?')}; loop devices on guest tmpfs; seed {p['SEED']}, "
               f"orders {p['ORDERS']}; commit {p.get('HOST_COMMIT', '?')}; "
               f"clock {p.get('CLOCK', 'real')}")
    hdr = f"{'workload':<20} {'unit':<6}" + "".join(f" {st:>22}" for st in STACKS) + \
        f" {'ours/up':>8} {'paired':>7} {'ours/lin':>8} {'up/lin':>8}"
    out.append(hdr)
    out.append("-" * len(hdr))
    for s in summ:
        cells = []
        for st in STACKS:
            if s[st] is None:
                cells.append(f" {'-':>22}")
            else:
                cells.append(f" {fmt(s[st]) + ' [' + fmt(s[st + '_q1']) + '-' + fmt(s[st + '_q3']) + ']':>22}")
        out.append(f"{s['workload'] + ('*' if s['better'] == 'lower' else ''):<20} {s['unit']:<6}" + "".join(cells) +
                   f" {fmt(s['ours/upstream']):>8} {fmt(s['ours/upstream_paired']):>7}" +
                   "".join(f" {fmt(s[k]):>8}" for k in ("ours/linear", "upstream/linear")))
    out.append("  (* lower is better: a ratio above 1 means ours is slower; linear has no snapshot/discard/delete rows)")
    out.append("")
    dl = [s for s in summ if s["workload"] == "delete-thin"]
    if dl and (dl[0]["upstream"] is not None or dl[0]["ours"] is not None):
        out.append(f"Delete of {p.get('DEL_MAP', '?')} mappings while the other thin runs 4k randrw "
                   f"QD{p.get('DEL_QD', '?')} (medians over repetitions; per repetition: min-max)")
        out.append(f"  {'stack':<9} {'delete s':>18} {'p99 ms during':>18} {'max ms during':>18} "
                   f"{'I/Os during':>12} {'p99 ms before':>14} {'max ms before':>14}")
        for st in ("upstream", "ours"):
            def rng(wl, key):
                v = [r[key] for r in rows if r["workload"] == wl and r["stack"] == st and r.get(key) is not None]
                return f"{fmt(statistics.median(v))} ({fmt(min(v))}-{fmt(max(v))})" if v else "-"
            out.append(f"  {st:<9} {rng('delete-thin', 'value'):>18} {rng('delete-other-p99', 'value'):>18} "
                       f"{rng('delete-other-max', 'value'):>18} {rng('delete-thin', 'lat_ios'):>12} "
                       f"{rng('delete-thin', 'base_p99_ms'):>14} {rng('delete-thin', 'base_max_ms'):>14}")
        out.append("")
    out.append("CPU (medians): fio usr%/sys% (the fio processes), guest busy % of the run, guest CPU us per I/O "
               "(busy x runtime / I/Os: target work in kworkers included); p99 completion latency us")
    hdr2 = f"{'workload':<20}" + "".join(f" {st:>30}" for st in STACKS)
    out.append(hdr2)
    out.append(f"{'':<20}" + "".join(f" {'usr/sys  busy  us/io    p99':>30}" for _ in STACKS))
    out.append("-" * len(hdr2))
    for wl, _, _ in WORKLOADS:
        cells = []
        for st in STACKS:
            u, sy, b = med(wl, st, "fio_usr_pct"), med(wl, st, "fio_sys_pct"), med(wl, st, "guest_busy_pct")
            c, l99 = med(wl, st, "guest_cpu_us_per_io"), med(wl, st, "clat_p99_us")
            if u is None:
                cells.append(f" {'-':>30}")
            else:
                cells.append(f" {fmt(u) + '/' + fmt(sy):>9} {fmt(b):>5} {fmt(c):>6} {fmt(l99):>6}")
        out.append(f"{wl:<20}" + "".join(cells))
    out.append("")
    out.append("Metadata device KiB written per MiB written by fio (medians; thin stacks)")
    for wl, _, _ in WORKLOADS:
        cells = []
        for st in ("upstream", "ours"):
            mk = med(wl, st, "meta_kib_written")
            mb = med(wl, st, "mib_s")
            rt = med(wl, st, "runtime_ms")
            v = [r for r in rows if r["workload"] == wl and r["stack"] == st]
            user_mib = statistics.median([r["mib_s"] * r["runtime_ms"] / 1000.0 for r in v]) if v else 0
            cells.append(f"{st} {fmt(mk / user_mib) if mk is not None and user_mib else '-':>8}")
        if wl.startswith(("seqwrite", "randwrite", "prov", "fsync", "multi")):
            out.append(f"  {wl:<20} " + "   ".join(cells))
    out.append("")
    for wl, unit, desc in WORKLOADS:
        out.append(f"  {wl:<20} {desc.format(qd=qd, multi=multi)}")
    for wl, unit, b, desc in EXTRA:
        out.append(f"  {wl:<20} " + desc.format(qd=qd, cow=p.get("COW_MB", "?"), disc=p.get("DISC_MAP", "?"),
                                                dele=p.get("DEL_MAP", "?"), dqd=p.get("DEL_QD", "?")) +
                   (" (lower is better)" if b == "lo" else ""))
    if errors:
        out.append("")
        out.append(f"CHECKS FAILED ({len(errors)}):")
        out.extend("  " + e for e in errors[:50])
    else:
        out.append("")
        out.append(f"checks: all passed ({len(rows)} workload runs; thin_check clean after every thin stack in the guest; "
                   "mapped blocks = new-block writes; pool used = sum of mapped; one block per copy-on-write; "
                   "discarded and deleted blocks free)")
    text = "\n".join(out) + "\n"
    with open(os.path.join(d, "table.txt"), "w") as f:
        f.write(text)
    sys.stdout.write(text)

    # Chart of the ratios.
    dat = os.path.join(d, "ratios.dat")
    with open(dat, "w") as f:
        f.write("workload ours/upstream ours/linear upstream/linear\n")
        for s in summ:
            f.write(s["workload"] + ("*" if s["better"] == "lower" else "") + "".join(
                f" {s[k]:.4f}" if s[k] is not None else " NaN"
                for k in ("ours/upstream", "ours/linear", "upstream/linear")) + "\n")
    gp = os.path.join(d, "ratios.gp")
    with open(gp, "w") as f:
        f.write(f"""set terminal pngcairo size 1300,600 font ',10'
set output '{os.path.join(d, "ratios.png")}'
set title "dm-thin-rs guest benchmark: ratios of medians ({nreps} reps, runtime {p['RUNTIME_MS']} ms, seed {p['SEED']}; * lower is better)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key top right
set ylabel 'ratio'
set yrange [0:*]
set grid ytics
set xtics rotate by -20 nomirror
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2 lw 1.5 lc rgb '#444444' front
plot '{dat}' using 2:xtic(1) title columnheader(2) lc rgb '#d95f02', \\
     '' using 3 title columnheader(3) lc rgb '#1b9e77', \\
     '' using 4 title columnheader(4) lc rgb '#7570b3'
""")
    r = subprocess.run(["gnuplot", gp], capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stderr)
        errors.append("gnuplot failed")
    else:
        print(f"chart: {os.path.join(d, 'ratios.png')}")
    print(f"results: {d} (table.txt, results.csv, summary.csv, runs/*/*.json)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
