// SPDX-License-Identifier: GPL-2.0

//! Target registration and the C trampolines.
//!
//! A target type implements [`Target`]; [`Registration`] fills a
//! `struct target_type` with trampolines for the operations the type
//! implements (the `#[vtable]` `HAS_*` constants), registers it inside
//! pin-init (the structure holds dm's list head, so it must not move) and
//! unregisters it on drop.  The target object a constructor returns is
//! boxed into `ti->private` and freed by the destructor trampoline; every
//! other operation borrows it shared, because dm core calls `map` and
//! `status` on many CPUs at once.

use core::ffi::CStr;
use core::marker::PhantomData;

use kernel::alloc::KBox;
use kernel::bindings;
use kernel::error::{Error, Result};
use kernel::ffi::{c_char, c_int, c_uint, c_void};
use kernel::init::{pin_init_from_closure, PinInit};
use kernel::prelude::*;
use kernel::types::Opaque;
use kernel::ThisModule;

use super::args::Args;
use super::bio::{EndIoBio, MapBio, Mapped};
use super::dev::DmDev;
use super::status::StatusWriter;

/// A constructor failure: the message for `ti->error` and the errno.
pub(crate) struct CtrError {
    /// Static message (dm core logs it); a `CStr`, so it is always
    /// NUL-terminated.
    msg: &'static CStr,
    /// The error returned to dm core.
    err: Error,
}

impl CtrError {
    /// An error with a static C-string message.
    pub(crate) fn new(msg: &'static CStr, err: Error) -> Self {
        CtrError { msg, err }
    }
}

impl From<crate::thin::table::TableError> for CtrError {
    fn from(e: crate::thin::table::TableError) -> Self {
        // A `TableError` message always ends in its NUL; if one did not,
        // dm core still gets a valid string rather than an overrun.
        let msg = CStr::from_bytes_with_nul(e.msg_with_nul()).unwrap_or(c"Invalid table line");
        CtrError {
            msg,
            err: Error::from_errno(-e.errno),
        }
    }
}

/// Which status dm core asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatusKind {
    /// `dmsetup status` (`STATUSTYPE_INFO`).
    Info,
    /// `dmsetup table` (`STATUSTYPE_TABLE`).
    Table,
    /// IMA measurement (`STATUSTYPE_IMA`).
    Ima,
}

/// The target under construction (`struct dm_target` during `ctr`).
///
/// # Invariants
///
/// `ti` is the valid target dm core passed to the running constructor.
pub(crate) struct TargetCtx<'a> {
    ti: *mut bindings::dm_target,
    _life: PhantomData<&'a mut bindings::dm_target>,
}

impl TargetCtx<'_> {
    /// The raw target, for the other parts of the dm layer.
    pub(crate) fn as_raw(&self) -> *mut bindings::dm_target {
        self.ti
    }

    /// Length of the target in sectors.
    pub(crate) fn len(&self) -> u64 {
        // SAFETY: `ti` is valid during the constructor (type invariant).
        unsafe { (*self.ti).len }
    }

    /// A handle on the target for events and suspend state, valid until
    /// the target's destructor.
    pub(crate) fn handle(&self) -> TargetHandle {
        TargetHandle { ti: self.ti }
    }

    /// The mapped device this table belongs to (`dm_table_get_md`).
    pub(crate) fn md(&self) -> MdRef {
        // SAFETY: `ti` and its table are valid during the constructor.
        let md = unsafe { bindings::dm_table_get_md((*self.ti).table) };
        // INVARIANT: see `MdRef`.
        MdRef { md }
    }

    /// `ti->num_flush_bios` and `flush_supported`.
    pub(crate) fn set_flush_bios(&mut self, n: u32, supported: bool) {
        // SAFETY: `ti` is valid and ours during the constructor.
        unsafe {
            (*self.ti).num_flush_bios = n;
            (*self.ti).set_flush_supported(supported);
        }
    }

    /// `ti->num_discard_bios`, `discards_supported` and
    /// `max_discard_granularity`.
    pub(crate) fn set_discards(&mut self, n: u32, supported: bool, max_granularity: bool) {
        // SAFETY: `ti` is valid and ours during the constructor.
        unsafe {
            (*self.ti).num_discard_bios = n;
            (*self.ti).set_discards_supported(supported);
            (*self.ti).set_max_discard_granularity(max_granularity);
        }
    }

    /// `ti->num_write_zeroes_bios` (dm core offers WRITE_ZEROES only when
    /// every target has it and every device they iterate supports it).
    pub(crate) fn set_write_zeroes_bios(&mut self, n: u32) {
        // SAFETY: `ti` is valid and ours during the constructor.
        unsafe { (*self.ti).num_write_zeroes_bios = n };
    }

    /// Reserves `size` bytes of per-bio data for this target's bios.
    pub(crate) fn set_per_io_data_size(&mut self, size: usize) {
        // SAFETY: `ti` is valid and ours during the constructor.
        unsafe { (*self.ti).per_io_data_size = size as c_uint };
    }
}

/// The queue limits dm core stacked for a device, handed to `io_hints`.
pub(crate) struct QueueLimits<'a> {
    l: &'a mut bindings::queue_limits,
}

impl QueueLimits<'_> {
    /// `max_sectors`.
    pub(crate) fn max_sectors(&self) -> u32 {
        self.l.max_sectors
    }
    /// Sets `max_sectors`.
    pub(crate) fn set_max_sectors(&mut self, v: u32) {
        self.l.max_sectors = v;
    }
    /// `io_opt` in bytes.
    pub(crate) fn io_opt(&self) -> u32 {
        self.l.io_opt
    }
    /// Sets `io_min` (bytes).
    pub(crate) fn set_io_min(&mut self, v: u32) {
        self.l.io_min = v;
    }
    /// Sets `io_opt` (bytes).
    pub(crate) fn set_io_opt(&mut self, v: u32) {
        self.l.io_opt = v;
    }
    /// Sets `max_hw_discard_sectors`.
    pub(crate) fn set_max_hw_discard_sectors(&mut self, v: u32) {
        self.l.max_hw_discard_sectors = v;
    }
    /// Sets `max_write_zeroes_sectors`.
    pub(crate) fn set_max_write_zeroes_sectors(&mut self, v: u32) {
        self.l.max_write_zeroes_sectors = v;
    }
    /// Sets `discard_granularity` (bytes).
    pub(crate) fn set_discard_granularity(&mut self, v: u32) {
        self.l.discard_granularity = v;
    }
}

/// A constructed target, for raising events and querying its suspend
/// state (upstream keeps `pool->ti` for the same purpose).
///
/// # Invariants
///
/// `ti` is a target whose constructor succeeded; the holder only uses the
/// handle until that target's destructor runs (the pool drops its bound
/// handle in the pool target's destructor).
#[derive(Clone, Copy)]
pub(crate) struct TargetHandle {
    ti: *mut bindings::dm_target,
}

// SAFETY: dm_table_event and dm_suspended may be called from any thread
// while the target exists.
unsafe impl Send for TargetHandle {}
// SAFETY: as above.
unsafe impl Sync for TargetHandle {}

impl TargetHandle {
    /// Raises a dm event on the target's table (`dm_table_event`).
    pub(crate) fn event(&self) {
        // SAFETY: the target and its table are alive (type invariant).
        unsafe { bindings::dm_table_event((*self.ti).table) };
    }

    /// Whether the target's device is suspended (`dm_suspended`).
    pub(crate) fn suspended(&self) -> bool {
        // SAFETY: the target is alive (type invariant).
        unsafe { bindings::dm_suspended(self.ti) != 0 }
    }

    /// Whether the device is being suspended with noflush.
    pub(crate) fn noflush_suspending(&self) -> bool {
        // SAFETY: the target is alive (type invariant).
        unsafe { bindings::dm_noflush_suspending(self.ti) != 0 }
    }

    /// Identity of the target.
    pub(crate) fn key(&self) -> usize {
        self.ti as usize
    }
}

/// A mapped device's own block device, not opened: valid while the
/// mapped device exists.  Its holder must not outlive the device (the
/// pool, which keeps one for its table's device, is destroyed by that
/// device's table destructor at the latest).
///
/// # Invariants
///
/// `bdev` is `part0` of a live mapped device's disk.
pub(crate) struct MdDisk {
    bdev: *mut bindings::block_device,
}

// SAFETY: the block device pointer may be used for I/O from any thread.
unsafe impl Send for MdDisk {}
// SAFETY: as above.
unsafe impl Sync for MdDisk {}

impl super::bdev::BlockDev for MdDisk {
    fn bdev_ptr(&self) -> *mut bindings::block_device {
        self.bdev
    }
}

/// A mapped device, used by a pool as its identity and for its name in
/// log lines.
///
/// # Invariants
///
/// `md` is a live mapped device for as long as the holder uses it: a pool
/// holds the `MdRef` of its own device, which cannot be removed while a
/// pool table (or a thin, which holds the pool device open) exists, and
/// the pool object dies with the last of those.
#[derive(Clone, Copy)]
pub(crate) struct MdRef {
    md: *mut bindings::mapped_device,
}

// SAFETY: the name and identity of a live mapped device may be read from
// any thread.
unsafe impl Send for MdRef {}
// SAFETY: as above.
unsafe impl Sync for MdRef {}

impl MdRef {
    /// Identity key.
    pub(crate) fn key(&self) -> usize {
        self.md as usize
    }

    /// The mapped device's own block device (`dm_disk(md)->part0`), for
    /// I/O through the device's table.
    pub(crate) fn disk(&self) -> MdDisk {
        // SAFETY: `md` is live (type invariant); its disk exists as long as
        // the device.
        let bdev = unsafe { (*bindings::dm_disk(self.md)).part0 };
        // INVARIANT: see `MdDisk`.
        MdDisk { bdev }
    }

    /// A counted reference on the device (`dm_hold`), or `None` if the
    /// device is being freed.
    pub(crate) fn hold(&self) -> Option<super::dev::MappedDevice> {
        // SAFETY: `md` is live (type invariant); `dm_hold` refuses a device
        // that is being freed.
        if unsafe { bindings::dm_hold(self.md) } != 0 {
            return None;
        }
        // SAFETY: `dm_hold` succeeded: we own one reference.
        Some(unsafe { super::dev::MappedDevice::from_held(self.md) })
    }

    /// The device's name (`dm_device_name`).
    pub(crate) fn name(&self) -> DeviceName {
        // SAFETY: `md` is live (type invariant); its name is a NUL
        // terminated string inside it, copied out here.
        let name = unsafe { CStr::from_ptr(bindings::dm_device_name(self.md).cast()) };
        let mut out = DeviceName {
            buf: [0; 128],
            len: 0,
        };
        let bytes = name.to_bytes();
        let n = bytes.len().min(out.buf.len());
        if let (Some(dst), Some(src)) = (out.buf.get_mut(..n), bytes.get(..n)) {
            dst.copy_from_slice(src);
            out.len = n;
        }
        out
    }
}

/// A mapped device's name, copied (dm names are at most 127 bytes).
pub(crate) struct DeviceName {
    buf: [u8; 128],
    len: usize,
}

impl core::fmt::Display for DeviceName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let bytes = self.buf.get(..self.len).unwrap_or(&[]);
        f.write_str(core::str::from_utf8(bytes).unwrap_or("?"))
    }
}

/// The operations of a device-mapper target type.
#[vtable]
pub(crate) trait Target: Sized + Send + Sync {
    /// Target name (`thin-pool`, `thin`).
    const NAME: &'static CStr;
    /// Target version, reported by `dmsetup targets`.
    const VERSION: [u32; 3];
    /// `DM_TARGET_*` feature bits.
    const FEATURES: u64;

    /// Builds the target from its table arguments.
    fn ctr(ti: &mut TargetCtx<'_>, args: &Args<'_>) -> Result<KBox<Self>, CtrError>;

    /// Maps one bio; must not wait for I/O.
    fn map<'a>(&self, bio: MapBio<'a>) -> Mapped<'a>;

    /// A mapped bio's I/O finished (`end_io`; any context, IRQ
    /// included).  Always `DM_ENDIO_DONE`.
    fn end_io(&self, _bio: EndIoBio<'_>) {
        kernel::build_error(kernel::error::VTABLE_DEFAULT_ERROR)
    }

    /// Writes status or table output.
    fn status(&self, _kind: StatusKind, _flags: u32, _out: &mut StatusWriter<'_>) {
        kernel::build_error(kernel::error::VTABLE_DEFAULT_ERROR)
    }

    /// Handles `dmsetup message`.
    fn message(&self, _args: &Args<'_>, _out: &mut StatusWriter<'_>) -> Result {
        kernel::build_error(kernel::error::VTABLE_DEFAULT_ERROR)
    }

    /// Reports the devices the target maps to (`iterate_devices`).
    fn iterate_devices(&self, _callout: &mut Callout<'_>) -> c_int {
        kernel::build_error(kernel::error::VTABLE_DEFAULT_ERROR)
    }

    /// Before the device suspends (`presuspend`).
    fn presuspend(&self, _ti: TargetHandle) {
        kernel::build_error(kernel::error::VTABLE_DEFAULT_ERROR)
    }

    /// Adjusts the stacked queue limits of the device (`io_hints`).
    fn io_hints(&self, _limits: &mut QueueLimits<'_>) {
        kernel::build_error(kernel::error::VTABLE_DEFAULT_ERROR)
    }

    /// A suspend was cancelled after `presuspend` (`presuspend_undo`).
    fn presuspend_undo(&self, _ti: TargetHandle) {
        kernel::build_error(kernel::error::VTABLE_DEFAULT_ERROR)
    }

    /// After the device suspended (`postsuspend`).
    fn postsuspend(&self, _ti: TargetHandle) {
        kernel::build_error(kernel::error::VTABLE_DEFAULT_ERROR)
    }

    /// Before the device resumes; an error fails the resume (`preresume`).
    fn preresume(&self, _ti: TargetHandle) -> Result {
        kernel::build_error(kernel::error::VTABLE_DEFAULT_ERROR)
    }

    /// When the device resumes (`resume`).
    fn resume(&self, _ti: TargetHandle) {
        kernel::build_error(kernel::error::VTABLE_DEFAULT_ERROR)
    }
}

/// The `iterate_devices` callout dm core passes.
pub(crate) struct Callout<'a> {
    ti: *mut bindings::dm_target,
    f: bindings::iterate_devices_callout_fn,
    data: *mut c_void,
    _life: PhantomData<&'a mut c_void>,
}

impl Callout<'_> {
    /// Calls the callout for `len` sectors of `dev` starting at `start`.
    pub(crate) fn call(&mut self, dev: &DmDev, start: u64, len: u64) -> c_int {
        match self.f {
            // SAFETY: `f`, `ti` and `data` are what dm core passed to
            // `iterate_devices`, valid for this call; `dev` is held by the
            // target.
            Some(f) => unsafe { f(self.ti, dev.as_raw(), start, len, self.data) },
            None => 0,
        }
    }
}

/// A registered target type; unregistered on drop.
///
/// # Invariants
///
/// `tt` was registered with `dm_register_target` and stays registered
/// until drop.
#[pin_data(PinnedDrop)]
pub(crate) struct Registration<T: Target> {
    #[pin]
    tt: Opaque<bindings::target_type>,
    _t: PhantomData<T>,
}

// SAFETY: after registration the `target_type` is only read by dm core,
// which serialises list updates itself.
unsafe impl<T: Target> Send for Registration<T> {}
// SAFETY: as above; `&Registration` gives no access to the C structure.
unsafe impl<T: Target> Sync for Registration<T> {}

impl<T: Target> Registration<T> {
    /// Registers target type `T` for `module`.
    pub(crate) fn new(module: &'static ThisModule) -> impl PinInit<Self, Error> {
        let tt_init = move |slot: *mut Opaque<bindings::target_type>| -> Result {
            let tt = Opaque::raw_get(slot);
            let value = bindings::target_type {
                features: T::FEATURES,
                name: T::NAME.as_ptr().cast(),
                module: module.as_ptr(),
                version: T::VERSION,
                ctr: Some(ctr_tramp::<T>),
                dtr: Some(dtr_tramp::<T>),
                map: Some(map_tramp::<T>),
                end_io: if T::HAS_END_IO {
                    Some(end_io_tramp::<T>)
                } else {
                    None
                },
                status: if T::HAS_STATUS {
                    Some(status_tramp::<T>)
                } else {
                    None
                },
                message: if T::HAS_MESSAGE {
                    Some(message_tramp::<T>)
                } else {
                    None
                },
                iterate_devices: if T::HAS_ITERATE_DEVICES {
                    Some(iterate_devices_tramp::<T>)
                } else {
                    None
                },
                presuspend: if T::HAS_PRESUSPEND {
                    Some(presuspend_tramp::<T>)
                } else {
                    None
                },
                io_hints: if T::HAS_IO_HINTS {
                    Some(io_hints_tramp::<T>)
                } else {
                    None
                },
                presuspend_undo: if T::HAS_PRESUSPEND_UNDO {
                    Some(presuspend_undo_tramp::<T>)
                } else {
                    None
                },
                postsuspend: if T::HAS_POSTSUSPEND {
                    Some(postsuspend_tramp::<T>)
                } else {
                    None
                },
                preresume: if T::HAS_PRERESUME {
                    Some(preresume_tramp::<T>)
                } else {
                    None
                },
                resume: if T::HAS_RESUME {
                    Some(resume_tramp::<T>)
                } else {
                    None
                },
                ..Default::default()
            };
            // SAFETY: `tt` points to the (uninitialised) target type inside
            // the pinned allocation being initialised.
            unsafe { tt.write(value) };
            // SAFETY: `tt` is initialised and pinned: it stays at this
            // address until `PinnedDrop` unregisters it.
            kernel::error::to_result(unsafe { bindings::dm_register_target(tt) })
        };
        // SAFETY: on success the closure initialised `tt` (and `_t` is a
        // ZST); on failure nothing was registered and nothing needs dropping.
        let tt = unsafe { pin_init_from_closure(tt_init) };
        try_pin_init!(Self {
            tt <- tt,
            _t: PhantomData,
        })
    }
}

#[pinned_drop]
impl<T: Target> PinnedDrop for Registration<T> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: `tt` is registered (type invariant) and is unregistered
        // exactly once, here.
        unsafe { bindings::dm_unregister_target(self.tt.get()) };
    }
}

/// # Safety
///
/// Called by dm core with a valid target under construction and `argc`
/// valid NUL-terminated arguments.
unsafe extern "C" fn ctr_tramp<T: Target>(
    ti: *mut bindings::dm_target,
    argc: c_uint,
    argv: *mut *mut c_char,
) -> c_int {
    // SAFETY: dm core's arguments live for the whole constructor call.
    let args = match unsafe { Args::from_raw(argc, argv) } {
        Ok(a) => a,
        Err(e) => {
            // SAFETY: `ti` is valid; the message is a static C string.
            unsafe { (*ti).error = c"Cannot allocate argument list".as_ptr().cast_mut().cast() };
            return e.to_errno();
        }
    };
    // INVARIANT: `ti` is the target of this constructor call.
    let mut ctx = TargetCtx {
        ti,
        _life: PhantomData,
    };
    match T::ctr(&mut ctx, &args) {
        Ok(target) => {
            // SAFETY: `ti` is valid; the box is reclaimed by `dtr_tramp`.
            unsafe { (*ti).private = KBox::into_raw(target).cast() };
            0
        }
        Err(e) => {
            // SAFETY: `ti` is valid; `e.msg` is a static C string, which
            // dm core only reads.
            unsafe { (*ti).error = e.msg.as_ptr().cast_mut().cast() };
            e.err.to_errno()
        }
    }
}

/// The target object of a constructed target.
///
/// # Safety
///
/// `ti` must be a target whose constructor `ctr_tramp::<T>` succeeded and
/// whose destructor has not run.
unsafe fn target_of<'a, T: Target>(ti: *mut bindings::dm_target) -> &'a T {
    // SAFETY: `private` holds the `KBox<T>` the constructor stored, alive
    // until the destructor (caller's guarantee).
    unsafe { &*((*ti).private as *const T) }
}

/// # Safety
///
/// Called by dm core once for a target whose constructor succeeded.
unsafe extern "C" fn dtr_tramp<T: Target>(ti: *mut bindings::dm_target) {
    // SAFETY: `private` holds the box from `ctr_tramp::<T>`, released once.
    let target = unsafe { KBox::from_raw((*ti).private.cast::<T>()) };
    drop(target);
}

/// # Safety
///
/// Called by dm core for a constructed target with a valid bio.
unsafe extern "C" fn map_tramp<T: Target>(
    ti: *mut bindings::dm_target,
    bio: *mut bindings::bio,
) -> c_int {
    // SAFETY: the target is constructed and not yet destroyed.
    let target = unsafe { target_of::<T>(ti) };
    // SAFETY: `bio` is map's bio, used only through the `MapBio`.
    let bio = unsafe { MapBio::from_raw(bio) };
    target.map(bio).code() as c_int
}

/// # Safety
///
/// Called by dm core for a constructed target with a bio it mapped.
unsafe extern "C" fn end_io_tramp<T: Target>(
    ti: *mut bindings::dm_target,
    bio: *mut bindings::bio,
    _err: *mut bindings::blk_status_t,
) -> c_int {
    // SAFETY: the target is constructed and not yet destroyed.
    let target = unsafe { target_of::<T>(ti) };
    // SAFETY: `bio` is end_io's bio, valid during this call.
    if let Some(bio) = unsafe { EndIoBio::from_raw(bio) } {
        target.end_io(bio);
    }
    bindings::DM_ENDIO_DONE as c_int
}

/// # Safety
///
/// Called by dm core for a constructed target with a result buffer of
/// `maxlen` bytes.
unsafe extern "C" fn status_tramp<T: Target>(
    ti: *mut bindings::dm_target,
    kind: bindings::status_type_t,
    flags: c_uint,
    result: *mut c_char,
    maxlen: c_uint,
) {
    // SAFETY: the target is constructed and not yet destroyed.
    let target = unsafe { target_of::<T>(ti) };
    // SAFETY: dm core's buffer is writable for `maxlen` bytes during the call.
    let mut out = unsafe { StatusWriter::new(result, maxlen) };
    let kind = match kind {
        bindings::status_type_t_STATUSTYPE_INFO => StatusKind::Info,
        bindings::status_type_t_STATUSTYPE_TABLE => StatusKind::Table,
        _ => StatusKind::Ima,
    };
    target.status(kind, flags, &mut out);
}

/// # Safety
///
/// Called by dm core for a constructed target with `argc` valid arguments
/// and a result buffer of `maxlen` bytes.
unsafe extern "C" fn message_tramp<T: Target>(
    ti: *mut bindings::dm_target,
    argc: c_uint,
    argv: *mut *mut c_char,
    result: *mut c_char,
    maxlen: c_uint,
) -> c_int {
    // SAFETY: the target is constructed and not yet destroyed.
    let target = unsafe { target_of::<T>(ti) };
    // SAFETY: the arguments live for the whole message call.
    let args = match unsafe { Args::from_raw(argc, argv) } {
        Ok(a) => a,
        Err(e) => return e.to_errno(),
    };
    // SAFETY: dm core's buffer is writable for `maxlen` bytes during the call.
    let mut out = unsafe { StatusWriter::new(result, maxlen) };
    match target.message(&args, &mut out) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// # Safety
///
/// Called by dm core for a constructed target with its callout and data.
unsafe extern "C" fn iterate_devices_tramp<T: Target>(
    ti: *mut bindings::dm_target,
    f: bindings::iterate_devices_callout_fn,
    data: *mut c_void,
) -> c_int {
    // SAFETY: the target is constructed and not yet destroyed.
    let target = unsafe { target_of::<T>(ti) };
    let mut callout = Callout {
        ti,
        f,
        data,
        _life: PhantomData,
    };
    target.iterate_devices(&mut callout)
}

/// # Safety
///
/// Called by dm core for a constructed target.
unsafe extern "C" fn presuspend_tramp<T: Target>(ti: *mut bindings::dm_target) {
    // SAFETY: the target is constructed and not yet destroyed.
    let target = unsafe { target_of::<T>(ti) };
    target.presuspend(TargetHandle { ti });
}

/// # Safety
///
/// Called by dm core for a constructed target.
unsafe extern "C" fn postsuspend_tramp<T: Target>(ti: *mut bindings::dm_target) {
    // SAFETY: the target is constructed and not yet destroyed.
    let target = unsafe { target_of::<T>(ti) };
    target.postsuspend(TargetHandle { ti });
}

/// # Safety
///
/// Called by dm core for a constructed target.
unsafe extern "C" fn preresume_tramp<T: Target>(ti: *mut bindings::dm_target) -> c_int {
    // SAFETY: the target is constructed and not yet destroyed.
    let target = unsafe { target_of::<T>(ti) };
    match target.preresume(TargetHandle { ti }) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// # Safety
///
/// Called by dm core for a constructed target.
unsafe extern "C" fn resume_tramp<T: Target>(ti: *mut bindings::dm_target) {
    // SAFETY: the target is constructed and not yet destroyed.
    let target = unsafe { target_of::<T>(ti) };
    target.resume(TargetHandle { ti });
}

/// # Safety
///
/// Called by dm core for a constructed target.
unsafe extern "C" fn presuspend_undo_tramp<T: Target>(ti: *mut bindings::dm_target) {
    // SAFETY: the target is constructed and not yet destroyed.
    let target = unsafe { target_of::<T>(ti) };
    target.presuspend_undo(TargetHandle { ti });
}

/// # Safety
///
/// Called by dm core for a constructed target with the limits being
/// stacked for its device.
unsafe extern "C" fn io_hints_tramp<T: Target>(
    ti: *mut bindings::dm_target,
    limits: *mut bindings::queue_limits,
) {
    // SAFETY: the target is constructed and not yet destroyed.
    let target = unsafe { target_of::<T>(ti) };
    // SAFETY: dm core hands a valid limits structure, ours for the call.
    if let Some(l) = unsafe { limits.as_mut() } {
        target.io_hints(&mut QueueLimits { l });
    }
}
