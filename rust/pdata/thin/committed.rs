//! Lookups on the *committed* metadata roots, without the transaction
//! state and without `&mut`, so that many readers can map blocks while one
//! writer (upstream: the pool worker) modifies the metadata: [`Roots`],
//! [`lookup_committed`], [`lookup_committed_details`], the [`CommitHook`]
//! through which [`PoolMetadata`] announces every commit, and
//! [`RootsCell`], a lock-free publication of the roots with a generation
//! counter that readers check.
//!
//! # Why a reader of committed roots is safe while the writer runs
//!
//! Let `R(k)` be the mapping and details roots written by commit `k`.
//! 1. No block reachable from `R(k)` is written in place during
//!    transaction `k+1`: the transaction manager writes in place only
//!    blocks created or shadowed in the current transaction (its shadow
//!    set, cleared at every commit); everything else is copied first
//!    (shadowing).  The superblock (block 0) is the only exception, and
//!    readers never read it.
//! 2. No block reachable from `R(k)` is *reallocated* during transaction
//!    `k+1`, even when the transaction frees it: both space maps allocate
//!    only blocks that are free now *and* free in the last committed state
//!    (`find_common_free_block` with the `old` state, in the metadata
//!    space map as in the data space map), and every block of `R(k)` —
//!    btree nodes, and the bitmaps and index of the space maps themselves —
//!    has a non-zero count in that committed state.
//! 3. So during transaction `k+1`, and during commit `k+1` itself (its
//!    allocations happen before the metadata space map makes the new state
//!    the committed one; after that only the superblock is written), the
//!    tree under `R(k)` is stable.  Data blocks behave the same: a data
//!    block freed in transaction `k+1` is not handed out again before
//!    commit `k+1`.
//! 4. After commit `k+1`, blocks reachable from `R(k)` but not from
//!    `R(k+1)` are free in the committed state and may be reused by the
//!    first allocation of transaction `k+2`.
//!
//! **The rule**: a lookup on `R(k)` gives the state of commit `k` if it
//! completes before the writer's first allocation after commit `k+1`.
//! [`PoolMetadata`] calls its [`CommitHook`] at the end of every commit
//! (before it returns, hence before any later allocation), so with a
//! [`RootsCell`] as hook a reader checks this with
//! [`RootsCell::is_current`] *after* its lookup: if the generation is
//! still the one its roots were published with, no commit finished, so no
//! block the lookup read had been reused.  Otherwise it must discard the
//! answer (whatever it is: a wrong mapping, a corruption error, not found)
//! and retry on the new roots ([`RootsCell::lookup`] does this).  This
//! is sound because every block access goes through the block manager's
//! locks: if the reader saw a block the writer rewrote after publishing
//! generation `k+1`, the publication happens-before the reader's check,
//! which therefore sees `k+1` or later.  A reader must never hold roots
//! across two commits without this check.
//!
//! The roots become unavailable ([`Error::WouldBlock`]) when a commit
//! fails or an abort fails (the committed state is then unknown until the
//! writer aborts successfully).  An abort republishes the roots it reopened
//! with a new generation.
//!
//! Readers hold one block lock at a time ([`btree::lookup()`]), so a
//! blocking reader that waits for a block the writer holds never holds a
//! block the writer waits for.
//!
//! [`PoolMetadata`]: super::metadata::PoolMetadata

use core::sync::atomic::{fence, AtomicU64, Ordering};

use super::block_time::unpack_block_time;
use super::device_details::{DeviceDetails, DEVICE_DETAILS_SIZE};
use crate::pdata::block_manager::BlockManager;
use crate::pdata::btree;
use crate::pdata::error::{Error, Result};
use crate::pdata::transaction_manager::Reader;

/// The roots written by a commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Roots {
    /// Root of the two-level mapping tree (device id, virtual block).
    pub mapping_root: u64,
    /// Root of the device details tree.
    pub details_root: u64,
}

/// Receives the committed roots from
/// [`PoolMetadata`](super::metadata::PoolMetadata): at open, after every
/// commit (before the commit call returns), and after an abort.  `None`
/// means there are no usable committed roots until the next call (a
/// commit or an abort failed).
///
/// It also runs the pre-commit step (upstream's `pre_commit_fn`): every
/// commit that writes anything, including the ones inside
/// `reserve_metadata_snap` and `close`, first calls
/// [`CommitHook::pre_commit`], and fails without touching the metadata if
/// that fails.  The kernel pool flushes the data device there, so no
/// mapping is ever durable before the data it points to.
pub trait CommitHook {
    /// Publishes `roots` (or withdraws them with `None`).
    fn publish(&self, roots: Option<Roots>);

    /// Runs before a commit writes anything (upstream: flush the data
    /// device).  An error aborts the commit with that error.
    fn pre_commit(&self) -> Result<()> {
        Ok(())
    }
}

/// No publication.
impl CommitHook for () {
    fn publish(&self, _roots: Option<Roots>) {}
}

impl<T: CommitHook + ?Sized> CommitHook for &T {
    fn publish(&self, roots: Option<Roots>) {
        (**self).publish(roots)
    }

    fn pre_commit(&self) -> Result<()> {
        (**self).pre_commit()
    }
}

/// Roots as published by a [`RootsCell`], with their generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Published {
    /// The roots.
    pub roots: Roots,
    /// Number of publications before this one (starts at 1 for the
    /// first one).
    pub generation: u64,
}

/// Looks up `vblock` of thin device `dev` in the tree under `roots`:
/// `(data block, time)`, or `None` when the device or the block is not
/// mapped.  `blocking == false` reads only cached blocks and answers
/// [`Error::WouldBlock`] on a miss (the kernel's map path).  See the
/// module documentation for when the answer can be trusted.
pub fn lookup_committed<B: BlockManager>(
    bm: &B,
    roots: &Roots,
    dev: u64,
    vblock: u64,
    blocking: bool,
) -> Result<Option<(u64, u32)>> {
    let r = if blocking {
        Reader::new(bm)
    } else {
        Reader::non_blocking(bm)
    };
    let mut v = [0u8; 8];
    match btree::lookup(&r, roots.mapping_root, &[dev, vblock], &mut v) {
        Ok(()) => Ok(Some(unpack_block_time(u64::from_le_bytes(v)))),
        Err(Error::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The details of thin device `dev` in the details tree under `roots`,
/// `None` if the device does not exist there.
pub fn lookup_committed_details<B: BlockManager>(
    bm: &B,
    roots: &Roots,
    dev: u64,
    blocking: bool,
) -> Result<Option<DeviceDetails>> {
    let r = if blocking {
        Reader::new(bm)
    } else {
        Reader::non_blocking(bm)
    };
    let mut v = [0u8; DEVICE_DETAILS_SIZE];
    match btree::lookup(&r, roots.details_root, &[dev], &mut v) {
        Ok(()) => Ok(Some(DeviceDetails::unpack(&v)?)),
        Err(Error::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

/// How often [`RootsCell::lookup`] retries after a concurrent commit
/// before giving up with [`Error::WouldBlock`].
pub const MAX_LOOKUP_RETRIES: u32 = 16;

/// Lock-free publication of the committed roots by one writer to any
/// number of readers (a sequence lock over atomics): the sequence number
/// is odd while a publication is in progress and twice the generation
/// otherwise.  Use it as the [`CommitHook`] of the pool metadata (only
/// one writer may publish).
pub struct RootsCell {
    seq: AtomicU64,
    mapping_root: AtomicU64,
    details_root: AtomicU64,
    valid: AtomicU64,
}

impl Default for RootsCell {
    fn default() -> Self {
        Self::new()
    }
}

impl RootsCell {
    /// A cell with nothing published yet (generation 0, no roots).
    pub const fn new() -> Self {
        RootsCell {
            seq: AtomicU64::new(0),
            mapping_root: AtomicU64::new(0),
            details_root: AtomicU64::new(0),
            valid: AtomicU64::new(0),
        }
    }

    /// Publishes `roots` (or withdraws them) as the next generation.
    /// Only one thread may publish.
    pub fn set(&self, roots: Option<Roots>) {
        let s = self.seq.load(Ordering::Relaxed);
        let s = s & !1;
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        let r = roots.unwrap_or_default();
        self.mapping_root.store(r.mapping_root, Ordering::Relaxed);
        self.details_root.store(r.details_root, Ordering::Relaxed);
        self.valid
            .store(u64::from(roots.is_some()), Ordering::Relaxed);
        self.seq.store(s.wrapping_add(2), Ordering::Release);
    }

    /// The current generation (number of publications so far).
    pub fn generation(&self) -> u64 {
        self.seq.load(Ordering::Acquire) >> 1
    }

    /// The published roots.  [`Error::WouldBlock`] if none are published
    /// or a publication kept racing with this read.
    pub fn load(&self) -> Result<Published> {
        for _ in 0..MAX_LOOKUP_RETRIES {
            let s1 = self.seq.load(Ordering::Acquire);
            if s1 & 1 != 0 {
                core::hint::spin_loop();
                continue;
            }
            let mapping_root = self.mapping_root.load(Ordering::Relaxed);
            let details_root = self.details_root.load(Ordering::Relaxed);
            let valid = self.valid.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            let s2 = self.seq.load(Ordering::Relaxed);
            if s1 != s2 {
                continue;
            }
            if valid == 0 {
                return Err(Error::WouldBlock);
            }
            return Ok(Published {
                roots: Roots {
                    mapping_root,
                    details_root,
                },
                generation: s1 >> 1,
            });
        }
        Err(Error::WouldBlock)
    }

    /// Whether `p` is still the latest publication.  Call it *after* a
    /// lookup on `p.roots`: if true, the lookup saw the state of that
    /// commit (see the module documentation).
    pub fn is_current(&self, p: &Published) -> bool {
        self.seq.load(Ordering::Acquire) == p.generation.wrapping_mul(2)
    }

    /// [`lookup_committed`] on the published roots, retried while commits
    /// race with it: the answer and the generation it is valid for.
    /// [`Error::WouldBlock`] on a cache miss when not `blocking`, when no
    /// roots are published, or after [`MAX_LOOKUP_RETRIES`] races.
    pub fn lookup<B: BlockManager>(
        &self,
        bm: &B,
        dev: u64,
        vblock: u64,
        blocking: bool,
    ) -> Result<(u64, Option<(u64, u32)>)> {
        for _ in 0..MAX_LOOKUP_RETRIES {
            let p = self.load()?;
            let r = lookup_committed(bm, &p.roots, dev, vblock, blocking);
            if self.is_current(&p) {
                return r.map(|m| (p.generation, m));
            }
        }
        Err(Error::WouldBlock)
    }
}

impl CommitHook for RootsCell {
    fn publish(&self, roots: Option<Roots>) {
        self.set(roots)
    }
}
