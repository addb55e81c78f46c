//! The metadata space map (`dm-space-map-metadata.c`): reference counts
//! of metadata blocks, stored in metadata blocks it manages itself.
//!
//! Changing a bitmap or the overflow tree needs shadowed blocks, i.e.
//! allocations from this very map.  As upstream, an operation increments
//! a recursion depth; while it is non-zero, nested inc/dec/new_block
//! requests are queued in a ring of up to 1024 pending ops and applied
//! when the outermost operation ends.  `get_count` and
//! `count_is_more_than_one` fold the pending ops in (and bitmap value 3
//! always counts as shared).  Formatting and growth use a bootstrap
//! allocator (linear from `begin`, no bitmap updates); the blocks it
//! handed out are then incremented until no further block is allocated.
//!
//! The state lives in [`TmState`](crate::pdata::transaction_manager::TmState);
//! the operations are `Tm` methods (crate-internal, with public wrappers
//! on `Tm`).

use super::ll::{self, Ll, LlCore};
use super::{IndexEntry, SmRoot, INDEX_ENTRY_SIZE, MAX_METADATA_BITMAPS, MAX_METADATA_BLOCKS};
use crate::env::Vec;
use crate::pdata::block_manager::BlockManager;
use crate::pdata::btree;
use crate::pdata::error::{Corruption, Error, Result};
use crate::pdata::transaction_manager::Tm;
use crate::pdata::validators::SM_INDEX;

/// Maximum number of queued recursive operations.
pub const MAX_RECURSIVE_ALLOCATIONS: usize = 1024;

/// Byte offset of the first entry in the index block.
const INDEX_HEADER_SIZE: usize = 16;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum OpKind {
    #[default]
    Inc,
    Dec,
}

#[derive(Clone, Copy, Debug, Default)]
struct BlockOp {
    kind: OpKind,
    b: u64,
    e: u64,
}

/// Ring of pending operations; one slot stays empty to tell full from
/// empty (`bop_ring_buffer`).
struct Ring {
    ops: Vec<BlockOp>,
    begin: usize,
    end: usize,
}

impl Ring {
    fn new() -> Result<Ring> {
        let mut ops = Vec::new();
        ops.try_resize(MAX_RECURSIVE_ALLOCATIONS + 1, BlockOp::default())?;
        Ok(Ring {
            ops,
            begin: 0,
            end: 0,
        })
    }

    fn next(&self, i: usize) -> usize {
        if i + 1 >= self.ops.len() {
            0
        } else {
            i + 1
        }
    }

    fn is_empty(&self) -> bool {
        self.begin == self.end
    }

    fn push(&mut self, op: BlockOp) -> Result<()> {
        let next = self.next(self.end);
        if next == self.begin {
            // "too many recursive allocations"
            return Err(Error::NoMem);
        }
        if let Some(slot) = self.ops.get_mut(self.end) {
            *slot = op;
        }
        self.end = next;
        Ok(())
    }

    fn peek(&self) -> Option<BlockOp> {
        if self.is_empty() {
            None
        } else {
            self.ops.get(self.begin).copied()
        }
    }

    fn pop(&mut self) {
        if !self.is_empty() {
            self.begin = self.next(self.begin);
        }
    }

    /// Net adjustment of block `b` by the pending ops.
    fn adjustment(&self, b: u64) -> i64 {
        let mut adj = 0i64;
        let mut i = self.begin;
        while i != self.end {
            if let Some(op) = self.ops.get(i) {
                if b >= op.b && b < op.e {
                    adj += if op.kind == OpKind::Inc { 1 } else { -1 };
                }
            }
            i = self.next(i);
        }
        adj
    }

    fn clear(&mut self) {
        self.begin = 0;
        self.end = 0;
    }
}

/// Edge-triggered low-space threshold (`struct threshold`).
#[derive(Default)]
struct Threshold {
    threshold: Option<u64>,
    current: Option<u64>,
    event: bool,
}

impl Threshold {
    fn below(&self, v: u64) -> bool {
        self.threshold.is_some_and(|t| v <= t)
    }

    fn check(&mut self, v: u64) {
        let already = self.current.is_some_and(|c| self.below(c));
        if self.below(v) && !already {
            self.event = true;
        }
        self.current = Some(v);
    }
}

/// State of the metadata space map.
pub struct MetadataSm {
    ll: LlCore,
    index: Vec<IndexEntry>,
    old: LlCore,
    old_index: Vec<IndexEntry>,
    begin: u64,
    recursion_count: u32,
    allocated_this_transaction: u64,
    ring: Ring,
    bootstrap: bool,
    threshold: Threshold,
}

impl MetadataSm {
    /// A fresh map in bootstrap mode, allocating from `superblock + 1`.
    pub(crate) fn new_bootstrap(superblock: u64) -> Result<MetadataSm> {
        let mut index = Vec::new();
        index.try_resize(MAX_METADATA_BITMAPS as usize, IndexEntry::default())?;
        let mut old_index = Vec::new();
        old_index.try_resize(MAX_METADATA_BITMAPS as usize, IndexEntry::default())?;
        Ok(MetadataSm {
            ll: LlCore::default(),
            index,
            old: LlCore::default(),
            old_index,
            begin: superblock.checked_add(1).ok_or(Error::Invalid)?,
            recursion_count: 0,
            allocated_this_transaction: 0,
            ring: Ring::new()?,
            bootstrap: true,
            threshold: Threshold::default(),
        })
    }

    /// Number of blocks managed (current size).
    pub fn nr_blocks(&self) -> u64 {
        self.ll.root.nr_blocks
    }

    /// Free blocks as upstream reports them.
    pub fn nr_free(&self) -> u64 {
        if self.bootstrap {
            return self.ll.root.nr_blocks.saturating_sub(self.begin);
        }
        self.old
            .root
            .nr_blocks
            .saturating_sub(self.old.root.nr_allocated)
            .saturating_sub(self.allocated_this_transaction)
    }

    /// The current root.
    pub fn root(&self) -> SmRoot {
        self.ll.root
    }

    /// Index entry `i` (current state).
    pub fn index_entry(&self, i: u64) -> Option<IndexEntry> {
        self.index.get(usize::try_from(i).ok()?).copied()
    }

    /// Writes the 32-byte root into `out`.
    pub fn copy_root(&self, out: &mut [u8]) -> Result<()> {
        self.ll.root.pack(out)
    }

    /// Registers the threshold.  The last observed free count is kept, as
    /// upstream's `set_threshold` keeps `current_value`: a table reload
    /// re-registering the threshold does not fire it again while the free
    /// count stays below it.
    pub(crate) fn set_threshold(&mut self, t: u64) {
        self.threshold.threshold = Some(t);
    }

    pub(crate) fn take_threshold_event(&mut self) -> bool {
        core::mem::take(&mut self.threshold.event)
    }
}

/// The current state of the metadata map (inside the TM).
pub(crate) struct MetaLl;
/// The last committed state of the metadata map (read only).
pub(crate) struct MetaOldLl;

impl<B: BlockManager> Ll<B> for MetaLl {
    fn core<'s>(&'s mut self, tm: &'s mut Tm<'_, B>) -> &'s mut LlCore {
        &mut tm.st.sm.ll
    }

    fn load_ie(&mut self, tm: &mut Tm<'_, B>, index: u64) -> Result<IndexEntry> {
        tm.st
            .sm
            .index
            .get(index as usize)
            .copied()
            .ok_or(Error::Corrupt(Corruption::SpaceMap))
    }

    fn save_ie(&mut self, tm: &mut Tm<'_, B>, index: u64, ie: IndexEntry) -> Result<()> {
        let sm = &mut tm.st.sm;
        sm.ll.changed = true;
        *sm.index.get_mut(index as usize).ok_or(Error::Invalid)? = ie;
        Ok(())
    }

    fn max_index_entries(&self) -> u64 {
        MAX_METADATA_BITMAPS
    }

    fn commit_index(&mut self, tm: &mut Tm<'_, B>) -> Result<()> {
        let (mut g, loc, _) = tm.shadow(tm.st.sm.ll.root.bitmap_root, &SM_INDEX)?;
        g.fill(0);
        for (i, ie) in tm.st.sm.index.iter().enumerate() {
            let off = INDEX_HEADER_SIZE + i * INDEX_ENTRY_SIZE;
            if let Some(s) = g.get_mut(off..off + INDEX_ENTRY_SIZE) {
                ie.pack(s);
            }
        }
        tm.st.sm.ll.root.bitmap_root = loc;
        Ok(())
    }
}

impl<B: BlockManager> Ll<B> for MetaOldLl {
    fn core<'s>(&'s mut self, tm: &'s mut Tm<'_, B>) -> &'s mut LlCore {
        &mut tm.st.sm.old
    }

    fn load_ie(&mut self, tm: &mut Tm<'_, B>, index: u64) -> Result<IndexEntry> {
        tm.st
            .sm
            .old_index
            .get(index as usize)
            .copied()
            .ok_or(Error::Corrupt(Corruption::SpaceMap))
    }

    fn save_ie(&mut self, _tm: &mut Tm<'_, B>, _index: u64, _ie: IndexEntry) -> Result<()> {
        Err(Error::ReadOnly)
    }

    fn max_index_entries(&self) -> u64 {
        MAX_METADATA_BITMAPS
    }

    fn commit_index(&mut self, _tm: &mut Tm<'_, B>) -> Result<()> {
        Err(Error::ReadOnly)
    }
}

impl<'a, B: BlockManager> Tm<'a, B> {
    fn sm_add_bop(&mut self, kind: OpKind, b: u64, e: u64) -> Result<()> {
        self.st.sm.ring.push(BlockOp { kind, b, e })
    }

    fn sm_in(&mut self) {
        self.st.sm.recursion_count += 1;
    }

    fn sm_apply_bops(&mut self) -> Result<()> {
        // Each applied op may queue a few more (shadows of bitmaps and
        // overflow-tree nodes); a valid map settles after a handful.  A
        // corrupt one must not keep feeding the ring forever.
        let mut budget: u32 = 1 << 20;
        while let Some(op) = self.st.sm.ring.peek() {
            budget = budget
                .checked_sub(1)
                .ok_or(Error::Corrupt(Corruption::SpaceMap))?;
            match op.kind {
                OpKind::Inc => ll::inc(&mut MetaLl, self, op.b, op.e)?,
                OpKind::Dec => ll::dec(&mut MetaLl, self, op.b, op.e)?,
            };
            self.st.sm.ring.pop();
        }
        Ok(())
    }

    fn sm_out(&mut self) -> Result<()> {
        if self.st.sm.recursion_count == 0 {
            // "lost track of recursion depth"
            return Err(Error::NoMem);
        }
        let r = if self.st.sm.recursion_count == 1 {
            self.sm_apply_bops()
        } else {
            Ok(())
        };
        self.st.sm.recursion_count -= 1;
        r
    }

    /// Runs a low-level op on the current map inside in()/out().
    fn sm_run(&mut self, inc: bool, b: u64, e: u64) -> Result<()> {
        self.sm_in();
        let r = if inc {
            ll::inc(&mut MetaLl, self, b, e)
        } else {
            ll::dec(&mut MetaLl, self, b, e)
        };
        let r2 = self.sm_out();
        r?;
        r2
    }

    pub(crate) fn sm_inc_blocks(&mut self, b: u64, e: u64) -> Result<()> {
        if self.st.sm.bootstrap || self.st.sm.recursion_count > 0 {
            return self.sm_add_bop(OpKind::Inc, b, e);
        }
        self.sm_run(true, b, e)
    }

    pub(crate) fn sm_dec_blocks(&mut self, b: u64, e: u64) -> Result<()> {
        if self.st.sm.bootstrap || self.st.sm.recursion_count > 0 {
            return self.sm_add_bop(OpKind::Dec, b, e);
        }
        self.sm_run(false, b, e)
    }

    pub(crate) fn sm_new_block(&mut self) -> Result<u64> {
        if self.st.sm.bootstrap {
            let sm = &mut self.st.sm;
            if sm.begin == sm.ll.root.nr_blocks {
                return Err(Error::NoSpace);
            }
            let b = sm.begin;
            sm.begin += 1;
            return Ok(b);
        }
        let begin = self.st.sm.begin;
        let b = match ll::find_common_free_block(&mut MetaOldLl, &mut MetaLl, self, begin) {
            Err(Error::NoSpace) => {
                ll::find_common_free_block(&mut MetaOldLl, &mut MetaLl, self, 0)?
            }
            r => r?,
        };
        self.st.sm.begin = b + 1;
        if self.st.sm.recursion_count > 0 {
            self.sm_add_bop(OpKind::Inc, b, b + 1)?;
        } else {
            self.sm_run(true, b, b + 1)?;
        }
        self.st.sm.allocated_this_transaction += 1;
        let free = self.st.sm.nr_free();
        self.st.sm.threshold.check(free);
        Ok(b)
    }

    pub(crate) fn sm_get_count(&mut self, b: u64) -> Result<u32> {
        if self.st.sm.bootstrap {
            return Ok(if b < self.st.sm.begin { 1 } else { 0 });
        }
        let adj = self.st.sm.ring.adjustment(b);
        let c = ll::lookup(&mut MetaLl, self, b)?;
        Ok((c as i64 + adj) as u32)
    }

    pub(crate) fn sm_count_is_more_than_one(&mut self, b: u64) -> Result<bool> {
        if self.st.sm.bootstrap {
            return Ok(false);
        }
        let adj = self.st.sm.ring.adjustment(b);
        if adj > 1 {
            return Ok(true);
        }
        let rc = ll::lookup_bitmap(&mut MetaLl, self, b)?;
        if rc == 3 {
            return Ok(true);
        }
        Ok(rc as i64 + adj > 1)
    }

    /// Commits the map: rewrites the index block if it changed and makes
    /// the current state the committed one.
    pub(crate) fn sm_commit(&mut self) -> Result<()> {
        if self.st.sm.bootstrap {
            return Ok(());
        }
        ll::commit(&mut MetaLl, self)?;
        let sm = &mut self.st.sm;
        sm.old = sm.ll;
        for (d, s) in sm.old_index.iter_mut().zip(sm.index.iter()) {
            *d = *s;
        }
        sm.allocated_this_transaction = 0;
        Ok(())
    }

    /// Formats the map (`dm_sm_metadata_create`).
    pub(crate) fn sm_create(&mut self, nr_blocks: u64, superblock: u64) -> Result<()> {
        {
            let sm = &mut self.st.sm;
            sm.begin = superblock.checked_add(1).ok_or(Error::Invalid)?;
            sm.recursion_count = 0;
            sm.allocated_this_transaction = 0;
            sm.ring.clear();
            sm.bootstrap = true;
            sm.ll = LlCore::default();
        }
        let r = (|| {
            // sm_ll_new_metadata: the index block and the empty overflow tree.
            let (g, loc) = self.new_block(&SM_INDEX)?;
            drop(g);
            self.st.sm.ll.root.bitmap_root = loc;
            let rc = btree::empty(self, 4)?;
            self.st.sm.ll.root.ref_count_root = rc;
            ll::extend(&mut MetaLl, self, nr_blocks.min(MAX_METADATA_BLOCKS))
        })();
        self.st.sm.bootstrap = false;
        r?;
        let begin = self.st.sm.begin;
        self.sm_add_bop(OpKind::Inc, superblock, begin)?;
        self.sm_in();
        let r = self.sm_apply_bops();
        self.st.sm.recursion_count -= 1;
        r?;
        self.sm_commit()
    }

    /// Opens the map from its 32-byte root (`dm_sm_metadata_open`).
    pub(crate) fn sm_open(&mut self, root: &[u8]) -> Result<()> {
        let root = SmRoot::unpack(root)?;
        if root.nr_blocks > MAX_METADATA_BLOCKS
            || root.nr_blocks > self.bm.nr_blocks()
            || root.nr_allocated > root.nr_blocks
        {
            return Err(Error::Corrupt(Corruption::SpaceMap));
        }
        {
            let g = self.read_lock(root.bitmap_root, &SM_INDEX)?;
            let sm = &mut self.st.sm;
            for (i, ie) in sm.index.iter_mut().enumerate() {
                let off = INDEX_HEADER_SIZE + i * INDEX_ENTRY_SIZE;
                *ie =
                    IndexEntry::unpack(g.get(off..off + INDEX_ENTRY_SIZE).ok_or(Error::Invalid)?)?;
            }
        }
        let sm = &mut self.st.sm;
        sm.ll = LlCore {
            root,
            changed: false,
        };
        sm.begin = 0;
        sm.recursion_count = 0;
        sm.allocated_this_transaction = 0;
        sm.ring.clear();
        sm.bootstrap = false;
        sm.threshold = Threshold::default();
        sm.old = sm.ll;
        for (d, s) in sm.old_index.iter_mut().zip(sm.index.iter()) {
            *d = *s;
        }
        Ok(())
    }

    /// Grows the map by `extra` blocks (`sm_metadata_extend`): new bitmaps
    /// are carved from the new area by the bootstrap allocator, then the
    /// blocks it handed out are incremented until a fixpoint.
    pub(crate) fn sm_extend(&mut self, extra: u64) -> Result<()> {
        if self.st.sm.recursion_count != 0 || self.st.sm.bootstrap {
            return Err(Error::Invalid);
        }
        let mut old_len = self.st.sm.ll.root.nr_blocks;
        match old_len.checked_add(extra) {
            Some(n) if n <= self.bm.nr_blocks() => {}
            _ => return Err(Error::Invalid),
        }
        self.st.sm.begin = old_len;
        self.st.sm.bootstrap = true;
        let r = (|| {
            ll::extend(&mut MetaLl, self, extra)?;
            loop {
                let begin = self.st.sm.begin;
                self.sm_add_bop(OpKind::Inc, old_len, begin)?;
                old_len = begin;
                self.sm_apply_bops()?;
                ll::commit(&mut MetaLl, self)?;
                if old_len == self.st.sm.begin {
                    break;
                }
            }
            Ok(())
        })();
        self.st.sm.bootstrap = false;
        r
    }
}
