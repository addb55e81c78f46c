// SPDX-License-Identifier: GPL-2.0

//! Devices a target opens through dm core (`dm_get_device`), held as owned
//! handles that `dm_put_device` on drop.

use core::ffi::CStr;

use kernel::bindings;
use kernel::error::{to_result, Result};

use super::target::TargetCtx;

/// How a device is opened.
#[derive(Clone, Copy)]
pub(crate) enum Mode {
    /// Read only.
    Read,
    /// Read and write.
    ReadWrite,
    /// The mode of the table being loaded (`dm_table_get_mode`).
    Table,
}

/// A device opened for a target.
///
/// A `DmDev` belongs to the table that opened it: it lives in that
/// target's object and is put when dm core destroys the target (the
/// destructor trampoline drops the object), which is where
/// `dm_put_device` is valid.  Objects that outlive a table (the pool) hold
/// their own [`Bdev`](super::bdev::Bdev) references instead.
///
/// # Invariants
///
/// `dev` was returned by a successful `dm_get_device(ti, ..)` and is put
/// exactly once, on drop; `ti` is the target it was opened for, which dm
/// core keeps alive until that target's destructor has run, and the
/// handle never outlives the target's private data.
pub(crate) struct DmDev {
    ti: *mut bindings::dm_target,
    dev: *mut bindings::dm_dev,
}

// SAFETY: a `dm_dev` is reference counted by dm core and its fields are not
// changed while it is held; `dm_put_device` may be called from any thread.
unsafe impl Send for DmDev {}
// SAFETY: only shared reads of immutable fields happen through `&DmDev`.
unsafe impl Sync for DmDev {}

impl DmDev {
    /// Opens `path` (a path or `major:minor`) for the target under
    /// construction.  The errno is dm core's.
    pub(crate) fn get(ti: &TargetCtx<'_>, path: &CStr, mode: Mode) -> Result<Self> {
        let raw_ti = ti.as_raw();
        let mode = match mode {
            Mode::Read => bindings::BLK_OPEN_READ,
            Mode::ReadWrite => bindings::BLK_OPEN_READ | bindings::BLK_OPEN_WRITE,
            // SAFETY: `raw_ti` is the valid target under construction, whose
            // table is set.
            Mode::Table => unsafe { bindings::dm_table_get_mode((*raw_ti).table) },
        };
        let mut dev: *mut bindings::dm_dev = core::ptr::null_mut();
        // SAFETY: `raw_ti` is valid during the constructor, `path` is
        // NUL-terminated, `dev` is a valid out pointer.
        to_result(unsafe {
            bindings::dm_get_device(raw_ti, path.as_ptr().cast(), mode, &mut dev)
        })?;
        // INVARIANT: `dm_get_device` succeeded, so `dev` is held for `ti`.
        Ok(DmDev { ti: raw_ti, dev })
    }

    /// The underlying block device.
    pub(crate) fn bdev(&self) -> *mut bindings::block_device {
        // SAFETY: `dev` is valid while held (type invariant).
        unsafe { (*self.dev).bdev }
    }

    /// The raw `dm_dev`, for dm callouts.
    pub(super) fn as_raw(&self) -> *mut bindings::dm_dev {
        self.dev
    }

    /// The device number (`bdev->bd_dev`).
    pub(crate) fn dev_t(&self) -> u32 {
        // SAFETY: a held `dm_dev` has a valid `bdev` (type invariant).
        unsafe { (*self.bdev()).bd_dev }
    }

    /// Size in 512-byte sectors.
    pub(crate) fn nr_sectors(&self) -> u64 {
        // SAFETY: a held `dm_dev` has a valid `bdev` (type invariant).
        unsafe { bindings::bdev_nr_sectors(self.bdev()) }
    }

    /// The block device's name (`sda`, `loop0`, `dm-3`), as `%pg` prints it.
    pub(crate) fn bdev_name(&self) -> BdevName {
        let mut name = BdevName {
            buf: [0; 32],
            len: 0,
        };
        // SAFETY: `bdev` is a valid held block device, `buf` has room for
        // `buf.len()` bytes, and `%pg` consumes one `struct block_device *`.
        let n = unsafe {
            bindings::snprintf(
                name.buf.as_mut_ptr(),
                name.buf.len(),
                c"%pg".as_ptr().cast(),
                self.bdev(),
            )
        };
        name.len = usize::try_from(n).unwrap_or(0).min(name.buf.len() - 1);
        name
    }

    /// The device's `max_discard_sectors` (0: no discard support).
    pub(crate) fn max_discard_sectors(&self) -> u32 {
        // SAFETY: a held `dm_dev` has a valid `bdev` (type invariant).
        unsafe { bindings::bdev_max_discard_sectors(self.bdev()) }
    }

    /// The device as `major:minor`, as upstream prints it (`format_dev_t`).
    pub(crate) fn name(&self) -> DevName {
        DevName(self.dev_t())
    }
}

impl Drop for DmDev {
    fn drop(&mut self) {
        // SAFETY: `dev` was got for `ti`, which is still alive, and is put
        // only here (type invariant).
        unsafe { bindings::dm_put_device(self.ti, self.dev) };
    }
}

/// A block device name, displayable.
pub(crate) struct BdevName {
    buf: [u8; 32],
    len: usize,
}

impl core::fmt::Display for BdevName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let bytes = self.buf.get(..self.len).unwrap_or(&[]);
        f.write_str(core::str::from_utf8(bytes).unwrap_or("?"))
    }
}

/// A device number that displays as `major:minor`.
#[derive(Clone, Copy)]
pub(crate) struct DevName(pub(crate) u32);

impl core::fmt::Display for DevName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // MINORBITS is 20 (include/linux/kdev_t.h).
        write!(f, "{}:{}", self.0 >> 20, self.0 & ((1 << 20) - 1))
    }
}

/// A reference on a mapped device (`dm_get_md`), dropped with `dm_put`.
///
/// # Invariants
///
/// `md` was returned by `dm_get_md`, whose reference this owns.
pub(crate) struct MappedDevice {
    md: *mut bindings::mapped_device,
}

impl MappedDevice {
    /// The mapped device behind device number `dev`, if `dev` is a dm
    /// device.
    pub(crate) fn get(dev: u32) -> Option<Self> {
        // SAFETY: `dm_get_md` accepts any device number and returns a
        // referenced device or NULL.
        let md = unsafe { bindings::dm_get_md(dev) };
        if md.is_null() {
            // (Not `then_some`: that would build, and then drop, a handle
            // around NULL, calling `dm_put(NULL)`.)
            return None;
        }
        // INVARIANT: a non-NULL result carries a reference we now own.
        Some(MappedDevice { md })
    }

    /// Wraps a reference the caller took.
    ///
    /// # Safety
    ///
    /// The caller owns one reference on `md` (from `dm_get`/`dm_hold`),
    /// which the result takes over.
    pub(crate) unsafe fn from_held(md: *mut bindings::mapped_device) -> Self {
        // INVARIANT: the caller hands over its reference.
        MappedDevice { md }
    }

    /// Identity key (compared with [`super::target::MdRef::key`]).
    pub(crate) fn key(&self) -> usize {
        self.md as usize
    }

    /// Suspends the device from inside the kernel without flushing
    /// (`dm_internal_suspend_noflush`): its targets' suspend hooks run and
    /// dm core waits for its in-flight bios.  Process context; no lock of
    /// ours may be held (dm takes the device's suspend lock).
    pub(crate) fn internal_suspend_noflush(&self) {
        // SAFETY: we hold a reference on `md` (type invariant).
        unsafe { bindings::dm_internal_suspend_noflush(self.md) };
    }

    /// Undoes [`MappedDevice::internal_suspend_noflush`]
    /// (`dm_internal_resume`).
    pub(crate) fn internal_resume(&self) {
        // SAFETY: we hold a reference on `md` (type invariant).
        unsafe { bindings::dm_internal_resume(self.md) };
    }
}

impl Drop for MappedDevice {
    fn drop(&mut self) {
        // SAFETY: we own one reference on `md` (type invariant).
        unsafe { bindings::dm_put(self.md) };
    }
}
