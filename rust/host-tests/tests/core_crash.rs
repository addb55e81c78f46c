//! Crash consistency of the transaction manager's commit protocol and
//! copy-on-write rules: random btree/space-map work under a small block
//! cache (so dirty blocks are written back before commit), power cuts at
//! every stage of a commit (random subsets of the pending writes landing,
//! some torn), and injected I/O errors.  Every crash image must reopen to
//! exactly the last committed or the new state, with all reference counts
//! right.

mod core_common;

use std::collections::BTreeMap;

use core_common::*;
use host_tests::mem_bm::{Image, MemBm};
use pdata::pdata::block_manager::{Block, BlockManager, Validator};
use pdata::pdata::btree;
use pdata::pdata::checksum::{block_checksum, SUPERBLOCK_CSUM_XOR};
use pdata::pdata::error::{Corruption, Error, Result};
use pdata::pdata::space_map::disk::DiskSm;
use pdata::pdata::transaction_manager::{Tm, TmState};

fn sb_check(b: &Block, loc: u64) -> Result<()> {
    if u64::from_le_bytes(b[8..16].try_into().unwrap()) != loc {
        return Err(Error::Corrupt(Corruption::Location));
    }
    if u32::from_le_bytes(b[0..4].try_into().unwrap()) != block_checksum(b, SUPERBLOCK_CSUM_XOR) {
        return Err(Error::Corrupt(Corruption::Checksum));
    }
    Ok(())
}
fn sb_prepare(b: &mut Block, loc: u64) {
    b[8..16].copy_from_slice(&loc.to_le_bytes());
    let c = block_checksum(b, SUPERBLOCK_CSUM_XOR);
    b[0..4].copy_from_slice(&c.to_le_bytes());
}
static SB: Validator = Validator {
    name: "superblock",
    check: sb_check,
    prepare: sb_prepare,
    csum_salt: None,
};

type Model = BTreeMap<u64, u64>;

fn pre_commit(tm: &mut Tm<'_, MemBm>, dsm: &mut DiskSm) -> Result<()> {
    dsm.commit(tm)?;
    tm.pre_commit()
}

fn write_sb_and_commit(tm: &mut Tm<'_, MemBm>, dsm: &DiskSm, root: u64, gen: u64) -> Result<()> {
    let mut sb = tm.write_lock_zero(0, &SB)?;
    sb[32..40].copy_from_slice(&gen.to_le_bytes());
    dsm.copy_root(&mut sb[64..96])?;
    tm.copy_sm_root(&mut sb[192..224])?;
    sb[320..328].copy_from_slice(&root.to_le_bytes());
    tm.commit(sb)
}

/// Reopens a crash image and returns its generation after checking it
/// against the models of generation `gen_old` and `gen_old + 1`.
fn check_image(img: Image, models: &[(u64, &Model)]) -> u64 {
    let bm = MemBm::from_image(img);
    let sb = bm.read_lock(0, &SB).expect("superblock must validate");
    let gen = u64::from_le_bytes(sb[32..40].try_into().unwrap());
    let root = u64::from_le_bytes(sb[320..328].try_into().unwrap());
    let mut sm_root = [0u8; 32];
    sm_root.copy_from_slice(&sb[192..224]);
    let mut dsm_root = [0u8; 32];
    dsm_root.copy_from_slice(&sb[64..96]);
    drop(sb);
    let model = models
        .iter()
        .find(|(g, _)| *g == gen)
        .unwrap_or_else(|| panic!("unexpected generation {gen}"))
        .1;
    let mut st = TmState::open(&bm, &sm_root).expect("open metadata sm");
    let mut tm = Tm::new(&bm, &mut st);
    let mut dsm = DiskSm::open(&mut tm, &dsm_root).expect("open data sm");
    let spec = TreeSpec {
        root,
        levels: 1,
        leaves: Leaves::Data,
    };
    let mut c = Counts::default();
    assert_eq!(walk(&bm, spec, &mut c), model.len(), "gen {gen}: entries");
    count_metadata_sm(&tm, &mut c);
    count_data_sm(&bm, &dsm, &mut c);
    check_meta_counts(&mut tm, &c);
    check_data_counts(&mut tm, &mut dsm, &c, &BTreeMap::new());
    let r = tm.reader();
    for (&k, &v) in model {
        let mut out = [0u8; 8];
        btree::lookup(&r, root, &[k], &mut out).unwrap();
        assert_eq!(u64::from_le_bytes(out), v);
    }
    gen
}

fn random_work(
    tm: &mut Tm<'_, MemBm>,
    dsm: &mut DiskSm,
    root: &mut u64,
    model: &mut Model,
    rng: &mut Xs,
    n: usize,
) -> Result<()> {
    for _ in 0..n {
        let k = rng.below(3000);
        if rng.below(3) == 0 {
            match btree::remove(tm, &mut DataRefs { dsm }, *root, &[k]) {
                Ok(r) => {
                    *root = r;
                    model.remove(&k);
                }
                Err(Error::NotFound) => {}
                Err(e) => return Err(e),
            }
        } else {
            let d = dsm.new_block(tm)?;
            *root = btree::insert(tm, &mut DataRefs { dsm }, *root, &[k], &d.to_le_bytes())?;
            model.insert(k, d);
        }
    }
    Ok(())
}

#[test]
fn power_cuts_during_commits() {
    let bm = MemBm::new(4096);
    let mut st = TmState::create(&bm, 0).unwrap();
    let mut tm = Tm::new(&bm, &mut st);
    let mut dsm = DiskSm::create(&mut tm, 0).unwrap();
    dsm.extend(&mut tm, 40_000).unwrap();
    let mut root = btree::empty(&mut tm, 8).unwrap();
    pre_commit(&mut tm, &mut dsm).unwrap();
    write_sb_and_commit(&mut tm, &dsm, root, 0).unwrap();
    bm.set_cache_limit(48);
    let mut committed: Model = Model::new();
    let mut model = committed.clone();
    let mut rng = Xs(17);
    let rounds = if std::env::var("PDATA_BIG").is_ok() {
        40
    } else {
        10
    };
    let mut images = 0;
    for gen in 1..=rounds {
        random_work(&mut tm, &mut dsm, &mut root, &mut model, &mut rng, 200).unwrap();
        let models = [(gen - 1, &committed), (gen, &model)];
        // Crash before the commit: written-back blocks must not have
        // touched the committed state.
        for seed in 0..3 {
            assert_eq!(
                check_image(bm.crash_image_random(gen * 100 + seed, 20), &models),
                gen - 1
            );
            images += 1;
        }
        pre_commit(&mut tm, &mut dsm).unwrap();
        assert_eq!(check_image(bm.durable_image(), &models), gen - 1);
        // Crash while the superblock is being written: old or new.
        let mut sb_commit_done = false;
        bm.power_cut_after_writes(1);
        let r = write_sb_and_commit(&mut tm, &dsm, root, gen);
        if r.is_err() {
            for (fates, img) in bm.crash_images_exhaustive() {
                let g = check_image(img, &models);
                images += 1;
                let _ = fates;
                assert!(g == gen - 1 || g == gen);
            }
            bm.clear_faults();
            // The commit failed: the flush never completed. Retry it.
            bm.flush().unwrap();
            sb_commit_done = true;
        }
        let _ = sb_commit_done;
        assert_eq!(check_image(bm.durable_image(), &models), gen);
        committed = model.clone();
    }
    assert!(images > 30);
}

#[test]
fn io_errors_abort_cleanly() {
    // Each run: commit a base state, then fail the n-th write/read/flush
    // during more work and a commit; the durable image must be the base
    // state or (if the commit got through) the new one.
    let mut failures = 0;
    for n in 1..40u64 {
        let bm = MemBm::new(4096);
        let mut st = TmState::create(&bm, 0).unwrap();
        let mut tm = Tm::new(&bm, &mut st);
        let mut dsm = DiskSm::create(&mut tm, 0).unwrap();
        dsm.extend(&mut tm, 20_000).unwrap();
        let mut root = btree::empty(&mut tm, 8).unwrap();
        let mut model = Model::new();
        let mut rng = Xs(n);
        random_work(&mut tm, &mut dsm, &mut root, &mut model, &mut rng, 300).unwrap();
        pre_commit(&mut tm, &mut dsm).unwrap();
        write_sb_and_commit(&mut tm, &dsm, root, 1).unwrap();
        let base = model.clone();
        bm.set_cache_limit(40);
        bm.drop_cache();
        match n % 3 {
            0 => bm.fail_nth_write(n / 3 + 1),
            1 => bm.fail_nth_read(n / 3 + 1),
            _ => bm.fail_nth_flush(1 + n % 2),
        }
        let r = random_work(&mut tm, &mut dsm, &mut root, &mut model, &mut rng, 300)
            .and_then(|_| pre_commit(&mut tm, &mut dsm))
            .and_then(|_| write_sb_and_commit(&mut tm, &dsm, root, 2));
        if let Err(e) = r {
            assert_eq!(e, Error::Io, "injected faults surface as Io");
            failures += 1;
        }
        bm.clear_faults();
        let g = check_image(bm.durable_image(), &[(1, &base), (2, &model)]);
        if r.is_err() {
            assert_eq!(g, 1, "a failed commit leaves the base state");
        }
    }
    assert!(failures > 10, "faults were injected ({failures})");
}
