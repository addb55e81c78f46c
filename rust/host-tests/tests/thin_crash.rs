//! Crash consistency of the thin metadata: a deterministic random
//! workload is cut by a power failure after every n-th block write (for a
//! spread of n covering the whole run, and every write of some commits);
//! then images with random subsets of the unflushed writes landed, some
//! torn at a sector boundary (the superblock included), are reopened and
//! must equal exactly the last committed state, or the state of the
//! commit that was in progress.  A small cache limit makes the block
//! manager write dirty blocks back in the middle of transactions.

mod thin_common;

use host_tests::mem_bm::{Fate, Image};
use host_tests::oracle;
use host_tests::rng::Rng;
use thin_common::*;

const NR_META: u64 = 2048;
const NR_DATA: u64 = 20_000;

fn big() -> bool {
    std::env::var("PDATA_BIG").is_ok_and(|v| v == "1")
}

/// Runs the workload of `seed` for `nr_ops` operations; stops at the first
/// I/O error.  Returns whether the run finished.
fn workload(drv: &mut Driver, seed: u64, nr_ops: usize) -> bool {
    let mut rng = Rng::new(seed);
    for _ in 0..nr_ops {
        let wide = rng.chance(50);
        let op = drv.random_op(&mut rng, 5, 3000, wide);
        if drv.apply(&op).is_err() {
            return false;
        }
    }
    drv.commit().is_ok()
}

fn new_driver(cache_limit: usize) -> Driver {
    let drv = Driver::new(NR_META, NR_DATA);
    drv.pmd.bm().set_cache_limit(cache_limit);
    drv.pmd.bm().reset_stats();
    drv
}

/// Checks that `img` opens to the committed state or the pending one.
fn check_crash_image(drv: &Driver, img: Image, what: &str, run_thin_check: bool) {
    let mut pmd =
        open_image(img.clone()).unwrap_or_else(|e| panic!("{what}: reopen failed: {e:?}"));
    assert_data_counts(&mut pmd, &img, what);
    let got = export(&pmd);
    let free = pmd.free_data_blocks().unwrap();
    let held = pmd.metadata_snap().unwrap() != 0;
    let mut candidates = vec![(&drv.committed, drv.committed_held.as_ref())];
    if let Some((m, h)) = &drv.pending {
        candidates.push((m, h.as_ref()));
    }
    let ok = candidates.iter().any(|(m, h)| {
        got.diff(m, 1).is_empty() && free == free_data_of(NR_DATA, m, *h) && held == h.is_some()
    });
    if !ok {
        let d = got.diff(&drv.committed, 10);
        panic!(
            "{what}: crash image matches neither the last commit nor the pending one\n\
             diff vs committed:\n{}\nfree {free}, held {held}",
            d.join("\n")
        );
    }
    if run_thin_check {
        let out = oracle::check_image(&img, &[]).expect("thin_check runs");
        assert!(out.success(), "{what}: thin_check failed:\n{}", out.text());
    }
}

fn crash_at(
    seed: u64,
    nr_ops: usize,
    cut: u64,
    cache_limit: usize,
    fate_seeds: u64,
    thin_check: bool,
) -> bool {
    let mut drv = new_driver(cache_limit);
    drv.pmd.bm().power_cut_after_writes(cut);
    let finished = workload(&mut drv, seed, nr_ops);
    let bm = drv.pmd.bm();
    let what = format!("seed {seed} cut after {cut} writes (cache limit {cache_limit})");
    // Nothing of the unflushed writes landed / all of them landed.
    check_crash_image(
        &drv,
        bm.durable_image(),
        &format!("{what}, all lost"),
        thin_check,
    );
    let all = vec![Fate::Landed; bm.pending_count()];
    check_crash_image(
        &drv,
        bm.crash_image(&all),
        &format!("{what}, all landed"),
        false,
    );
    for fs in 0..fate_seeds {
        let img = bm.crash_image_random(fs * 7919 + cut, 40);
        check_crash_image(
            &drv,
            img,
            &format!("{what}, fates {fs}"),
            thin_check && fs == 0,
        );
    }
    // Torn superblock: the last pending write of block 0 lands in part.
    let pending = bm.pending_writes();
    if let Some(i) = pending.iter().rposition(|w| w.block == 0) {
        for k in [1usize, 3, 7] {
            let mut fates = vec![Fate::Landed; pending.len()];
            fates[i] = Fate::Torn(k);
            check_crash_image(
                &drv,
                bm.crash_image(&fates),
                &format!("{what}, superblock torn at {k}"),
                false,
            );
        }
    }
    finished
}

fn run(seed: u64, nr_ops: usize, cache_limit: usize, nr_cuts: u64) {
    // Reference run: how many writes the whole workload issues.
    let mut drv = new_driver(cache_limit);
    assert!(workload(&mut drv, seed, nr_ops), "reference run failed");
    let total = drv.pmd.bm().stats().writes;
    assert!(total > 20, "workload too small: {total} writes");
    let mut cuts: Vec<u64> = (0..nr_cuts).map(|i| i * total / nr_cuts).collect();
    // Every write of the last few hundred (covers whole commits).
    cuts.extend(total.saturating_sub(150)..total);
    cuts.sort_unstable();
    cuts.dedup();
    let mut interrupted = 0;
    for (i, &cut) in cuts.iter().enumerate() {
        if !crash_at(seed, nr_ops, cut, cache_limit, 3, i % 25 == 0) {
            interrupted += 1;
        }
    }
    assert!(
        interrupted > cuts.len() / 2,
        "most cuts must interrupt the run"
    );
    // Without a cut the run finishes and the end state is durable.
    assert!(crash_at(
        seed,
        nr_ops,
        total + 1_000_000,
        cache_limit,
        1,
        true
    ));
}

#[test]
fn power_cut_at_spread_of_writes() {
    run(
        1,
        if big() { 1500 } else { 400 },
        0,
        if big() { 300 } else { 60 },
    );
}

#[test]
fn power_cut_with_cache_pressure() {
    run(
        2,
        if big() { 1500 } else { 400 },
        48,
        if big() { 300 } else { 60 },
    );
}

/// Crash at every flush of a run: the n-th device flush fails (its block
/// writes were issued but are not durable), the run stops there, and the
/// device as it could look after a power cut at that moment must reopen
/// to the last commit or to the commit that was in progress.
fn crash_at_every_flush(seed: u64, nr_ops: usize, cache_limit: usize) {
    let mut drv = new_driver(cache_limit);
    assert!(workload(&mut drv, seed, nr_ops), "reference run failed");
    let flushes = drv.pmd.bm().stats().flushes;
    assert!(flushes > 10, "workload too small: {flushes} flushes");
    for n in 1..=flushes {
        let mut drv = new_driver(cache_limit);
        drv.pmd.bm().fail_nth_flush(n);
        assert!(
            !workload(&mut drv, seed, nr_ops),
            "flush {n} failure not reported"
        );
        assert!(drv.pending.is_some(), "flush {n} failed outside a commit");
        let bm = drv.pmd.bm();
        bm.clear_faults();
        let what = format!("seed {seed}, flush {n} of {flushes} failed");
        check_crash_image(
            &drv,
            bm.durable_image(),
            &format!("{what}, all lost"),
            n % 20 == 1,
        );
        let all = vec![Fate::Landed; bm.pending_count()];
        check_crash_image(
            &drv,
            bm.crash_image(&all),
            &format!("{what}, all landed"),
            false,
        );
        for fs in 0..2 {
            let img = bm.crash_image_random(fs * 31 + n, 40);
            check_crash_image(&drv, img, &format!("{what}, fates {fs}"), false);
        }
    }
}

#[test]
fn crash_at_every_flush_of_a_run() {
    crash_at_every_flush(3, if big() { 1200 } else { 300 }, 0);
    crash_at_every_flush(4, if big() { 1200 } else { 300 }, 48);
}
