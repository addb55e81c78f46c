//! An in-memory [`BlockManager`] for host tests, with a write-back cache
//! kept apart from the "device", fault injection and power-cut simulation.
//!
//! Model:
//! - the *device* is a vector of blocks ([`Image`]); it changes only when a
//!   dirty block is written out (at [`BlockManager::flush`] or
//!   [`MemBm::write_back`], which simulates cache pressure);
//! - the *cache* holds blocks read from the device or created with
//!   `write_lock_zero`, each with its lock state, dirty flag and the
//!   validator it was last checked with;
//! - every block write since the last *completed* flush is remembered, so
//!   [`MemBm::crash_image`] can build the device as it could look after a
//!   power cut: any subset of those writes landed, some possibly torn at a
//!   512-byte sector boundary.
//!
//! Locking: guards take `&self`; any number of guards on different blocks
//! may be held at once.  A conflicting lock on the same block (write while
//! read or write held, read while write held) panics by default (a bug in
//! the caller), or returns [`Error::Busy`] after
//! [`MemBm::set_panic_on_conflict`]`(false)`.
//!
//! Faults ([`MemBm::fail_nth_read`] and friends) make the n-th device read,
//! block write or device flush *from now on* fail with [`Error::Io`].

use std::cell::{Cell, RefCell, UnsafeCell};
use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use pdata::pdata::block_manager::{check_location, Block, BlockManager, Validator, BLOCK_SIZE};
use pdata::pdata::error::{Error, Result};

use crate::rng::Rng;

/// Bytes per sector (the unit a torn write lands in).
pub const SECTOR_SIZE: usize = 512;

/// Sectors per metadata block.
pub const SECTORS_PER_BLOCK: usize = BLOCK_SIZE / SECTOR_SIZE;

static ZERO_BLOCK: Block = [0u8; BLOCK_SIZE];

fn new_block() -> Box<Block> {
    // Avoid a 4 KiB array on the stack.
    vec![0u8; BLOCK_SIZE]
        .into_boxed_slice()
        .try_into()
        .expect("block size")
}

fn arc_block(data: &Block) -> Arc<Block> {
    let mut b = new_block();
    b.copy_from_slice(data);
    Arc::from(b)
}

// ---------------------------------------------------------------------------
// Device image
// ---------------------------------------------------------------------------

/// The contents of a metadata device: `nr_blocks` blocks, unwritten blocks
/// read as zeroes.  Cheap to clone (blocks are shared).
#[derive(Clone)]
pub struct Image {
    blocks: Vec<Option<Arc<Block>>>,
}

impl Image {
    /// An all-zero device of `nr_blocks` blocks.
    pub fn new(nr_blocks: u64) -> Image {
        Image {
            blocks: vec![None; nr_blocks as usize],
        }
    }

    /// Number of blocks.
    pub fn nr_blocks(&self) -> u64 {
        self.blocks.len() as u64
    }

    /// Contents of block `b` (panics if out of range).
    pub fn block(&self, b: u64) -> &Block {
        match &self.blocks[b as usize] {
            Some(x) => x,
            None => &ZERO_BLOCK,
        }
    }

    /// Replaces block `b`.
    pub fn set_block(&mut self, b: u64, data: &Block) {
        self.blocks[b as usize] = Some(arc_block(data));
    }

    fn set_arc(&mut self, b: u64, data: Arc<Block>) {
        self.blocks[b as usize] = Some(data);
    }

    /// Whether two images have the same contents.
    pub fn same_contents(&self, other: &Image) -> bool {
        self.nr_blocks() == other.nr_blocks()
            && (0..self.nr_blocks()).all(|b| self.block(b)[..] == other.block(b)[..])
    }

    /// Block numbers whose contents differ between `self` and `other`
    /// (which must have the same size).
    pub fn diff(&self, other: &Image) -> Vec<u64> {
        assert_eq!(self.nr_blocks(), other.nr_blocks());
        (0..self.nr_blocks())
            .filter(|&b| self.block(b)[..] != other.block(b)[..])
            .collect()
    }

    /// The whole device as bytes (`nr_blocks * 4096`).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.blocks.len() * BLOCK_SIZE);
        for b in 0..self.nr_blocks() {
            out.extend_from_slice(self.block(b));
        }
        out
    }

    /// An image from raw bytes; a trailing partial block is zero-padded.
    pub fn from_bytes(bytes: &[u8]) -> Image {
        let nr = bytes.len().div_ceil(BLOCK_SIZE);
        let mut img = Image::new(nr as u64);
        for (i, chunk) in bytes.chunks(BLOCK_SIZE).enumerate() {
            if chunk.iter().any(|&x| x != 0) {
                let mut blk = new_block();
                blk[..chunk.len()].copy_from_slice(chunk);
                img.blocks[i] = Some(Arc::from(blk));
            }
        }
        img
    }

    /// Writes the image to `path` (`nr_blocks * 4096` bytes, created or
    /// truncated).
    pub fn save(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        std::fs::write(path, self.to_bytes())
    }

    /// Reads an image from `path`.
    pub fn load(path: impl AsRef<Path>) -> std::io::Result<Image> {
        Ok(Image::from_bytes(&std::fs::read(path)?))
    }
}

// ---------------------------------------------------------------------------
// Crash simulation types
// ---------------------------------------------------------------------------

/// What became of one block write at a power cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// The write never reached the media: the block keeps its old contents.
    Lost,
    /// The write landed completely.
    Landed,
    /// Only the first `n` sectors (0..=8) landed; the rest keep the old
    /// contents.  `Torn(0)` equals `Lost`, `Torn(8)` equals `Landed`.
    Torn(usize),
}

/// One block write issued to the device since the last completed flush.
#[derive(Clone)]
pub struct PendingWrite {
    /// Block written.
    pub block: u64,
    /// Contents written.
    pub data: Arc<Block>,
}

/// Counters of device operations and validator calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Device block reads attempted (cache misses, prefetches).
    pub reads: u64,
    /// Device block writes attempted.
    pub writes: u64,
    /// Device flushes attempted.
    pub flushes: u64,
    /// Validator `check` calls.
    pub checks: u64,
    /// Validator `prepare` calls.
    pub prepares: u64,
    /// Lock calls served from the cache.
    pub hits: u64,
}

#[derive(Default)]
struct Faults {
    /// Absolute read indices (1-based) that fail.
    reads: Vec<u64>,
    /// Absolute write indices that fail, with the sectors that still land.
    writes: Vec<(u64, usize)>,
    /// Absolute flush indices that fail.
    flushes: Vec<u64>,
    /// Blocks whose every read fails.
    bad_read_blocks: Vec<u64>,
    /// Blocks whose every write fails (nothing lands).
    bad_write_blocks: Vec<u64>,
    /// Power is cut once this many writes were issued: every later
    /// read, write and flush fails.
    dead_after_writes: Option<u64>,
}

impl Faults {
    fn dead(&self, writes_so_far: u64) -> bool {
        self.dead_after_writes.is_some_and(|n| writes_so_far >= n)
    }
}

// ---------------------------------------------------------------------------
// Cache entries and guards
// ---------------------------------------------------------------------------

struct Entry {
    block: u64,
    data: UnsafeCell<Box<Block>>,
    /// > 0: that many readers; -1: one writer; 0: unlocked.
    locks: Cell<isize>,
    dirty: Cell<bool>,
    validator: Cell<Option<&'static Validator>>,
}

impl Entry {
    fn new(block: u64, data: Box<Block>) -> Rc<Entry> {
        Rc::new(Entry {
            block,
            data: UnsafeCell::new(data),
            locks: Cell::new(0),
            dirty: Cell::new(false),
            validator: Cell::new(None),
        })
    }

    /// Shared view.  Callers make sure no writer holds the entry.
    fn data(&self) -> &Block {
        // SAFETY: mutable access is only handed out through a write guard
        // (locks == -1) or inside MemBm methods while locks == 0; callers of
        // this function hold no such access (checked via `locks`).
        unsafe { &*self.data.get() }
    }
}

/// Read guard of [`MemBm`].
pub struct MemReadGuard<'a> {
    bm: &'a MemBm,
    entry: Rc<Entry>,
}

impl Deref for MemReadGuard<'_> {
    type Target = Block;
    fn deref(&self) -> &Block {
        self.entry.data()
    }
}

impl Drop for MemReadGuard<'_> {
    fn drop(&mut self) {
        let l = self.entry.locks.get();
        debug_assert!(l > 0);
        self.entry.locks.set(l - 1);
        let _ = self.bm;
    }
}

/// Write guard of [`MemBm`]; marks the block dirty when dropped.
pub struct MemWriteGuard<'a> {
    bm: &'a MemBm,
    entry: Rc<Entry>,
}

impl MemWriteGuard<'_> {
    /// The block number.
    pub fn block(&self) -> u64 {
        self.entry.block
    }
}

impl MemReadGuard<'_> {
    /// The block number.
    pub fn block(&self) -> u64 {
        self.entry.block
    }
}

impl Deref for MemWriteGuard<'_> {
    type Target = Block;
    fn deref(&self) -> &Block {
        self.entry.data()
    }
}

impl DerefMut for MemWriteGuard<'_> {
    fn deref_mut(&mut self) -> &mut Block {
        // SAFETY: this guard is the only lock holder (locks == -1), and the
        // returned borrow is tied to `&mut self`.
        unsafe { &mut *self.entry.data.get() }
    }
}

impl Drop for MemWriteGuard<'_> {
    fn drop(&mut self) {
        debug_assert_eq!(self.entry.locks.get(), -1);
        self.entry.locks.set(0);
        if !self.entry.dirty.get() {
            self.entry.dirty.set(true);
            self.bm.dirty.borrow_mut().push(self.entry.block);
        }
    }
}

// ---------------------------------------------------------------------------
// The block manager
// ---------------------------------------------------------------------------

struct DevState {
    /// Current device contents (all writes issued so far).
    device: Image,
    /// Writes issued since the last completed flush, in order.
    pending: Vec<PendingWrite>,
    /// Contents at the last completed flush of blocks written since.
    durable_old: HashMap<u64, Option<Arc<Block>>>,
    /// Whether `pending`/`durable_old` are kept.
    track_crash: bool,
    faults: Faults,
    stats: Stats,
}

/// In-memory block manager with a separate cache and device, fault
/// injection and crash simulation.  Single-threaded (`!Sync`).
pub struct MemBm {
    nr_blocks: u64,
    cache: RefCell<Vec<Option<Rc<Entry>>>>,
    dirty: RefCell<Vec<u64>>,
    dev: RefCell<DevState>,
    read_only: Cell<bool>,
    panic_on_conflict: Cell<bool>,
    /// Cached-block limit for automatic eviction (0 = unlimited).
    cache_limit: Cell<usize>,
    cached: Cell<usize>,
}

impl MemBm {
    /// A zeroed device of `nr_blocks` blocks with an empty cache.
    pub fn new(nr_blocks: u64) -> MemBm {
        MemBm::from_image(Image::new(nr_blocks))
    }

    /// A block manager over an existing device image (e.g. a crash image:
    /// "reopen after the power cut").  Its contents count as durable.
    pub fn from_image(image: Image) -> MemBm {
        let nr_blocks = image.nr_blocks();
        MemBm {
            nr_blocks,
            cache: RefCell::new(vec![None; nr_blocks as usize]),
            dirty: RefCell::new(Vec::new()),
            dev: RefCell::new(DevState {
                device: image,
                pending: Vec::new(),
                durable_old: HashMap::new(),
                track_crash: true,
                faults: Faults::default(),
                stats: Stats::default(),
            }),
            read_only: Cell::new(false),
            panic_on_conflict: Cell::new(true),
            cache_limit: Cell::new(0),
            cached: Cell::new(0),
        }
    }

    /// Loads a device image from a file (`nr_blocks * 4096` bytes).
    pub fn load_image(path: impl AsRef<Path>) -> std::io::Result<MemBm> {
        Ok(MemBm::from_image(Image::load(path)?))
    }

    /// Saves the current *device* contents (not unflushed cache contents)
    /// to a file of `nr_blocks * 4096` bytes.
    pub fn save_image(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        self.image().save(path)
    }

    /// The current device contents: every write issued so far, whether or
    /// not a device flush followed.  Dirty cached blocks are not included.
    pub fn image(&self) -> Image {
        self.dev.borrow().device.clone()
    }

    /// The device as of the last completed flush (a power cut that lost
    /// every write issued since).
    pub fn durable_image(&self) -> Image {
        self.crash_image(&[])
    }

    // -- configuration -----------------------------------------------------

    /// Whether a conflicting lock on one block panics (default) or returns
    /// [`Error::Busy`].
    pub fn set_panic_on_conflict(&self, on: bool) {
        self.panic_on_conflict.set(on);
    }

    /// Keeps (default) or stops keeping the log of writes since the last
    /// flush that crash simulation needs (turn off for benchmarks).
    pub fn set_crash_tracking(&self, on: bool) {
        let mut d = self.dev.borrow_mut();
        d.track_crash = on;
        if !on {
            d.pending.clear();
            d.durable_old.clear();
        }
    }

    /// Limits the number of cached blocks (0 = unlimited).  Above the limit,
    /// unlocked blocks are evicted when a new one is cached; dirty ones are
    /// written out first (cache pressure, no device flush).
    pub fn set_cache_limit(&self, limit: usize) {
        self.cache_limit.set(limit);
    }

    // -- inspection --------------------------------------------------------

    /// Operation counters.
    pub fn stats(&self) -> Stats {
        self.dev.borrow().stats
    }

    /// Resets the operation counters (pending faults keep their absolute
    /// positions, so set faults after resetting).
    pub fn reset_stats(&self) {
        let mut d = self.dev.borrow_mut();
        assert!(
            d.faults.reads.is_empty()
                && d.faults.writes.is_empty()
                && d.faults.flushes.is_empty()
                && d.faults.dead_after_writes.is_none(),
            "reset_stats with counted faults pending"
        );
        d.stats = Stats::default();
    }

    /// Whether block `b` is in the cache.
    pub fn is_cached(&self, b: u64) -> bool {
        self.cache.borrow()[b as usize].is_some()
    }

    /// Whether block `b` is cached and dirty.
    pub fn is_dirty(&self, b: u64) -> bool {
        self.cache.borrow()[b as usize]
            .as_ref()
            .is_some_and(|e| e.dirty.get())
    }

    /// Number of cached blocks.
    pub fn cached_count(&self) -> usize {
        self.cached.get()
    }

    /// Dirty blocks, sorted.
    pub fn dirty_blocks(&self) -> Vec<u64> {
        let mut v = self.dirty.borrow().clone();
        v.sort_unstable();
        v
    }

    /// Number of blocks currently locked (read or write).
    pub fn locked_count(&self) -> usize {
        self.cache
            .borrow()
            .iter()
            .flatten()
            .filter(|e| e.locks.get() != 0)
            .count()
    }

    /// The device's current contents of block `b` (a copy).
    pub fn device_block(&self, b: u64) -> Box<Block> {
        let mut out = new_block();
        out.copy_from_slice(self.dev.borrow().device.block(b));
        out
    }

    /// Overwrites block `b` on the device directly (bypassing the cache;
    /// counts as durable).  For corrupting images in tests.
    pub fn poke_device(&self, b: u64, data: &Block) {
        let mut d = self.dev.borrow_mut();
        d.device.set_block(b, data);
        d.durable_old.remove(&b);
        d.pending.retain(|w| w.block != b);
    }

    // -- cache control -----------------------------------------------------

    /// Drops every clean, unlocked block from the cache so later locks read
    /// from the device again.  Dirty blocks stay (they were never written).
    /// Panics if a block is locked.
    pub fn drop_cache(&self) {
        let mut cache = self.cache.borrow_mut();
        for slot in cache.iter_mut() {
            if let Some(e) = slot {
                assert_eq!(e.locks.get(), 0, "drop_cache: block {} is locked", e.block);
                if !e.dirty.get() {
                    *slot = None;
                    self.cached.set(self.cached.get() - 1);
                }
            }
        }
    }

    /// Drops the whole cache including dirty blocks (their changes are
    /// lost, as in a crash of the host).  Panics if a block is locked.
    pub fn discard_cache(&self) {
        let mut cache = self.cache.borrow_mut();
        for slot in cache.iter_mut() {
            if let Some(e) = slot {
                assert_eq!(
                    e.locks.get(),
                    0,
                    "discard_cache: block {} is locked",
                    e.block
                );
                *slot = None;
            }
        }
        self.cached.set(0);
        self.dirty.borrow_mut().clear();
    }

    /// Writes out every dirty block that is not write-locked, without a
    /// device flush (what cache pressure does).  Failed writes leave their
    /// block dirty; the first error is returned after trying all.
    pub fn write_back(&self) -> Result<()> {
        let mut list = std::mem::take(&mut *self.dirty.borrow_mut());
        list.sort_unstable();
        let mut result = Ok(());
        let mut keep = Vec::new();
        for b in list {
            let entry = match self.cache.borrow()[b as usize].clone() {
                Some(e) if e.dirty.get() => e,
                _ => continue,
            };
            if entry.locks.get() < 0 {
                keep.push(b);
                continue;
            }
            match self.write_entry(&entry) {
                Ok(()) => entry.dirty.set(false),
                Err(e) => {
                    keep.push(b);
                    if result.is_ok() {
                        result = Err(e);
                    }
                }
            }
        }
        self.dirty.borrow_mut().extend(keep);
        result
    }

    /// Writes one cached entry to the device, after `prepare`.
    fn write_entry(&self, entry: &Entry) -> Result<()> {
        let v = entry.validator.get();
        let data: Arc<Block> = if entry.locks.get() == 0 {
            // SAFETY: no guard holds the entry, so no other reference to
            // its data exists.
            let blk: &mut Block = unsafe { &mut *entry.data.get() };
            if let Some(v) = v {
                (v.prepare)(blk, entry.block);
            }
            arc_block(blk)
        } else {
            // Readers hold it: prepare a copy, leave the cache as it is.
            let mut copy = new_block();
            copy.copy_from_slice(entry.data());
            if let Some(v) = v {
                (v.prepare)(&mut copy, entry.block);
            }
            Arc::from(copy)
        };
        let mut d = self.dev.borrow_mut();
        if v.is_some() {
            d.stats.prepares += 1;
        }
        d.write_block(entry.block, data)
    }

    // -- faults ------------------------------------------------------------

    /// The `n`-th device read from now (1 = the next one) fails with
    /// [`Error::Io`].
    pub fn fail_nth_read(&self, n: u64) {
        assert!(n >= 1);
        let mut d = self.dev.borrow_mut();
        let at = d.stats.reads + n;
        d.faults.reads.push(at);
    }

    /// The `n`-th block write from now fails with [`Error::Io`]; nothing
    /// lands on the device.
    pub fn fail_nth_write(&self, n: u64) {
        self.tear_nth_write(n, 0);
    }

    /// The `n`-th block write from now fails with [`Error::Io`] after only
    /// its first `sectors` sectors (0..=8) landed on the device.
    pub fn tear_nth_write(&self, n: u64, sectors: usize) {
        assert!(n >= 1 && sectors <= SECTORS_PER_BLOCK);
        let mut d = self.dev.borrow_mut();
        let at = d.stats.writes + n;
        d.faults.writes.push((at, sectors));
    }

    /// The `n`-th device flush from now fails with [`Error::Io`] (after its
    /// block writes were issued; they stay pending, not durable).
    pub fn fail_nth_flush(&self, n: u64) {
        assert!(n >= 1);
        let mut d = self.dev.borrow_mut();
        let at = d.stats.flushes + n;
        d.faults.flushes.push(at);
    }

    /// Every read of block `b` fails until [`MemBm::clear_faults`].
    pub fn fail_reads_of(&self, b: u64) {
        self.dev.borrow_mut().faults.bad_read_blocks.push(b);
    }

    /// Every write of block `b` fails until [`MemBm::clear_faults`].
    pub fn fail_writes_of(&self, b: u64) {
        self.dev.borrow_mut().faults.bad_write_blocks.push(b);
    }

    /// Cuts the power once `n` more block writes were issued (0 = now):
    /// every later device read, write and flush fails with [`Error::Io`]
    /// and changes nothing, so [`MemBm::crash_image`] then shows the device
    /// at that point of the operation.  [`MemBm::clear_faults`] restores
    /// power.
    pub fn power_cut_after_writes(&self, n: u64) {
        let mut d = self.dev.borrow_mut();
        let at = d.stats.writes + n;
        d.faults.dead_after_writes = Some(at);
    }

    /// Whether a power cut set by [`MemBm::power_cut_after_writes`] has
    /// happened.
    pub fn is_powered_off(&self) -> bool {
        let d = self.dev.borrow();
        d.faults.dead(d.stats.writes)
    }

    /// Removes all injected faults.
    pub fn clear_faults(&self) {
        self.dev.borrow_mut().faults = Faults::default();
    }

    // -- crash simulation --------------------------------------------------

    /// Number of block writes issued since the last completed flush.
    pub fn pending_count(&self) -> usize {
        self.dev.borrow().pending.len()
    }

    /// The block writes issued since the last completed flush, in order.
    pub fn pending_writes(&self) -> Vec<PendingWrite> {
        self.dev.borrow().pending.clone()
    }

    /// The device after a power cut now, where pending write `i` had fate
    /// `fates[i]` (missing entries count as [`Fate::Lost`]).  Writes are
    /// applied in issue order.
    pub fn crash_image(&self, fates: &[Fate]) -> Image {
        let d = self.dev.borrow();
        assert!(
            d.track_crash,
            "crash_image needs crash tracking (set_crash_tracking(true))"
        );
        assert!(
            fates.len() <= d.pending.len(),
            "more fates than pending writes"
        );
        let mut img = d.device.clone();
        for (&b, old) in &d.durable_old {
            img.blocks[b as usize] = old.clone();
        }
        for (w, &f) in d.pending.iter().zip(fates) {
            match f {
                Fate::Lost | Fate::Torn(0) => {}
                Fate::Landed => img.set_arc(w.block, w.data.clone()),
                Fate::Torn(k) => {
                    let k = k.min(SECTORS_PER_BLOCK);
                    let mut blk = new_block();
                    blk.copy_from_slice(img.block(w.block));
                    blk[..k * SECTOR_SIZE].copy_from_slice(&w.data[..k * SECTOR_SIZE]);
                    img.set_arc(w.block, Arc::from(blk));
                }
            }
        }
        img
    }

    /// Random fates for the pending writes from `seed`: each write lands
    /// with probability 1/2; a landing write is torn at a random sector
    /// boundary (1..=7) with probability `torn_percent`/100.
    pub fn random_fates(&self, seed: u64, torn_percent: u32) -> Vec<Fate> {
        let mut rng = Rng::new(seed);
        (0..self.pending_count())
            .map(|_| {
                if rng.below(2) == 0 {
                    Fate::Lost
                } else if (rng.below(100) as u32) < torn_percent {
                    Fate::Torn(1 + rng.below(7) as usize)
                } else {
                    Fate::Landed
                }
            })
            .collect()
    }

    /// Crash image with [`MemBm::random_fates`].
    pub fn crash_image_random(&self, seed: u64, torn_percent: u32) -> Image {
        self.crash_image(&self.random_fates(seed, torn_percent))
    }

    /// Every subset of the pending writes landing (no tears): `2^n` images,
    /// subset bit `i` = write `i` landed.  Panics above 16 pending writes.
    pub fn crash_images_exhaustive(&self) -> Vec<(Vec<Fate>, Image)> {
        let n = self.pending_count();
        assert!(
            n <= 16,
            "{n} pending writes: too many for exhaustive crash images"
        );
        (0u32..(1 << n))
            .map(|mask| {
                let fates: Vec<Fate> = (0..n)
                    .map(|i| {
                        if mask & (1 << i) != 0 {
                            Fate::Landed
                        } else {
                            Fate::Lost
                        }
                    })
                    .collect();
                let img = self.crash_image(&fates);
                (fates, img)
            })
            .collect()
    }

    // -- lock internals ----------------------------------------------------

    fn conflict(&self, b: u64, what: &str) -> Error {
        if self.panic_on_conflict.get() {
            panic!("MemBm: conflicting lock on block {b}: {what}");
        }
        Error::Busy
    }

    /// Finds or loads block `b`; `io` false means a miss is WouldBlock.
    fn entry(&self, b: u64, io: bool) -> Result<Rc<Entry>> {
        check_location(b, self.nr_blocks)?;
        if let Some(e) = self.cache.borrow()[b as usize].clone() {
            self.dev.borrow_mut().stats.hits += 1;
            return Ok(e);
        }
        if !io {
            return Err(Error::WouldBlock);
        }
        let data = self.dev.borrow_mut().read_block(b)?;
        Ok(self.insert(b, data))
    }

    fn insert(&self, b: u64, data: Box<Block>) -> Rc<Entry> {
        self.make_room();
        let e = Entry::new(b, data);
        self.cache.borrow_mut()[b as usize] = Some(e.clone());
        self.cached.set(self.cached.get() + 1);
        e
    }

    fn make_room(&self) {
        let limit = self.cache_limit.get();
        if limit == 0 || self.cached.get() < limit {
            return;
        }
        // Write out dirty unlocked blocks, then evict unlocked clean ones
        // down to 3/4 of the limit (amortizes the scan).  Write errors
        // leave blocks dirty (kept).
        let _ = self.write_back();
        let target = limit - limit / 4;
        let mut cache = self.cache.borrow_mut();
        for slot in cache.iter_mut() {
            if self.cached.get() <= target.min(limit - 1) {
                break;
            }
            if let Some(e) = slot {
                if e.locks.get() == 0 && !e.dirty.get() {
                    *slot = None;
                    self.cached.set(self.cached.get() - 1);
                }
            }
        }
    }

    /// Checks `e` with `v` unless it was last validated with `v`.
    fn validate(&self, e: &Entry, v: &'static Validator) -> Result<()> {
        if e.validator.get().is_some_and(|old| core::ptr::eq(old, v)) {
            return Ok(());
        }
        self.dev.borrow_mut().stats.checks += 1;
        match (v.check)(e.data(), e.block) {
            Ok(()) => {
                e.validator.set(Some(v));
                Ok(())
            }
            Err(err) => {
                e.validator.set(None);
                Err(err)
            }
        }
    }

    fn lock_read(&self, b: u64, v: &'static Validator, io: bool) -> Result<MemReadGuard<'_>> {
        let e = self.entry(b, io)?;
        if e.locks.get() < 0 {
            return Err(self.conflict(b, "read lock while write-locked"));
        }
        self.validate(&e, v)?;
        e.locks.set(e.locks.get() + 1);
        Ok(MemReadGuard { bm: self, entry: e })
    }
}

impl DevState {
    fn read_block(&mut self, b: u64) -> Result<Box<Block>> {
        if self.faults.dead(self.stats.writes) {
            return Err(Error::Io);
        }
        self.stats.reads += 1;
        let n = self.stats.reads;
        if let Some(i) = self.faults.reads.iter().position(|&x| x == n) {
            self.faults.reads.swap_remove(i);
            return Err(Error::Io);
        }
        if self.faults.bad_read_blocks.contains(&b) {
            return Err(Error::Io);
        }
        let mut out = new_block();
        out.copy_from_slice(self.device.block(b));
        Ok(out)
    }

    fn write_block(&mut self, b: u64, data: Arc<Block>) -> Result<()> {
        if self.faults.dead(self.stats.writes) {
            return Err(Error::Io);
        }
        self.stats.writes += 1;
        let n = self.stats.writes;
        let mut landed: Option<usize> = None;
        if let Some(i) = self.faults.writes.iter().position(|&(x, _)| x == n) {
            landed = Some(self.faults.writes.swap_remove(i).1);
        } else if self.faults.bad_write_blocks.contains(&b) {
            landed = Some(0);
        }
        let data = match landed {
            None => data,
            Some(0) => return Err(Error::Io),
            Some(k) => {
                let mut blk = new_block();
                blk.copy_from_slice(self.device.block(b));
                blk[..k * SECTOR_SIZE].copy_from_slice(&data[..k * SECTOR_SIZE]);
                Arc::from(blk)
            }
        };
        if self.track_crash {
            if !self.durable_old.contains_key(&b) {
                let old = self.device.blocks[b as usize].clone();
                self.durable_old.insert(b, old);
            }
            self.pending.push(PendingWrite {
                block: b,
                data: data.clone(),
            });
        }
        self.device.set_arc(b, data);
        match landed {
            None => Ok(()),
            Some(_) => Err(Error::Io),
        }
    }

    fn device_flush(&mut self) -> Result<()> {
        if self.faults.dead(self.stats.writes) {
            return Err(Error::Io);
        }
        self.stats.flushes += 1;
        let n = self.stats.flushes;
        if let Some(i) = self.faults.flushes.iter().position(|&x| x == n) {
            self.faults.flushes.swap_remove(i);
            return Err(Error::Io);
        }
        self.pending.clear();
        self.durable_old.clear();
        Ok(())
    }
}

impl BlockManager for MemBm {
    type ReadGuard<'a> = MemReadGuard<'a>;
    type WriteGuard<'a> = MemWriteGuard<'a>;

    fn nr_blocks(&self) -> u64 {
        self.nr_blocks
    }

    fn read_lock(&self, b: u64, v: &'static Validator) -> Result<MemReadGuard<'_>> {
        self.lock_read(b, v, true)
    }

    fn read_try_lock(&self, b: u64, v: &'static Validator) -> Result<MemReadGuard<'_>> {
        self.lock_read(b, v, false)
    }

    fn write_lock(&self, b: u64, v: &'static Validator) -> Result<MemWriteGuard<'_>> {
        if self.read_only.get() {
            return Err(Error::ReadOnly);
        }
        let e = self.entry(b, true)?;
        if e.locks.get() != 0 {
            return Err(self.conflict(b, "write lock while locked"));
        }
        self.validate(&e, v)?;
        e.locks.set(-1);
        Ok(MemWriteGuard { bm: self, entry: e })
    }

    fn write_lock_zero(&self, b: u64, v: &'static Validator) -> Result<MemWriteGuard<'_>> {
        if self.read_only.get() {
            return Err(Error::ReadOnly);
        }
        check_location(b, self.nr_blocks)?;
        let cached = self.cache.borrow()[b as usize].clone();
        let e = match cached {
            Some(e) => {
                if e.locks.get() != 0 {
                    return Err(self.conflict(b, "write_lock_zero while locked"));
                }
                // SAFETY: unlocked, so no other reference to the data.
                unsafe { (**e.data.get()).fill(0) };
                e
            }
            None => self.insert(b, new_block()),
        };
        e.validator.set(Some(v));
        e.locks.set(-1);
        Ok(MemWriteGuard { bm: self, entry: e })
    }

    fn prefetch(&self, b: u64) {
        // Loads synchronously; errors are ignored like a failed readahead.
        let _ = self.entry(b, true);
    }

    fn flush(&self) -> Result<()> {
        if self.read_only.get() {
            return Err(Error::ReadOnly);
        }
        self.write_back()?;
        self.dev.borrow_mut().device_flush()
    }

    fn is_read_only(&self) -> bool {
        self.read_only.get()
    }

    fn set_read_only(&self, read_only: bool) {
        self.read_only.set(read_only);
    }

    /// Drops every unlocked block, dirty ones included (their pending
    /// writes are lost, as with a block manager replaced on abort).
    fn invalidate(&self) {
        let mut cache = self.cache.borrow_mut();
        let mut dropped = Vec::new();
        for slot in cache.iter_mut() {
            if slot.as_ref().is_some_and(|e| e.locks.get() == 0) {
                if let Some(e) = slot.take() {
                    dropped.push(e.block);
                }
                self.cached.set(self.cached.get() - 1);
            }
        }
        self.dirty.borrow_mut().retain(|b| !dropped.contains(b));
    }
}
