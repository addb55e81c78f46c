// SPDX-License-Identifier: GPL-2.0

//! [`Bdev`]: a block device held open by the module itself
//! (`bdev_file_open_by_dev`, non-exclusive), independently of any table.
//!
//! A pool object outlives the tables that created it (reloads swap the
//! table, thins keep the pool alive), while a `dm_dev` belongs to one
//! table and may only be put by that table's constructor or destructor.
//! So the pool opens its own references to the metadata and data devices:
//! the dm-bufio client and every remapped bio use a device the pool owns.

use kernel::bindings;
use kernel::error::{from_err_ptr, Result};

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

impl Drop for Bdev {
    fn drop(&mut self) {
        // SAFETY: we own this file reference (type invariant), dropped once.
        unsafe { bindings::fput(self.file) };
    }
}
