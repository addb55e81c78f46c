//! The transaction manager (upstream `dm-transaction-manager.c`):
//! copy-on-write shadowing of metadata blocks on top of a
//! [`BlockManager`], with the metadata space map that counts references to
//! every metadata block.
//!
//! # Design and use
//!
//! The long-lived state of a transaction — the set of blocks created or
//! shadowed in this transaction and the metadata space map — is a plain
//! owned value, [`TmState`].  Operations run through a short-lived handle,
//! [`Tm`], that borrows the block manager (`&'a B`) and the state
//! (`&'a mut TmState`) for one operation:
//!
//! ```ignore
//! let mut st = TmState::create(&bm, 0)?;         // format: sb at block 0
//! // ... or TmState::open(&bm, &sm_root_bytes)?  // open from a 32-byte root
//! {
//!     let mut tm = Tm::new(&bm, &mut st);
//!     let root = btree::empty(&mut tm, 8)?;
//!     let root = btree::insert(&mut tm, &mut Plain::<8>, root, &[5], &v)?;
//!     tm.pre_commit()?;                           // metadata SM commit + flush
//!     let mut sb = tm.write_lock_zero(0, &SB_VALIDATOR)?;  // caller's superblock
//!     tm.copy_sm_root(&mut sb[192..224])?;        // ... fill it in
//!     tm.commit(sb)?;                             // unlock sb, clear shadows, flush
//! }
//! ```
//!
//! Guards returned by [`Tm`] borrow the block manager for `'a`, not the
//! handle, so a btree spine can hold two write guards while it keeps
//! calling `&mut self` methods (shadow, new_block, inc/dec) that update
//! the shadow set and the space map.  Never hold a guard on a block that a
//! nested operation may lock (in particular space-map bitmaps): the block
//! managers do not support recursive locking.
//!
//! Rules (as upstream):
//! - [`Tm::new_block`] allocates a block with count 1, zero-locks it and
//!   records it as shadowed: it can be modified in place for the rest of
//!   the transaction.
//! - [`Tm::shadow`] returns a writable version of a block: in place if the
//!   block was created/shadowed in this transaction and is not shared
//!   (count <= 1); otherwise a copy at a new location, with the original's
//!   count decremented.  The returned flag `inc_children` is true when the
//!   original was shared: the caller must then increment everything the
//!   block points to (the btree does this).
//! - Commit order: the caller commits the data space map, then
//!   [`Tm::pre_commit`] (metadata SM commit, rewriting its index block, and
//!   a flush), then writes the superblock (block 0) and hands its guard to
//!   [`Tm::commit`], which unlocks it, forgets the shadows and flushes.
//! - Lookups that must not block (the kernel's `map` path) use a
//!   [`Reader`] built with [`Reader::non_blocking`] from `&B` alone; a miss
//!   gives [`Error::WouldBlock`].
//! - After any error the transaction must be abandoned: drop the
//!   [`TmState`] and reopen from the last committed superblock.

use super::block_manager::{check_location, BlockManager, Validator};
use super::error::{Corruption, Error, Result};
use super::space_map::metadata::MetadataSm;
use super::space_map::{IndexEntry, SmRoot};
use crate::env::Vec;

//------------------------------------------------------------------------

/// Set of block numbers shadowed in this transaction: an open-addressing
/// hash table (linear probing) that grows by doubling.
struct ShadowSet {
    slots: Vec<u64>,
    len: usize,
}

const EMPTY: u64 = u64::MAX;

impl ShadowSet {
    fn new() -> Result<Self> {
        let mut slots = Vec::new();
        slots.try_resize(256, EMPTY)?;
        Ok(ShadowSet { slots, len: 0 })
    }

    #[inline]
    fn hash(b: u64, mask: usize) -> usize {
        (b.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize & mask
    }

    fn contains(&self, b: u64) -> bool {
        let mask = self.slots.len().wrapping_sub(1);
        let mut i = Self::hash(b, mask);
        for _ in 0..self.slots.len() {
            match self.slots.get(i) {
                Some(&x) if x == b => return true,
                Some(&EMPTY) | None => return false,
                _ => i = (i + 1) & mask,
            }
        }
        false
    }

    fn insert(&mut self, b: u64) -> Result<()> {
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow()?;
        }
        let mask = self.slots.len() - 1;
        let mut i = Self::hash(b, mask);
        for _ in 0..self.slots.len() {
            match self.slots.get_mut(i) {
                Some(x) if *x == b => return Ok(()),
                Some(x) if *x == EMPTY => {
                    *x = b;
                    self.len += 1;
                    return Ok(());
                }
                _ => i = (i + 1) & mask,
            }
        }
        Err(Error::NoMem)
    }

    fn grow(&mut self) -> Result<()> {
        let new_len = self.slots.len().checked_mul(2).ok_or(Error::NoMem)?;
        let mut bigger = Vec::new();
        bigger.try_resize(new_len, EMPTY)?;
        let old = core::mem::replace(&mut self.slots, bigger);
        self.len = 0;
        for &b in old.iter() {
            if b != EMPTY {
                self.insert(b)?;
            }
        }
        Ok(())
    }

    fn clear(&mut self) {
        self.slots.fill(EMPTY);
        self.len = 0;
    }
}

//------------------------------------------------------------------------

/// Long-lived transaction state: the shadow set and the metadata space
/// map.  Owned by the metadata object; borrowed by a [`Tm`] per operation.
pub struct TmState {
    shadows: ShadowSet,
    pub(crate) sm: MetadataSm,
}

impl TmState {
    /// Formats a new metadata space map over the whole device (capped at
    /// 255 bitmaps) with the superblock at `superblock` (upstream
    /// `dm_tm_create_with_sm`).  Blocks `[superblock, first free)` get
    /// count 1; the space map is committed (but not flushed).
    pub fn create<B: BlockManager>(bm: &B, superblock: u64) -> Result<TmState> {
        Self::create_sized(bm, superblock, bm.nr_blocks())
    }

    /// Like [`TmState::create`] but manages only the first `nr_blocks`
    /// blocks of the device (capped at the device size and at 255
    /// bitmaps); the rest can be added later with [`Tm::sm_extend_by`].
    pub fn create_sized<B: BlockManager>(
        bm: &B,
        superblock: u64,
        nr_blocks: u64,
    ) -> Result<TmState> {
        let nr_blocks = nr_blocks.min(bm.nr_blocks());
        let mut st = TmState {
            shadows: ShadowSet::new()?,
            sm: MetadataSm::new_bootstrap(superblock)?,
        };
        {
            let mut tm = Tm::new(bm, &mut st);
            tm.sm_create(nr_blocks, superblock)?;
        }
        Ok(st)
    }

    /// Opens the metadata space map from its 32-byte on-disk root
    /// (upstream `dm_tm_open_with_sm`).
    pub fn open<B: BlockManager>(bm: &B, sm_root: &[u8]) -> Result<TmState> {
        let mut st = TmState {
            shadows: ShadowSet::new()?,
            sm: MetadataSm::new_bootstrap(0)?,
        };
        {
            let mut tm = Tm::new(bm, &mut st);
            tm.sm_open(sm_root)?;
        }
        Ok(st)
    }
}

/// Handle for one operation: the block manager plus the transaction
/// state.  Cheap to build; see the module documentation.
pub struct Tm<'a, B: BlockManager> {
    pub(crate) bm: &'a B,
    pub(crate) st: &'a mut TmState,
}

impl<'a, B: BlockManager> Tm<'a, B> {
    /// A handle over `bm` and `st`.
    pub fn new(bm: &'a B, st: &'a mut TmState) -> Self {
        Tm { bm, st }
    }

    /// The block manager.
    pub fn bm(&self) -> &'a B {
        self.bm
    }

    /// A blocking reader for lookups.
    pub fn reader(&self) -> Reader<'a, B> {
        Reader::new(self.bm)
    }

    /// Read-locks `b` (blocking).
    pub fn read_lock(&self, b: u64, v: &'static Validator) -> Result<B::ReadGuard<'a>> {
        check_location(b, self.bm.nr_blocks())?;
        self.bm.read_lock(b, v)
    }

    /// Write-locks `b` without shadowing.  Only for blocks this
    /// transaction already created or shadowed, and for the superblock.
    pub fn write_lock(&self, b: u64, v: &'static Validator) -> Result<B::WriteGuard<'a>> {
        check_location(b, self.bm.nr_blocks())?;
        self.bm.write_lock(b, v)
    }

    /// Write-locks `b` with zeroed contents without reading it (for the
    /// superblock at format time).
    pub fn write_lock_zero(&self, b: u64, v: &'static Validator) -> Result<B::WriteGuard<'a>> {
        check_location(b, self.bm.nr_blocks())?;
        self.bm.write_lock_zero(b, v)
    }

    /// Whether `b` was created or shadowed in this transaction.
    pub fn is_shadow(&self, b: u64) -> bool {
        self.st.shadows.contains(b)
    }

    /// Allocates a new block (count 1), zero-locks it and records it as
    /// shadowed.  Returns the guard and the block's location.
    pub fn new_block(&mut self, v: &'static Validator) -> Result<(B::WriteGuard<'a>, u64)> {
        let b = self.sm_new_block()?;
        let g = match self.write_lock_zero(b, v) {
            Ok(g) => g,
            Err(e) => {
                let _ = self.sm_dec_blocks(b, b + 1);
                return Err(e);
            }
        };
        self.st.shadows.insert(b)?;
        Ok((g, b))
    }

    /// Returns a writable version of `orig` (see the module docs): the
    /// guard, its location, and whether the caller must increment the
    /// block's children because `orig` was shared.
    pub fn shadow(
        &mut self,
        orig: u64,
        v: &'static Validator,
    ) -> Result<(B::WriteGuard<'a>, u64, bool)> {
        check_location(orig, self.bm.nr_blocks())?;
        let shared = self.sm_count_is_more_than_one(orig)?;
        if !shared && self.st.shadows.contains(orig) {
            return Ok((self.bm.write_lock(orig, v)?, orig, false));
        }
        let new = self.sm_new_block()?;
        if new == orig {
            // The space map calls a referenced block free: copying it onto
            // itself would lock one block twice (read and zeroed write).
            return Err(Error::Corrupt(Corruption::SpaceMap));
        }
        self.sm_dec_blocks(orig, orig + 1)?;
        let src = self.bm.read_lock(orig, v)?;
        let mut dst = self.bm.write_lock_zero(new, v)?;
        dst.copy_from_slice(&src[..]);
        drop(src);
        self.st.shadows.insert(new)?;
        Ok((dst, new, shared))
    }

    /// Increments the count of block `b`.
    pub fn inc(&mut self, b: u64) -> Result<()> {
        self.sm_inc_blocks(b, b.checked_add(1).ok_or(Error::Invalid)?)
    }

    /// Increments the counts of blocks `[b, e)`.
    pub fn inc_range(&mut self, b: u64, e: u64) -> Result<()> {
        self.sm_inc_blocks(b, e)
    }

    /// Decrements the count of block `b`.
    pub fn dec(&mut self, b: u64) -> Result<()> {
        self.sm_dec_blocks(b, b.checked_add(1).ok_or(Error::Invalid)?)
    }

    /// Decrements the counts of blocks `[b, e)`.
    pub fn dec_range(&mut self, b: u64, e: u64) -> Result<()> {
        self.sm_dec_blocks(b, e)
    }

    /// Reference count of metadata block `b` (pending changes included).
    pub fn ref_count(&mut self, b: u64) -> Result<u32> {
        self.sm_get_count(b)
    }

    /// Whether metadata block `b` may have more than one reference
    /// (bitmap value 3 always counts as shared, as upstream).
    pub fn is_shared(&mut self, b: u64) -> Result<bool> {
        self.sm_count_is_more_than_one(b)
    }

    /// First half of a commit: commits the metadata space map (rewriting
    /// its index block) and flushes every dirty block.  The caller must
    /// have committed the data space map before, and writes the
    /// superblock after (it may copy [`Tm::copy_sm_root`] into it).
    pub fn pre_commit(&mut self) -> Result<()> {
        self.sm_commit()?;
        self.bm.flush()
    }

    /// Second half of a commit: releases the superblock guard, forgets the
    /// shadow set and flushes.
    pub fn commit(&mut self, superblock: B::WriteGuard<'a>) -> Result<()> {
        self.st.shadows.clear();
        drop(superblock);
        self.bm.flush()
    }

    /// Number of blocks the metadata space map manages.
    pub fn sm_nr_blocks(&self) -> u64 {
        self.st.sm.nr_blocks()
    }

    /// Free metadata blocks as upstream reports them (frees of this
    /// transaction not counted until commit).
    pub fn sm_nr_free(&self) -> u64 {
        self.st.sm.nr_free()
    }

    /// The metadata space map's current root (size, allocated count,
    /// index block, overflow tree root).
    pub fn sm_root(&self) -> SmRoot {
        self.st.sm.root()
    }

    /// Index entry `i` of the metadata space map (for checkers).
    pub fn sm_index_entry(&self, i: u64) -> Option<IndexEntry> {
        self.st.sm.index_entry(i)
    }

    /// Writes the 32-byte metadata space-map root into `out[..32]`.
    pub fn copy_sm_root(&self, out: &mut [u8]) -> Result<()> {
        self.st.sm.copy_root(out)
    }

    /// Grows the metadata space map by `extra` blocks (upstream
    /// `sm_metadata_extend`); the caller commits afterwards.
    pub fn sm_extend_by(&mut self, extra: u64) -> Result<()> {
        self.sm_extend(extra)
    }

    /// Sets the low-free-space threshold of the metadata space map; see
    /// [`Tm::take_threshold_event`].
    pub fn set_threshold(&mut self, threshold: u64) {
        self.st.sm.set_threshold(threshold)
    }

    /// Whether the free count fell to or below the threshold since the
    /// last call (edge-triggered like upstream `check_threshold`).
    pub fn take_threshold_event(&mut self) -> bool {
        self.st.sm.take_threshold_event()
    }
}

//------------------------------------------------------------------------

/// Read access for lookups: blocking (normal) or non-blocking (cache
/// only, [`Error::WouldBlock`] on a miss, as upstream's TM clone).
pub struct Reader<'a, B: BlockManager> {
    bm: &'a B,
    non_blocking: bool,
}

impl<'a, B: BlockManager> Clone for Reader<'a, B> {
    fn clone(&self) -> Self {
        Reader {
            bm: self.bm,
            non_blocking: self.non_blocking,
        }
    }
}

impl<'a, B: BlockManager> Reader<'a, B> {
    /// A blocking reader.
    pub fn new(bm: &'a B) -> Self {
        Reader {
            bm,
            non_blocking: false,
        }
    }

    /// A reader that never waits for I/O.
    pub fn non_blocking(bm: &'a B) -> Self {
        Reader {
            bm,
            non_blocking: true,
        }
    }

    /// The block manager.
    pub fn bm(&self) -> &'a B {
        self.bm
    }

    /// Read-locks `b`.
    pub fn lock(&self, b: u64, v: &'static Validator) -> Result<B::ReadGuard<'a>> {
        check_location(b, self.bm.nr_blocks())?;
        if self.non_blocking {
            self.bm.read_try_lock(b, v)
        } else {
            self.bm.read_lock(b, v)
        }
    }
}
