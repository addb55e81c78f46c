//! A thread-safe in-memory [`BlockManager`] (`Send + Sync`) for
//! concurrency tests: one writer and many readers share it through
//! `&SyncBm` (e.g. with `std::thread::scope`).
//!
//! Model (like [`crate::mem_bm::MemBm`], without fault injection):
//! - the *device* is an [`Image`]; it changes only when a dirty block is
//!   written out by [`BlockManager::flush`];
//! - the *cache* maps block numbers to entries holding the data, a
//!   reader/writer lock, the dirty flag and the validator the block was
//!   last checked with.  [`SyncBm::drop_clean`] and [`SyncBm::evict`]
//!   drop clean, unlocked blocks, so that a later
//!   [`BlockManager::read_try_lock`] misses and answers
//!   [`Error::WouldBlock`]; [`BlockManager::prefetch`] loads a block.
//!
//! Locking, per block, as upstream's block manager: readers share, a
//! writer excludes readers and other writers; a lock that conflicts waits
//! (blocking calls) or answers [`Error::WouldBlock`]
//! (`read_try_lock`, like upstream's `dm_bm_read_try_lock`).  Guards may
//! be sent to and dropped on other threads.  A wait longer than
//! [`SyncBm::set_deadlock_timeout`] (default 20 s) panics, so a deadlock
//! in a test fails instead of hanging.
//!
//! Validation: a block is checked with the caller's validator when it
//! enters the cache or was last checked with another one; a failed check
//! returns the error and leaves the block's recorded validator alone (a
//! reader following a stale pointer into a block the writer reuses must
//! not disturb the writer), and so does any check of a dirty block.
//! `flush` runs the validator's `prepare` on the block in the cache if
//! nobody holds it, else on a copy.

use std::cell::UnsafeCell;
use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use pdata::pdata::block_manager::{check_location, Block, BlockManager, Validator, BLOCK_SIZE};
use pdata::pdata::error::{Error, Result};

use crate::mem_bm::Image;

fn new_block() -> Box<Block> {
    vec![0u8; BLOCK_SIZE]
        .into_boxed_slice()
        .try_into()
        .expect("block size")
}

/// Counters of [`SyncBm`] operations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Device block reads (cache misses of blocking locks, prefetches).
    pub reads: u64,
    /// Device block writes.
    pub writes: u64,
    /// Device flushes.
    pub flushes: u64,
    /// Lock calls served from the cache.
    pub hits: u64,
    /// `read_try_lock` calls that answered [`Error::WouldBlock`] because
    /// the block was not cached.
    pub misses_would_block: u64,
    /// `read_try_lock` calls that answered [`Error::WouldBlock`] because
    /// the block was write-locked.
    pub locked_would_block: u64,
    /// Lock calls that had to wait for another holder.
    pub waits: u64,
    /// Validator `check` calls.
    pub checks: u64,
    /// Blocks dropped from the cache by `drop_clean` / `evict`.
    pub evictions: u64,
}

#[derive(Default)]
struct Counters {
    reads: AtomicU64,
    writes: AtomicU64,
    flushes: AtomicU64,
    hits: AtomicU64,
    misses_would_block: AtomicU64,
    locked_would_block: AtomicU64,
    waits: AtomicU64,
    checks: AtomicU64,
    evictions: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

struct EntryState {
    /// > 0: that many readers; -1: one writer; 0: unlocked.
    locks: isize,
    dirty: bool,
    validator: Option<&'static Validator>,
}

struct Entry {
    block: u64,
    data: UnsafeCell<Box<Block>>,
    st: Mutex<EntryState>,
    cv: Condvar,
}

// SAFETY: `data` is only read while the entry is read- or write-locked
// (or while `st` is held with no lock outstanding), and only written
// while write-locked by one guard, or while `st` is held with no lock
// outstanding; the lock state itself is behind the mutex.
unsafe impl Sync for Entry {}

impl Entry {
    fn new(block: u64, data: Box<Block>) -> Arc<Entry> {
        Arc::new(Entry {
            block,
            data: UnsafeCell::new(data),
            st: Mutex::new(EntryState {
                locks: 0,
                dirty: false,
                validator: None,
            }),
            cv: Condvar::new(),
        })
    }

    fn state(&self) -> MutexGuard<'_, EntryState> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Shared view; the caller holds a lock on the entry (or `st` with no
    /// writer).
    fn data(&self) -> &Block {
        // SAFETY: see the `Sync` impl: no writer exists while this view
        // is alive.
        unsafe { &*self.data.get() }
    }
}

/// Read guard of [`SyncBm`].
pub struct SyncReadGuard<'a> {
    _bm: &'a SyncBm,
    entry: Arc<Entry>,
}

impl SyncReadGuard<'_> {
    /// The block number.
    pub fn block(&self) -> u64 {
        self.entry.block
    }
}

impl Deref for SyncReadGuard<'_> {
    type Target = Block;
    fn deref(&self) -> &Block {
        self.entry.data()
    }
}

impl Drop for SyncReadGuard<'_> {
    fn drop(&mut self) {
        let mut st = self.entry.state();
        debug_assert!(st.locks > 0);
        st.locks -= 1;
        if st.locks == 0 {
            self.entry.cv.notify_all();
        }
    }
}

/// Write guard of [`SyncBm`]; marks the block dirty when dropped.
pub struct SyncWriteGuard<'a> {
    _bm: &'a SyncBm,
    entry: Arc<Entry>,
}

impl SyncWriteGuard<'_> {
    /// The block number.
    pub fn block(&self) -> u64 {
        self.entry.block
    }
}

impl Deref for SyncWriteGuard<'_> {
    type Target = Block;
    fn deref(&self) -> &Block {
        self.entry.data()
    }
}

impl DerefMut for SyncWriteGuard<'_> {
    fn deref_mut(&mut self) -> &mut Block {
        // SAFETY: this guard is the only lock holder (locks == -1) and the
        // borrow is tied to `&mut self`.
        unsafe { &mut *self.entry.data.get() }
    }
}

impl Drop for SyncWriteGuard<'_> {
    fn drop(&mut self) {
        let mut st = self.entry.state();
        debug_assert_eq!(st.locks, -1);
        st.locks = 0;
        st.dirty = true;
        self.entry.cv.notify_all();
    }
}

/// Thread-safe in-memory block manager with a separate cache and device.
pub struct SyncBm {
    nr_blocks: u64,
    cache: Mutex<HashMap<u64, Arc<Entry>>>,
    device: Mutex<Image>,
    /// Serializes flushes (one writer flushes at a time).
    flush_lock: Mutex<()>,
    read_only: AtomicBool,
    deadlock_timeout_ms: AtomicU64,
    c: Counters,
}

impl SyncBm {
    /// A zeroed device of `nr_blocks` blocks with an empty cache.
    pub fn new(nr_blocks: u64) -> SyncBm {
        SyncBm::from_image(Image::new(nr_blocks))
    }

    /// A block manager over an existing device image.
    pub fn from_image(image: Image) -> SyncBm {
        SyncBm {
            nr_blocks: image.nr_blocks(),
            cache: Mutex::new(HashMap::new()),
            device: Mutex::new(image),
            flush_lock: Mutex::new(()),
            read_only: AtomicBool::new(false),
            deadlock_timeout_ms: AtomicU64::new(20_000),
            c: Counters::default(),
        }
    }

    /// A lock wait longer than this panics (reports a deadlock).
    pub fn set_deadlock_timeout(&self, t: Duration) {
        self.deadlock_timeout_ms
            .store(t.as_millis() as u64, Ordering::Relaxed);
    }

    /// The device contents (flushed blocks only).
    pub fn image(&self) -> Image {
        self.device.lock().unwrap().clone()
    }

    /// Operation counters.
    pub fn stats(&self) -> SyncStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SyncStats {
            reads: l(&self.c.reads),
            writes: l(&self.c.writes),
            flushes: l(&self.c.flushes),
            hits: l(&self.c.hits),
            misses_would_block: l(&self.c.misses_would_block),
            locked_would_block: l(&self.c.locked_would_block),
            waits: l(&self.c.waits),
            checks: l(&self.c.checks),
            evictions: l(&self.c.evictions),
        }
    }

    /// Whether block `b` is cached.
    pub fn is_cached(&self, b: u64) -> bool {
        self.cache.lock().unwrap().contains_key(&b)
    }

    /// Number of cached blocks.
    pub fn cached_count(&self) -> usize {
        self.cache.lock().unwrap().len()
    }

    /// Number of cached dirty blocks.
    pub fn dirty_count(&self) -> usize {
        let cache = self.cache.lock().unwrap();
        cache.values().filter(|e| e.state().dirty).count()
    }

    /// Number of blocks currently locked.
    pub fn locked_count(&self) -> usize {
        let cache = self.cache.lock().unwrap();
        cache.values().filter(|e| e.state().locks != 0).count()
    }

    /// Drops block `b` from the cache if it is clean, unlocked and nobody
    /// is about to lock it; returns whether it was dropped.
    pub fn evict(&self, b: u64) -> bool {
        let mut cache = self.cache.lock().unwrap();
        let droppable = match cache.get(&b) {
            Some(e) => Self::droppable(e),
            None => false,
        };
        if droppable {
            cache.remove(&b);
            bump(&self.c.evictions);
        }
        droppable
    }

    /// Drops every clean, unlocked block from the cache (dirty and locked
    /// blocks stay); returns how many were dropped.
    pub fn drop_clean(&self) -> usize {
        let mut cache = self.cache.lock().unwrap();
        let before = cache.len();
        cache.retain(|_, e| !Self::droppable(e));
        let n = before - cache.len();
        self.c.evictions.fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// With the cache map locked: only the map refers to `e` (nobody holds
    /// or waits for a guard) and it is clean.
    fn droppable(e: &Arc<Entry>) -> bool {
        if Arc::strong_count(e) != 1 {
            return false;
        }
        let st = e.state();
        st.locks == 0 && !st.dirty
    }

    fn deadlock_timeout(&self) -> Duration {
        Duration::from_millis(self.deadlock_timeout_ms.load(Ordering::Relaxed))
    }

    /// Finds or (if `io`) loads block `b`.  Loading happens under the
    /// cache map lock, so two threads never create two entries for one
    /// block and an evicted block is re-read from the flushed device.
    fn entry(&self, b: u64, io: bool) -> Result<Arc<Entry>> {
        check_location(b, self.nr_blocks)?;
        let mut cache = self.cache.lock().unwrap();
        if let Some(e) = cache.get(&b) {
            bump(&self.c.hits);
            return Ok(e.clone());
        }
        if !io {
            bump(&self.c.misses_would_block);
            return Err(Error::WouldBlock);
        }
        bump(&self.c.reads);
        let mut data = new_block();
        data.copy_from_slice(self.device.lock().unwrap().block(b));
        let e = Entry::new(b, data);
        cache.insert(b, e.clone());
        Ok(e)
    }

    /// Waits on `e` until `ready(state)`; panics after the deadlock
    /// timeout.
    fn wait<'e>(
        &self,
        e: &'e Entry,
        mut st: MutexGuard<'e, EntryState>,
        ready: impl Fn(&EntryState) -> bool,
    ) -> MutexGuard<'e, EntryState> {
        if ready(&st) {
            return st;
        }
        bump(&self.c.waits);
        let timeout = self.deadlock_timeout();
        let start = std::time::Instant::now();
        while !ready(&st) {
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                panic!(
                    "SyncBm: waited more than {:?} for block {} (locks {}): deadlock?",
                    timeout, e.block, st.locks
                );
            }
            st =
                e.cv.wait_timeout(st, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
        }
        st
    }

    /// Checks `e` with `v` unless it was last checked with `v`; see the
    /// module documentation.  Caller holds `st` and no writer exists.
    fn validate(&self, e: &Entry, st: &mut EntryState, v: &'static Validator) -> Result<()> {
        if st.validator.is_some_and(|old| core::ptr::eq(old, v)) {
            return Ok(());
        }
        bump(&self.c.checks);
        (v.check)(e.data(), e.block)?;
        if !st.dirty {
            st.validator = Some(v);
        }
        Ok(())
    }

    fn lock_read(&self, b: u64, v: &'static Validator, io: bool) -> Result<SyncReadGuard<'_>> {
        let e = self.entry(b, io)?;
        {
            let st = e.state();
            let mut st = if io {
                self.wait(&e, st, |s| s.locks >= 0)
            } else if st.locks < 0 {
                bump(&self.c.locked_would_block);
                return Err(Error::WouldBlock);
            } else {
                st
            };
            self.validate(&e, &mut st, v)?;
            st.locks += 1;
        }
        Ok(SyncReadGuard {
            _bm: self,
            entry: e,
        })
    }

    /// Writes one dirty entry out (after `prepare`); the caller holds the
    /// flush lock.  Skips it if write-locked (it stays dirty).
    fn write_entry(&self, e: &Entry) {
        let data: Box<Block> = {
            let mut st = e.state();
            if !st.dirty || st.locks < 0 {
                return;
            }
            let v = st.validator;
            let out = if st.locks == 0 {
                // SAFETY: no guard is outstanding and new ones need `st`,
                // which we hold: nobody else accesses the data.
                let blk: &mut Block = unsafe { &mut *e.data.get() };
                if let Some(v) = v {
                    (v.prepare)(blk, e.block);
                }
                let mut out = new_block();
                out.copy_from_slice(blk);
                out
            } else {
                // Readers hold it: prepare a copy.
                let mut out = new_block();
                out.copy_from_slice(e.data());
                if let Some(v) = v {
                    (v.prepare)(&mut out, e.block);
                }
                out
            };
            st.dirty = false;
            out
        };
        bump(&self.c.writes);
        self.device.lock().unwrap().set_block(e.block, &data);
    }
}

impl BlockManager for SyncBm {
    type ReadGuard<'a> = SyncReadGuard<'a>;
    type WriteGuard<'a> = SyncWriteGuard<'a>;

    fn nr_blocks(&self) -> u64 {
        self.nr_blocks
    }

    fn read_lock(&self, b: u64, v: &'static Validator) -> Result<SyncReadGuard<'_>> {
        self.lock_read(b, v, true)
    }

    fn read_try_lock(&self, b: u64, v: &'static Validator) -> Result<SyncReadGuard<'_>> {
        self.lock_read(b, v, false)
    }

    fn write_lock(&self, b: u64, v: &'static Validator) -> Result<SyncWriteGuard<'_>> {
        if self.is_read_only() {
            return Err(Error::ReadOnly);
        }
        let e = self.entry(b, true)?;
        {
            let st = e.state();
            let mut st = self.wait(&e, st, |s| s.locks == 0);
            self.validate(&e, &mut st, v)?;
            st.locks = -1;
        }
        Ok(SyncWriteGuard {
            _bm: self,
            entry: e,
        })
    }

    fn write_lock_zero(&self, b: u64, v: &'static Validator) -> Result<SyncWriteGuard<'_>> {
        if self.is_read_only() {
            return Err(Error::ReadOnly);
        }
        check_location(b, self.nr_blocks)?;
        let e = {
            let mut cache = self.cache.lock().unwrap();
            cache
                .entry(b)
                .or_insert_with(|| Entry::new(b, new_block()))
                .clone()
        };
        {
            let st = e.state();
            let mut st = self.wait(&e, st, |s| s.locks == 0);
            // SAFETY: unlocked and we hold `st`: no other access.
            unsafe { (**e.data.get()).fill(0) };
            st.validator = Some(v);
            st.locks = -1;
        }
        Ok(SyncWriteGuard {
            _bm: self,
            entry: e,
        })
    }

    fn prefetch(&self, b: u64) {
        // Synchronous; errors are ignored like a failed readahead.
        let _ = self.entry(b, true);
    }

    fn flush(&self) -> Result<()> {
        if self.is_read_only() {
            return Err(Error::ReadOnly);
        }
        let _f = self.flush_lock.lock().unwrap();
        let mut entries: Vec<Arc<Entry>> = {
            let cache = self.cache.lock().unwrap();
            cache.values().cloned().collect()
        };
        entries.sort_unstable_by_key(|e| e.block);
        for e in &entries {
            self.write_entry(e);
        }
        bump(&self.c.flushes);
        Ok(())
    }

    fn is_read_only(&self) -> bool {
        self.read_only.load(Ordering::Relaxed)
    }

    fn set_read_only(&self, read_only: bool) {
        self.read_only.store(read_only, Ordering::Relaxed);
    }

    /// Drops every block no guard holds (dirty ones too).
    fn invalidate(&self) {
        self.cache
            .lock()
            .unwrap()
            .retain(|_, e| Arc::strong_count(e) > 1);
    }
}
