//! Copy-on-write B+trees in upstream's on-disk format
//! (`dm-btree.c`, `dm-btree-remove.c`, `dm-btree-spine.c`).
//!
//! Trees are identified by their root block; every modifying operation
//! returns the new root (roots move when shadowed).  Multi-level trees
//! (`keys.len()` levels) store in the leaves of every level but the last
//! the root of a lower-level tree; those values are reference-counted
//! metadata blocks ([`BlockRefs`]).  The leaf values of the last level are
//! described by a [`ValueType`], whose `inc`/`dec`/`equal` hooks keep
//! the reference counts of whatever the values point to.
//!
//! Node shapes, split and rebalance rules match upstream exactly, so
//! `thin_check` accepts the trees:
//! - `max_entries` = floor((4096 - 32) / (8 + value_size)) rounded down
//!   to a multiple of 3; internal nodes always have value_size 8;
//! - insert: a full root splits beneath; a full non-root node first moves
//!   entries to an unshared sibling with >= 8 free entries (left, then
//!   right), else splits one into two or two into three; a full leaf that
//!   already holds the key is not split;
//! - remove: rebalance2/rebalance3 keep non-root nodes >= max/3 full.
//!
//! Every walk is bounded ([`MAX_DEPTH`] nodes per level) and checks each
//! node's shape (value size as expected, nr_entries <= max_entries, child
//! pointers inside the device); key order is checked by the node
//! validator when a block enters the cache.

pub mod del;
pub mod insert;
pub mod lookup;
pub mod node;
pub mod remove;

pub use del::{del, DelCursor};
pub use insert::{insert, insert_notify};
pub use lookup::{find_highest_key, find_lowest_key, lookup, lookup_next};
pub use remove::{remove, remove_leaves};

use super::block_manager::{Block, BlockManager};
use super::error::{Corruption, Error, Result};
use super::transaction_manager::Tm;
use super::validators::BTREE_NODE;

/// Maximum number of nodes a walk visits within one level of a tree
/// (upstream's deletion stack depth); deeper means corruption or a cycle.
pub const MAX_DEPTH: usize = 64;

/// Maximum number of levels of a multi-level tree.
pub const MAX_LEVELS: usize = 8;

/// How the leaf values of a tree reference other objects.
///
/// `inc` is called for values that gain a reference (a shared leaf was
/// copied), `dec` for values that lose one (overwritten by a value that
/// is not `equal`, removed, or in a leaf that was deleted).  `values` holds
/// `n * SIZE` bytes, `n >= 1` consecutive values of one leaf, so
/// implementations can batch runs.
pub trait ValueType<B: BlockManager> {
    /// Size of a value on disk in bytes.
    const SIZE: usize;

    /// Takes a reference on each value in `values`.
    fn inc(&mut self, tm: &mut Tm<'_, B>, values: &[u8]) -> Result<()> {
        let _ = (tm, values);
        Ok(())
    }

    /// Drops a reference on each value in `values`.
    fn dec(&mut self, tm: &mut Tm<'_, B>, values: &[u8]) -> Result<()> {
        let _ = (tm, values);
        Ok(())
    }

    /// Whether overwriting `old` with `new` keeps the reference (then
    /// `dec` is not called on `old`).
    fn equal(&self, old: &[u8], new: &[u8]) -> bool {
        old == new
    }
}

/// Values of `N` bytes that reference nothing (ref-count trees, space-map
/// index trees, device details).
#[derive(Clone, Copy, Debug, Default)]
pub struct Plain<const N: usize>;

impl<B: BlockManager, const N: usize> ValueType<B> for Plain<N> {
    const SIZE: usize = N;
}

/// Little-endian u64 values that are metadata block numbers, counted in
/// the metadata space map (upstream `init_le64_type`): used for the upper
/// levels of multi-level trees.
#[derive(Clone, Copy, Debug, Default)]
pub struct BlockRefs;

impl<B: BlockManager> ValueType<B> for BlockRefs {
    const SIZE: usize = 8;

    fn inc(&mut self, tm: &mut Tm<'_, B>, values: &[u8]) -> Result<()> {
        for_each_run(values, |b, e| tm.inc_range(b, e))
    }

    fn dec(&mut self, tm: &mut Tm<'_, B>, values: &[u8]) -> Result<()> {
        for_each_run(values, |b, e| tm.dec_range(b, e))
    }
}

/// Calls `f(begin, end)` for each run of consecutive numbers in a list of
/// little-endian u64 values (upstream `dm_tm_with_runs`).
pub fn for_each_run(values: &[u8], mut f: impl FnMut(u64, u64) -> Result<()>) -> Result<()> {
    for_each_run_of(values.chunks_exact(8).map(|c| node::rd64(c, 0)), &mut f)
}

/// Calls `f(begin, end)` for each run of consecutive numbers produced by
/// `it` (for packed values: map them to block numbers first).
pub fn for_each_run_of(
    it: impl Iterator<Item = u64>,
    f: &mut impl FnMut(u64, u64) -> Result<()>,
) -> Result<()> {
    let mut run: Option<(u64, u64)> = None;
    for b in it {
        run = match run {
            Some((begin, end)) if end == b => {
                Some((begin, end.checked_add(1).ok_or(Error::Invalid)?))
            }
            Some((begin, end)) => {
                f(begin, end)?;
                Some((b, b.checked_add(1).ok_or(Error::Invalid)?))
            }
            None => Some((b, b.checked_add(1).ok_or(Error::Invalid)?)),
        };
    }
    if let Some((begin, end)) = run {
        f(begin, end)?;
    }
    Ok(())
}

/// Creates an empty tree (a zero-filled leaf root) whose leaves hold
/// `value_size`-byte values; returns its root (`BT:dm_btree_empty`).
pub fn empty<B: BlockManager>(tm: &mut Tm<'_, B>, value_size: usize) -> Result<u64> {
    if value_size == 0 || value_size > 1024 {
        return Err(Error::Invalid);
    }
    let (mut g, b) = tm.new_block(&BTREE_NODE)?;
    node::init_empty(&mut g, node::LEAF_NODE, value_size as u32);
    Ok(b)
}

/// Increments everything node `n` points to: child blocks of an internal
/// node, values of a leaf through `vt` (`BT:inc_children`).
pub(crate) fn inc_children<B: BlockManager, V: ValueType<B>>(
    tm: &mut Tm<'_, B>,
    n: &Block,
    vt: &mut V,
) -> Result<()> {
    let nr = node::nr_entries(n);
    if nr == 0 {
        return Ok(());
    }
    let vals = node::values(n, 0, nr);
    if node::is_internal(n) {
        for_each_run(vals, |b, e| tm.inc_range(b, e))
    } else {
        vt.inc(tm, vals)
    }
}

/// Checks a child pointer read from a node.
#[inline]
pub(crate) fn check_child<B: BlockManager>(bm: &B, b: u64) -> Result<()> {
    if b < bm.nr_blocks() {
        Ok(())
    } else {
        Err(Error::Corrupt(Corruption::OutOfRange))
    }
}

//------------------------------------------------------------------------
// Shadow spine (`BTS:shadow_spine`): the current node and its parent,
// both shadowed (writable) in this transaction.

pub(crate) struct Spine<'a, B: BlockManager + 'a> {
    pub(crate) parent: Option<(B::WriteGuard<'a>, u64)>,
    pub(crate) cur: Option<(B::WriteGuard<'a>, u64)>,
    pub(crate) root: Option<u64>,
}

impl<'a, B: BlockManager + 'a> Spine<'a, B> {
    pub(crate) fn new() -> Self {
        Spine {
            parent: None,
            cur: None,
            root: None,
        }
    }

    /// Shadows `b` and makes it the current node (the previous current
    /// node becomes the parent).  `leaf_vs` is the value size leaves of
    /// this level must have.
    pub(crate) fn step<V: ValueType<B>>(
        &mut self,
        tm: &mut Tm<'a, B>,
        vt: &mut V,
        b: u64,
        leaf_vs: usize,
    ) -> Result<()> {
        check_child(tm.bm(), b)?;
        let (g, loc, inc) = tm.shadow(b, &BTREE_NODE)?;
        node::check_shape(&g, leaf_vs)?;
        if inc {
            inc_children(tm, &g, vt)?;
        }
        match self.cur.take() {
            Some(c) => self.parent = Some(c),
            None => self.root = Some(loc),
        }
        self.cur = Some((g, loc));
        Ok(())
    }

    pub(crate) fn has_parent(&self) -> bool {
        self.parent.is_some()
    }

    /// The current node.
    pub(crate) fn cur(&mut self) -> Result<&mut B::WriteGuard<'a>> {
        self.cur.as_mut().map(|(g, _)| g).ok_or(Error::Invalid)
    }

    /// Location of the current node.
    pub(crate) fn cur_loc(&self) -> Result<u64> {
        self.cur.as_ref().map(|(_, l)| *l).ok_or(Error::Invalid)
    }

    /// Writes the current node's location into the parent's value `i`.
    pub(crate) fn patch_parent(&mut self, i: i64) -> Result<()> {
        if i < 0 {
            return Ok(());
        }
        let loc = self.cur_loc()?;
        if let Some((p, _)) = self.parent.as_mut() {
            if i as u32 >= node::nr_entries(p) {
                return Err(Error::Corrupt(Corruption::Node));
            }
            node::set_value64(p, i as u32, loc);
        }
        Ok(())
    }
}

/// Shadows child `index` of `parent` and points the parent at the shadow
/// (`BT:shadow_child`, `BTR:init_child`).
pub(crate) fn shadow_child<'a, B: BlockManager + 'a, V: ValueType<B>>(
    tm: &mut Tm<'a, B>,
    vt: &mut V,
    parent: &mut Block,
    index: u32,
    leaf_vs: usize,
) -> Result<(B::WriteGuard<'a>, u64)> {
    if index >= node::nr_entries(parent) {
        return Err(Error::Corrupt(Corruption::Node));
    }
    let b = node::value64(parent, index);
    check_child(tm.bm(), b)?;
    let (g, loc, inc) = tm.shadow(b, &BTREE_NODE)?;
    node::check_shape(&g, leaf_vs)?;
    if inc {
        inc_children(tm, &g, vt)?;
    }
    node::set_value64(parent, index, loc);
    Ok((g, loc))
}
