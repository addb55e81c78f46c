//! Model-based property test of the thin metadata: random sequences of
//! create_thin, create_snap (snapshots of snapshots), delete, insert,
//! remove, remove_range, set_transaction_id, commit, abort and
//! reserve/release of the metadata snapshot, checked against a plain
//! model after every operation that should leave a known state, and by
//! reopening the durable image after every commit.  `PDATA_BIG=1` runs
//! more and longer sequences.

mod thin_common;

use host_tests::oracle;
use host_tests::rng::Rng;
use thin_common::*;

fn big() -> bool {
    std::env::var("PDATA_BIG").is_ok_and(|v| v == "1")
}

fn run_seed(
    seed: u64,
    nr_ops: usize,
    max_id: u64,
    max_vblock: u64,
    nr_data: u64,
    thin_check_every: usize,
    wide: bool,
) {
    let mut rng = Rng::new(seed);
    let mut drv = Driver::new(4096, nr_data);
    let mut commits = 0usize;
    let mut held_dumps = 0usize;
    for step in 0..nr_ops {
        let op = drv.random_op(&mut rng, max_id, max_vblock, wide);
        drv.apply(&op)
            .unwrap_or_else(|e| panic!("seed {seed} step {step} {op:?}: {e:?}"));
        if step % 50 == 0 {
            drv.check_live(&format!("seed {seed} step {step} live"));
        }
        if matches!(op, Op::Commit | Op::Reserve) {
            commits += 1;
            let what = format!("seed {seed} step {step} after commit");
            drv.check_live(&what);
            let re = drv.check_durable(&what);
            drop(re);
            if thin_check_every > 0 && commits % thin_check_every == 0 {
                assert!(oracle::tools_available(), "thin-provisioning-tools missing");
                let img = drv.pmd.bm().durable_image();
                let out = oracle::check_image(&img, &[]).expect("thin_check runs");
                assert!(out.success(), "{what}: thin_check failed:\n{}", out.text());
                let dumped = oracle::dump_image(&img).expect("thin_dump");
                assert_models_eq(&dumped, &drv.committed, &format!("{what}: thin_dump"));
                if let Some(h) = &drv.committed_held {
                    held_dumps += 1;
                    let snap = oracle::dump_image_snap(&img, None).expect("thin_dump -m");
                    let mut want = h.clone();
                    want.nr_data_blocks = snap.nr_data_blocks;
                    assert_models_eq(&snap, &want, &format!("{what}: thin_dump -m"));
                }
            }
        }
    }
    drv.commit().unwrap();
    eprintln!("seed {seed}: {held_dumps} metadata snapshots dumped");
    eprintln!(
        "seed {seed}: {:?}, max mappings {}, final {:?}",
        drv.counts,
        drv.max_mappings,
        summary(&drv.model)
    );
    for k in [
        "create_thin",
        "create_snap",
        "delete",
        "insert",
        "remove",
        "remove_range",
        "abort",
        "reserve",
        "release",
        "refused",
    ] {
        assert!(
            drv.counts.get(k).copied().unwrap_or(0) > 0,
            "seed {seed}: no successful {k}"
        );
    }
    drv.check_live(&format!("seed {seed} final"));
    drv.check_durable(&format!("seed {seed} final durable"));
    {
        let img = drv.pmd.bm().durable_image();
        let out = oracle::check_image(&img, &[]).expect("thin_check runs");
        assert!(
            out.success(),
            "seed {seed} final thin_check:\n{}",
            out.text()
        );
        let dumped = oracle::dump_image(&img).expect("thin_dump");
        assert_models_eq(&dumped, &drv.committed, &format!("seed {seed} thin_dump"));
    }
}

#[test]
fn random_sequences_small_ids() {
    let seeds = if big() { 40 } else { 6 };
    for seed in 0..seeds {
        run_seed(seed, if big() { 3000 } else { 700 }, 6, 600, 4000, 8, false);
    }
}

#[test]
fn random_sequences_wide_trees() {
    // Big vblock space and many inserts: multi-level device trees, splits
    // and rebalancing on removal, several data bitmaps.
    let seeds = if big() { 10 } else { 2 };
    for seed in 100..100 + seeds {
        run_seed(
            seed,
            if big() { 8000 } else { 1500 },
            4,
            40_000,
            40_000,
            10,
            true,
        );
    }
}
