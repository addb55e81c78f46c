//! The block manager interface: locked access to 4 KiB metadata blocks
//! through a write-back cache, with validators that check a block on first
//! read and fill in its checksum and self pointer when it is written out.
//!
//! The kernel implements it over dm-bufio, the host over memory or a file
//! with fault injection.  Every method takes `&self`: an implementation is
//! shared, so lookups through one handle can run while a writer works
//! through another, and guards borrow the manager, not the caller, so a
//! btree spine can hold two of them while the transaction state is mutated.
//!
//! Rules every implementation keeps (upstream `dm-block-manager.c`):
//! - `read_lock` validates a block with the given validator when it enters
//!   the cache (or was last validated with another one) and fails with the
//!   validator's error otherwise;
//! - a write guard marks its block dirty when dropped; dirty blocks reach
//!   the device only on `flush` (or cache pressure), after the validator's
//!   `prepare` has set the checksum and self pointer;
//! - `write_lock_zero` hands out a zeroed buffer without reading and sets
//!   the block's validator;
//! - `read_try_lock` never waits for I/O: on a cache miss it answers
//!   [`Error::WouldBlock`] (the kernel's `map` path must not sleep on I/O);
//! - `flush` writes every dirty block, waits, then issues a device flush;
//! - in read-only mode write locks and `flush` fail with [`Error::ReadOnly`];
//! - a lock that conflicts with a guard already held on the same block (a
//!   write lock while any guard is held, a read lock while a write guard
//!   is held) fails with [`Error::Busy`] rather than handing out aliasing
//!   guards: valid metadata never does this, corrupt metadata can lead an
//!   operation to lock a block it already holds.  Conflicts between
//!   threads do not arise in the kernel: the pool takes its metadata
//!   semaphore for writing around every change and for reading around
//!   every lookup, so a block is never written by one thread while another
//!   reads it.  (The host's thread-safe `SyncBm`, which exists to test
//!   readers of the committed roots beside a writer without such a
//!   semaphore, waits instead; its readers never touch blocks the writer
//!   holds.)

use core::ops::{Deref, DerefMut};

use super::error::{Error, Result};

/// Size of a metadata block in bytes.
pub const BLOCK_SIZE: usize = 4096;

/// Size of a metadata block in 512-byte sectors.
pub const BLOCK_SECTORS: u32 = 8;

/// The contents of one metadata block.
pub type Block = [u8; BLOCK_SIZE];

/// How a block type is checked on read and sealed on write.
pub struct Validator {
    /// Name for log messages ("superblock", "btree_node", ...).
    pub name: &'static str,
    /// Checks a block read from `location`.
    pub check: fn(block: &Block, location: u64) -> Result<()>,
    /// Fills in the checksum and self pointer before the block written to
    /// `location` goes to the device.
    pub prepare: fn(block: &mut Block, location: u64),
    /// `Some(salt)` when `prepare` does exactly what [`seal_standard`]
    /// does with that salt (self pointer in bytes 8..16, then the crc32c
    /// of bytes 4.. XOR salt in bytes 0..4): a block manager may then
    /// store those two fields itself when the block goes to the device
    /// (the kernel's does, in dm-bufio's write callback, as upstream),
    /// instead of calling `prepare` at every write unlock.
    pub csum_salt: Option<u32>,
}

/// Offset of the self pointer of a block sealed by [`seal_standard`].
pub const SEAL_BLOCKNR_OFFSET: usize = 8;

/// The standard seal of upstream's block types: self pointer (LE) in
/// bytes 8..16, then the salted checksum (LE) in bytes 0..4.
pub fn seal_standard(block: &mut Block, location: u64, salt: u32) {
    block[SEAL_BLOCKNR_OFFSET..SEAL_BLOCKNR_OFFSET + 8].copy_from_slice(&location.to_le_bytes());
    let csum = super::checksum::block_checksum(block, salt);
    block[..4].copy_from_slice(&csum.to_le_bytes());
}

impl PartialEq for Validator {
    fn eq(&self, other: &Self) -> bool {
        core::ptr::eq(self, other)
    }
}

/// Locked, cached access to the blocks of a metadata device.
pub trait BlockManager {
    /// Shared access to a block; released on drop.
    type ReadGuard<'a>: Deref<Target = Block>
    where
        Self: 'a;
    /// Exclusive access to a block; marks it dirty and releases it on drop.
    type WriteGuard<'a>: DerefMut<Target = Block>
    where
        Self: 'a;

    /// Number of blocks on the device.
    fn nr_blocks(&self) -> u64;

    /// Locks `b` for reading, reading and validating it if needed.
    fn read_lock(&self, b: u64, v: &'static Validator) -> Result<Self::ReadGuard<'_>>;

    /// Like `read_lock` but never waits for I/O: a block that is not cached
    /// gives [`Error::WouldBlock`] (and may be prefetched).
    fn read_try_lock(&self, b: u64, v: &'static Validator) -> Result<Self::ReadGuard<'_>>;

    /// Locks `b` for writing, reading and validating it if needed.
    fn write_lock(&self, b: u64, v: &'static Validator) -> Result<Self::WriteGuard<'_>>;

    /// Locks `b` for writing with zeroed contents, without reading it.
    fn write_lock_zero(&self, b: u64, v: &'static Validator) -> Result<Self::WriteGuard<'_>>;

    /// Starts reading `b` into the cache without waiting.
    fn prefetch(&self, b: u64);

    /// Writes every dirty block, waits for them, then flushes the device.
    fn flush(&self) -> Result<()>;

    /// Whether write locks and flushes are refused.
    fn is_read_only(&self) -> bool;

    /// Switches read-only mode on or off.
    fn set_read_only(&self, read_only: bool);

    /// Forgets every cached block no guard holds, so the next lock reads
    /// the device (upstream replaces the whole block manager on abort).
    /// Dirty blocks may be dropped without being written: it is only
    /// called on abort, when no dirty block is reachable from the
    /// committed state.  Without it an abort after a failed commit would
    /// reread the uncommitted superblock from the cache.
    fn invalidate(&self);
}

/// Checks that `b` is inside a device of `nr_blocks` blocks.
pub fn check_location(b: u64, nr_blocks: u64) -> Result<()> {
    if b < nr_blocks {
        Ok(())
    } else {
        Err(Error::Corrupt(super::error::Corruption::OutOfRange))
    }
}

/// A shared reference to a block manager is a block manager, so a
/// [`PoolMetadata`](super::thin::metadata::PoolMetadata) can own `&B`
/// while other threads look blocks up through the same `&B` (the manager
/// must then be `Sync`).
impl<T: BlockManager + ?Sized> BlockManager for &T {
    type ReadGuard<'a>
        = T::ReadGuard<'a>
    where
        Self: 'a;
    type WriteGuard<'a>
        = T::WriteGuard<'a>
    where
        Self: 'a;

    fn nr_blocks(&self) -> u64 {
        (**self).nr_blocks()
    }

    fn read_lock(&self, b: u64, v: &'static Validator) -> Result<Self::ReadGuard<'_>> {
        (**self).read_lock(b, v)
    }

    fn read_try_lock(&self, b: u64, v: &'static Validator) -> Result<Self::ReadGuard<'_>> {
        (**self).read_try_lock(b, v)
    }

    fn write_lock(&self, b: u64, v: &'static Validator) -> Result<Self::WriteGuard<'_>> {
        (**self).write_lock(b, v)
    }

    fn write_lock_zero(&self, b: u64, v: &'static Validator) -> Result<Self::WriteGuard<'_>> {
        (**self).write_lock_zero(b, v)
    }

    fn prefetch(&self, b: u64) {
        (**self).prefetch(b)
    }

    fn flush(&self) -> Result<()> {
        (**self).flush()
    }

    fn is_read_only(&self) -> bool {
        (**self).is_read_only()
    }

    fn set_read_only(&self, read_only: bool) {
        (**self).set_read_only(read_only)
    }

    fn invalidate(&self) {
        (**self).invalidate()
    }
}
