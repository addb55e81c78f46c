//! Space-map tests: data and metadata space maps' counts through the
//! overflow tree, allocation rules (no reuse before commit, next-fit),
//! free-count accounting as upstream reports it, growth, on-disk bitmap
//! bit order and index entries, reopen, exhaustion, and the metadata
//! space map's recursion under heavy use.

mod core_common;

use std::collections::BTreeMap;

use core_common::*;
use host_tests::mem_bm::MemBm;
use pdata::pdata::block_manager::BlockManager;
use pdata::pdata::btree::{self, Plain};
use pdata::pdata::error::Error;
use pdata::pdata::space_map::disk::DiskSm;
use pdata::pdata::space_map::{IndexEntry, SmRoot, ENTRIES_PER_BLOCK};
use pdata::pdata::transaction_manager::{Reader, Tm, TmState};
use pdata::pdata::validators::SM_BITMAP;

fn data_index_entry(bm: &MemBm, dsm: &DiskSm, i: u64) -> IndexEntry {
    let mut v = [0u8; 16];
    btree::lookup(&Reader::new(bm), dsm.root().bitmap_root, &[i], &mut v).unwrap();
    IndexEntry::unpack(&v).unwrap()
}

fn check_all(
    tm: &mut Tm<'_, MemBm>,
    dsm: &mut DiskSm,
    trees: &[TreeSpec],
    data_extra: &BTreeMap<u64, u32>,
) {
    let mut c = Counts::default();
    for t in trees {
        walk(tm.bm(), *t, &mut c);
    }
    count_metadata_sm(tm, &mut c);
    count_data_sm(tm.bm(), dsm, &mut c);
    check_meta_counts(tm, &c);
    check_data_counts(tm, dsm, &c, data_extra);
}

#[test]
fn data_counts_through_overflow_and_back() {
    let (bm, mut st) = setup(4096);
    let mut tm = Tm::new(&bm, &mut st);
    let mut dsm = DiskSm::create(&mut tm, 40_000).unwrap();
    commit(&mut tm, Some(&mut dsm));
    let blocks = [0u64, 1, 31, 32, 16319, 16320, 39_999];
    let mut expect: BTreeMap<u64, u32> = BTreeMap::new();
    for step in 1..=12u32 {
        for &b in &blocks {
            dsm.inc(&mut tm, b).unwrap();
            expect.insert(b, step);
        }
        for &b in &blocks {
            assert_eq!(dsm.get_count(&mut tm, b).unwrap(), step, "block {b}");
            assert_eq!(dsm.count_is_more_than_one(&mut tm, b).unwrap(), step > 1);
        }
        if step % 4 == 0 {
            commit(&mut tm, Some(&mut dsm));
            check_all(&mut tm, &mut dsm, &[], &expect);
        }
    }
    // Range increments across a bitmap boundary.
    dsm.inc_blocks(&mut tm, 16_300, 16_340).unwrap();
    for b in 16_300..16_340u64 {
        *expect.entry(b).or_default() += 1;
    }
    commit(&mut tm, Some(&mut dsm));
    check_all(&mut tm, &mut dsm, &[], &expect);
    for step in (0..12u32).rev() {
        for &b in &blocks {
            dsm.dec(&mut tm, b).unwrap();
            *expect.get_mut(&b).unwrap() -= 1;
            assert_eq!(dsm.get_count(&mut tm, b).unwrap(), expect[&b]);
            assert!(expect[&b] >= step);
        }
        if step % 3 == 0 {
            commit(&mut tm, Some(&mut dsm));
            expect.retain(|_, c| *c > 0);
            check_all(&mut tm, &mut dsm, &[], &expect);
        }
    }
    dsm.dec_blocks(&mut tm, 16_300, 16_340).unwrap();
    expect.clear();
    commit(&mut tm, Some(&mut dsm));
    check_all(&mut tm, &mut dsm, &[], &expect);
    // The overflow tree is empty again.
    let mut c = Counts::default();
    assert_eq!(
        walk(
            &bm,
            TreeSpec {
                root: dsm.root().ref_count_root,
                levels: 1,
                leaves: Leaves::Plain(4)
            },
            &mut c
        ),
        0
    );
    // set_count, including into and out of the overflow tree.
    for (b, n) in [(7u64, 5u32), (8, 2), (9, 1)] {
        dsm.set_count(&mut tm, b, n).unwrap();
        assert_eq!(dsm.get_count(&mut tm, b).unwrap(), n);
    }
    dsm.set_count(&mut tm, 7, 0).unwrap();
    assert_eq!(dsm.get_count(&mut tm, 7).unwrap(), 0);
    assert_eq!(dsm.current_nr_allocated(), 2);
    // Decrementing a free block is an error (the transaction must then be
    // abandoned).
    assert_eq!(
        dsm.dec(&mut tm, 5),
        Err(Error::Corrupt(pdata::pdata::error::Corruption::SpaceMap))
    );
}

#[test]
fn bitmap_bit_order_and_index_entries() {
    let (bm, mut st) = setup(4096);
    let mut tm = Tm::new(&bm, &mut st);
    let mut dsm = DiskSm::create(&mut tm, 20_000).unwrap();
    commit(&mut tm, Some(&mut dsm));
    // Entry 1 of word 0 gets count 1, entry 2 count 2, entry 3 count 3+.
    dsm.set_count(&mut tm, 1, 1).unwrap();
    dsm.set_count(&mut tm, 2, 2).unwrap();
    dsm.set_count(&mut tm, 3, 7).unwrap();
    commit(&mut tm, Some(&mut dsm));
    let ie0 = data_index_entry(&bm, &dsm, 0);
    let ie1 = data_index_entry(&bm, &dsm, 1);
    assert_eq!(ie0.nr_free, 16_320 - 3);
    assert_eq!(ie0.none_free_before, 0, "entry 0 is still free");
    // The second bitmap is partial (20000 - 16320 blocks) but says 16320.
    assert_eq!(ie1.nr_free, 16_320);
    let g = bm.read_lock(ie0.blocknr, &SM_BITMAP).unwrap();
    let w = u64::from_le_bytes(g[16..24].try_into().unwrap());
    // Entry j: high bit at 2j, low bit at 2j+1.
    assert_eq!((w >> 2) & 3, 0b10, "count 1 is bit 2j+1");
    assert_eq!((w >> 4) & 3, 0b01, "count 2 is bit 2j");
    assert_eq!((w >> 6) & 3, 0b11, "count 3 is both bits");
    assert_eq!(w & 3, 0);
    drop(g);
    // Allocating fills entry 0, then moves none_free_before past it.
    assert_eq!(dsm.new_block(&mut tm).unwrap(), 0);
    assert_eq!(dsm.new_block(&mut tm).unwrap(), 4);
    commit(&mut tm, Some(&mut dsm));
    let ie0 = data_index_entry(&bm, &dsm, 0);
    assert_eq!(ie0.nr_free, 16_320 - 5);
    assert_eq!(ie0.none_free_before, 1);
}

#[test]
fn no_reuse_before_commit_and_free_counts() {
    let (bm, mut st) = setup(4096);
    let mut tm = Tm::new(&bm, &mut st);
    let n = 100u64;
    let mut dsm = DiskSm::create(&mut tm, n).unwrap();
    commit(&mut tm, Some(&mut dsm));
    assert_eq!(dsm.nr_blocks(), n);
    assert_eq!(dsm.nr_free(), n);
    let mut got = Vec::new();
    for i in 0..n {
        let b = dsm.new_block(&mut tm).unwrap();
        assert_eq!(b, i, "next-fit from 0");
        got.push(b);
    }
    assert_eq!(dsm.nr_free(), 0);
    assert_eq!(dsm.new_block(&mut tm), Err(Error::NoSpace));
    commit(&mut tm, Some(&mut dsm));
    // Free two blocks: they count as free at once (data SM) ...
    dsm.dec(&mut tm, 10).unwrap();
    dsm.dec(&mut tm, 50).unwrap();
    assert_eq!(dsm.nr_free(), 2);
    // ... but are not handed out before a commit.
    assert_eq!(dsm.new_block(&mut tm), Err(Error::NoSpace));
    commit(&mut tm, Some(&mut dsm));
    // Next-fit: the cursor continues after the last allocation, wraps.
    let a = dsm.new_block(&mut tm).unwrap();
    let b = dsm.new_block(&mut tm).unwrap();
    assert_eq!((a, b), (10, 50));
    // A block freed now is not reused even when it is the only free one.
    dsm.dec(&mut tm, 20).unwrap();
    assert_eq!(dsm.new_block(&mut tm), Err(Error::NoSpace));
    // Freed-and-reallocated in one transaction does not happen either:
    // free 30, allocate elsewhere after extension.
    dsm.extend(&mut tm, 20).unwrap();
    // Size and free count come from the committed state until commit.
    assert_eq!(dsm.nr_blocks(), n);
    commit(&mut tm, Some(&mut dsm));
    assert_eq!(dsm.nr_blocks(), n + 20);
    assert_eq!(dsm.nr_free(), 21);
    let c = dsm.new_block(&mut tm).unwrap();
    assert_eq!(
        c, 100,
        "cursor continues at the new space, not the freed 20"
    );
    commit(&mut tm, Some(&mut dsm));
    check_all(
        &mut tm,
        &mut dsm,
        &[],
        &(0..n)
            .filter(|&b| b != 20)
            .chain([100])
            .map(|b| (b, 1))
            .collect(),
    );
    // Reopen from the roots: same counts, free block 20 allocatable.
    let mut root = [0u8; 32];
    dsm.copy_root(&mut root).unwrap();
    let mut dsm2 = DiskSm::open(&mut tm, &root).unwrap();
    assert_eq!(dsm2.nr_free(), dsm.nr_free());
    assert_eq!(dsm2.get_count(&mut tm, 20).unwrap(), 0);
    assert_eq!(dsm2.get_count(&mut tm, 21).unwrap(), 1);
    assert_eq!(dsm2.new_block(&mut tm).unwrap(), 20);
}

#[test]
fn data_sm_extend_across_many_bitmaps() {
    let (bm, mut st) = setup(8192);
    let mut tm = Tm::new(&bm, &mut st);
    let mut dsm = DiskSm::create(&mut tm, 0).unwrap();
    commit(&mut tm, Some(&mut dsm));
    assert_eq!(dsm.new_block(&mut tm), Err(Error::NoSpace));
    // Grow in steps to 200 bitmaps (more than the 64-entry cache).
    for _ in 0..10 {
        dsm.extend(&mut tm, 20 * ENTRIES_PER_BLOCK + 5).unwrap();
        commit(&mut tm, Some(&mut dsm));
    }
    let total = 10 * (20 * ENTRIES_PER_BLOCK + 5);
    assert_eq!(dsm.nr_blocks(), total);
    assert_eq!(dsm.nr_free(), total);
    // Touch a block in every bitmap (exercises cache eviction).
    let mut expect = BTreeMap::new();
    for i in 0..total.div_ceil(ENTRIES_PER_BLOCK) {
        let b = (i * ENTRIES_PER_BLOCK + i * 7).min(total - 1);
        dsm.inc(&mut tm, b).unwrap();
        expect.insert(b, 1);
    }
    commit(&mut tm, Some(&mut dsm));
    check_all(&mut tm, &mut dsm, &[], &expect);
    assert_eq!(dsm.nr_free(), total - expect.len() as u64);
}

#[test]
fn metadata_sm_format_layout_and_free_counts() {
    let nr = 20_000u64;
    let bm = MemBm::new(nr);
    let mut st = TmState::create(&bm, 0).unwrap();
    let mut tm = Tm::new(&bm, &mut st);
    let root = tm.sm_root();
    // Upstream layout: 1 index block, 2 overflow tree, 3.. bitmaps.
    assert_eq!(root.nr_blocks, nr);
    assert_eq!(root.bitmap_root, 1);
    assert_eq!(root.ref_count_root, 2);
    assert_eq!(tm.sm_index_entry(0).unwrap().blocknr, 3);
    assert_eq!(tm.sm_index_entry(1).unwrap().blocknr, 4);
    assert_eq!(
        root.nr_allocated, 5,
        "superblock, index, overflow root, 2 bitmaps"
    );
    for b in 0..5 {
        assert_eq!(tm.ref_count(b).unwrap(), 1);
    }
    assert_eq!(tm.ref_count(5).unwrap(), 0);
    assert_eq!(tm.sm_nr_free(), nr - 5);
    commit(&mut tm, None);
    let free0 = tm.sm_nr_free();
    // Allocations count at once; frees only after commit.
    let mut r = btree::empty(&mut tm, 8).unwrap();
    let used_after_empty = free0 - tm.sm_nr_free();
    assert!(used_after_empty >= 1);
    for k in 0..2000u64 {
        r = btree::insert(&mut tm, &mut Plain::<8>, r, &[k], &k.to_le_bytes()).unwrap();
    }
    commit(&mut tm, None);
    let free1 = tm.sm_nr_free();
    btree::del(&mut tm, &mut Plain::<8>, r, 1).unwrap();
    // Frees are not counted before commit (only the space map's own
    // shadow copies are).
    assert!(
        tm.sm_nr_free() <= free1,
        "frees are not counted before commit"
    );
    commit(&mut tm, None);
    assert!(tm.sm_nr_free() > free1);
    let mut c = Counts::default();
    count_metadata_sm(&tm, &mut c);
    check_meta_counts(&mut tm, &c);
    // The index block moved at commit and validates.
    check_index_block(&tm);
}

#[test]
fn metadata_sm_reopen_and_threshold() {
    let bm = MemBm::new(10_000);
    let mut st = TmState::create(&bm, 0).unwrap();
    let mut sm_root = [0u8; 32];
    let root;
    {
        let mut tm = Tm::new(&bm, &mut st);
        let mut r = btree::empty(&mut tm, 8).unwrap();
        for k in 0..3000u64 {
            r = btree::insert(&mut tm, &mut Plain::<8>, r, &[k * 3], &k.to_le_bytes()).unwrap();
        }
        root = r;
        commit(&mut tm, None);
        tm.copy_sm_root(&mut sm_root).unwrap();
    }
    drop(st);
    bm.drop_cache();
    let mut st2 = TmState::open(&bm, &sm_root).unwrap();
    let mut tm = Tm::new(&bm, &mut st2);
    assert_eq!(SmRoot::unpack(&sm_root).unwrap(), tm.sm_root());
    let mut c = Counts::default();
    walk(
        &bm,
        TreeSpec {
            root,
            levels: 1,
            leaves: Leaves::Plain(8),
        },
        &mut c,
    );
    count_metadata_sm(&tm, &mut c);
    check_meta_counts(&mut tm, &c);
    let mut v = [0u8; 8];
    btree::lookup(&tm.reader(), root, &[300], &mut v).unwrap();
    assert_eq!(u64::from_le_bytes(v), 100);
    // Threshold: fires once when free drops to it.
    let free = tm.sm_nr_free();
    tm.set_threshold(free - 3);
    let mut events = 0;
    for _ in 0..10 {
        let (g, _) = tm.new_block(&pdata::pdata::validators::BTREE_NODE).unwrap();
        drop(g);
        if tm.take_threshold_event() {
            events += 1;
        }
    }
    assert_eq!(events, 1);
    // Corrupt root: nr_blocks beyond the device.
    let mut bad = sm_root;
    bad[0..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(TmState::open(&bm, &bad).is_err());
}

#[test]
fn metadata_sm_recursion_heavy_use() {
    let (bm, mut st) = setup(30_000);
    let mut tm = Tm::new(&bm, &mut st);
    let mut dsm = DiskSm::create(&mut tm, 1).unwrap();
    commit(&mut tm, Some(&mut dsm));
    // Build a tree, then share its blocks many times over: metadata counts
    // go through the metadata SM's own overflow tree, whose updates need
    // allocations from the same map (recursion + deferred ops).
    let mut r = btree::empty(&mut tm, 8).unwrap();
    for k in 0..20_000u64 {
        r = btree::insert(&mut tm, &mut Plain::<8>, r, &[k], &k.to_le_bytes()).unwrap();
    }
    commit(&mut tm, Some(&mut dsm));
    let mut extra: BTreeMap<u64, u32> = BTreeMap::new();
    let mut rng = Xs(3);
    let mut c0 = Counts::default();
    walk(
        &bm,
        TreeSpec {
            root: r,
            levels: 1,
            leaves: Leaves::Plain(8),
        },
        &mut c0,
    );
    let nodes: Vec<u64> = c0.meta.keys().copied().collect();
    for round in 0..6 {
        for _ in 0..300 {
            let b = nodes[rng.below(nodes.len() as u64) as usize];
            let n = rng.below(5) + 1;
            for _ in 0..n {
                tm.inc(b).unwrap();
            }
            *extra.entry(b).or_default() += n as u32;
        }
        // Ranges too: a run of consecutive node blocks.
        let mut sorted = nodes.clone();
        sorted.sort_unstable();
        let start = rng.below(sorted.len() as u64 - 10) as usize;
        let mut end = start + 1;
        while end < start + 10 && sorted[end] == sorted[end - 1] + 1 {
            end += 1;
        }
        tm.inc_range(sorted[start], sorted[end - 1] + 1).unwrap();
        for &b in &sorted[start..end] {
            *extra.entry(b).or_default() += 1;
        }
        // Mutate the tree while its nodes are shared: every shadow copies.
        for _ in 0..200 {
            let k = rng.below(25_000);
            r = btree::insert(
                &mut tm,
                &mut Plain::<8>,
                r,
                &[k],
                &(k + round).to_le_bytes(),
            )
            .unwrap();
        }
        commit(&mut tm, Some(&mut dsm));
        // The extra references behave like extra roots (a node kept alive
        // by them still references its children): check counts.
        let mut c = Counts::default();
        walk(
            &bm,
            TreeSpec {
                root: r,
                levels: 1,
                leaves: Leaves::Plain(8),
            },
            &mut c,
        );
        for (&b, &n) in &extra {
            walk(
                &bm,
                TreeSpec {
                    root: b,
                    levels: 1,
                    leaves: Leaves::Plain(8),
                },
                &mut c,
            );
            *c.meta.entry(b).or_default() += n - 1;
        }
        count_metadata_sm(&tm, &mut c);
        count_data_sm(&bm, &dsm, &mut c);
        check_meta_counts(&mut tm, &c);
    }
    // Drop all extra references again, as tree deletions (a node whose
    // last reference goes releases its children).
    for (&b, &n) in &extra {
        for _ in 0..n {
            btree::del(&mut tm, &mut Plain::<8>, b, 1).unwrap();
        }
    }
    extra.clear();
    commit(&mut tm, Some(&mut dsm));
    check_all(
        &mut tm,
        &mut dsm,
        &[TreeSpec {
            root: r,
            levels: 1,
            leaves: Leaves::Plain(8),
        }],
        &BTreeMap::new(),
    );
    let mut c = Counts::default();
    assert_eq!(
        walk(
            &bm,
            TreeSpec {
                root: tm.sm_root().ref_count_root,
                levels: 1,
                leaves: Leaves::Plain(4)
            },
            &mut c
        ),
        0
    );
}

#[test]
fn metadata_sm_extend() {
    let bm = MemBm::new(60_000);
    let mut st = TmState::create_sized(&bm, 0, 10_000).unwrap();
    let mut tm = Tm::new(&bm, &mut st);
    let mut dsm = DiskSm::create(&mut tm, 1).unwrap();
    commit(&mut tm, Some(&mut dsm));
    assert_eq!(tm.sm_nr_blocks(), 10_000);
    // Fill most of the space.
    let mut r = btree::empty(&mut tm, 8).unwrap();
    let mut k = 0u64;
    while tm.sm_nr_free() > 200 {
        r = btree::insert(&mut tm, &mut Plain::<8>, r, &[k * 1000], &k.to_le_bytes()).unwrap();
        k += 1;
        if k % 1000 == 0 {
            commit(&mut tm, Some(&mut dsm));
        }
    }
    commit(&mut tm, Some(&mut dsm));
    tm.sm_extend_by(45_000).unwrap();
    commit(&mut tm, Some(&mut dsm));
    assert_eq!(tm.sm_nr_blocks(), 55_000);
    // The new bitmaps were carved from the new area.
    for i in 1..55_000u64.div_ceil(ENTRIES_PER_BLOCK) {
        let ie = tm.sm_index_entry(i).unwrap();
        assert!(ie.blocknr >= 10_000, "bitmap {i} at {}", ie.blocknr);
    }
    check_all(
        &mut tm,
        &mut dsm,
        &[TreeSpec {
            root: r,
            levels: 1,
            leaves: Leaves::Plain(8),
        }],
        &BTreeMap::new(),
    );
    // Keep going well past the old size.
    for j in 0..20_000u64 {
        r = btree::insert(
            &mut tm,
            &mut Plain::<8>,
            r,
            &[j * 1000 + 1],
            &j.to_le_bytes(),
        )
        .unwrap();
    }
    commit(&mut tm, Some(&mut dsm));
    check_all(
        &mut tm,
        &mut dsm,
        &[TreeSpec {
            root: r,
            levels: 1,
            leaves: Leaves::Plain(8),
        }],
        &BTreeMap::new(),
    );
    // Growing past the device fails.
    assert!(tm.sm_extend_by(10_000).is_err());
}

#[test]
fn metadata_exhaustion_is_nospace() {
    let bm = MemBm::new(300);
    let mut st = TmState::create(&bm, 0).unwrap();
    let mut tm = Tm::new(&bm, &mut st);
    let mut r = btree::empty(&mut tm, 8).unwrap();
    let mut err = None;
    for k in 0..200_000u64 {
        match btree::insert(&mut tm, &mut Plain::<8>, r, &[k], &k.to_le_bytes()) {
            Ok(x) => r = x,
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    assert_eq!(err, Some(Error::NoSpace));
}
