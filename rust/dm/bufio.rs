// SPDX-License-Identifier: GPL-2.0

//! The kernel's block manager: [`BufioBm`] implements the persistent-data
//! [`BlockManager`] over a dm-bufio client on the metadata device, as
//! upstream's `dm-block-manager.c` does.
//!
//! Each bufio buffer carries one word of aux data: the validator the block
//! was last checked with.  A read lock validates a block when it is first
//! read or was last checked with another validator.  A write guard marks
//! the block dirty and releases it when dropped, recording its validator;
//! dm-bufio writes it out later, and its write callback seals it then
//! (self pointer and checksum: `block_manager::seal_standard` with the
//! validator's salt), as upstream's `dm_block_manager_write_callback`
//! does: one crc32c per block written, not one per write unlock (a btree
//! operation unlocks the same node many times per transaction).  A
//! validator without a salt is sealed by its `prepare` at unlock.  A block
//! is validated only after its block lock is taken, so a reader never
//! checks a buffer a writer is changing.  `read_try_lock` uses `dm_bufio_get`, which never sleeps on
//! I/O: a miss answers [`Error::WouldBlock`] without a prefetch (it runs
//! inside `map`, where dm-bufio refuses to start I/O; the pool's worker
//! retries the bio with a blocking read).
//!
//! The client is thread safe.  Each buffer also carries a lock state
//! (readers or one writer): valid metadata never makes guards conflict
//! (one writer; readers only of blocks the writer does not modify), but
//! corrupt metadata can point an operation at a block it already holds,
//! and then the second lock answers `Error::Busy` instead of aliasing.

use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU64, Ordering};

use kernel::bindings;
use kernel::error::from_err_ptr;

use super::bdev::Bdev;
use crate::pdata::block_manager::{
    Block, BlockManager, Validator, BLOCK_SIZE, SEAL_BLOCKNR_OFFSET,
};
use crate::pdata::error::{Error, Result};

/// Buffers dm-bufio keeps reserved for us (upstream:
/// `THIN_MAX_CONCURRENT_LOCKS`).
const RESERVED_BUFFERS: u32 = 6;

/// Per-buffer aux data.
#[repr(C)]
struct Aux {
    /// The validator the block was last checked or sealed with, or NULL.
    validator: AtomicPtr<Validator>,
    /// Lock state of the block: the number of read guards, or
    /// [`WRITE_LOCKED`].  A conflicting lock (corrupt metadata can make an
    /// operation lock a block it already holds) answers `Error::Busy`
    /// instead of handing out aliasing guards, as upstream's debug block
    /// manager refuses recursive locks.
    lock: AtomicI32,
}

/// `Aux::lock` value of a write-locked block.
const WRITE_LOCKED: i32 = -1;

/// A dm-bufio client over a metadata device.
///
/// # Invariants
///
/// `client` is a live client created with `size_of::<Aux>()` bytes of
/// aux data initialised by [`alloc_callback`], destroyed only on drop.
pub(crate) struct BufioBm {
    client: *mut bindings::dm_bufio_client,
    /// Blocks the client may address (grows with the device: upstream's
    /// block manager asks dm-bufio for the device size every time).
    nr_blocks: AtomicU64,
    read_only: AtomicBool,
    /// The metadata device, held open for the client's lifetime (dropped
    /// after the client, which `Drop` destroys first).
    _dev: Bdev,
}

// SAFETY: dm-bufio clients are safe to use from any thread; the other
// fields are immutable or atomic.
unsafe impl Send for BufioBm {}
// SAFETY: as above: every method goes through the thread-safe client.
unsafe impl Sync for BufioBm {}

/// Initialises a new buffer's aux data.
///
/// # Safety
///
/// Called by dm-bufio with a valid buffer whose aux area is
/// `size_of::<Aux>()` bytes.
unsafe extern "C" fn alloc_callback(b: *mut bindings::dm_buffer) {
    // SAFETY: the client was created with room for one `Aux`, suitably
    // aligned (bufio places aux data after the pointer-aligned buffer
    // header).
    unsafe {
        bindings::dm_bufio_get_aux_data(b).cast::<Aux>().write(Aux {
            validator: AtomicPtr::new(core::ptr::null_mut()),
            lock: AtomicI32::new(0),
        })
    };
}

/// dm-bufio's write callback: seals a block just before it goes to the
/// device (self pointer, then the salted crc32c), for validators with a
/// salt (the others were sealed by `prepare` at unlock).
///
/// # Safety
///
/// Called by dm-bufio with a valid buffer of this client, whose aux area
/// was set up by `alloc_callback`.
unsafe extern "C" fn write_callback(b: *mut bindings::dm_buffer) {
    // SAFETY: valid buffer with our aux data (caller).
    let v = unsafe { BufioBm::aux(b) }.validator.load(Ordering::Acquire);
    // SAFETY: a non-null validator pointer comes from a `&'static
    // Validator` (stored by a guard).
    let Some(salt) = (unsafe { v.as_ref() }).and_then(|v| v.csum_salt) else {
        return;
    };
    // SAFETY: valid buffer (caller).
    let (data, location) = unsafe {
        (
            bindings::dm_bufio_get_block_data(b).cast::<u8>(),
            bindings::dm_bufio_get_block_number(b),
        )
    };
    // Only the seal fields (bytes 0..4 and 8..16) are written, through
    // raw pointers: no reference to the block is made here.  Guard holders
    // never read those fields (only a validator's `check` does, when a
    // block is read with another validator than it was sealed with:
    // corrupt metadata, refused either way).  A writer changing the block
    // meanwhile makes this copy's checksum stale, but its unlock marks the
    // buffer dirty again, so the block is written again, sealed, before
    // any commit depends on it (upstream's callback runs under the same
    // terms).
    // SAFETY: `data` is the buffer's 4 KiB block (valid while dm-bufio
    // writes it); the offsets written and read stay inside it.
    unsafe {
        data.add(SEAL_BLOCKNR_OFFSET)
            .cast::<[u8; 8]>()
            .write_unaligned(location.to_le_bytes());
        let csum = bindings::crc32c(!0, data.add(4).cast(), (BLOCK_SIZE - 4) as _) ^ salt;
        data.cast::<[u8; 4]>().write_unaligned(csum.to_le_bytes());
    }
}

fn io_error(e: kernel::error::Error) -> Error {
    if e.to_errno() == -(bindings::ENOMEM as i32) {
        Error::NoMem
    } else {
        Error::Io
    }
}

impl BufioBm {
    /// Size of the metadata device now, in sectors.
    pub(crate) fn dev_sectors(&self) -> u64 {
        self._dev.nr_sectors()
    }

    /// Lets the client address `n` blocks (the device grew); never
    /// shrinks.
    pub(crate) fn grow_to(&self, n: u64) {
        self.nr_blocks.fetch_max(n, Ordering::AcqRel);
    }

    /// A client over `dev` seeing `nr_blocks` 4 KiB blocks; it owns the
    /// open device, which therefore stays open as long as the client.
    pub(crate) fn new(dev: Bdev, nr_blocks: u64) -> Result<Self> {
        // SAFETY: `dev` is an open block device kept open by the client;
        // the callbacks match the aux size given.
        let client = unsafe {
            bindings::dm_bufio_client_create(
                dev.as_ptr(),
                BLOCK_SIZE as u32,
                RESERVED_BUFFERS,
                core::mem::size_of::<Aux>() as u32,
                Some(alloc_callback),
                Some(write_callback),
                0,
            )
        };
        let client = from_err_ptr(client).map_err(io_error)?;
        // INVARIANT: the client was just created with our aux layout.
        Ok(BufioBm {
            client,
            nr_blocks: AtomicU64::new(nr_blocks),
            read_only: AtomicBool::new(false),
            _dev: dev,
        })
    }

    /// The aux data of a buffer.
    ///
    /// # Safety
    ///
    /// `b` must be a buffer of this client, held by the caller for as long
    /// as the returned reference is used.
    unsafe fn aux<'b>(b: *mut bindings::dm_buffer) -> &'b Aux {
        // SAFETY: every buffer of our client has an initialised `Aux`
        // (alloc_callback) that lives as long as the buffer, which the
        // caller holds.
        unsafe { &*bindings::dm_bufio_get_aux_data(b).cast::<Aux>() }
    }

    /// Validates a buffer the caller holds and has block-locked (so no
    /// writer can be changing it) with `v` unless it already was; on
    /// failure drops the block lock (`write`: exclusive) and releases it.
    fn validate(
        &self,
        buf: *mut bindings::dm_buffer,
        data: *mut Block,
        b: u64,
        v: &'static Validator,
        write: bool,
    ) -> Result<()> {
        // SAFETY: `buf` is ours and held.
        let aux = unsafe { Self::aux(buf) };
        let vp = core::ptr::from_ref(v).cast_mut();
        if aux.validator.load(Ordering::Acquire) == vp {
            return Ok(());
        }
        // SAFETY: `data` is the 4 KiB data of the held buffer.
        let r = (v.check)(unsafe { &*data }, b);
        match r {
            Ok(()) => {
                aux.validator.store(vp, Ordering::Release);
                Ok(())
            }
            Err(e) => {
                crate::dm::log::print_line(
                    crate::dm::log::Level::Err,
                    format_args!(
                        "block manager: {} validator check failed for block {b}",
                        v.name
                    ),
                );
                // SAFETY: we hold `buf` and its block lock, given back once.
                unsafe {
                    Self::drop_lock(buf, write);
                    bindings::dm_bufio_release(buf);
                }
                Err(e)
            }
        }
    }

    /// Takes the block lock of a held buffer (`write`: exclusive); on a
    /// conflict releases the buffer and answers `Busy`.
    fn take_lock(buf: *mut bindings::dm_buffer, write: bool, b: u64) -> Result<()> {
        // SAFETY: the caller holds `buf`.
        let aux = unsafe { Self::aux(buf) };
        let ok = if write {
            aux.lock
                .compare_exchange(0, WRITE_LOCKED, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        } else {
            aux.lock
                .fetch_update(Ordering::Acquire, Ordering::Relaxed, |n| {
                    (n >= 0).then(|| n.saturating_add(1))
                })
                .is_ok()
        };
        if ok {
            return Ok(());
        }
        crate::dm::log::print_line(
            crate::dm::log::Level::Err,
            format_args!("block manager: recursive acquisition of block {b} requested."),
        );
        // SAFETY: we hold `buf` and give it back once.
        unsafe { bindings::dm_bufio_release(buf) };
        Err(Error::Busy)
    }

    /// Drops the block lock taken by `take_lock`.
    ///
    /// # Safety
    ///
    /// `buf` must be held, with a lock of this kind taken by the caller.
    unsafe fn drop_lock(buf: *mut bindings::dm_buffer, write: bool) {
        // SAFETY: `buf` is held (caller's guarantee).
        let aux = unsafe { Self::aux(buf) };
        if write {
            aux.lock.store(0, Ordering::Release);
        } else {
            aux.lock.fetch_sub(1, Ordering::Release);
        }
    }

    /// Reads block `b` (waiting for I/O), takes its block lock (`write`:
    /// exclusive) and then validates it with `v`; on success the caller
    /// holds the returned buffer, locked.
    fn read_validated(
        &self,
        b: u64,
        v: &'static Validator,
        write: bool,
    ) -> Result<(*mut bindings::dm_buffer, *mut Block)> {
        self.check_range(b)?;
        let mut buf = core::ptr::null_mut();
        // SAFETY: the client is live; `buf` is a valid out pointer.
        let data = unsafe { bindings::dm_bufio_read(self.client, b, &mut buf) };
        let data = from_err_ptr(data).map_err(io_error)?.cast::<Block>();
        Self::take_lock(buf, write, b)?;
        self.validate(buf, data, b, v, write)?;
        Ok((buf, data))
    }

    fn check_range(&self, b: u64) -> Result<()> {
        crate::pdata::block_manager::check_location(b, self.nr_blocks())
    }
}

impl Drop for BufioBm {
    fn drop(&mut self) {
        // SAFETY: the client is live and no guard outlives `self` (guards
        // borrow it); destroyed once.
        unsafe { bindings::dm_bufio_client_destroy(self.client) };
    }
}

/// A read-locked block.
///
/// # Invariants
///
/// `buf` is held (one reference from `dm_bufio_read`/`get`), `data` is its
/// 4 KiB data, released on drop.
pub(crate) struct BufioRead<'a> {
    buf: *mut bindings::dm_buffer,
    data: *const Block,
    _bm: PhantomData<&'a ()>,
}

impl Deref for BufioRead<'_> {
    type Target = Block;
    fn deref(&self) -> &Block {
        // SAFETY: the buffer is held (type invariant); nobody writes a block
        // that is read-locked (persistent-data locking rules).
        unsafe { &*self.data }
    }
}

impl Drop for BufioRead<'_> {
    fn drop(&mut self) {
        // SAFETY: we hold one reference and a read lock (type invariant),
        // both given back once.
        unsafe {
            BufioBm::drop_lock(self.buf, false);
            bindings::dm_bufio_release(self.buf);
        }
    }
}

/// A write-locked block: sealed, marked dirty and released on drop.
///
/// # Invariants
///
/// As [`BufioRead`], and no other guard accesses the block meanwhile.
pub(crate) struct BufioWrite<'a> {
    buf: *mut bindings::dm_buffer,
    data: *mut Block,
    location: u64,
    validator: &'static Validator,
    _bm: PhantomData<&'a ()>,
}

impl Deref for BufioWrite<'_> {
    type Target = Block;
    fn deref(&self) -> &Block {
        // SAFETY: held and exclusively ours (type invariant).
        unsafe { &*self.data }
    }
}

impl DerefMut for BufioWrite<'_> {
    fn deref_mut(&mut self) -> &mut Block {
        // SAFETY: held and exclusively ours (type invariant).
        unsafe { &mut *self.data }
    }
}

impl Drop for BufioWrite<'_> {
    fn drop(&mut self) {
        if self.validator.csum_salt.is_none() {
            // SAFETY: held and exclusively ours (type invariant).
            (self.validator.prepare)(unsafe { &mut *self.data }, self.location);
        }
        // SAFETY: the buffer is held until the release below.
        unsafe { BufioBm::aux(self.buf) }.validator.store(
            core::ptr::from_ref(self.validator).cast_mut(),
            Ordering::Release,
        );
        // SAFETY: we hold one reference and the write lock: marked dirty,
        // unlocked, then released once.
        unsafe {
            bindings::dm_bufio_mark_buffer_dirty(self.buf);
            BufioBm::drop_lock(self.buf, true);
            bindings::dm_bufio_release(self.buf);
        }
    }
}

impl BlockManager for BufioBm {
    type ReadGuard<'a>
        = BufioRead<'a>
    where
        Self: 'a;
    type WriteGuard<'a>
        = BufioWrite<'a>
    where
        Self: 'a;

    fn nr_blocks(&self) -> u64 {
        self.nr_blocks.load(Ordering::Acquire)
    }

    fn read_lock(&self, b: u64, v: &'static Validator) -> Result<BufioRead<'_>> {
        let (buf, data) = self.read_validated(b, v, false)?;
        // INVARIANT: `read_validated` succeeded: we hold `buf`, read-locked.
        Ok(BufioRead {
            buf,
            data,
            _bm: PhantomData,
        })
    }

    fn read_try_lock(&self, b: u64, v: &'static Validator) -> Result<BufioRead<'_>> {
        self.check_range(b)?;
        let mut buf = core::ptr::null_mut();
        // SAFETY: the client is live; `dm_bufio_get` never waits for I/O.
        let data = unsafe { bindings::dm_bufio_get(self.client, b, &mut buf) };
        let data = from_err_ptr(data).map_err(io_error)?;
        if data.is_null() {
            // No prefetch here: this runs inside `map`, where dm-bufio
            // refuses to issue I/O (`dm_bufio_in_request`, with a warning).
            // The pool's worker reads the block when it retries the bio.
            return Err(Error::WouldBlock);
        }
        let data = data.cast::<Block>();
        Self::take_lock(buf, false, b)?;
        self.validate(buf, data, b, v, false)?;
        // INVARIANT: `dm_bufio_get` found the block: we hold `buf`,
        // read-locked.
        Ok(BufioRead {
            buf,
            data,
            _bm: PhantomData,
        })
    }

    fn write_lock(&self, b: u64, v: &'static Validator) -> Result<BufioWrite<'_>> {
        if self.is_read_only() {
            return Err(Error::ReadOnly);
        }
        let (buf, data) = self.read_validated(b, v, true)?;
        // INVARIANT: we hold `buf`, write-locked.
        Ok(BufioWrite {
            buf,
            data,
            location: b,
            validator: v,
            _bm: PhantomData,
        })
    }

    fn write_lock_zero(&self, b: u64, v: &'static Validator) -> Result<BufioWrite<'_>> {
        if self.is_read_only() {
            return Err(Error::ReadOnly);
        }
        self.check_range(b)?;
        let mut buf = core::ptr::null_mut();
        // SAFETY: the client is live; `dm_bufio_new` gets the buffer
        // without reading it.
        let data = unsafe { bindings::dm_bufio_new(self.client, b, &mut buf) };
        let data = from_err_ptr(data).map_err(io_error)?.cast::<Block>();
        Self::take_lock(buf, true, b)?;
        // SAFETY: we hold the buffer, write-locked; its data is 4 KiB.
        unsafe { core::ptr::write_bytes(data, 0, 1) };
        // SAFETY: we hold `buf`.
        unsafe { Self::aux(buf) }
            .validator
            .store(core::ptr::from_ref(v).cast_mut(), Ordering::Release);
        // INVARIANT: we hold `buf`, write-locked.
        Ok(BufioWrite {
            buf,
            data,
            location: b,
            validator: v,
            _bm: PhantomData,
        })
    }

    fn prefetch(&self, b: u64) {
        if b < self.nr_blocks() {
            // SAFETY: the client is live; prefetch only queues reads.
            unsafe { bindings::dm_bufio_prefetch(self.client, b, 1) };
        }
    }

    fn flush(&self) -> Result<()> {
        if self.is_read_only() {
            return Err(Error::ReadOnly);
        }
        // SAFETY: the client is live.  Writes every dirty buffer, waits,
        // then issues a flush to the device.
        let r = unsafe { bindings::dm_bufio_write_dirty_buffers(self.client) };
        if r < 0 {
            Err(io_error(kernel::error::Error::from_errno(r)))
        } else {
            Ok(())
        }
    }

    fn is_read_only(&self) -> bool {
        self.read_only.load(Ordering::Relaxed)
    }

    fn set_read_only(&self, read_only: bool) {
        self.read_only.store(read_only, Ordering::Relaxed)
    }

    /// `dm_bufio_forget_buffers` over the whole device: drops every clean
    /// buffer nobody holds (a buffer whose write failed is clean), so the
    /// abort rereads the superblock from the device.  Dirty buffers stay
    /// and are written later: on abort they are unreferenced shadows.
    fn invalidate(&self) {
        // SAFETY: the client is live; forgetting is only a hint to bufio.
        unsafe { bindings::dm_bufio_forget_buffers(self.client, 0, self.nr_blocks()) };
    }
}
