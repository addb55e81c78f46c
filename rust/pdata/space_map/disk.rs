//! The data space map (`dm-space-map-disk.c` with the disk index of
//! `dm-space-map-common.c`): reference counts of data blocks.  Bitmaps are
//! indexed by a btree (key = bitmap number, value = 16-byte index entry)
//! fronted by a 64-slot direct-mapped cache of index entries that is
//! written back on eviction and at commit.
//!
//! Allocation only hands out blocks free both now and in the last
//! committed state, so blocks freed in this transaction are reused only
//! after a commit.  Sizes and free counts are reported like upstream: from
//! the committed state, counting this transaction's frees as free.
//!
//! The map's metadata blocks come from the metadata space map through the
//! [`Tm`] every operation takes.

use super::ll::{self, Ll, LlCore};
use super::{IndexEntry, SmRoot, INDEX_ENTRY_SIZE};
use crate::env::Vec;
use crate::pdata::block_manager::BlockManager;
use crate::pdata::btree::{self, Plain};
use crate::pdata::error::{Corruption, Error, Result};
use crate::pdata::transaction_manager::Tm;

/// Slots of the index-entry cache.
const IE_CACHE_SIZE: usize = 64;

/// Value type of the bitmap-index btree.
type IndexValue = Plain<INDEX_ENTRY_SIZE>;

#[derive(Clone, Copy, Default)]
struct IeCacheEntry {
    valid: bool,
    dirty: bool,
    index: u64,
    ie: IndexEntry,
}

/// `dm_hash_block(index, 63)`.
fn hash_index(index: u64) -> usize {
    ((index as u32).wrapping_mul(4_294_967_291u32) as usize) & (IE_CACHE_SIZE - 1)
}

/// One state (current or committed) of the data map.
struct DiskLl {
    core: LlCore,
    cache: Vec<IeCacheEntry>,
    read_only: bool,
}

impl DiskLl {
    fn new(read_only: bool) -> Result<DiskLl> {
        let mut cache = Vec::new();
        cache.try_resize(IE_CACHE_SIZE, IeCacheEntry::default())?;
        Ok(DiskLl {
            core: LlCore::default(),
            cache,
            read_only,
        })
    }

    fn writeback<B: BlockManager>(&mut self, tm: &mut Tm<'_, B>, slot: usize) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let e = self.cache.get_mut(slot).ok_or(Error::Invalid)?;
        e.dirty = false;
        let (index, ie) = (e.index, e.ie);
        let root = self.core.root.bitmap_root;
        self.core.root.bitmap_root = btree::insert(
            tm,
            &mut IndexValue::default(),
            root,
            &[index],
            &ie.to_bytes(),
        )?;
        Ok(())
    }

    /// Copies `other` (just committed, so clean) into `self`.
    fn copy_from(&mut self, other: &DiskLl) {
        self.core = other.core;
        // Same length by construction; zip keeps a length mismatch from
        // ever becoming a panic path.
        for (d, s) in self.cache.iter_mut().zip(other.cache.iter()) {
            *d = *s;
        }
    }
}

impl<B: BlockManager> Ll<B> for DiskLl {
    fn core<'s>(&'s mut self, _tm: &'s mut Tm<'_, B>) -> &'s mut LlCore {
        &mut self.core
    }

    fn load_ie(&mut self, tm: &mut Tm<'_, B>, index: u64) -> Result<IndexEntry> {
        let h = hash_index(index);
        let e = *self.cache.get(h).ok_or(Error::Invalid)?;
        if e.valid {
            if e.index == index {
                return Ok(e.ie);
            }
            if e.dirty {
                self.writeback(tm, h)?;
            }
        }
        let mut v = [0u8; INDEX_ENTRY_SIZE];
        match btree::lookup(&tm.reader(), self.core.root.bitmap_root, &[index], &mut v) {
            Ok(()) => {}
            Err(Error::NotFound) => return Err(Error::Corrupt(Corruption::SpaceMap)),
            Err(e) => return Err(e),
        }
        let ie = IndexEntry::unpack(&v)?;
        if let Some(slot) = self.cache.get_mut(h) {
            *slot = IeCacheEntry {
                valid: true,
                dirty: false,
                index,
                ie,
            };
        }
        Ok(ie)
    }

    fn save_ie(&mut self, tm: &mut Tm<'_, B>, index: u64, ie: IndexEntry) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        self.core.changed = true;
        let h = hash_index(index);
        let e = *self.cache.get(h).ok_or(Error::Invalid)?;
        if e.valid && e.index != index && e.dirty {
            self.writeback(tm, h)?;
        }
        if let Some(slot) = self.cache.get_mut(h) {
            *slot = IeCacheEntry {
                valid: true,
                dirty: true,
                index,
                ie,
            };
        }
        Ok(())
    }

    fn max_index_entries(&self) -> u64 {
        u64::MAX
    }

    fn commit_index(&mut self, tm: &mut Tm<'_, B>) -> Result<()> {
        for slot in 0..IE_CACHE_SIZE {
            let e = self.cache.get(slot).copied().unwrap_or_default();
            if e.valid && e.dirty {
                self.writeback(tm, slot)?;
            }
        }
        Ok(())
    }
}

/// The data space map.
pub struct DiskSm {
    ll: DiskLl,
    old: DiskLl,
    begin: u64,
    nr_allocated_this_transaction: i64,
}

impl DiskSm {
    fn blank() -> Result<DiskSm> {
        Ok(DiskSm {
            ll: DiskLl::new(false)?,
            old: DiskLl::new(true)?,
            begin: 0,
            nr_allocated_this_transaction: 0,
        })
    }

    /// Creates a map of `nr_blocks` blocks with empty index and overflow
    /// trees, and commits it (`dm_sm_disk_create`).
    pub fn create<B: BlockManager>(tm: &mut Tm<'_, B>, nr_blocks: u64) -> Result<DiskSm> {
        let mut sm = DiskSm::blank()?;
        sm.ll.core.root.bitmap_root = btree::empty(tm, INDEX_ENTRY_SIZE)?;
        sm.ll.core.root.ref_count_root = btree::empty(tm, 4)?;
        ll::extend(&mut sm.ll, tm, nr_blocks)?;
        sm.commit(tm)?;
        Ok(sm)
    }

    /// Opens a map from its 32-byte root and commits, snapshotting the
    /// committed state (`dm_sm_disk_open`).
    pub fn open<B: BlockManager>(tm: &mut Tm<'_, B>, root: &[u8]) -> Result<DiskSm> {
        let root = SmRoot::unpack(root)?;
        if root.nr_allocated > root.nr_blocks {
            return Err(Error::Corrupt(Corruption::SpaceMap));
        }
        let mut sm = DiskSm::blank()?;
        sm.ll.core = LlCore {
            root,
            changed: false,
        };
        sm.commit(tm)?;
        Ok(sm)
    }

    /// Grows the map by `extra` blocks; commit before allocating from the
    /// new space (`sm_disk_extend`).
    pub fn extend<B: BlockManager>(&mut self, tm: &mut Tm<'_, B>, extra: u64) -> Result<()> {
        ll::extend(&mut self.ll, tm, extra)
    }

    /// Number of blocks, from the committed state.
    pub fn nr_blocks(&self) -> u64 {
        self.old.core.root.nr_blocks
    }

    /// Free blocks: committed free minus this transaction's net
    /// allocations (so this transaction's frees count as free).
    pub fn nr_free(&self) -> u64 {
        let committed_free = self
            .old
            .core
            .root
            .nr_blocks
            .saturating_sub(self.old.core.root.nr_allocated) as i64;
        committed_free
            .saturating_sub(self.nr_allocated_this_transaction)
            .max(0) as u64
    }

    /// Number of blocks in the current (uncommitted) state.
    pub fn current_nr_blocks(&self) -> u64 {
        self.ll.core.root.nr_blocks
    }

    /// Blocks allocated in the current state.
    pub fn current_nr_allocated(&self) -> u64 {
        self.ll.core.root.nr_allocated
    }

    /// Reference count of data block `b`.
    pub fn get_count<B: BlockManager>(&mut self, tm: &mut Tm<'_, B>, b: u64) -> Result<u32> {
        ll::lookup(&mut self.ll, tm, b)
    }

    /// Whether `b` has more than one reference.
    pub fn count_is_more_than_one<B: BlockManager>(
        &mut self,
        tm: &mut Tm<'_, B>,
        b: u64,
    ) -> Result<bool> {
        Ok(self.get_count(tm, b)? > 1)
    }

    /// Sets the count of `b`.
    pub fn set_count<B: BlockManager>(
        &mut self,
        tm: &mut Tm<'_, B>,
        b: u64,
        count: u32,
    ) -> Result<()> {
        let d = ll::insert(&mut self.ll, tm, b, count)?;
        self.nr_allocated_this_transaction += d;
        Ok(())
    }

    /// Increments the counts of `[b, e)`.
    pub fn inc_blocks<B: BlockManager>(
        &mut self,
        tm: &mut Tm<'_, B>,
        b: u64,
        e: u64,
    ) -> Result<()> {
        let d = ll::inc(&mut self.ll, tm, b, e)?;
        self.nr_allocated_this_transaction += d;
        Ok(())
    }

    /// Decrements the counts of `[b, e)`.
    pub fn dec_blocks<B: BlockManager>(
        &mut self,
        tm: &mut Tm<'_, B>,
        b: u64,
        e: u64,
    ) -> Result<()> {
        let d = ll::dec(&mut self.ll, tm, b, e)?;
        self.nr_allocated_this_transaction += d;
        Ok(())
    }

    /// Increments the count of `b`.
    pub fn inc<B: BlockManager>(&mut self, tm: &mut Tm<'_, B>, b: u64) -> Result<()> {
        self.inc_blocks(tm, b, b.checked_add(1).ok_or(Error::Invalid)?)
    }

    /// Decrements the count of `b`.
    pub fn dec<B: BlockManager>(&mut self, tm: &mut Tm<'_, B>, b: u64) -> Result<()> {
        self.dec_blocks(tm, b, b.checked_add(1).ok_or(Error::Invalid)?)
    }

    /// Allocates a block (count 1), next-fit from the allocation cursor;
    /// [`Error::NoSpace`] if no block is free now and at the last commit.
    pub fn new_block<B: BlockManager>(&mut self, tm: &mut Tm<'_, B>) -> Result<u64> {
        let b = match ll::find_common_free_block(&mut self.old, &mut self.ll, tm, self.begin) {
            Err(Error::NoSpace) => ll::find_common_free_block(&mut self.old, &mut self.ll, tm, 0)?,
            r => r?,
        };
        self.begin = b + 1;
        self.inc_blocks(tm, b, b + 1)?;
        Ok(b)
    }

    /// Writes the cached index entries back and makes the current state
    /// the committed one.  Call before [`Tm::pre_commit`].
    pub fn commit<B: BlockManager>(&mut self, tm: &mut Tm<'_, B>) -> Result<()> {
        ll::commit(&mut self.ll, tm)?;
        self.old.copy_from(&self.ll);
        self.nr_allocated_this_transaction = 0;
        Ok(())
    }

    /// The current root.
    pub fn root(&self) -> SmRoot {
        self.ll.core.root
    }

    /// Writes the 32-byte root into `out` (after [`DiskSm::commit`]).
    pub fn copy_root(&self, out: &mut [u8]) -> Result<()> {
        self.ll.core.root.pack(out)
    }
}
