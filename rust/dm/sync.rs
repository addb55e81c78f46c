// SPDX-License-Identifier: GPL-2.0

//! Locks the kernel crate of 6.12 lacks: [`RwSem`], a reader/writer
//! semaphore around a value with a non-blocking read attempt (upstream
//! dm-thin's `pmd->root_lock`, which `map` only try-locks), and
//! [`with_pool_table`], the global lock of the pool table (upstream's
//! `dm_thin_pool_table.mutex`).  Both are C objects from `glue.c`; each
//! semaphore gets the lockdep class of its role ([`LockClass`]), so
//! nesting semaphores of different roles in their documented order is not
//! mistaken for recursion.  Also [`sleep_us`], to step aside after
//! releasing a lock.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU64, Ordering};

use kernel::bindings;
use kernel::error::{code::ENOMEM, Result};

use super::glue;

/// The role of an [`RwSem`], which is its lockdep class.  A pool takes
/// them in this order (see `rust/thin/pool.rs`).
#[derive(Clone, Copy)]
#[repr(u32)]
pub(crate) enum LockClass {
    /// A pool's worker state (taken first).
    WorkerState = 0,
    /// A pool's metadata and open thins.
    Metadata = 1,
    /// A pool's bound table.
    Bound = 2,
    /// A pool's finished kcopyd jobs (a leaf).
    JobsDone = 3,
    /// A pool's list of active thin tables (taken alone, by table hooks
    /// and the worker).
    ActiveThins = 4,
    /// A pool's thins in a noflush suspend (a leaf).
    RequeueIds = 5,
}

/// A value behind a reader/writer semaphore.
///
/// # Invariants
///
/// `sem` is a live semaphore from `dmthin_rwsem_create`, freed on drop;
/// `data` is only read while `sem` is held for reading or writing, and
/// only written while it is held for writing.
pub(crate) struct RwSem<T> {
    sem: *mut bindings::rw_semaphore,
    data: UnsafeCell<T>,
    /// The write generation: bumped each time write access is handed out,
    /// before the writer can change anything, so a value read in one
    /// generation is still the value while the generation is unchanged.
    writes: AtomicU64,
}

// SAFETY: the semaphore serialises access; `T: Send` moves with it.
unsafe impl<T: Send> Send for RwSem<T> {}
// SAFETY: readers share `&T` across threads (`T: Sync`), a writer gets
// `&mut T` exclusively (`T: Send`).
unsafe impl<T: Send + Sync> Sync for RwSem<T> {}

impl<T> RwSem<T> {
    /// Wraps `data`; the semaphore's lockdep class is `class`.
    pub(crate) fn new(data: T, class: LockClass) -> Result<Self> {
        // SAFETY: plain allocation and initialisation; every `LockClass`
        // value is a valid class index.
        let sem = unsafe { glue::dmthin_rwsem_create(class as u32) };
        if sem.is_null() {
            return Err(ENOMEM);
        }
        // INVARIANT: `sem` is live and not held.
        Ok(RwSem {
            sem,
            data: UnsafeCell::new(data),
            writes: AtomicU64::new(0),
        })
    }

    /// Shared access, waiting for a writer to finish.
    pub(crate) fn read(&self) -> ReadGuard<'_, T> {
        // SAFETY: `sem` is live.
        unsafe { glue::dmthin_down_read(self.sem) };
        ReadGuard { lock: self }
    }

    /// Shared access if no writer holds or waits for the semaphore.
    pub(crate) fn try_read(&self) -> Option<ReadGuard<'_, T>> {
        // SAFETY: `sem` is live.
        if unsafe { glue::dmthin_down_read_trylock(self.sem) } != 0 {
            Some(ReadGuard { lock: self })
        } else {
            None
        }
    }

    /// Exclusive access.
    pub(crate) fn write(&self) -> WriteGuard<'_, T> {
        // SAFETY: `sem` is live.
        unsafe { glue::dmthin_down_write(self.sem) };
        // Sequentially consistent: a lock-free reader that counted itself
        // somewhere and then still sees the old generation did so before
        // this writer's changes (`MapCache`, `ThinTarget::map`).
        self.writes.fetch_add(1, Ordering::SeqCst);
        WriteGuard { lock: self }
    }

    /// Exclusive access that does not start a new write generation: for
    /// work that changes nothing a reader of the current generation
    /// relies on, or that starts one itself (`bump_generation`) before
    /// such a change.
    pub(crate) fn write_keeping_generation(&self) -> WriteGuard<'_, T> {
        // SAFETY: `sem` is live.
        unsafe { glue::dmthin_down_write(self.sem) };
        WriteGuard { lock: self }
    }

    /// Starts a new write generation (by a holder of a write guard from
    /// `write_keeping_generation`, before the change that needs it).
    pub(crate) fn bump_generation(&self) {
        self.writes.fetch_add(1, Ordering::SeqCst);
    }

    /// Exclusive access through `&mut self` (no locking needed).
    pub(crate) fn get_mut(&mut self) -> &mut T {
        *self.writes.get_mut() += 1;
        self.data.get_mut()
    }

    /// The current write generation (see `writes`), read without the
    /// semaphore.
    pub(crate) fn generation(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }
}

impl<T> Drop for RwSem<T> {
    fn drop(&mut self) {
        // SAFETY: no guard outlives `self` (they borrow it); freed once.
        unsafe { glue::dmthin_rwsem_destroy(self.sem) };
    }
}

/// Shared access to an [`RwSem`]'s value.
pub(crate) struct ReadGuard<'a, T> {
    lock: &'a RwSem<T>,
}

impl<T> Deref for ReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the semaphore is held for reading (type invariant of
        // `RwSem`: no writer meanwhile).
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> ReadGuard<'_, T> {
    /// The write generation, stable while this guard is held.
    pub(crate) fn generation(&self) -> u64 {
        self.lock.writes.load(Ordering::Relaxed)
    }
}

impl<T> Drop for ReadGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: this guard holds the semaphore for reading.
        unsafe { glue::dmthin_up_read(self.lock.sem) };
    }
}

/// Exclusive access to an [`RwSem`]'s value.
pub(crate) struct WriteGuard<'a, T> {
    lock: &'a RwSem<T>,
}

impl<T> Deref for WriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the semaphore is held for writing by this guard.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for WriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the semaphore is held for writing by this guard alone.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for WriteGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: this guard holds the semaphore for writing.
        unsafe { glue::dmthin_up_write(self.lock.sem) };
    }
}

/// A value only reachable under the global pool table lock.
pub(crate) struct PoolTableCell<T> {
    data: UnsafeCell<T>,
}

// SAFETY: the value is only touched under the global mutex
// (`with_pool_table`), so sharing the cell is sound for `T: Send`.
unsafe impl<T: Send> Sync for PoolTableCell<T> {}

impl<T> PoolTableCell<T> {
    /// Wraps `data` (usable in a `static`).
    pub(crate) const fn new(data: T) -> Self {
        PoolTableCell {
            data: UnsafeCell::new(data),
        }
    }

    /// Runs `f` on the value with the global pool table mutex held.
    /// Must not be called again from inside `f`.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        // SAFETY: a statically initialised mutex.
        unsafe { glue::dmthin_pool_table_lock() };
        // SAFETY: the mutex is held, so this is the only access.
        let r = f(unsafe { &mut *self.data.get() });
        // SAFETY: taken above.
        unsafe { glue::dmthin_pool_table_unlock() };
        r
    }
}

/// Sleeps for `min_us` to `max_us` microseconds (`usleep_range`, on an
/// hrtimer: `msleep(1)` would round up to a jiffy or more), letting the
/// tasks waiting for a lock the caller just released take it.  Process
/// context, no spinlock held.
pub(crate) fn sleep_us(min_us: u16, max_us: u16) {
    // SAFETY: `usleep_range_state` may be called from any sleepable
    // context; callers are (documented above).
    unsafe {
        bindings::usleep_range_state(min_us.into(), max_us.into(), bindings::TASK_UNINTERRUPTIBLE)
    };
}
