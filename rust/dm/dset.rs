// SPDX-License-Identifier: GPL-2.0

//! [`DeferredSet`]: in-flight I/O counted by generation, so that work can
//! wait until every I/O issued before it finished (upstream's
//! `dm_deferred_set`, used by dm-thin to quiesce reads of a shared block
//! before the block stops being shared).  I/O takes an entry with
//! [`DeferredSet::inc`] (any context) and gives it back with
//! [`DeferredSet::dec`] (any context, IRQ included); work takes a
//! [`DeferredSet::barrier`] and polls [`DeferredSet::passed`].  Instead of
//! upstream's work lists, `dec` tells the caller when a generation
//! finished, so it can wake whoever polls.  A C object from `glue.c`
//! behind an IRQ-safe spinlock.

use kernel::error::{code::ENOMEM, Result};

use super::glue;

/// A deferred set.
///
/// # Invariants
///
/// `d` is a live set from `dmthin_dset_create`, freed on drop.
pub(crate) struct DeferredSet {
    d: *mut glue::DmthinDset,
}

// SAFETY: the C object is protected by its own IRQ-safe spinlock.
unsafe impl Send for DeferredSet {}
// SAFETY: as above.
unsafe impl Sync for DeferredSet {}

impl DeferredSet {
    /// An empty set.
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: plain allocation.
        let d = unsafe { glue::dmthin_dset_create() };
        if d.is_null() {
            return Err(ENOMEM);
        }
        // INVARIANT: created above.
        Ok(DeferredSet { d })
    }

    /// Counts one more I/O; returns its generation, to give to `dec`.
    pub(crate) fn inc(&self) -> u64 {
        // SAFETY: the set is live.
        unsafe { glue::dmthin_dset_inc(self.d) }
    }

    /// An I/O of generation `gen` finished.  True when a generation's last
    /// I/O finished (a barrier may have passed).
    pub(crate) fn dec(&self, gen: u64) -> bool {
        // SAFETY: the set is live.
        unsafe { glue::dmthin_dset_dec(self.d, gen) }
    }

    /// A barrier behind every I/O counted so far: `None` if none is in
    /// flight, else the generation to wait for with `passed`.
    pub(crate) fn barrier(&self) -> Option<u64> {
        let mut gen = 0u64;
        // SAFETY: the set is live; `gen` is valid for writes.
        let wait = unsafe { glue::dmthin_dset_barrier(self.d, &mut gen) };
        wait.then_some(gen)
    }

    /// Whether every I/O of generation `gen` and older finished.
    pub(crate) fn passed(&self, gen: u64) -> bool {
        // SAFETY: the set is live.
        unsafe { glue::dmthin_dset_passed(self.d, gen) }
    }
}

impl Drop for DeferredSet {
    fn drop(&mut self) {
        // SAFETY: live, freed once.
        unsafe { glue::dmthin_dset_destroy(self.d) };
    }
}
