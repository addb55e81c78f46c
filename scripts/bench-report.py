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

    keys = ["rep", "stack", "workload", "unit", "value", "iops", "mib_s", "ios", "runtime_ms",
            "clat_p99_us", "fio_usr_pct", "fio_sys_pct", "guest_busy_pct", "guest_cpu_us_per_io",
            "meta_kib_written", "data_kib_written"]
    with open(os.path.join(d, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
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
    for wl, unit, _ in WORKLOADS:
        s = {"workload": wl, "unit": unit}
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
    skeys = ["workload", "unit"] + [k for st in STACKS for k in (st, st + "_q1", st + "_q3")] + \
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
               f"orders {p['ORDERS']}; commit {p.get('HOST_COMMIT', '?')}")
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
        out.append(f"{s['workload']:<20} {s['unit']:<6}" + "".join(cells) +
                   f" {fmt(s['ours/upstream']):>8} {fmt(s['ours/upstream_paired']):>7}" +
                   "".join(f" {fmt(s[k]):>8}" for k in ("ours/linear", "upstream/linear")))
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
    if errors:
        out.append("")
        out.append(f"CHECKS FAILED ({len(errors)}):")
        out.extend("  " + e for e in errors[:50])
    else:
        out.append("")
        out.append(f"checks: all passed ({len(rows)} workload runs; thin_check clean after every thin stack in the guest; "
                   "mapped blocks = new-block writes; pool used = sum of mapped)")
    text = "\n".join(out) + "\n"
    with open(os.path.join(d, "table.txt"), "w") as f:
        f.write(text)
    sys.stdout.write(text)

    # Chart of the ratios.
    dat = os.path.join(d, "ratios.dat")
    with open(dat, "w") as f:
        f.write("workload ours/upstream ours/linear upstream/linear\n")
        for s in summ:
            f.write(s["workload"] + "".join(
                f" {s[k]:.4f}" if s[k] is not None else " NaN"
                for k in ("ours/upstream", "ours/linear", "upstream/linear")) + "\n")
    gp = os.path.join(d, "ratios.gp")
    with open(gp, "w") as f:
        f.write(f"""set terminal pngcairo size 1100,560 font ',10'
set output '{os.path.join(d, "ratios.png")}'
set title "dm-thin-rs guest benchmark: ratios of medians ({nreps} reps, runtime {p['RUNTIME_MS']} ms, seed {p['SEED']})"
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
