// SPDX-License-Identifier: GPL-2.0

//! Bios: the one `map` receives ([`MapBio`]), one a target took out of
//! `map` to finish later ([`Bio`]), and an IRQ-safe queue of them
//! ([`BioQueue`]).
//!
//! Ownership is linear.  [`MapBio`] is handed to `map` by value and the
//! only way to produce the [`Mapped`] that `map` must return is to consume
//! it: remap it, kill it, requeue it, or [`MapBio::defer`] it, which gives
//! back an owned [`Bio`] together with `DM_MAPIO_SUBMITTED`.  A [`Bio`] is
//! `#[must_use]`, not `Clone`, and leaves the target only by being
//! submitted or ended; dropping one ends it with an I/O error (and warns),
//! so a lost bio can never hang a device.

use core::marker::PhantomData;
use core::ptr::NonNull;

use kernel::bindings;
use kernel::error::{code::ENOMEM, Result};

use super::bdev::Bdev;
use super::dev::DmDev;
use super::glue;

/// `REQ_OP_*` classes the targets care about.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Op {
    /// A read.
    Read,
    /// A write (possibly empty, a pure flush).
    Write,
    /// A discard.
    Discard,
    /// Write zeroes.
    WriteZeroes,
    /// Anything else (secure erase, zone ops...).
    Other,
}

/// A block status code for ending a bio.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Status {
    /// Success.
    Ok,
    /// -EIO.
    IoErr,
    /// -ENOSPC.
    NoSpace,
    /// -EOPNOTSUPP.
    NotSupp,
    /// Hand back to dm core, which requeues it after the suspend
    /// (`BLK_STS_DM_REQUEUE`, noflush suspend).
    Requeue,
}

impl Status {
    fn raw(self) -> u8 {
        match self {
            Status::Ok => bindings::BLK_STS_OK as u8,
            Status::IoErr => bindings::BLK_STS_IOERR,
            Status::NoSpace => bindings::BLK_STS_NOSPC,
            Status::NotSupp => bindings::BLK_STS_NOTSUPP,
            Status::Requeue => bindings::BLK_STS_DM_REQUEUE,
        }
    }
}

/// Read-only facts about a bio, shared by [`MapBio`] and [`Bio`].
///
/// # Safety
///
/// Implementors return a valid bio from `raw` for as long as `&self`.
pub(crate) unsafe trait BioInfo {
    /// The bio.
    fn raw(&self) -> *mut bindings::bio;

    /// The operation.
    fn op(&self) -> Op {
        // SAFETY: `raw` is valid (trait contract).
        let opf = unsafe { (*self.raw()).bi_opf };
        match opf & bindings::REQ_OP_MASK {
            x if x == bindings::req_op_REQ_OP_READ => Op::Read,
            x if x == bindings::req_op_REQ_OP_WRITE => Op::Write,
            x if x == bindings::req_op_REQ_OP_DISCARD => Op::Discard,
            x if x == bindings::req_op_REQ_OP_WRITE_ZEROES => Op::WriteZeroes,
            _ => Op::Other,
        }
    }

    /// `REQ_PREFLUSH` or `REQ_FUA` is set (upstream `op_is_flush`).
    fn is_flush_or_fua(&self) -> bool {
        // SAFETY: `raw` is valid (trait contract).
        let opf = unsafe { (*self.raw()).bi_opf };
        opf & (bindings::REQ_PREFLUSH | bindings::REQ_FUA) != 0
    }

    /// `REQ_PREFLUSH` is set.
    fn is_preflush(&self) -> bool {
        // SAFETY: `raw` is valid (trait contract).
        let opf = unsafe { (*self.raw()).bi_opf };
        opf & bindings::REQ_PREFLUSH != 0
    }

    /// `REQ_NOUNMAP` is set (a WRITE_ZEROES that must leave the range
    /// allocated).
    fn is_nounmap(&self) -> bool {
        // SAFETY: `raw` is valid (trait contract).
        let opf = unsafe { (*self.raw()).bi_opf };
        opf & (1u32 << bindings::req_flag_bits___REQ_NOUNMAP) != 0
    }

    /// First sector.
    fn sector(&self) -> u64 {
        // SAFETY: `raw` is valid (trait contract).
        unsafe { (*self.raw()).bi_iter.bi_sector }
    }

    /// Size in bytes.
    fn size(&self) -> u32 {
        // SAFETY: `raw` is valid (trait contract).
        unsafe { (*self.raw()).bi_iter.bi_size }
    }

    /// A pointer to the target's per-bio data as a `T`.
    ///
    /// # Safety
    ///
    /// The bio must belong to a target whose `per_io_data_size` is
    /// `size_of::<T>()`.
    unsafe fn per_bio_ptr<T>(&self) -> *mut T {
        // SAFETY: per the caller, dm core reserved `size_of::<T>()` bytes in
        // front of the bio.
        unsafe { bindings::dm_per_bio_data(self.raw(), core::mem::size_of::<T>()).cast::<T>() }
    }

    /// Reads the target's per-bio data as a `T`.
    ///
    /// # Safety
    ///
    /// The bio must belong to a target whose `per_io_data_size` is
    /// `size_of::<T>()`, and a `T` must have been written there with
    /// [`MapBio::set_per_bio`].
    unsafe fn per_bio<T: Copy>(&self) -> T {
        // SAFETY: per the caller, dm core reserved `size_of::<T>()` bytes in
        // front of the bio, holding a `T` (alignment not assumed).
        unsafe {
            bindings::dm_per_bio_data(self.raw(), core::mem::size_of::<T>())
                .cast::<T>()
                .read_unaligned()
        }
    }
}

/// A bio inside `map`.
///
/// # Invariants
///
/// `bio` is the valid bio dm core passed to `map` for `'a`.
pub(crate) struct MapBio<'a> {
    bio: NonNull<bindings::bio>,
    _life: PhantomData<&'a mut bindings::bio>,
}

/// A bio in the target's `end_io`: its I/O finished; the target may read
/// it and its per-bio data, not end or resubmit it.
///
/// # Invariants
///
/// `bio` is the valid bio dm core passed to `end_io` for `'a`.
pub(crate) struct EndIoBio<'a> {
    bio: NonNull<bindings::bio>,
    _life: PhantomData<&'a bindings::bio>,
}

// SAFETY: `bio` is valid for `'a` (type invariant).
unsafe impl BioInfo for EndIoBio<'_> {
    fn raw(&self) -> *mut bindings::bio {
        self.bio.as_ptr()
    }
}

impl EndIoBio<'_> {
    /// # Safety
    ///
    /// `bio` is the bio dm core passed to `end_io`, valid for the
    /// returned value's lifetime.
    pub(crate) unsafe fn from_raw(bio: *mut bindings::bio) -> Option<Self> {
        // INVARIANT: per the caller.
        NonNull::new(bio).map(|bio| EndIoBio {
            bio,
            _life: PhantomData,
        })
    }
}

/// What `map` did with its bio (`DM_MAPIO_*`).
#[must_use]
pub(crate) struct Mapped<'a> {
    code: u32,
    _life: PhantomData<&'a mut bindings::bio>,
}

// SAFETY: `bio` is valid for `'a` (type invariant).
unsafe impl BioInfo for MapBio<'_> {
    fn raw(&self) -> *mut bindings::bio {
        self.bio.as_ptr()
    }
}

impl<'a> MapBio<'a> {
    /// Wraps the bio passed to `map`.
    ///
    /// # Safety
    ///
    /// `bio` must be the valid bio dm core passed to the current `map`
    /// call, not used elsewhere while the `MapBio` exists.
    pub(crate) unsafe fn from_raw(bio: *mut bindings::bio) -> Self {
        // INVARIANT: the caller passes map's valid bio.
        MapBio {
            // SAFETY: map's bio is never NULL (caller's guarantee).
            bio: unsafe { NonNull::new_unchecked(bio) },
            _life: PhantomData,
        }
    }

    /// Writes the target's per-bio data.
    ///
    /// # Safety
    ///
    /// The target's `per_io_data_size` must be `size_of::<T>()`.
    pub(crate) unsafe fn set_per_bio<T: Copy>(&mut self, v: T) {
        // SAFETY: per the caller, dm core reserved `size_of::<T>()` bytes in
        // front of the bio (alignment not assumed).
        unsafe {
            bindings::dm_per_bio_data(self.raw(), core::mem::size_of::<T>())
                .cast::<T>()
                .write_unaligned(v)
        }
    }

    fn done(code: u32) -> Mapped<'a> {
        Mapped {
            code,
            _life: PhantomData,
        }
    }

    /// Sends the bio, unchanged in offset, to `dev` (`DM_MAPIO_REMAPPED`).
    pub(crate) fn remap(self, dev: &DmDev) -> Mapped<'a> {
        // SAFETY: `bio` is valid (type invariant) and `dev` holds a valid
        // block device.
        unsafe { bindings::bio_set_dev(self.raw(), dev.bdev()) };
        Self::done(bindings::DM_MAPIO_REMAPPED)
    }

    /// Sends the bio to `sector` of `dev` (`DM_MAPIO_REMAPPED`).
    pub(crate) fn remap_to(self, dev: &Bdev, sector: u64) -> Mapped<'a> {
        // SAFETY: `bio` is valid (type invariant), `dev` is open.
        unsafe {
            bindings::bio_set_dev(self.raw(), dev.as_ptr());
            (*self.raw()).bi_iter.bi_sector = sector;
        }
        Self::done(bindings::DM_MAPIO_REMAPPED)
    }

    /// Keeps only the first `sectors` sectors of the bio: dm core sends the
    /// rest as a new bio later (`dm_accept_partial_bio`).  Only for reads,
    /// writes and WRITE_ZEROES that dm core sends to the target as one bio
    /// (`num_write_zeroes_bios` = 1: dm core BUGs on duplicated bios), not
    /// flushes; zero, or not less than the bio's size, changes nothing.
    pub(crate) fn accept_partial(&mut self, sectors: u32) {
        let allowed =
            matches!(self.op(), Op::Read | Op::Write | Op::WriteZeroes) && !self.is_preflush();
        if !allowed || sectors == 0 || u64::from(sectors) >= u64::from(self.size()) >> 9 {
            return;
        }
        // SAFETY: `bio` is map's bio (type invariant), we are in `map`, it
        // is not a flush and (per this method's contract) not duplicated;
        // `sectors` is below its size.
        unsafe { bindings::dm_accept_partial_bio(self.raw(), sectors) };
    }

    /// Fails the bio with an I/O error (`DM_MAPIO_KILL`).
    pub(crate) fn kill(self) -> Mapped<'a> {
        Self::done(bindings::DM_MAPIO_KILL)
    }

    /// Takes the bio out of `map` (`DM_MAPIO_SUBMITTED`): the target now
    /// owns it and must submit or end it.
    pub(crate) fn defer(self) -> (Bio, Mapped<'a>) {
        // INVARIANT: dm core hands ownership to the target when map
        // returns DM_MAPIO_SUBMITTED; the pointer is valid and non-null.
        let bio = Bio { bio: self.bio };
        (bio, Self::done(bindings::DM_MAPIO_SUBMITTED))
    }
}

impl Mapped<'_> {
    /// The `DM_MAPIO_*` value for dm core.
    pub(crate) fn code(self) -> u32 {
        self.code
    }
}

/// A bio the target owns: it must be submitted or ended.
///
/// # Invariants
///
/// `bio` is a valid bio owned by the target (taken out of `map` or out of
/// a [`BioQueue`]), not yet submitted or ended.
#[must_use]
pub(crate) struct Bio {
    bio: NonNull<bindings::bio>,
}

// SAFETY: a bio owned by a target may be completed or submitted from any
// thread.
unsafe impl Send for Bio {}
// SAFETY: through `&Bio` only the bio's fields are read (every method that
// changes the bio takes `&mut self` or `self`), and the owner does not
// change it meanwhile.
unsafe impl Sync for Bio {}

// SAFETY: `bio` is valid while owned (type invariant).
unsafe impl BioInfo for Bio {
    fn raw(&self) -> *mut bindings::bio {
        self.bio.as_ptr()
    }
}

/// Receives a bio submitted with [`Bio::submit_hooked`] when its I/O
/// finished.
pub(crate) trait HookedCompletion: Sync {
    /// The I/O finished (any context, IRQ included): the bio is owned
    /// again, its own completion restored and its status set; ending it
    /// completes it for its submitter.
    fn io_done(&self, bio: Bio);
}

/// Room in a bio's per-bio data for a completion hook: the bio's own
/// completion while the hook is in place, and the hook's receiver.
#[derive(Clone, Copy)]
pub(crate) struct HookSlot {
    end_io: bindings::bio_end_io_t,
    private: *mut core::ffi::c_void,
    owner: *const core::ffi::c_void,
    call: Option<unsafe fn(*const core::ffi::c_void, Bio)>,
}

impl HookSlot {
    /// An empty slot.
    pub(crate) const fn new() -> Self {
        HookSlot {
            end_io: None,
            private: core::ptr::null_mut(),
            owner: core::ptr::null(),
            call: None,
        }
    }
}

/// # Safety
///
/// `owner` is a live `H` (contract of `submit_hooked`).
unsafe fn call_hook<H: HookedCompletion>(owner: *const core::ffi::c_void, bio: Bio) {
    // SAFETY: see above.
    let h = unsafe { &*owner.cast::<H>() };
    h.io_done(bio);
}

/// The block layer's completion of a hooked bio.
///
/// # Safety
///
/// Called once by the block layer for a bio submitted by
/// `Bio::submit_hooked`, whose `bi_private` points to its `HookSlot`.
unsafe extern "C" fn hooked_endio(bio: *mut bindings::bio) {
    // SAFETY: `bi_private` is the slot in the bio's per-bio data, alive as
    // long as the bio; copied out before the fields are restored.
    let slot = unsafe { *(*bio).bi_private.cast::<HookSlot>() };
    // SAFETY: the bio is ours again; restore its own completion.
    unsafe {
        (*bio).bi_end_io = slot.end_io;
        (*bio).bi_private = slot.private;
    }
    if let (Some(call), Some(bio)) = (slot.call, NonNull::new(bio)) {
        // SAFETY: `owner` outlives the I/O (contract of `submit_hooked`);
        // INVARIANT: the bio is owned again and not yet ended.
        unsafe { call(slot.owner, Bio { bio }) };
    }
}

impl Bio {
    /// Submits the bio with a completion hook: when the I/O finishes,
    /// `owner.io_done` gets the bio back instead of its submitter (the
    /// bio's own completion is restored first), so the target can finish
    /// work (insert a mapping) before ending it.
    ///
    /// # Safety
    ///
    /// `slot` must point to a `HookSlot` inside this bio's per-bio data,
    /// suitably aligned, and `owner` must stay alive until `io_done` ran.
    pub(crate) unsafe fn submit_hooked<H: HookedCompletion>(self, slot: *mut HookSlot, owner: &H) {
        let p = self.raw();
        // SAFETY: `slot` is valid for writes (caller); the bio is ours.
        unsafe {
            slot.write(HookSlot {
                end_io: (*p).bi_end_io,
                private: (*p).bi_private,
                owner: core::ptr::from_ref(owner).cast(),
                call: Some(call_hook::<H>),
            });
            (*p).bi_end_io = Some(hooked_endio);
            (*p).bi_private = slot.cast();
        }
        self.submit();
    }

    /// Whether the bio's I/O failed (its status is not OK).
    pub(crate) fn failed(&self) -> bool {
        // SAFETY: the bio is valid and ours (type invariant).
        unsafe { (*self.raw()).bi_status != bindings::BLK_STS_OK as u8 }
    }

    /// Ends the bio with the status its I/O left (after a hooked I/O).
    pub(crate) fn end_as_is(self) {
        // SAFETY: the bio is ours; ending passes ownership back.
        unsafe { bindings::bio_endio(self.into_raw()) };
    }

    fn into_raw(self) -> *mut bindings::bio {
        let p = self.bio.as_ptr();
        core::mem::forget(self);
        p
    }

    /// Points the bio at `sector` of `dev`.
    pub(crate) fn remap(&mut self, dev: &Bdev, sector: u64) {
        // SAFETY: the bio is valid and ours (type invariant).
        unsafe {
            bindings::bio_set_dev(self.raw(), dev.as_ptr());
            (*self.raw()).bi_iter.bi_sector = sector;
        }
    }

    /// Clears `REQ_NOUNMAP` (a WRITE_ZEROES whose target honours the
    /// allocation request itself passes the bio on without it).
    pub(crate) fn clear_nounmap(&mut self) {
        // SAFETY: the bio is valid and ours (type invariant).
        unsafe { (*self.raw()).bi_opf &= !(1u32 << bindings::req_flag_bits___REQ_NOUNMAP) };
    }

    /// Submits the bio (`submit_bio_noacct`).
    pub(crate) fn submit(self) {
        // SAFETY: the bio is ours; submission passes ownership on.
        unsafe { bindings::submit_bio_noacct(self.into_raw()) };
    }

    /// Ends the bio with `status`.
    pub(crate) fn end(self, status: Status) {
        let p = self.into_raw();
        // SAFETY: the bio is ours; ending passes ownership back.
        unsafe {
            (*p).bi_status = status.raw();
            bindings::bio_endio(p);
        }
    }

    /// Fills the bio's pages with zeros (its data, before a read that
    /// covers only part of it).
    pub(crate) fn zero_fill(&mut self) {
        // SAFETY: the bio is ours; its data pages are ours to fill.
        unsafe { bindings::zero_fill_bio(self.raw()) };
    }

    /// Shortens the bio to `bytes` (no more than its size): the rest of
    /// its pages are left as they are.
    pub(crate) fn set_size(&mut self, bytes: u32) {
        // SAFETY: the bio is ours; shrinking its iterator is allowed.
        unsafe {
            let it = &mut (*self.raw()).bi_iter;
            if bytes < it.bi_size {
                it.bi_size = bytes;
            }
        }
    }

    /// Ends the bio successfully after filling its pages with zeros (a
    /// read of an unprovisioned block).
    pub(crate) fn zero_fill_and_end(self) {
        // SAFETY: the bio is ours; its data pages are ours to fill.
        unsafe { bindings::zero_fill_bio(self.raw()) };
        self.end(Status::Ok)
    }
}

impl Drop for Bio {
    fn drop(&mut self) {
        kernel::pr_warn!("dm-thin-rs: a bio was dropped without completion; failing it\n");
        let p = self.bio.as_ptr();
        // SAFETY: a `Bio` dropped without `submit`/`end` is still ours.
        unsafe {
            (*p).bi_status = bindings::BLK_STS_IOERR;
            bindings::bio_endio(p);
        }
    }
}

/// An IRQ-safe FIFO of owned bios.
///
/// # Invariants
///
/// `q` is a live queue from `dmthin_bioq_create`; every bio in it is an
/// owned [`Bio`] given up by `push`.
pub(crate) struct BioQueue {
    q: *mut glue::DmthinBioq,
}

// SAFETY: the C queue is protected by its own IRQ-safe spinlock.
unsafe impl Send for BioQueue {}
// SAFETY: as above.
unsafe impl Sync for BioQueue {}

impl BioQueue {
    /// An empty queue.
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: plain allocation.
        let q = unsafe { glue::dmthin_bioq_create() };
        if q.is_null() {
            return Err(ENOMEM);
        }
        // INVARIANT: created above, empty.
        Ok(BioQueue { q })
    }

    /// Appends `bio` (any context).
    pub(crate) fn push(&self, bio: Bio) {
        // SAFETY: the queue is live; the bio's ownership moves into it.
        unsafe { glue::dmthin_bioq_push(self.q, bio.into_raw().cast()) };
    }

    /// Takes every queued bio, oldest first.
    pub(crate) fn take(&self) -> BioChain {
        // SAFETY: the queue is live; the chain's bios are owned bios.
        BioChain {
            head: unsafe { glue::dmthin_bioq_take(self.q) }.cast(),
        }
    }
}

impl Drop for BioQueue {
    fn drop(&mut self) {
        // Anything left is failed rather than leaked.
        for bio in self.take() {
            bio.end(Status::IoErr);
        }
        // SAFETY: the queue is live and empty; freed once.
        unsafe { glue::dmthin_bioq_destroy(self.q) };
    }
}

/// Owned bios taken from a [`BioQueue`], linked through `bi_next`.
///
/// # Invariants
///
/// Every bio on the chain is owned by the chain.
pub(crate) struct BioChain {
    head: *mut bindings::bio,
}

impl Iterator for BioChain {
    type Item = Bio;
    fn next(&mut self) -> Option<Bio> {
        let bio = NonNull::new(self.head)?;
        // SAFETY: the chain owns `bio`; unlink it before handing it out.
        unsafe {
            self.head = (*bio.as_ptr()).bi_next;
            (*bio.as_ptr()).bi_next = core::ptr::null_mut();
        }
        // INVARIANT: unlinked, owned.
        Some(Bio { bio })
    }
}

impl Drop for BioChain {
    fn drop(&mut self) {
        for bio in self.by_ref() {
            bio.end(Status::IoErr);
        }
    }
}

/// An owned FIFO of bios linked through `bi_next` (no allocation).  Bios
/// still on it when it is dropped are failed with an I/O error.
///
/// # Invariants
///
/// `head..tail` is a `bi_next` chain of owned bios, `tail` its last one.
pub(crate) struct BioList {
    head: *mut bindings::bio,
    tail: *mut bindings::bio,
}

// SAFETY: the list owns its bios, which may be finished from any thread.
unsafe impl Send for BioList {}
// SAFETY: `&BioList` only reads the head pointer (`is_empty`).
unsafe impl Sync for BioList {}

impl Default for BioList {
    fn default() -> Self {
        Self::new()
    }
}

impl BioList {
    /// An empty list.
    pub(crate) const fn new() -> Self {
        BioList {
            head: core::ptr::null_mut(),
            tail: core::ptr::null_mut(),
        }
    }

    /// Whether the list is empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.head.is_null()
    }

    /// Appends `bio`.
    pub(crate) fn push(&mut self, bio: Bio) {
        let p = bio.into_raw();
        // SAFETY: `p` is an owned bio, now the list's; `tail` (if any) is
        // the list's last bio.
        unsafe {
            (*p).bi_next = core::ptr::null_mut();
            if self.tail.is_null() {
                self.head = p;
            } else {
                (*self.tail).bi_next = p;
            }
        }
        self.tail = p;
    }

    /// Takes the first bio.
    pub(crate) fn pop(&mut self) -> Option<Bio> {
        let bio = NonNull::new(self.head)?;
        // SAFETY: the list owns `bio`; unlink it before handing it out.
        unsafe {
            self.head = (*bio.as_ptr()).bi_next;
            (*bio.as_ptr()).bi_next = core::ptr::null_mut();
        }
        if self.head.is_null() {
            self.tail = core::ptr::null_mut();
        }
        // INVARIANT: unlinked, owned.
        Some(Bio { bio })
    }

    /// Ends every bio with `status`.
    pub(crate) fn fail(mut self, status: Status) {
        while let Some(bio) = self.pop() {
            bio.end(status);
        }
    }
}

impl Drop for BioList {
    fn drop(&mut self) {
        while let Some(bio) = self.pop() {
            bio.end(Status::IoErr);
        }
    }
}
