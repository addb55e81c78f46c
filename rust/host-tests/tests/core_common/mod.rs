//! Shared helpers of the core_* tests: a test superblock validator, a
//! commit helper, a data-block value type, and an independent checker that
//! walks trees and space-map structures, verifies btree shape invariants
//! and recomputes every reference count.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};

use host_tests::mem_bm::MemBm;
use pdata::pdata::block_manager::{Block, BlockManager, Validator};
use pdata::pdata::btree::{self, node, ValueType};
use pdata::pdata::error::Result;
use pdata::pdata::space_map::disk::DiskSm;
use pdata::pdata::space_map::{IndexEntry, ENTRIES_PER_BLOCK};
use pdata::pdata::transaction_manager::{Tm, TmState};
use pdata::pdata::validators::{BTREE_NODE, SM_BITMAP, SM_INDEX};

fn sb_check(_b: &Block, _loc: u64) -> Result<()> {
    Ok(())
}
fn sb_prepare(_b: &mut Block, _loc: u64) {}

/// A do-nothing validator for the test "superblock" at block 0.
pub static TEST_SB: Validator = Validator {
    name: "test_sb",
    check: sb_check,
    prepare: sb_prepare,
    csum_salt: None,
};

/// Commits: data SM (if any), TM pre-commit, superblock, TM commit.
pub fn commit(tm: &mut Tm<'_, MemBm>, dsm: Option<&mut DiskSm>) {
    if let Some(d) = dsm {
        d.commit(tm).expect("data sm commit");
    }
    tm.pre_commit().expect("pre_commit");
    let mut sb = tm.write_lock_zero(0, &TEST_SB).expect("sb lock");
    tm.copy_sm_root(&mut sb[192..224]).expect("copy root");
    tm.commit(sb).expect("commit");
}

/// 8-byte values that are data block numbers counted in a [`DiskSm`].
pub struct DataRefs<'s> {
    pub dsm: &'s mut DiskSm,
}

impl<B: BlockManager> ValueType<B> for DataRefs<'_> {
    const SIZE: usize = 8;
    fn inc(&mut self, tm: &mut Tm<'_, B>, values: &[u8]) -> Result<()> {
        btree::for_each_run(values, |b, e| self.dsm.inc_blocks(tm, b, e))
    }
    fn dec(&mut self, tm: &mut Tm<'_, B>, values: &[u8]) -> Result<()> {
        btree::for_each_run(values, |b, e| self.dsm.dec_blocks(tm, b, e))
    }
}

/// What the last level of a tree holds.
#[derive(Clone, Copy, PartialEq)]
pub enum Leaves {
    /// Plain values of this size.
    Plain(usize),
    /// 8-byte data block numbers (counted in the data map).
    Data,
}

/// A tree to check: root, levels, last-level leaf values.
#[derive(Clone, Copy)]
pub struct TreeSpec {
    pub root: u64,
    pub levels: u32,
    pub leaves: Leaves,
}

/// Counts gathered by a check.
#[derive(Default)]
pub struct Counts {
    pub meta: HashMap<u64, u32>,
    pub data: HashMap<u64, u32>,
    visited: HashSet<u64>,
    pub nodes: usize,
}

fn read(bm: &MemBm, b: u64) -> Box<Block> {
    let g = bm
        .read_lock(b, &BTREE_NODE)
        .unwrap_or_else(|e| panic!("read node {b}: {e:?}"));
    let mut x: Box<Block> = vec![0u8; 4096].into_boxed_slice().try_into().unwrap();
    x.copy_from_slice(&g[..]);
    x
}

/// Walks one tree (all levels), checking node invariants and adding
/// references to `c`.  Returns the number of last-level entries seen in
/// distinct leaves (for single-owner trees: the number of keys).
pub fn walk(bm: &MemBm, spec: TreeSpec, c: &mut Counts) -> usize {
    walk_level(bm, spec.root, 0, spec, c, 0, u64::MAX)
}

fn walk_level(
    bm: &MemBm,
    root: u64,
    level: u32,
    spec: TreeSpec,
    c: &mut Counts,
    lo: u64,
    hi: u64,
) -> usize {
    let _ = (lo, hi);
    let last = level + 1 == spec.levels;
    let leaf_vs = if !last {
        8
    } else {
        match spec.leaves {
            Leaves::Plain(n) => n,
            Leaves::Data => 8,
        }
    };
    let mut leaf_depth = None;
    walk_node(
        bm,
        root,
        true,
        0,
        &mut leaf_depth,
        level,
        spec,
        leaf_vs,
        c,
        0,
        u64::MAX,
    )
}

#[allow(clippy::too_many_arguments)]
fn walk_node(
    bm: &MemBm,
    b: u64,
    is_root: bool,
    depth: u32,
    leaf_depth: &mut Option<u32>,
    level: u32,
    spec: TreeSpec,
    leaf_vs: usize,
    c: &mut Counts,
    lo: u64,
    hi: u64,
) -> usize {
    *c.meta.entry(b).or_default() += 1;
    if !c.visited.insert(b) {
        return 0;
    }
    c.nodes += 1;
    assert!(depth < 20, "tree too deep");
    let n = read(bm, b);
    let nr = node::nr_entries(&n);
    let max = node::max_entries(&n);
    let vs = node::value_size(&n) as usize;
    let internal = node::is_internal(&n);
    assert_eq!(max % 3, 0, "max_entries multiple of 3");
    assert_eq!(
        max,
        node::calc_max_entries(vs),
        "max_entries for value size"
    );
    assert_eq!(vs, if internal { 8 } else { leaf_vs }, "value size");
    if !is_root {
        assert!(nr >= max / 3, "node {b} underfull: {nr} < {}", max / 3);
    }
    assert!(nr <= max);
    for i in 0..nr {
        let k = node::key(&n, i);
        assert!(k >= lo && k < hi, "key {k} outside [{lo},{hi}) in node {b}");
        if i > 0 {
            assert!(node::key(&n, i - 1) < k, "keys not increasing in {b}");
        }
    }
    let last = level + 1 == spec.levels;
    let mut total = 0;
    if internal {
        assert!(nr > 0, "empty internal node");
        for i in 0..nr {
            let child = node::value64(&n, i);
            let clo = node::key(&n, i);
            let chi = if i + 1 < nr { node::key(&n, i + 1) } else { hi };
            total += walk_node(
                bm,
                child,
                false,
                depth + 1,
                leaf_depth,
                level,
                spec,
                leaf_vs,
                c,
                clo,
                chi,
            );
        }
    } else {
        match leaf_depth {
            Some(d) => assert_eq!(*d, depth, "leaves at different depths"),
            None => *leaf_depth = Some(depth),
        }
        if !last {
            for i in 0..nr {
                let sub = node::value64(&n, i);
                total += walk_level(bm, sub, level + 1, spec, c, 0, u64::MAX);
            }
        } else {
            total += nr as usize;
            if spec.leaves == Leaves::Data {
                for i in 0..nr {
                    *c.data.entry(node::value64(&n, i)).or_default() += 1;
                }
            }
        }
    }
    total
}

/// Adds the metadata space map's own blocks (index, bitmaps, overflow
/// tree) to `c`.
pub fn count_metadata_sm(tm: &Tm<'_, MemBm>, c: &mut Counts) {
    let root = tm.sm_root();
    *c.meta.entry(root.bitmap_root).or_default() += 1;
    let nr_bitmaps = root.nr_blocks.div_ceil(ENTRIES_PER_BLOCK);
    for i in 0..nr_bitmaps {
        let ie = tm.sm_index_entry(i).unwrap();
        *c.meta.entry(ie.blocknr).or_default() += 1;
        // Bitmaps must be readable with the bitmap validator.
        drop(tm.bm().read_lock(ie.blocknr, &SM_BITMAP).unwrap());
    }
    walk(
        tm.bm(),
        TreeSpec {
            root: root.ref_count_root,
            levels: 1,
            leaves: Leaves::Plain(4),
        },
        c,
    );
}

/// Adds the data space map's blocks (index tree, bitmaps, overflow tree)
/// to `c`.  Call right after a commit (the index cache is then clean).
pub fn count_data_sm(bm: &MemBm, dsm: &DiskSm, c: &mut Counts) {
    let root = dsm.root();
    walk(
        bm,
        TreeSpec {
            root: root.bitmap_root,
            levels: 1,
            leaves: Leaves::Plain(16),
        },
        c,
    );
    walk(
        bm,
        TreeSpec {
            root: root.ref_count_root,
            levels: 1,
            leaves: Leaves::Plain(4),
        },
        c,
    );
    let nr_bitmaps = root.nr_blocks.div_ceil(ENTRIES_PER_BLOCK);
    let r = pdata::pdata::transaction_manager::Reader::new(bm);
    for i in 0..nr_bitmaps {
        let mut v = [0u8; 16];
        btree::lookup(&r, root.bitmap_root, &[i], &mut v).unwrap();
        let ie = IndexEntry::unpack(&v).unwrap();
        *c.meta.entry(ie.blocknr).or_default() += 1;
    }
}

/// Checks every metadata block's count against `c.meta` (plus 1 for the
/// superblock at block 0).
pub fn check_meta_counts(tm: &mut Tm<'_, MemBm>, c: &Counts) {
    let nr = tm.sm_nr_blocks();
    let mut allocated = 0;
    for b in 0..nr {
        let want = c.meta.get(&b).copied().unwrap_or(0) + u32::from(b == 0);
        let got = tm.ref_count(b).unwrap();
        assert_eq!(
            got, want,
            "metadata block {b}: sm count {got}, expected {want}"
        );
        if got > 0 {
            allocated += 1;
        }
    }
    assert_eq!(
        tm.sm_root().nr_allocated,
        allocated,
        "metadata nr_allocated"
    );
}

/// Checks data counts against `c.data`.
pub fn check_data_counts(
    tm: &mut Tm<'_, MemBm>,
    dsm: &mut DiskSm,
    c: &Counts,
    extra: &BTreeMap<u64, u32>,
) {
    let nr = dsm.current_nr_blocks();
    let mut allocated = 0;
    for b in 0..nr {
        let want = c.data.get(&b).copied().unwrap_or(0) + extra.get(&b).copied().unwrap_or(0);
        let got = dsm.get_count(tm, b).unwrap();
        assert_eq!(got, want, "data block {b}: sm count {got}, expected {want}");
        if got > 0 {
            allocated += 1;
        }
    }
    assert_eq!(dsm.current_nr_allocated(), allocated, "data nr_allocated");
}

/// Reads the metadata SM index block from the device cache (after a
/// commit) and checks it validates.
pub fn check_index_block(tm: &Tm<'_, MemBm>) {
    let root = tm.sm_root();
    drop(tm.bm().read_lock(root.bitmap_root, &SM_INDEX).unwrap());
}

/// xorshift64* PRNG.
pub struct Xs(pub u64);
impl Xs {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Fresh device + formatted metadata space map.
pub fn setup(nr_blocks: u64) -> (MemBm, TmState) {
    let bm = MemBm::new(nr_blocks);
    let st = TmState::create(&bm, 0).expect("create");
    (bm, st)
}
