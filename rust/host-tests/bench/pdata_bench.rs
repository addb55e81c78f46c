//! Host benchmark of the persistent-data layer: thin pool metadata
//! ([`PoolMetadata`]) over the in-memory block manager ([`MemBm`]).
//!
//! Prints one line per workload, `name: N ops in T s = R ops/s`, plus
//! latency percentiles where a single operation is what matters (commit).
//! Workloads, in order, on one pool:
//!
//! 1. `insert_seq`: thin 1, virtual blocks `0..N` in order, each mapped to
//!    a data block just allocated from the data space map;
//! 2. `lookup_hot`: every block of thin 1 in random order (cache warm);
//! 3. `lookup_cold`: the same after a commit and dropping the whole cache
//!    (every node is read and checksummed again);
//! 4. `insert_rand`: thin 2, virtual blocks `0..N` in random order;
//! 5. `lookup_rand_tree`: every block of thin 2 in random order;
//! 6. `commit_S`: small transactions of S overwrites in thin 2
//!    (S = 0, 1, 10, 100) followed by a commit; commit latency percentiles;
//! 7. `remove`: every block of thin 2 removed one by one in random order;
//! 8. `create_snap`: snapshot thin 3 of thin 1 (N mappings), then
//!    `break_sharing`: a write to every K-th block of thin 1 (lookup, which
//!    must say "shared", then allocate and insert a new data block);
//! 9. `delete_thin` of the snapshot, then `remove_range` of all of thin 1.
//!
//! Every insert, lookup and remove is checked against the expected
//! mapping; counts (mapped blocks, free data blocks) are checked after each
//! phase.  `thin_check` (thin-provisioning-tools) checks the full image
//! after phase 8 and the final image; the final image is also reopened and
//! checked again.  At sizes up to 100k (or with `--full-check`) the
//! phase-8 image is also dumped with `thin_dump` and compared mapping by
//! mapping.
//!
//! Inserts, removes and the break-sharing writes commit every C operations
//! (`--commit-every`, default min(10000, max(N/10, 100))), as a pool under
//! load commits periodically; those commits are included in the rates.
//!
//! The block manager is in memory: rates are those of the metadata code
//! (btree, space maps, shadowing, checksums, the block manager's
//! bookkeeping), without device latency.

use std::process::exit;
use std::time::{Duration, Instant};

use host_tests::mem_bm::{Image, MemBm};
use host_tests::oracle;
use host_tests::rng::Rng;
use pdata::pdata::error::{Error, Result};
use pdata::pdata::thin::metadata::{OpenOptions, PoolMetadata, ThinDevice};

type Pmd = PoolMetadata<MemBm>;

/// Data block size (sectors) of the benchmark pool (64 KiB blocks).
const DATA_BLOCK_SIZE: u32 = 128;

/// Sizes up to this get the `thin_dump` comparison by default.
const DUMP_CHECK_MAX: u64 = 100_000;

const THIN_SEQ: u64 = 1;
const THIN_RAND: u64 = 2;
const THIN_SNAP: u64 = 3;

//------------------------------------------------------------------------
// Options.

struct Args {
    size: u64,
    seed: u64,
    commit_every: Option<u64>,
    break_every: u64,
    commit_rounds: Option<u64>,
    meta_blocks: Option<u64>,
    check: bool,
    full_check: bool,
}

const USAGE: &str = "\
usage: pdata_bench [options]
  --size N           mappings per device (default 1000000)
  --smoke            N = 10000, fewer commit rounds (quick, for CI)
  --seed S           PRNG seed (default 1)
  --commit-every C   commit every C inserts/removes/writes
                     (default min(10000, max(N/10, 100)))
  --break-every K    after the snapshot, write every K-th block (default 16)
  --commit-rounds R  transactions per commit-latency size (default 500,
                     100 with --smoke)
  --meta-blocks M    metadata device size in 4 KiB blocks
                     (default N/8 + 8192, at most 255 * 16320)
  --no-check         skip thin_check / thin_dump (library checks still run)
  --full-check       thin_dump comparison at any size (slow for 1M)
  -h, --help         this text";

fn parse_args() -> Args {
    let mut a = Args {
        size: 1_000_000,
        seed: 1,
        commit_every: None,
        break_every: 16,
        commit_rounds: None,
        meta_blocks: None,
        check: true,
        full_check: false,
    };
    let mut smoke = false;
    let mut size_given = false;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut num = |name: &str| -> u64 {
            let v = it
                .next()
                .unwrap_or_else(|| usage_error(&format!("{name} needs a value")));
            let v = v.replace('_', "");
            v.parse()
                .unwrap_or_else(|_| usage_error(&format!("{name}: not a number: {v}")))
        };
        match arg.as_str() {
            "--size" => {
                a.size = num("--size");
                size_given = true;
            }
            "--smoke" => smoke = true,
            "--seed" => a.seed = num("--seed"),
            "--commit-every" => a.commit_every = Some(num("--commit-every")),
            "--break-every" => a.break_every = num("--break-every"),
            "--commit-rounds" => a.commit_rounds = Some(num("--commit-rounds")),
            "--meta-blocks" => a.meta_blocks = Some(num("--meta-blocks")),
            "--no-check" => a.check = false,
            "--full-check" => a.full_check = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                exit(0);
            }
            other => usage_error(&format!("unknown option {other}")),
        }
    }
    if smoke {
        if !size_given {
            a.size = 10_000;
        }
        a.commit_rounds.get_or_insert(100);
    }
    if a.size < 100 {
        usage_error("--size must be at least 100");
    }
    if a.break_every == 0 || a.commit_every == Some(0) {
        usage_error("--break-every and --commit-every must be positive");
    }
    a
}

fn usage_error(msg: &str) -> ! {
    eprintln!("pdata_bench: {msg}\n{USAGE}");
    exit(2);
}

//------------------------------------------------------------------------
// Failure reporting: a benchmark must not measure errors.

fn fail(msg: String) -> ! {
    eprintln!("pdata_bench: FAILED: {msg}");
    exit(1);
}

fn ok<T>(r: Result<T>, what: impl FnOnce() -> String) -> T {
    match r {
        Ok(v) => v,
        Err(e) => fail(format!("{}: {e:?}", what())),
    }
}

fn check(cond: bool, what: impl FnOnce() -> String) {
    if !cond {
        fail(what());
    }
}

//------------------------------------------------------------------------
// Reporting.

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn report(name: &str, n: u64, d: Duration, extra: &str) {
    let rate = if d.as_secs_f64() > 0.0 {
        n as f64 / d.as_secs_f64()
    } else {
        f64::INFINITY
    };
    println!(
        "{name}: {n} ops in {:.3} s = {:.0} ops/s{}{extra}",
        secs(d),
        rate,
        if extra.is_empty() { "" } else { "  " }
    );
}

fn fmt_dur(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.1} us")
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn latency_summary(samples: &mut [Duration]) -> String {
    samples.sort_unstable();
    if samples.is_empty() {
        return String::new();
    }
    format!(
        "p50 {} p99 {} max {}",
        fmt_dur(percentile(samples, 50.0)),
        fmt_dur(percentile(samples, 99.0)),
        fmt_dur(*samples.last().unwrap_or(&Duration::ZERO))
    )
}

//------------------------------------------------------------------------
// Pool helpers.

fn open_opts(format: bool) -> OpenOptions {
    OpenOptions {
        data_block_size: DATA_BLOCK_SIZE,
        format,
        read_only: false,
    }
}

/// Commits the pool, recording the commit's latency in `lat`.
fn commit(pmd: &mut Pmd, lat: &mut Vec<Duration>) {
    let t = Instant::now();
    ok(pmd.commit(), || "commit".into());
    lat.push(t.elapsed());
}

fn used_meta(pmd: &Pmd) -> u64 {
    let size = ok(pmd.metadata_dev_size(), || "metadata_dev_size".into());
    let free = ok(pmd.free_metadata_blocks(), || "free_metadata_blocks".into());
    size.saturating_sub(free + pmd.metadata_reserve())
}

fn free_data(pmd: &Pmd) -> u64 {
    ok(pmd.free_data_blocks(), || "free_data_blocks".into())
}

fn mapped(pmd: &Pmd, td: &ThinDevice) -> u64 {
    ok(pmd.mapped_count(td), || {
        format!("mapped_count of thin {}", td.id())
    })
}

/// Random permutation of `0..n`.
fn permutation(n: u64, rng: &mut Rng) -> Vec<u64> {
    let mut v: Vec<u64> = (0..n).collect();
    for i in (1..v.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
    v
}

/// Commit-interval bookkeeping of a workload: commits after every
/// `every` operations and keeps the commit latencies.
struct Committer {
    every: u64,
    since: u64,
    lat: Vec<Duration>,
}

impl Committer {
    fn new(every: u64) -> Self {
        Committer {
            every,
            since: 0,
            lat: Vec::new(),
        }
    }

    #[inline]
    fn op(&mut self, pmd: &mut Pmd) {
        self.since += 1;
        if self.since >= self.every {
            self.since = 0;
            commit(pmd, &mut self.lat);
        }
    }

    /// Final commit; returns a note for the report line.
    fn finish(mut self, pmd: &mut Pmd) -> String {
        commit(pmd, &mut self.lat);
        let n = self.lat.len();
        format!("(incl. {n} commits: {})", latency_summary(&mut self.lat))
    }
}

/// Runs `thin_check` on `image`; returns a note for the output.
fn thin_check(image: &Image, what: &str) -> String {
    let t = Instant::now();
    let out = oracle::check_image(image, &[])
        .unwrap_or_else(|e| fail(format!("thin_check of the {what} image: {e}")));
    check(out.success(), || {
        format!("thin_check of the {what} image failed:\n{}", out.text())
    });
    format!(
        "thin_check ({what} image): ok in {:.2} s",
        secs(t.elapsed())
    )
}

//------------------------------------------------------------------------
// The benchmark.

struct Expected {
    /// Thin 1 (sequential, then origin of the snapshot): data block and
    /// mapping time by virtual block.
    seq: Vec<(u64, u32)>,
    /// Thin 2 (random order): data block by virtual block.
    rand: Vec<u64>,
}

fn main() {
    let args = parse_args();
    let n = args.size;
    let c = args
        .commit_every
        .unwrap_or_else(|| (n / 10).clamp(100, 10_000));
    let k = args.break_every;
    let rounds = args.commit_rounds.unwrap_or(500);
    let batch_sizes: [u64; 4] = [0, 1, 10, 100];
    let breaks = n.div_ceil(k);
    let overwrites: u64 = batch_sizes.iter().sum::<u64>() * rounds;
    // Thin 1 and thin 2 at the same time, the commit-latency overwrites
    // (blocks freed in a transaction are reusable only after its commit)
    // and the break-sharing writes, plus slack.
    let nr_data = 2 * n + overwrites + breaks + 1024;
    let meta_blocks = args
        .meta_blocks
        .unwrap_or(n / 8 + 8192)
        .min(pdata::pdata::thin::metadata::MAX_METADATA_BLOCKS);
    let dump_check = args.check && (args.full_check || n <= DUMP_CHECK_MAX);

    println!("pdata_bench: persistent-data host benchmark (PoolMetadata over MemBm, in memory)");
    println!(
        "  build: {}{}",
        if cfg!(debug_assertions) {
            "DEBUG"
        } else {
            "release"
        },
        if cfg!(debug_assertions) {
            " (numbers meaningless: use --release)"
        } else {
            ""
        }
    );
    println!(
        "  host: {} CPUs, loadavg {} (other load skews the rates)",
        std::thread::available_parallelism().map_or(0, |p| p.get()),
        std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next().map(str::to_string))
            .unwrap_or_else(|| "?".into())
    );
    println!(
        "  N = {n} mappings, seed {}, commit every {c} ops, break-sharing every {k}th block, \
         {rounds} rounds per commit size",
        args.seed
    );
    println!(
        "  metadata device {meta_blocks} blocks ({} MiB), data device {nr_data} blocks of {} KiB",
        meta_blocks / 256,
        DATA_BLOCK_SIZE / 2
    );
    println!(
        "  oracle: {}",
        if !args.check {
            "thin_check/thin_dump skipped (--no-check)".to_string()
        } else if !oracle::tools_available() {
            fail("thin_check/thin_dump/thin_restore not found (set THIN_TOOLS_DIR or use --no-check)".into())
        } else if dump_check {
            "thin_check on the full and final images, thin_dump comparison of the full image".into()
        } else {
            format!(
                "thin_check on the full and final images; thin_dump comparison skipped for N > {DUMP_CHECK_MAX} (use --full-check)"
            )
        }
    );

    let t_all = Instant::now();
    let mut rng = Rng::new(args.seed);
    let bm = MemBm::new(meta_blocks);
    bm.set_crash_tracking(false);
    let mut pmd = ok(PoolMetadata::open(bm, open_opts(true)), || "format".into());
    ok(pmd.resize_data_dev(nr_data), || "resize_data_dev".into());
    ok(pmd.create_thin(THIN_SEQ), || "create_thin 1".into());
    ok(pmd.create_thin(THIN_RAND), || "create_thin 2".into());
    ok(pmd.commit(), || "commit".into());
    let meta_start = used_meta(&pmd);
    check(free_data(&pmd) == nr_data, || {
        format!(
            "fresh pool: {} free data blocks, want {nr_data}",
            free_data(&pmd)
        )
    });
    let td1 = ok(pmd.open_thin(THIN_SEQ), || "open_thin 1".into());
    let td2 = ok(pmd.open_thin(THIN_RAND), || "open_thin 2".into());
    let mut exp = Expected {
        seq: vec![(u64::MAX, 0); n as usize],
        rand: vec![u64::MAX; n as usize],
    };

    println!();
    // 1. Sequential insert.
    {
        let mut cm = Committer::new(c);
        let t = Instant::now();
        for v in 0..n {
            let b = ok(pmd.alloc_data_block(), || {
                format!("alloc for thin 1 block {v}")
            });
            ok(pmd.insert(&td1, v, b), || {
                format!("insert thin 1 block {v}")
            });
            exp.seq[v as usize] = (b, 0);
            cm.op(&mut pmd);
        }
        let note = cm.finish(&mut pmd);
        report("insert_seq (alloc+insert)", n, t.elapsed(), &note);
        check(mapped(&pmd, &td1) == n, || {
            format!("thin 1 maps {} blocks, want {n}", mapped(&pmd, &td1))
        });
        check(free_data(&pmd) == nr_data - n, || {
            format!(
                "after insert_seq: {} free data blocks, want {}",
                free_data(&pmd),
                nr_data - n
            )
        });
    }

    // 2. Hot lookups.
    let order = permutation(n, &mut rng);
    let lookup_pass = |pmd: &Pmd, exp: &[(u64, u32)], name: &str| -> Duration {
        let t = Instant::now();
        for &v in &order {
            let r = ok(pmd.lookup(&td1, v), || {
                format!("{name}: lookup thin 1 block {v}")
            });
            let want = exp[v as usize].0;
            check(r.block == want && !r.shared, || {
                format!("{name}: thin 1 block {v} -> {r:?}, want block {want} unshared")
            });
        }
        t.elapsed()
    };
    let d = lookup_pass(&pmd, &exp.seq, "lookup_hot");
    report("lookup_hot", n, d, "");

    // 3. Cold lookups: everything committed, cache dropped.
    {
        ok(pmd.commit(), || "commit".into());
        pmd.bm().drop_cache();
        check(pmd.bm().cached_count() == 0, || {
            format!("drop_cache left {} blocks cached", pmd.bm().cached_count())
        });
        let before = pmd.bm().stats();
        let d = lookup_pass(&pmd, &exp.seq, "lookup_cold");
        let after = pmd.bm().stats();
        report(
            "lookup_cold (cache dropped first)",
            n,
            d,
            &format!(
                "({} block reads, {} checksum checks)",
                after.reads - before.reads,
                after.checks - before.checks
            ),
        );
        check(after.reads > before.reads, || {
            "lookup_cold read no blocks".into()
        });
    }

    // 4. Random insert.
    {
        let order2 = permutation(n, &mut rng);
        let mut cm = Committer::new(c);
        let t = Instant::now();
        for &v in &order2 {
            let b = ok(pmd.alloc_data_block(), || {
                format!("alloc for thin 2 block {v}")
            });
            ok(pmd.insert(&td2, v, b), || {
                format!("insert thin 2 block {v}")
            });
            exp.rand[v as usize] = b;
            cm.op(&mut pmd);
        }
        let note = cm.finish(&mut pmd);
        report("insert_rand (alloc+insert)", n, t.elapsed(), &note);
        check(mapped(&pmd, &td2) == n, || {
            format!("thin 2 maps {} blocks, want {n}", mapped(&pmd, &td2))
        });
        check(free_data(&pmd) == nr_data - 2 * n, || {
            format!(
                "after insert_rand: {} free data blocks, want {}",
                free_data(&pmd),
                nr_data - 2 * n
            )
        });
    }

    // 5. Lookups in the randomly built tree.
    {
        let order2 = permutation(n, &mut rng);
        let t = Instant::now();
        for &v in &order2 {
            let r = ok(pmd.lookup(&td2, v), || format!("lookup thin 2 block {v}"));
            let want = exp.rand[v as usize];
            check(r.block == want && !r.shared, || {
                format!("thin 2 block {v} -> {r:?}, want block {want} unshared")
            });
        }
        report("lookup_rand_tree", n, t.elapsed(), "");
    }
    let meta_two = used_meta(&pmd);

    // 6. Commit latency of small transactions (overwrites in thin 2).
    for &s in &batch_sizes {
        let mut lat = Vec::with_capacity(rounds as usize);
        let mut ops_time = Duration::ZERO;
        let mut dirty_writes = 0u64;
        for _ in 0..rounds {
            let t = Instant::now();
            for _ in 0..s {
                let v = rng.below(n);
                let b = ok(pmd.alloc_data_block(), || {
                    format!("alloc for thin 2 block {v}")
                });
                ok(pmd.insert(&td2, v, b), || {
                    format!("overwrite thin 2 block {v}")
                });
                exp.rand[v as usize] = b;
            }
            ops_time += t.elapsed();
            let w0 = pmd.bm().stats().writes;
            commit(&mut pmd, &mut lat);
            dirty_writes += pmd.bm().stats().writes - w0;
        }
        let total: Duration = lat.iter().sum();
        let note = format!(
            "{}; {:.1} blocks written per commit; inserts {:.1} us each",
            latency_summary(&mut lat),
            dirty_writes as f64 / rounds as f64,
            if s > 0 {
                ops_time.as_secs_f64() * 1e6 / (s * rounds) as f64
            } else {
                0.0
            }
        );
        report(&format!("commit_after_{s}_inserts"), rounds, total, &note);
    }
    check(mapped(&pmd, &td2) == n, || {
        format!(
            "after overwrites thin 2 maps {} blocks, want {n}",
            mapped(&pmd, &td2)
        )
    });
    check(free_data(&pmd) == nr_data - 2 * n, || {
        format!(
            "after overwrites (committed): {} free data blocks, want {}",
            free_data(&pmd),
            nr_data - 2 * n
        )
    });

    // 7. Random single removes of all of thin 2.
    {
        let order2 = permutation(n, &mut rng);
        // Spot checks that the overwrites are all visible.
        for &v in order2.iter().take(1000) {
            let r = ok(pmd.lookup(&td2, v), || format!("lookup thin 2 block {v}"));
            check(r.block == exp.rand[v as usize], || {
                format!("thin 2 block {v} -> {r:?}, want {}", exp.rand[v as usize])
            });
        }
        let mut cm = Committer::new(c);
        let t = Instant::now();
        for &v in &order2 {
            ok(pmd.remove(&td2, v), || format!("remove thin 2 block {v}"));
            cm.op(&mut pmd);
        }
        let note = cm.finish(&mut pmd);
        report("remove_rand", n, t.elapsed(), &note);
        check(mapped(&pmd, &td2) == 0, || {
            format!("after remove thin 2 maps {} blocks", mapped(&pmd, &td2))
        });
        for &v in order2.iter().take(1000) {
            check(matches!(pmd.lookup(&td2, v), Err(Error::NotFound)), || {
                format!("thin 2 block {v} still mapped after remove")
            });
        }
        check(free_data(&pmd) == nr_data - n, || {
            format!(
                "after remove: {} free data blocks, want {}",
                free_data(&pmd),
                nr_data - n
            )
        });
    }
    let meta_one = used_meta(&pmd);

    // 8. Snapshot of thin 1, then writes to every k-th origin block.
    let snap_time;
    let snap_exp: Vec<(u64, u32)>;
    {
        let t = Instant::now();
        ok(pmd.create_snap(THIN_SNAP, THIN_SEQ), || {
            "create_snap".into()
        });
        let d_snap = t.elapsed();
        let t = Instant::now();
        ok(pmd.commit(), || "commit".into());
        let d_commit = t.elapsed();
        report(
            "create_snap (of N mappings)",
            1,
            d_snap,
            &format!(
                "(latency {}; following commit {})",
                fmt_dur(d_snap),
                fmt_dur(d_commit)
            ),
        );
        snap_time = pmd.time();
        check(snap_time == 1, || {
            format!("time after snapshot {snap_time}, want 1")
        });
        let meta_snap = used_meta(&pmd);

        let before_breaks = exp.seq.clone();
        let mut cm = Committer::new(c);
        let t = Instant::now();
        let mut v = 0;
        while v < n {
            let r = ok(pmd.lookup(&td1, v), || format!("lookup origin block {v}"));
            let want = exp.seq[v as usize].0;
            check(r.block == want && r.shared, || {
                format!("origin block {v} -> {r:?}, want block {want} shared")
            });
            let b = ok(pmd.alloc_data_block(), || {
                format!("alloc for origin block {v}")
            });
            ok(pmd.insert(&td1, v, b), || {
                format!("break sharing of origin block {v}")
            });
            exp.seq[v as usize] = (b, snap_time);
            cm.op(&mut pmd);
            v += k;
        }
        let note = cm.finish(&mut pmd);
        report(
            "break_sharing (lookup+alloc+insert)",
            breaks,
            t.elapsed(),
            &note,
        );
        let meta_broken = used_meta(&pmd);
        println!(
            "  metadata blocks in use: {meta_snap} after snapshot, {meta_broken} after breaking \
             sharing of {breaks} blocks (+{})",
            meta_broken.saturating_sub(meta_snap)
        );
        let _ = meta_one;

        // Verify both devices and the data reference counts.
        let td3 = ok(pmd.open_thin(THIN_SNAP), || "open_thin 3".into());
        check(mapped(&pmd, &td1) == n && mapped(&pmd, &td3) == n, || {
            format!(
                "origin maps {}, snapshot maps {}, want {n} each",
                mapped(&pmd, &td1),
                mapped(&pmd, &td3)
            )
        });
        let t = Instant::now();
        for v in 0..n {
            let (b1, t1) = exp.seq[v as usize];
            let written = t1 == snap_time;
            let r1 = ok(pmd.lookup(&td1, v), || format!("lookup origin block {v}"));
            check(r1.block == b1 && r1.shared != written, || {
                format!(
                    "origin block {v} -> {r1:?}, want block {b1} shared={}",
                    !written
                )
            });
            let r3 = ok(pmd.lookup(&td3, v), || format!("lookup snapshot block {v}"));
            let old = before_breaks[v as usize].0;
            check(r3.block == old && r3.shared, || {
                format!("snapshot block {v} -> {r3:?}, want block {old} shared")
            });
            if v % 97 == 0 {
                let cnt1 = ok(pmd.data_block_count(r1.block), || "data_block_count".into());
                let cnt3 = ok(pmd.data_block_count(r3.block), || "data_block_count".into());
                let (w1, w3) = if written { (1, 1) } else { (2, 2) };
                check(
                    cnt1 == w1 && cnt3 == w3 && (written == (r1.block != r3.block)),
                    || {
                        format!(
                        "block {v}: origin {} count {cnt1}, snapshot {} count {cnt3}, written {written}",
                        r1.block, r3.block
                    )
                    },
                );
            }
        }
        println!(
            "  verified origin and snapshot ({} lookups) in {:.2} s",
            2 * n,
            secs(t.elapsed())
        );
        check(free_data(&pmd) == nr_data - n - breaks, || {
            format!(
                "after break_sharing: {} free data blocks, want {}",
                free_data(&pmd),
                nr_data - n - breaks
            )
        });
        pmd.close_thin(td3);
        snap_exp = before_breaks;
    }

    // The full image: thin_check, and thin_dump against the expectation.
    ok(pmd.commit(), || "commit".into());
    if args.check {
        let image = pmd.bm().image();
        println!("  {}", thin_check(&image, "full"));
        if dump_check {
            let t = Instant::now();
            let m = oracle::dump_image(&image)
                .unwrap_or_else(|e| fail(format!("thin_dump of the full image: {e}")));
            let d1 = m
                .devices
                .get(&THIN_SEQ)
                .unwrap_or_else(|| fail("thin_dump: no thin 1".into()));
            let d2 = m
                .devices
                .get(&THIN_RAND)
                .unwrap_or_else(|| fail("thin_dump: no thin 2".into()));
            let d3 = m
                .devices
                .get(&THIN_SNAP)
                .unwrap_or_else(|| fail("thin_dump: no thin 3".into()));
            check(m.devices.len() == 3 && d2.mappings.is_empty(), || {
                format!(
                    "thin_dump: {} devices, thin 2 has {} mappings",
                    m.devices.len(),
                    d2.mappings.len()
                )
            });
            check(d1.mapped_blocks == n && d3.mapped_blocks == n, || {
                format!(
                    "thin_dump: mapped_blocks {} / {}",
                    d1.mapped_blocks, d3.mapped_blocks
                )
            });
            check(
                d1.mappings.len() as u64 == n && d3.mappings.len() as u64 == n,
                || {
                    format!(
                        "thin_dump: {} / {} mappings",
                        d1.mappings.len(),
                        d3.mappings.len()
                    )
                },
            );
            for (v, &(b, time)) in exp.seq.iter().enumerate() {
                let v = v as u64;
                check(d1.mappings.get(&v) == Some(&(b, time)), || {
                    format!(
                        "thin_dump: thin 1 block {v} is {:?}, want {:?}",
                        d1.mappings.get(&v),
                        (b, time)
                    )
                });
                let want3 = snap_exp[v as usize];
                check(d3.mappings.get(&v) == Some(&want3), || {
                    format!(
                        "thin_dump: snapshot block {v} is {:?}, want {want3:?}",
                        d3.mappings.get(&v)
                    )
                });
            }
            println!(
                "  thin_dump (full image): {} mappings match in {:.2} s",
                2 * n,
                secs(t.elapsed())
            );
        }
    }

    // 9. Delete the snapshot, then remove_range of everything in thin 1.
    {
        let t = Instant::now();
        ok(pmd.delete_thin(THIN_SNAP), || "delete_thin 3".into());
        let d_del = t.elapsed();
        let t = Instant::now();
        ok(pmd.commit(), || "commit".into());
        report(
            "delete_thin (snapshot, N mappings)",
            1,
            d_del,
            &format!(
                "(latency {}; following commit {})",
                fmt_dur(d_del),
                fmt_dur(t.elapsed())
            ),
        );
        check(free_data(&pmd) == nr_data - n, || {
            format!(
                "after delete_thin: {} free data blocks, want {}",
                free_data(&pmd),
                nr_data - n
            )
        });

        let t = Instant::now();
        ok(pmd.remove_range(&td1, 0, n), || "remove_range".into());
        let d_rr = t.elapsed();
        let t = Instant::now();
        ok(pmd.commit(), || "commit".into());
        report(
            "remove_range (all of thin 1)",
            n,
            d_rr,
            &format!("(one call; following commit {})", fmt_dur(t.elapsed())),
        );
        check(mapped(&pmd, &td1) == 0, || {
            format!("after remove_range thin 1 maps {}", mapped(&pmd, &td1))
        });
        for v in [0, n / 2, n - 1] {
            check(matches!(pmd.lookup(&td1, v), Err(Error::NotFound)), || {
                format!("thin 1 block {v} still mapped after remove_range")
            });
        }
        check(free_data(&pmd) == nr_data, || {
            format!(
                "at the end: {} free data blocks, want all {nr_data}",
                free_data(&pmd)
            )
        });
    }
    let meta_end = used_meta(&pmd);
    println!(
        "  metadata blocks in use: {meta_start} at start (2 empty thins), {meta_two} with 2 x N \
         mappings, {meta_end} at the end"
    );

    // Close, reopen the final image, check it.
    pmd.close_thin(td1);
    pmd.close_thin(td2);
    let bm = match pmd.close() {
        Ok(bm) => bm,
        Err((_, e)) => fail(format!("close: {e:?}")),
    };
    let image = bm.image();
    drop(bm);
    let mut pmd = ok(
        PoolMetadata::open(MemBm::from_image(image.clone()), open_opts(false)),
        || "reopen the final image".into(),
    );
    let ids = ok(pmd.device_ids(), || "device_ids".into());
    check(ids[..] == [THIN_SEQ, THIN_RAND], || {
        format!("reopened: devices {ids:?}, want [1, 2]")
    });
    for id in [THIN_SEQ, THIN_RAND] {
        let td = ok(pmd.open_thin(id), || format!("reopened: open_thin {id}"));
        check(mapped(&pmd, &td) == 0, || {
            format!("reopened: thin {id} maps {}", mapped(&pmd, &td))
        });
        check(matches!(pmd.lookup(&td, 0), Err(Error::NotFound)), || {
            format!("reopened: thin {id} block 0 mapped")
        });
        pmd.close_thin(td);
    }
    check(free_data(&pmd) == nr_data, || {
        format!(
            "reopened: {} free data blocks, want {nr_data}",
            free_data(&pmd)
        )
    });
    check(pmd.time() == snap_time, || {
        format!("reopened: time {}", pmd.time())
    });
    println!("  reopened final image: 2 empty thins, all {nr_data} data blocks free");
    if args.check {
        println!("  {}", thin_check(&image, "final"));
    }
    println!("total: {:.2} s, all checks passed", secs(t_all.elapsed()));
}
