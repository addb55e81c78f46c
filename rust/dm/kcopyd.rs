// SPDX-License-Identifier: GPL-2.0

//! A dm-kcopyd client ([`Kcopyd`]) for copying data blocks
//! (`dm_kcopyd_copy`, copy-on-write; zeroing is
//! [`zero_out`](super::bdev::zero_out), which never uses WRITE_ZEROES).
//! A job's context is a boxed [`IoJob`] whose ownership passes to kcopyd
//! with the request and comes back, exactly once, to [`IoJob::done`] in
//! kcopyd's completion context (a workqueue: process context, must not
//! wait for the pool's own I/O).

use kernel::alloc::KBox;
use kernel::bindings;
use kernel::error::{from_err_ptr, Result};
use kernel::ffi::{c_int, c_ulong, c_void};

use super::bdev::{BlockDev, IoJob};

/// A kcopyd client, destroyed on drop.
///
/// # Invariants
///
/// `kc` is a live client from `dm_kcopyd_client_create`.
pub(crate) struct Kcopyd {
    kc: *mut bindings::dm_kcopyd_client,
}

// SAFETY: kcopyd clients are thread safe.
unsafe impl Send for Kcopyd {}
// SAFETY: as above.
unsafe impl Sync for Kcopyd {}

unsafe extern "C" fn done_tramp<J: IoJob>(
    read_err: c_int,
    write_err: c_ulong,
    context: *mut c_void,
) {
    // SAFETY: `context` is the box leaked in `copy`, given back exactly
    // once by kcopyd.
    let job = unsafe { KBox::from_raw(context.cast::<J>()) };
    job.done(read_err == 0 && write_err == 0);
}

impl Kcopyd {
    /// A new client (no throttling).
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: a NULL throttle means "unthrottled".
        let kc = unsafe { bindings::dm_kcopyd_client_create(core::ptr::null_mut()) };
        let kc = from_err_ptr(kc)?;
        // INVARIANT: created above.
        Ok(Kcopyd { kc })
    }

    /// Copies `count` sectors from `sector` of `from` to `to_sector` of
    /// `to`; `job.done` runs when it finished.
    pub(crate) fn copy<J: IoJob>(
        &self,
        from: &impl BlockDev,
        sector: u64,
        to: &impl BlockDev,
        to_sector: u64,
        count: u64,
        job: KBox<J>,
    ) {
        let mut src = bindings::dm_io_region {
            bdev: from.bdev_ptr(),
            sector,
            count,
        };
        let mut dst = bindings::dm_io_region {
            bdev: to.bdev_ptr(),
            sector: to_sector,
            count,
        };
        let ctx = KBox::into_raw(job).cast::<c_void>();
        // SAFETY: the client is live; the regions are read during the call;
        // `ctx` is reclaimed by `done_tramp::<J>`, which kcopyd calls once.
        // The caller keeps both devices open until `done` (the pool
        // outlives its jobs: it drains kcopyd before closing its devices).
        unsafe {
            bindings::dm_kcopyd_copy(
                self.kc,
                &mut src,
                1,
                &mut dst,
                0,
                Some(done_tramp::<J>),
                ctx,
            )
        };
    }
}

impl Drop for Kcopyd {
    fn drop(&mut self) {
        // SAFETY: the client is live; destroying waits for its jobs.
        unsafe { bindings::dm_kcopyd_client_destroy(self.kc) };
    }
}
