// SPDX-License-Identifier: GPL-2.0

//! [`Bdev`]: a block device held open by the module itself
//! (`bdev_file_open_by_dev`, non-exclusive), independently of any table.
//!
//! A pool object outlives the tables that created it (reloads swap the
//! table, thins keep the pool alive), while a `dm_dev` belongs to one
//! table and may only be put by that table's constructor or destructor.
//! So the pool opens its own references to the metadata and data devices:
//! the dm-bufio client and every remapped bio use a device the pool owns.
//!
//! Also [`IoJob`], the completion of asynchronous work the module starts
//! (kcopyd jobs, [`Bdev::discard`], [`zero_out`], [`zero_ranges`],
//! [`padded_write`]).

use kernel::alloc::KBox;
use kernel::bindings;
use kernel::error::{code::ENOMEM, from_err_ptr, Result};
use kernel::ffi::{c_int, c_uint, c_void};

use super::bio::{Bio, BioInfo};
use super::glue;

/// A block device I/O can be sent to (kcopyd regions).
pub(crate) trait BlockDev {
    /// The device; valid as long as `self`.
    fn bdev_ptr(&self) -> *mut bindings::block_device;
}

impl BlockDev for Bdev {
    fn bdev_ptr(&self) -> *mut bindings::block_device {
        self.bdev
    }
}

/// The completion of asynchronous I/O the module started (a kcopyd
/// request, discards): its boxed context goes with the request and comes
/// back exactly once.
pub(crate) trait IoJob: Send + Sized {
    /// Called once when the request finished (process or IRQ context for
    /// discards, kcopyd's workqueue for kcopyd jobs); `ok` is false on an
    /// I/O error.
    fn done(self: KBox<Self>, ok: bool);
}

/// # Safety
///
/// `ctx` is the box leaked by `Bdev::discard` or `zero_out`, given back
/// exactly once.
unsafe extern "C" fn discard_done<J: IoJob>(ctx: *mut c_void, err: c_int) {
    // SAFETY: see above.
    let job = unsafe { KBox::from_raw(ctx.cast::<J>()) };
    job.done(err == 0);
}

/// An open block device, closed on drop.
///
/// # Invariants
///
/// `file` is a block device file from `bdev_file_open_by_dev` that this
/// handle owns (one `fput` on drop); `bdev` is its block device.
pub(crate) struct Bdev {
    file: *mut bindings::file,
    bdev: *mut bindings::block_device,
}

// SAFETY: an open block device file may be used and released from any
// thread (process context); `Bdev` only hands out the device pointer.
unsafe impl Send for Bdev {}
// SAFETY: as above; all uses are through thread-safe block layer calls.
unsafe impl Sync for Bdev {}

impl Bdev {
    /// Opens device number `dev` for reading (the reference keeps the
    /// device alive; writes through bios do not depend on the open mode).
    pub(crate) fn open(dev: u32) -> Result<Self> {
        // SAFETY: opening by number without a holder is always allowed to
        // be attempted; the result is an ERR_PTR or an open file.
        let file = unsafe {
            bindings::bdev_file_open_by_dev(
                dev,
                bindings::BLK_OPEN_READ,
                core::ptr::null_mut(),
                core::ptr::null(),
            )
        };
        let file = from_err_ptr(file)?;
        // SAFETY: `file` is an open block device file.
        let bdev = unsafe { bindings::file_bdev(file) };
        // INVARIANT: we own the file from the successful open.
        Ok(Bdev { file, bdev })
    }

    /// The block device.
    pub(crate) fn as_ptr(&self) -> *mut bindings::block_device {
        self.bdev
    }

    /// The device number.
    pub(crate) fn dev_t(&self) -> u32 {
        // SAFETY: the device is open (type invariant).
        unsafe { (*self.bdev).bd_dev }
    }

    /// Size in 512-byte sectors.
    pub(crate) fn nr_sectors(&self) -> u64 {
        // SAFETY: the device is open (type invariant).
        unsafe { bindings::bdev_nr_sectors(self.bdev) }
    }

    /// Whether the device offers REQ_OP_WRITE_ZEROES (its queue limits now).
    pub(crate) fn write_zeroes(&self) -> bool {
        // SAFETY: the device is open (type invariant).
        unsafe { glue::dmthin_bdev_write_zeroes(self.bdev.cast()) }
    }

    /// Whether the device itself is read-only.
    pub(crate) fn read_only(&self) -> bool {
        // SAFETY: the device is open (type invariant).
        unsafe { bindings::bdev_read_only(self.bdev) }
    }

    /// Flushes the device's volatile write cache (`blkdev_issue_flush`),
    /// waiting for it.  Process context only.
    pub(crate) fn flush(&self) -> Result {
        // SAFETY: the device is open (type invariant).
        kernel::error::to_result(unsafe { bindings::blkdev_issue_flush(self.bdev) })
    }
}

impl Bdev {
    /// Discards `ranges` ([first sector, sectors]) of the device; `job.done`
    /// runs once when all finished.  The caller keeps the device open
    /// until then.  On `Err` (no memory) nothing was started and the job
    /// is dropped.
    pub(crate) fn discard<J: IoJob>(&self, ranges: &[[u64; 2]], job: KBox<J>) -> Result {
        let n = c_uint::try_from(ranges.len()).map_err(|_| ENOMEM)?;
        let ctx = KBox::into_raw(job).cast::<c_void>();
        // SAFETY: `ranges` is `n` arrays of two u64, read by C as `2n`
        // consecutive u64s during the call; the device is open; `ctx`
        // comes back once to `discard_done::<J>` unless the call fails.
        let r = unsafe {
            glue::dmthin_issue_discards(
                self.bdev.cast(),
                ranges.as_ptr().cast::<u64>(),
                n,
                discard_done::<J>,
                ctx,
            )
        };
        if r != 0 {
            // SAFETY: not handed to C: reclaim the box.
            drop(unsafe { KBox::from_raw(ctx.cast::<J>()) });
            return Err(ENOMEM);
        }
        Ok(())
    }
}

/// Writes zeros to `count` sectors of `dev` from `sector` with plain
/// writes of the zero page (never WRITE_ZEROES, which a device stack may
/// advertise and then fail); `job.done` runs once when all finished.  The
/// caller keeps the device open until then.  On `Err` (no memory) nothing
/// was started and the job is dropped.
pub(crate) fn zero_out<J: IoJob>(
    dev: &impl BlockDev,
    sector: u64,
    count: u64,
    job: KBox<J>,
) -> Result {
    let ctx = KBox::into_raw(job).cast::<c_void>();
    // SAFETY: the device is valid while `dev` is (`BlockDev`); `ctx` comes
    // back once to `discard_done::<J>` unless the call fails.
    let r = unsafe {
        glue::dmthin_issue_zeroes(dev.bdev_ptr().cast(), sector, count, discard_done::<J>, ctx)
    };
    if r != 0 {
        // SAFETY: not handed to C: reclaim the box.
        drop(unsafe { KBox::from_raw(ctx.cast::<J>()) });
        return Err(ENOMEM);
    }
    Ok(())
}

/// Writes `count` sectors of `dev` from `sector` in one bio: zeros for
/// the first `offset` sectors, then `src`'s data (its pages are borrowed;
/// `src` itself is neither submitted nor ended, and the caller must keep
/// it until `job.done` ran), then zeros to the end.  On `Err` nothing was
/// started and the job comes back: that does not fit in one bio (or
/// `src` carries integrity or encryption context), or no memory.
pub(crate) fn padded_write<J: IoJob>(
    dev: &impl BlockDev,
    sector: u64,
    count: u64,
    src: &Bio,
    offset: u64,
    job: KBox<J>,
) -> core::result::Result<(), KBox<J>> {
    let ctx = KBox::into_raw(job).cast::<c_void>();
    // SAFETY: the device is valid while `dev` is (`BlockDev`), `src` is a
    // valid bio the caller owns and keeps, unchanged, until the job's
    // `done`; `ctx` comes back once to `discard_done::<J>` unless the call
    // fails.
    let r = unsafe {
        glue::dmthin_issue_padded_write(
            dev.bdev_ptr().cast(),
            sector,
            count,
            src.raw().cast(),
            offset,
            discard_done::<J>,
            ctx,
        )
    };
    if r != 0 {
        // SAFETY: not handed to C: reclaim the box.
        return Err(unsafe { KBox::from_raw(ctx.cast::<J>()) });
    }
    Ok(())
}

/// Zeroes `ranges` ([first sector, sectors]; empty ones skipped) of
/// `dev`: with REQ_OP_WRITE_ZEROES if `write_zeroes` and the device offers
/// it (the ranges may be unmapped below, they read back as zeros), else
/// with plain writes of the zero page.  `job.done` runs once when all
/// finished.  The caller keeps the device open until then.  On `Err` (no
/// memory, too many ranges) nothing was started and the job comes back.
pub(crate) fn zero_ranges<J: IoJob>(
    dev: &impl BlockDev,
    ranges: &[[u64; 2]],
    write_zeroes: bool,
    job: KBox<J>,
) -> core::result::Result<(), KBox<J>> {
    let Ok(n) = c_uint::try_from(ranges.len()) else {
        return Err(job);
    };
    let ctx = KBox::into_raw(job).cast::<c_void>();
    // SAFETY: `ranges` is `n` arrays of two u64, read by C as `2n`
    // consecutive u64s during the call; the device is valid while `dev`
    // is (`BlockDev`); `ctx` comes back once to `discard_done::<J>` unless
    // the call fails.
    let r = unsafe {
        glue::dmthin_issue_zero_ranges(
            dev.bdev_ptr().cast(),
            ranges.as_ptr().cast::<u64>(),
            n,
            write_zeroes,
            discard_done::<J>,
            ctx,
        )
    };
    if r != 0 {
        // SAFETY: not handed to C: reclaim the box.
        return Err(unsafe { KBox::from_raw(ctx.cast::<J>()) });
    }
    Ok(())
}

impl Drop for Bdev {
    fn drop(&mut self) {
        // SAFETY: we own this file reference (type invariant), dropped once.
        unsafe { bindings::fput(self.file) };
    }
}
