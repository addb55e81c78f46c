// SPDX-License-Identifier: GPL-2.0

//! A pool's worker: one ordered `WQ_MEM_RECLAIM` workqueue running one work
//! item, plus a periodic "waker" (a delayed work on the same queue) that
//! calls a tick function and then runs the worker, every period (upstream's
//! `pool->wq`, `pool->worker` and `pool->waker`).
//!
//! [`Worker<T>`] calls [`WorkerOps::run`] and [`WorkerOps::tick`] on the
//! object it was bound to with [`Worker::bind`].  Binding hands the worker
//! a raw pointer: the bound object must outlive the worker, which the
//! owner guarantees by destroying the worker (drop: stop the waker, drain
//! and destroy the queue) before the object goes away — the usual shape is
//! a worker field inside the object, dropped with it.

use core::marker::PhantomData;
use core::sync::atomic::{AtomicBool, Ordering};

use kernel::error::{code::ENOMEM, Result};
use kernel::ffi::c_void;

use super::glue;

/// What the worker runs.
pub(crate) trait WorkerOps: Sync {
    /// One run of the work item (process context, may sleep).
    fn run(&self);
    /// A waker tick, before the run it triggers.
    fn tick(&self);
}

/// An ordered workqueue with one work item and a periodic waker.
///
/// # Invariants
///
/// `w` is a live `dmthin_worker` destroyed only on drop; once bound, its
/// data pointer is a `*const T` that stays valid until the drop.
pub(crate) struct Worker<T: WorkerOps> {
    w: *mut glue::DmthinWorker,
    bound: AtomicBool,
    _t: PhantomData<*const T>,
}

// SAFETY: the C worker is thread safe (workqueue calls); `T: Sync`, and the
// callbacks only use `&T`.
unsafe impl<T: WorkerOps> Send for Worker<T> {}
// SAFETY: as above: every method is a workqueue call.
unsafe impl<T: WorkerOps> Sync for Worker<T> {}

unsafe extern "C" fn run_tramp<T: WorkerOps>(data: *mut c_void) {
    // SAFETY: `data` is the `*const T` given to `bind`, valid until the
    // worker is destroyed, which waits for this run (type invariant).
    let t = unsafe { &*data.cast_const().cast::<T>() };
    // The worker is in the I/O path: no allocation in it may recurse into
    // reclaim that waits for this device.
    // SAFETY: a noio scope opened and closed on this thread.
    let flags = unsafe { kernel::bindings::memalloc_noio_save() };
    t.run();
    // SAFETY: closes the scope opened above.
    unsafe { kernel::bindings::memalloc_noio_restore(flags) };
}

unsafe extern "C" fn tick_tramp<T: WorkerOps>(data: *mut c_void) {
    // SAFETY: as in `run_tramp`.
    let t = unsafe { &*data.cast_const().cast::<T>() };
    t.tick();
}

impl<T: WorkerOps> Worker<T> {
    /// A new worker named `name` (workqueue name) whose waker fires every
    /// `period_ms` milliseconds once started.
    pub(crate) fn new(name: &core::ffi::CStr, period_ms: u32) -> Result<Self> {
        // SAFETY: `name` is NUL-terminated (copied by the workqueue); the
        // trampolines match the C signatures.
        let w = unsafe {
            glue::dmthin_worker_create(
                name.as_ptr().cast(),
                period_ms,
                run_tramp::<T>,
                tick_tramp::<T>,
            )
        };
        if w.is_null() {
            return Err(ENOMEM);
        }
        // INVARIANT: created above, not yet bound.
        Ok(Worker {
            w,
            bound: AtomicBool::new(false),
            _t: PhantomData,
        })
    }

    /// Binds the worker to `target`, once, before it is kicked.
    ///
    /// # Safety
    ///
    /// `target` must stay valid (not moved or freed) until this worker is
    /// dropped.
    pub(crate) unsafe fn bind(&self, target: *const T) {
        if self.bound.load(Ordering::Acquire) {
            return;
        }
        // SAFETY: `w` is live; nothing is queued before binding (`kick` and
        // `start_waker` refuse to run unbound).
        unsafe { glue::dmthin_worker_set_data(self.w, target.cast_mut().cast()) };
        self.bound.store(true, Ordering::Release);
    }

    /// Queues a run of the worker (IRQ safe; a queued run is not queued
    /// twice).
    pub(crate) fn kick(&self) {
        if self.bound.load(Ordering::Acquire) {
            // SAFETY: `w` is live and bound.
            unsafe { glue::dmthin_worker_kick(self.w) };
        }
    }

    /// Starts the periodic waker.
    pub(crate) fn start_waker(&self) {
        if self.bound.load(Ordering::Acquire) {
            // SAFETY: `w` is live and bound.
            unsafe { glue::dmthin_worker_start_waker(self.w) };
        }
    }

    /// Stops the periodic waker, waiting for a running tick.
    pub(crate) fn stop_waker(&self) {
        // SAFETY: `w` is live.
        unsafe { glue::dmthin_worker_stop_waker(self.w) };
    }

    /// Waits until every queued run has finished.  Must not be called from
    /// the worker itself.
    pub(crate) fn drain(&self) {
        // SAFETY: `w` is live.
        unsafe { glue::dmthin_worker_drain(self.w) };
    }
}

impl<T: WorkerOps> Drop for Worker<T> {
    fn drop(&mut self) {
        // SAFETY: `w` is live; destroying cancels the waker and drains the
        // queue before freeing, so no callback runs afterwards.
        unsafe { glue::dmthin_worker_destroy(self.w) };
    }
}
