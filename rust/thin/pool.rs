// SPDX-License-Identifier: GPL-2.0

//! The pool object (upstream's `struct pool`): the metadata, the data
//! device, the worker and the pool mode, shared by the pool table that
//! created it, later reloads of that table, and every thin bound to it.
//!
//! # Ownership
//!
//! A [`Pool`] lives in an `Arc` registered in the global pool table
//! ([`registry`](super::registry)); tables and thins hold it through a
//! [`PoolRef`](super::registry::PoolRef), and the last `PoolRef` to go
//! removes it from the table and drops it.  Only table constructors and
//! destructors (process context, never the worker) hold `PoolRef`s, so the
//! pool is never dropped from its own worker.  The pool opens its own
//! references to the metadata and data devices ([`Bdev`]), so it does not
//! depend on the `dm_dev`s of whichever table is loaded.
//!
//! # Locks, in the order they are taken
//!
//! 1. `ws` (worker state: in-flight provisions, bios waiting for a commit,
//!    bios waiting for space): the worker, and `postsuspend` through the
//!    worker's drain;
//! 2. `meta` (the metadata and the open thin devices): written by the
//!    worker, messages, table hooks; try-read in `map`;
//! 3. `bound` (the bound pool target and its table's features);
//! 4. `jobs_done` (finished kcopyd jobs), a leaf; `requeue_ids` (thins
//!    in a noflush suspend), a leaf, never held while taking `ws`.
//!
//! `active` (the active thin tables) is taken alone, by table hooks only,
//! and never held while a thin is suspended or resumed (the pool takes
//! counted references on the thins' devices and releases the lock first).
//!
//! The hot flags (mode, suspended, features the worker consults) are
//! atomics.
//!
//! # Data path
//!
//! `map` (in [`thin_target`](super::thin_target)) remaps bios to mapped,
//! unshared blocks itself, looking them up in the *current* transaction
//! under a try-read of `meta` with cache-only metadata reads; it defers
//! everything else (unmapped writes, flush/FUA bios, cache misses, lock
//! contention, every bio to a shared block) to the worker.  The worker
//! provisions a block by allocating it, zeroing it with writes of the zero
//! page (unless `skip_block_zeroing`) or, to break sharing, copying the
//! shared block into it with dm-kcopyd, and only then inserting the mapping and issuing the bios that
//! waited for it; a write covering the whole block goes straight to the
//! new block instead.  A second bio for a block being provisioned waits
//! for the first.  Reads of shared blocks are counted in a
//! [`DeferredSet`]: a mapping that breaks sharing is inserted only after
//! every shared read issued before the copy began has finished (upstream's
//! `shared_read_ds`), so that once the other device owns the old block
//! alone and writes it in place, no read through this device can still
//! return that data.  Discards run in the worker too: the whole blocks a
//! discard covers are unmapped at once, their data blocks hold an extra
//! reference until every bio remapped to them before has finished
//! (`all_io`, upstream's `all_io_ds`) and the blocks no device uses any
//! more were discarded on the data device (passdown).  Flush/FUA bios to a thin that changed in this transaction wait
//! for a commit (data device flushed first by the metadata's pre-commit
//! step).  A worker tick every second commits a changed pool.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use kernel::alloc::{
    flags::{GFP_KERNEL, GFP_NOIO},
    KBox, KVVec,
};
use kernel::prelude::*;
use kernel::sync::Arc;

use crate::dm::bdev::{padded_write, zero_out, zero_ranges, Bdev, IoJob};
use crate::dm::bio::{
    Bio, BioInfo, BioList, BioQueue, EndIoBio, HookSlot, HookedCompletion, Op, Status,
};
use crate::dm::bufio::BufioBm;
use crate::dm::dev::MappedDevice;
use crate::dm::dset::DeferredSet;
use crate::dm::kcopyd::Kcopyd;
use crate::dm::log::{self, Level};
use crate::dm::sync::{sleep_us, LockClass, RwSem, WriteGuard};
use crate::dm::target::{MdDisk, MdRef, TargetHandle};
use crate::dm::worker::{Worker, WorkerOps};
use crate::env::Vec;
use crate::pdata::block_manager::{BlockManager, BLOCK_SECTORS};
use crate::pdata::error::{Error as PdError, Result as PdResult};
use crate::pdata::thin::committed::{CommitHook, Roots};
use crate::pdata::thin::metadata::{OpenOptions, PoolMetadata, ThinDevice};
use crate::thin::map_cache::{CachedMapping, MapCache, Slot};
pub(crate) use crate::thin::mode::PoolMode;
use crate::thin::mode::{self, Unserviceable};
use crate::thin::table::{PoolFeatures, RequestedMode};

/// The most metadata sectors a pool uses (`THIN_METADATA_MAX_SECTORS`):
/// 255 bitmaps of 16320 blocks of 8 sectors.
pub(crate) const THIN_METADATA_MAX_SECTORS: u64 = 255 * ((1 << 14) - 64) * 8;

/// The longest a group commit waits for provisions in flight, in ns.
const GROUP_COMMIT_MAX_NS: u64 = 10_000_000;

/// Commit period of the worker's waker (`COMMIT_PERIOD`), in ms.
const COMMIT_PERIOD_MS: u32 = 1000;

/// Btree nodes of a deleted thin's mapping tree released per hold of the
/// metadata lock (a leaf holds up to 126 mappings); other thins' I/O gets
/// the lock between steps.
const DELETE_STEP_NODES: usize = 16;

/// The pool's metadata with the data-device flush as its pre-commit step.
pub(crate) type Pmd = PoolMetadata<BufioBm, DataFlush>;

/// The metadata's commit hook: flushes the data device before every
/// commit (upstream's `metadata_pre_commit_callback`), so no mapping is
/// durable before the data it points to.
pub(crate) struct DataFlush {
    data: Arc<Bdev>,
}

impl CommitHook for DataFlush {
    fn publish(&self, _roots: Option<Roots>) {}

    fn pre_commit(&self) -> PdResult<()> {
        self.data.flush().map_err(|_| PdError::Io)
    }
}

/// A thin device some thin table has open, with the number of thin
/// tables that hold it (a table swap opens the same id twice).
struct OpenThin {
    td: ThinDevice,
    users: u32,
}

/// The metadata and the open thin devices, behind `Pool::meta`.
pub(crate) struct MetaState {
    /// The metadata object.
    pub(crate) pmd: Pmd,
    thins: Vec<OpenThin>,
}

impl MetaState {
    /// Maps `vblock` of thin device `dev_id` to `block` (upstream
    /// `dm_thin_insert_block`).
    fn insert(&mut self, dev_id: u64, vblock: u64, block: u64) -> PdResult<()> {
        let MetaState { pmd, thins } = self;
        match thins.iter().find(|t| t.td.id() == dev_id) {
            Some(t) => pmd.insert(&t.td, vblock, block),
            None => Err(PdError::NotFound),
        }
    }

    /// The open handle of thin device `id`.
    pub(crate) fn thin(&self, id: u64) -> Option<&ThinDevice> {
        self.thins.iter().find(|t| t.td.id() == id).map(|t| &t.td)
    }
}

/// Slots of a pool's mapping cache: 8192 (256 KiB) cover the blocks of a
/// 512 MiB thin at 64 KiB without a collision.
const MAP_CACHE_SLOTS: usize = 8192;

/// The mapping cache's slots, or none if the memory cannot be had (the
/// cache is only a shortcut).
fn new_map_cache() -> Option<MapCache<KVVec<Slot>>> {
    let mut v = KVVec::with_capacity(MAP_CACHE_SLOTS, GFP_KERNEL).ok()?;
    for _ in 0..MAP_CACHE_SLOTS {
        v.push(Slot::new(), GFP_KERNEL).ok()?;
    }
    MapCache::new(v)
}

/// The bound pool target (upstream `pool->ti` and the features bound from
/// its table at preresume).
struct Bound {
    ti: Option<TargetHandle>,
    /// Features of the bound table (discard words, no-space policy).
    features: PoolFeatures,
    /// The table's requested no-space policy (restored on entering write
    /// mode).
    requested_error_if_no_space: bool,
    /// The bound table's length in sectors.
    len: u64,
}

/// A block being provisioned (upstream `dm_thin_new_mapping` and its
/// virtual cell): zeroing, copying or a whole-block write is in flight;
/// bios for the same virtual block wait here until the mapping is
/// inserted.
struct Provision {
    id: u64,
    dev_id: u64,
    vblock: u64,
    data_block: u64,
    waiters: BioList,
    /// When breaking sharing: the shared-read generation that must have
    /// finished before the mapping changes.
    quiesce: Option<u64>,
    /// Preparing I/O still running: copy, zeroing or padded-write jobs,
    /// and a whole-block write that went straight to the new block.
    jobs_left: u32,
    /// No preparing job failed so far.
    jobs_ok: bool,
    /// The preparing I/O finished: whether it succeeded.
    prepared: Option<bool>,
    /// The write whose data went straight to the new block (a whole-block
    /// write back from its I/O, or a partial one whose data a padded
    /// write carries), ended after the insert.
    overwrite: Option<Bio>,
    /// The new block is being zeroed with WRITE_ZEROES around these
    /// sectors (offset in the block, count; `(0, 0)`: all of it), which
    /// the bio writes itself: if that fails, the zeroing is done again
    /// with zero pages.
    zero_hole: Option<(u64, u64)>,
}

/// The worker's own state.
struct WorkerState {
    provisions: Vec<Provision>,
    next_id: u64,
    /// Bios waiting for the next commit.
    flush_waiters: BioList,
    /// Whole-block writes whose I/O is done, waiting for the next commit
    /// to be completed (FUA to a changed thin).
    completion_waiters: BioList,
    /// Bios waiting for data space (out-of-data-space, queue mode).
    retry: BioList,
    /// Discards in progress.
    discards: Vec<DiscardOp>,
    /// Discards waiting for provisions or discards of their range.
    discard_waiters: BioList,
    /// Group commit: since when (ns, monotonic; 0: not) a commit that
    /// bios wait for is held back for provisions in flight.
    commit_held_since: u64,
    /// How long the last commit took (ns): the longest such a hold lasts.
    last_commit_cost: u64,
}

/// A discard of a thin's virtual block range in progress (upstream's
/// discard mappings, and the virtual cell of the discard bio).  Its
/// mappings are removed at once; the data blocks they pointed to keep an
/// extra reference until the I/O issued to them before has finished and
/// the passdown is done, so they cannot be reused meanwhile.
struct DiscardOp {
    id: u64,
    dev_id: u64,
    begin: u64,
    end: u64,
    bio: Option<Bio>,
    /// The unmapped runs: [first data block, blocks, maybe shared (0/1)].
    runs: Vec<[u64; 3]>,
    /// A metadata operation failed: the bio ends with an error.
    failed: bool,
    /// The `all_io` generation to wait for.
    quiesce: Option<u64>,
    /// `Some(None)`: the passdown is in flight; `Some(Some(ok))`: done.
    passdown: Option<Option<bool>>,
}

/// An active thin table: the thin's mapped device, internally suspended
/// while the pool is suspended.
struct ActiveThin {
    key: usize,
    md: MdRef,
}

/// [`ThinBio::counted`]: the bio is a read of a shared block, counted in
/// `shared_reads` (generation `shared_gen`).
const COUNTED_SHARED_READ: u64 = 1;
/// [`ThinBio::counted`]: the bio was remapped to a data block and is
/// counted in `all_io` (generation `all_io_gen`).
const COUNTED_ALL_IO: u64 = 2;

/// A thin's external origin (upstream `tc->origin_dev`, `origin_size`):
/// a read-only device that supplies the data of unprovisioned blocks.
/// Owned by the thin table (boxed: bios point to it while in flight, and
/// a table outlives its bios).
pub(crate) struct Origin {
    /// The origin device, held open by the thin table.
    pub(crate) bdev: Bdev,
    /// Its size in sectors, read at every thin preresume.
    pub(crate) sectors: AtomicU64,
}

/// The source device of a copy.
#[derive(Clone, Copy)]
enum CopyFrom<'a> {
    /// The pool device (a shared data block).
    Pool,
    /// An external origin.
    Origin(&'a Bdev),
}

/// Where a new block's first contents come from.
#[derive(Clone, Copy)]
enum Source {
    /// Nothing: zeroed (unless `skip_block_zeroing`).
    Fresh,
    /// A data block shared with another device (breaking sharing).
    Shared(u64),
    /// The thin's external origin.
    External(*const Origin),
}

/// The per-bio data of a thin bio: which thin device it is for, the
/// deferred sets counting it until its `end_io`, and the completion hook
/// of a whole-block write to a new block.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct ThinBio {
    /// The thin device id.
    pub(crate) dev_id: u64,
    /// The thin table's external origin, or null.
    origin: *const Origin,
    /// `COUNTED_*` bits.
    counted: u64,
    shared_gen: u64,
    all_io_gen: u64,
    /// The provision a hooked whole-block write belongs to.
    provision: u64,
    /// The completion hook of a whole-block write.
    hook: HookSlot,
}

impl ThinBio {
    /// The per-bio data `map` writes first.
    pub(crate) const fn new(dev_id: u64, origin: *const Origin) -> Self {
        ThinBio {
            dev_id,
            origin,
            counted: 0,
            shared_gen: 0,
            all_io_gen: 0,
            provision: 0,
            hook: HookSlot::new(),
        }
    }
}

// The hook slot is accessed in place: keep the layout 8-byte aligned.
const _: () = assert!(core::mem::size_of::<ThinBio>() % 8 == 0);

/// Size of [`ThinBio`], the thin target's per-io data size.
pub(crate) const THIN_BIO_SIZE: usize = core::mem::size_of::<ThinBio>();

/// The pool object.  Field order matters for drop: the kcopyd client is
/// destroyed first (it waits for every kcopyd job, whose completion
/// touches the pool and kicks the worker), then the worker (drains it).
pub(crate) struct Pool {
    kcopyd: Kcopyd,
    worker: Worker<Pool>,
    /// Identity: the pool's mapped device.
    md: MdRef,
    /// The pool device itself: blocks are zeroed and copied through it,
    /// as upstream does.  Zeroing uses plain writes of the zero page,
    /// never WRITE_ZEROES (which the pool device passes on when the data
    /// device advertises it, for thins' WRITE_ZEROES): a data device that
    /// advertises WRITE_ZEROES but fails it cannot break provisioning.
    pool_dev: MdDisk,
    /// Identity: the metadata device number.
    pub(crate) metadata_dev: u32,
    /// The data device.
    pub(crate) data: Arc<Bdev>,
    /// Data block size in sectors.
    pub(crate) block_size: u32,
    block_shift: Option<u32>,
    /// Metadata and open thins.
    pub(crate) meta: RwSem<MetaState>,
    /// Recent lookups of `map`, valid while `meta`'s write generation is
    /// unchanged (none if its memory could not be had: `map` then always
    /// takes `meta`).
    pub(crate) map_cache: Option<MapCache<KVVec<Slot>>>,
    ws: RwSem<WorkerState>,
    bound: RwSem<Bound>,
    /// Finished kcopyd jobs (zeroing, copying): provision id, success.
    jobs_done: RwSem<Vec<(u64, bool)>>,
    /// Kcopyd jobs issued and not yet drained from `jobs_done`.
    jobs_outstanding: AtomicU64,
    /// Reads of shared blocks in flight (upstream `shared_read_ds`).
    shared_reads: DeferredSet,
    /// Provisions waiting for shared reads to finish (a finished shared
    /// read wakes the worker only when some are).
    quiescing: AtomicU64,
    /// Bios remapped to data blocks, in flight (upstream `all_io_ds`),
    /// counted while discards are enabled.
    all_io: DeferredSet,
    /// Discards waiting for `all_io` (as `quiescing`).
    discards_quiescing: AtomicU64,
    /// The bound table's `discard_enabled` (fixed after the first bind).
    discard_enabled: AtomicBool,
    /// The bound table's adjusted `discard_passdown`.
    discard_passdown: AtomicBool,
    /// Thin bios deferred from `map`.
    pub(crate) deferred: BioQueue,
    /// Whole-block writes to new blocks whose I/O finished.
    overwrites_done: BioQueue,
    /// Active thin tables (upstream `active_thins`).
    active: RwSem<Vec<ActiveThin>>,
    /// Thin devices being suspended with noflush: their bios that wait
    /// for space go back to dm core instead (upstream `requeue_mode`).
    requeue_ids: RwSem<Vec<u64>>,
    mode: AtomicU8,
    suspended: AtomicBool,
    /// When the worker last committed (ns, `CLOCK_MONOTONIC`; upstream
    /// `last_commit_jiffies`, which only the worker's commits and pool
    /// creation set).
    last_commit_ns: AtomicU64,
    requeue_retry: AtomicBool,
    /// When bios waiting for data space start to fail (ns, monotonic; 0:
    /// never), from the `no_space_timeout` parameter (upstream's
    /// `no_space_timeout` delayed work; checked at every worker run, the
    /// waker runs it every second).
    no_space_deadline_ns: AtomicU64,
    low_water_triggered: AtomicBool,
    low_water_blocks: AtomicU64,
    zero_new_blocks: AtomicBool,
    /// New blocks are zeroed with REQ_OP_WRITE_ZEROES on the data device
    /// where it offers that (beyond upstream, which writes zero pages);
    /// cleared for good the first time such a zeroing fails, which is
    /// then done again with zero pages.
    zero_with_write_zeroes: AtomicBool,
    error_if_no_space: AtomicBool,
    /// Key of the pool target the pool was last bound to.
    bound_key: AtomicU64,
}

/// Why a thin table could not be registered with its pool.
pub(crate) enum ThinBindError {
    /// The pool is suspended (or was never resumed).
    Suspended,
    /// Out of memory.
    NoMem,
}

/// Why a pool could not be created: the constructor's message and errno.
pub(crate) struct CreateError {
    pub(crate) msg: &'static core::ffi::CStr,
    pub(crate) err: kernel::error::Error,
}

/// -EOPNOTSUPP (not among the kernel crate's named codes in 6.12).
pub(crate) fn eopnotsupp() -> kernel::error::Error {
    kernel::error::Error::from_errno(-(kernel::bindings::EOPNOTSUPP as i32))
}

/// Monotonic time in ns.
fn now_ns() -> u64 {
    u64::try_from(kernel::time::Ktime::ktime_get().to_ns()).unwrap_or(0)
}

fn pd_err(e: PdError) -> kernel::error::Error {
    kernel::error::Error::from_errno(-e.errno())
}

impl Pool {
    /// Upstream `pool_create`: opens the metadata (formatting a blank
    /// device unless `read_only`), the data device, kcopyd and the worker.
    pub(crate) fn create(
        md: MdRef,
        metadata_dev: u32,
        data_dev: u32,
        block_size: u32,
        read_only: bool,
    ) -> Result<Arc<Pool>, CreateError> {
        let fail = |msg, err| CreateError { msg, err };
        let meta_bdev = Bdev::open(metadata_dev)
            .map_err(|e| fail(c"Error opening metadata block device", e))?;
        let data = Bdev::open(data_dev).map_err(|e| fail(c"Error getting data device", e))?;
        let data = Arc::new(data, GFP_KERNEL)
            .map_err(|_| fail(c"Error allocating memory for pool", ENOMEM))?;
        let meta_ro = meta_bdev.read_only();
        let nr_blocks =
            meta_bdev.nr_sectors().min(THIN_METADATA_MAX_SECTORS) / u64::from(BLOCK_SECTORS);
        let bm = BufioBm::new(meta_bdev, nr_blocks).map_err(|e| {
            log::print(
                Level::Err,
                c"thin metadata",
                format_args!("could not create block manager"),
            );
            fail(c"Error creating metadata object", pd_err(e))
        })?;
        let opts = OpenOptions {
            data_block_size: block_size,
            format: !read_only,
            read_only: meta_ro,
        };
        let hook = DataFlush { data: data.clone() };
        let pmd = PoolMetadata::open_with_hook(bm, opts, hook)
            .map_err(|e| fail(c"Error creating metadata object", pd_err(e)))?;
        let kcopyd = Kcopyd::new().map_err(|e| fail(c"Error creating pool's kcopyd client", e))?;
        let worker = Worker::new(c"dm-thin-rs", COMMIT_PERIOD_MS)
            .map_err(|e| fail(c"Error creating pool's workqueue", e))?;
        let alloc_fail = |_| fail(c"Error allocating memory for pool", ENOMEM);
        let pool = Pool {
            kcopyd,
            worker,
            pool_dev: md.disk(),
            md,
            metadata_dev,
            data,
            block_size,
            block_shift: block_size
                .is_power_of_two()
                .then(|| block_size.trailing_zeros()),
            meta: RwSem::new(
                MetaState {
                    pmd,
                    thins: Vec::new(),
                },
                LockClass::Metadata,
            )
            .map_err(alloc_fail)?,
            ws: RwSem::new(
                WorkerState {
                    provisions: Vec::new(),
                    next_id: 0,
                    flush_waiters: BioList::new(),
                    completion_waiters: BioList::new(),
                    retry: BioList::new(),
                    discards: Vec::new(),
                    discard_waiters: BioList::new(),
                    commit_held_since: 0,
                    last_commit_cost: 0,
                },
                LockClass::WorkerState,
            )
            .map_err(alloc_fail)?,
            bound: RwSem::new(
                Bound {
                    ti: None,
                    features: PoolFeatures::default(),
                    requested_error_if_no_space: false,
                    len: 0,
                },
                LockClass::Bound,
            )
            .map_err(alloc_fail)?,
            jobs_done: RwSem::new(Vec::new(), LockClass::JobsDone).map_err(alloc_fail)?,
            jobs_outstanding: AtomicU64::new(0),
            map_cache: new_map_cache(),
            shared_reads: DeferredSet::new().map_err(alloc_fail)?,
            quiescing: AtomicU64::new(0),
            all_io: DeferredSet::new().map_err(alloc_fail)?,
            discards_quiescing: AtomicU64::new(0),
            discard_enabled: AtomicBool::new(true),
            discard_passdown: AtomicBool::new(true),
            deferred: BioQueue::new().map_err(alloc_fail)?,
            overwrites_done: BioQueue::new().map_err(alloc_fail)?,
            active: RwSem::new(Vec::new(), LockClass::ActiveThins).map_err(alloc_fail)?,
            requeue_ids: RwSem::new(Vec::new(), LockClass::RequeueIds).map_err(alloc_fail)?,
            mode: AtomicU8::new(PoolMode::Write as u8),
            suspended: AtomicBool::new(true),
            last_commit_ns: AtomicU64::new(now_ns()),
            requeue_retry: AtomicBool::new(false),
            no_space_deadline_ns: AtomicU64::new(0),
            low_water_triggered: AtomicBool::new(false),
            low_water_blocks: AtomicU64::new(0),
            zero_new_blocks: AtomicBool::new(true),
            zero_with_write_zeroes: AtomicBool::new(true),
            error_if_no_space: AtomicBool::new(false),
            bound_key: AtomicU64::new(0),
        };
        let pool = Arc::new(pool, GFP_KERNEL).map_err(|_| alloc_fail(ENOMEM))?;
        let ptr: *const Pool = &*pool;
        // SAFETY: the pool is in an `Arc`, so it does not move, and the
        // worker is a field of the pool, dropped (and thereby drained and
        // destroyed) before the pool's memory is freed.
        unsafe { pool.worker.bind(ptr) };
        Ok(pool)
    }

    /// Identity of the pool's mapped device.
    pub(crate) fn md_key(&self) -> usize {
        self.md.key()
    }

    /// The pool's device name, for log lines.
    pub(crate) fn name(&self) -> crate::dm::target::DeviceName {
        self.md.name()
    }

    /// The current mode.
    pub(crate) fn mode(&self) -> PoolMode {
        PoolMode::from_u8(self.mode.load(Ordering::Acquire))
    }

    /// Whether the pool is suspended (or never resumed).
    pub(crate) fn is_suspended(&self) -> bool {
        self.suspended.load(Ordering::Acquire)
    }

    /// Whether discards were enabled when the pool was created/bound.
    pub(crate) fn discard_enabled(&self) -> bool {
        self.discard_enabled.load(Ordering::Acquire)
    }

    /// The data block of `sector` and the offset in it.
    pub(crate) fn block_of(&self, sector: u64) -> (u64, u64) {
        match self.block_shift {
            Some(s) => (
                sector.checked_shr(s).unwrap_or(0),
                sector & 1u64.checked_shl(s).unwrap_or(0).wrapping_sub(1),
            ),
            None => {
                // The block size is never 0 (table validation); checked
                // anyway so that no panic path exists.
                let bs = u64::from(self.block_size);
                (
                    sector.checked_div(bs).unwrap_or(0),
                    sector.checked_rem(bs).unwrap_or(0),
                )
            }
        }
    }

    /// The sector on the data device of `offset` in data block `block`.
    pub(crate) fn data_sector(&self, block: u64, offset: u64) -> u64 {
        block
            .saturating_mul(u64::from(self.block_size))
            .saturating_add(offset)
    }

    /// Length of the bound pool table in sectors (0 if unbound).
    pub(crate) fn bound_len(&self) -> u64 {
        self.bound.read().len
    }

    /// Hands a deferred thin bio to the worker.
    pub(crate) fn defer(&self, bio: Bio) {
        self.deferred.push(bio);
        self.worker.kick();
    }

    //--------------------------------------------------------------------
    // Thin devices.

    /// Opens thin device `id` for a thin table (`dm_pool_open_thin_device`).
    pub(crate) fn open_thin(&self, id: u64) -> Result<(), PdError> {
        let mut meta = self.meta.write();
        if let Some(t) = meta.thins.iter_mut().find(|t| t.td.id() == id) {
            t.users = t.users.saturating_add(1);
            return Ok(());
        }
        meta.thins.try_reserve(1)?;
        let td = meta.pmd.open_thin(id)?;
        meta.thins.try_push(OpenThin { td, users: 1 })
    }

    /// Closes thin device `id` for a thin table.
    pub(crate) fn close_thin(&self, id: u64) {
        let mut meta = self.meta.write();
        let Some(i) = meta.thins.iter().position(|t| t.td.id() == id) else {
            return;
        };
        let last = match meta.thins.get_mut(i) {
            Some(t) => {
                t.users = t.users.saturating_sub(1);
                t.users == 0
            }
            None => false,
        };
        if last {
            if let Some(t) = meta.thins.remove(i) {
                meta.pmd.close_thin(t.td);
            }
        }
    }

    //--------------------------------------------------------------------
    // Modes and failures.

    fn event(&self) {
        if let Some(ti) = self.bound.read().ti {
            ti.event();
        }
    }

    /// Upstream `set_pool_mode` (with `meta` write-locked).
    fn set_mode(&self, meta: &mut MetaState, mut new: PoolMode) {
        let old = self.mode();
        if new == PoolMode::Write && meta.pmd.needs_check() {
            log::print(
                Level::Err,
                c"thin",
                format_args!(
                    "{}: unable to switch pool to write mode until repaired.",
                    self.name()
                ),
            );
            new = if old != new { old } else { PoolMode::ReadOnly };
        }
        if old == PoolMode::Fail {
            new = old;
        }
        match new {
            PoolMode::Fail | PoolMode::OutOfMetadataSpace | PoolMode::ReadOnly => {
                meta.pmd.set_read_only();
            }
            PoolMode::OutOfDataSpace => {}
            PoolMode::Write => {
                let requested = self.bound.read().requested_error_if_no_space;
                self.error_if_no_space.store(requested, Ordering::Release);
                meta.pmd.set_read_write();
            }
        }
        self.mode.store(new as u8, Ordering::Release);
        if new != PoolMode::OutOfDataSpace {
            self.no_space_deadline_ns.store(0, Ordering::Release);
        } else if old != new && !self.error_if_no_space.load(Ordering::Acquire) {
            let secs = crate::dm::params::no_space_timeout_secs();
            if secs > 0 {
                let at = now_ns().saturating_add(u64::from(secs) * 1_000_000_000);
                self.no_space_deadline_ns.store(at, Ordering::Release);
            }
        }
        if new >= PoolMode::OutOfMetadataSpace {
            self.requeue_retry.store(false, Ordering::Release);
            // Bios waiting for space fail now (upstream
            // `error_retry_list`); the worker does it on its next run.
            self.worker.kick();
        }
        if old != new {
            self.event();
            let extra = match new {
                PoolMode::OutOfDataSpace if self.error_if_no_space.load(Ordering::Acquire) => {
                    " (error IO)"
                }
                PoolMode::OutOfDataSpace => " (queue IO)",
                _ => "",
            };
            log::print(
                Level::Info,
                c"thin",
                format_args!(
                    "{}: switching pool to {}{} mode",
                    self.name(),
                    new.description(),
                    extra
                ),
            );
        }
    }

    /// `meta` for work that changes no mapping `map` may have cached, or
    /// only inserts (finished provisions: an unshared mapping never
    /// changes within a write generation, so the cached ones stay true;
    /// removals, snapshots and deletes take `meta.write()`, which retires
    /// them): the worker's provisions, commits and the freeing of
    /// unmapped blocks.  An abort starts a new generation itself.
    fn meta_write_keeping_cache(&self) -> WriteGuard<'_, MetaState> {
        self.meta.write_keeping_generation()
    }

    /// Records in the mapping cache that `vblock` of thin `dev_id` now
    /// maps to the new, unshared data block `block` (with `meta` held for
    /// writing), so that `map` finds it without the btree.
    fn cache_new_mapping(&self, dev_id: u64, vblock: u64, block: u64) {
        if let Some(cache) = &self.map_cache {
            let m = CachedMapping {
                block,
                shared: false,
            };
            cache.put(dev_id, vblock, self.meta.generation(), m);
        }
    }

    /// Upstream `abort_transaction`.
    fn abort_transaction(&self, meta: &mut MetaState) {
        // Mappings made since the last commit go: no cached one survives.
        self.meta.bump_generation();
        log::print(
            Level::Err,
            c"thin",
            format_args!("{}: aborting current metadata transaction", self.name()),
        );
        if meta.pmd.abort().is_err() {
            log::print(
                Level::Err,
                c"thin",
                format_args!("{}: failed to abort metadata transaction", self.name()),
            );
            self.set_mode(meta, PoolMode::Fail);
        }
        if meta.pmd.set_needs_check().is_err() {
            log::print(
                Level::Err,
                c"thin",
                format_args!(
                    "{}: failed to set 'needs_check' flag in metadata",
                    self.name()
                ),
            );
            self.set_mode(meta, PoolMode::Fail);
        }
    }

    /// Upstream `metadata_operation_failed`.
    fn metadata_operation_failed(&self, meta: &mut MetaState, op: &str, e: PdError) {
        log::print(
            Level::Err,
            c"thin",
            format_args!(
                "{}: metadata operation '{}' failed: error = {}",
                self.name(),
                op,
                -e.errno()
            ),
        );
        self.abort_transaction(meta);
        self.set_mode(meta, PoolMode::ReadOnly);
    }

    /// Upstream `commit`: refused in read-only and fail modes; a failure
    /// aborts and goes read-only; success re-checks the space.
    pub(crate) fn commit(&self, meta: &mut MetaState) -> Result<(), PdError> {
        if self.mode() >= PoolMode::OutOfMetadataSpace {
            return Err(PdError::Invalid);
        }
        let r = meta.pmd.commit();
        self.metadata_low_check(meta);
        if let Err(e) = r {
            self.metadata_operation_failed(meta, "dm_pool_commit_metadata", e);
            return Err(e);
        }
        self.check_for_metadata_space(meta);
        self.check_for_data_space(meta);
        Ok(())
    }

    fn check_for_metadata_space(&self, meta: &mut MetaState) {
        let reason = match meta.pmd.free_metadata_blocks() {
            Err(_) => Some("Could not get free metadata blocks"),
            Ok(0) => Some("No free metadata blocks"),
            Ok(_) => None,
        };
        if let Some(reason) = reason {
            if self.mode() < PoolMode::OutOfMetadataSpace {
                log::print(Level::Err, c"thin", format_args!("{reason}"));
                self.set_mode(meta, PoolMode::OutOfMetadataSpace);
            }
        }
    }

    fn check_for_data_space(&self, meta: &mut MetaState) {
        if self.mode() != PoolMode::OutOfDataSpace {
            return;
        }
        if let Ok(free) = meta.pmd.free_data_blocks() {
            if free > 0 {
                self.set_mode(meta, PoolMode::Write);
                self.requeue_retry.store(true, Ordering::Release);
                self.worker.kick();
            }
        }
    }

    fn check_low_water_mark(&self, free: u64) {
        if free <= self.low_water_blocks.load(Ordering::Acquire)
            && !self.low_water_triggered.swap(true, Ordering::AcqRel)
        {
            dm_warn!(
                "{}: reached low water mark for data device: sending event.",
                self.name()
            );
            self.event();
        }
    }

    /// Registers the metadata low water mark of a pool table being
    /// constructed (upstream `pool_ctr` calls
    /// `dm_pool_register_metadata_threshold` at every table load).
    pub(crate) fn set_metadata_threshold(&self, threshold: u64) -> Result<(), PdError> {
        self.meta.write().pmd.set_metadata_threshold(threshold)
    }

    /// Upstream `metadata_low_callback`.  Upstream's metadata space map
    /// calls it from inside the allocation that takes the free count to
    /// the threshold or below; ours records that in the space map, and the
    /// pool calls this right after each metadata operation that can
    /// allocate (messages, inserts, removals, data space map changes,
    /// resizes, commits) to log the warning and raise the event.
    pub(crate) fn metadata_low_check(&self, meta: &mut MetaState) {
        if meta.pmd.take_metadata_threshold_event() {
            dm_warn!(
                "{}: reached low water mark for metadata device: sending event.",
                self.name()
            );
            self.event();
        }
    }

    /// Upstream `alloc_data_block`.
    fn alloc_data_block(&self, meta: &mut MetaState) -> Result<u64, PdError> {
        if self.mode() != PoolMode::Write {
            return Err(PdError::Invalid);
        }
        let mut free = match meta.pmd.free_data_blocks() {
            Ok(f) => f,
            Err(e) => {
                self.metadata_operation_failed(meta, "dm_pool_get_free_block_count", e);
                return Err(e);
            }
        };
        self.check_low_water_mark(free);
        if free == 0 {
            self.commit(meta)?;
            free = match meta.pmd.free_data_blocks() {
                Ok(f) => f,
                Err(e) => {
                    self.metadata_operation_failed(meta, "dm_pool_get_free_block_count", e);
                    return Err(e);
                }
            };
            if free == 0 {
                self.set_mode(meta, PoolMode::OutOfDataSpace);
                return Err(PdError::NoSpace);
            }
        }
        let b = meta.pmd.alloc_data_block();
        self.metadata_low_check(meta);
        let b = match b {
            Ok(b) => b,
            Err(PdError::NoSpace) => {
                self.set_mode(meta, PoolMode::OutOfDataSpace);
                return Err(PdError::NoSpace);
            }
            Err(e) => {
                self.metadata_operation_failed(meta, "dm_pool_alloc_data_block", e);
                return Err(e);
            }
        };
        match meta.pmd.free_metadata_blocks() {
            Ok(0) => self.commit(meta)?,
            Ok(_) => {}
            Err(e) => {
                self.metadata_operation_failed(meta, "dm_pool_get_free_metadata_block_count", e);
                return Err(e);
            }
        }
        Ok(b)
    }

    //--------------------------------------------------------------------
    // Table hooks.

    /// Upstream `bind_control_target` + the resizes of `pool_preresume`:
    /// binds the pool to the table being resumed, applies its features and
    /// mode, grows the data space map to the table's length, and commits
    /// if it grew.
    pub(crate) fn preresume(
        &self,
        ti: TargetHandle,
        features: &PoolFeatures,
        requested: &PoolFeatures,
        low_water_blocks: u64,
        len: u64,
    ) -> Result {
        let mut meta = self.meta.write();
        let old = self.mode();
        let same_table = self.bound_key.swap(ti.key() as u64, Ordering::AcqRel) == ti.key() as u64;
        let new = if same_table {
            old
        } else {
            match features.mode {
                RequestedMode::Write => PoolMode::Write,
                RequestedMode::ReadOnly => PoolMode::ReadOnly,
            }
        };
        {
            let mut b = self.bound.write();
            b.ti = Some(ti);
            b.features = *features;
            b.requested_error_if_no_space = requested.error_if_no_space;
            b.len = len;
        }
        self.zero_new_blocks
            .store(features.zero_new_blocks, Ordering::Release);
        self.discard_enabled
            .store(features.discard_enabled, Ordering::Release);
        self.discard_passdown
            .store(features.discard_passdown, Ordering::Release);
        self.error_if_no_space
            .store(features.error_if_no_space, Ordering::Release);
        self.low_water_blocks
            .store(low_water_blocks, Ordering::Release);
        self.set_mode(&mut meta, new);
        let r = self
            .maybe_resize_data_dev(&mut meta, len)
            .and_then(|c1| self.maybe_resize_metadata_dev(&mut meta).map(|c2| c1 || c2));
        match r {
            Ok(true) => {
                let _ = self.commit(&mut meta);
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(_) if self.mode() == PoolMode::Fail => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Upstream `maybe_resize_metadata_dev`: grows the metadata space map
    /// to the metadata device's size (capped); true if it changed.
    fn maybe_resize_metadata_dev(&self, meta: &mut MetaState) -> Result<bool> {
        let dev_blocks =
            meta.pmd.bm().dev_sectors().min(THIN_METADATA_MAX_SECTORS) / u64::from(BLOCK_SECTORS);
        let sb_blocks = match meta.pmd.metadata_dev_size() {
            Ok(s) => s,
            Err(e) => {
                log::print(
                    Level::Err,
                    c"thin",
                    format_args!("{}: failed to retrieve metadata device size", self.name()),
                );
                return Err(pd_err(e));
            }
        };
        if dev_blocks < sb_blocks {
            log::print(
                Level::Err,
                c"thin",
                format_args!(
                    "{}: metadata device ({} blocks) too small: expected {}",
                    self.name(),
                    dev_blocks,
                    sb_blocks
                ),
            );
            return Err(EINVAL);
        }
        if dev_blocks == sb_blocks {
            return Ok(false);
        }
        if meta.pmd.needs_check() {
            log::print(
                Level::Err,
                c"thin",
                format_args!(
                    "{}: unable to grow the metadata device until repaired.",
                    self.name()
                ),
            );
            return Ok(false);
        }
        log::print(
            Level::Info,
            c"thin",
            format_args!(
                "{}: growing the metadata device from {} to {} blocks",
                self.name(),
                sb_blocks,
                dev_blocks
            ),
        );
        if self.mode() == PoolMode::OutOfMetadataSpace {
            self.set_mode(meta, PoolMode::Write);
        }
        meta.pmd.bm().grow_to(dev_blocks);
        let r = meta.pmd.resize_metadata_dev(dev_blocks);
        self.metadata_low_check(meta);
        if let Err(e) = r {
            self.metadata_operation_failed(meta, "dm_pool_resize_metadata_dev", e);
            return Err(pd_err(e));
        }
        Ok(true)
    }

    /// Upstream `maybe_resize_data_dev`; `Ok(true)` if it grew.
    fn maybe_resize_data_dev(&self, meta: &mut MetaState, len: u64) -> Result<bool> {
        let data_size = len / u64::from(self.block_size);
        let sb_size = match meta.pmd.data_dev_size() {
            Ok(s) => s,
            Err(e) => {
                log::print(
                    Level::Err,
                    c"thin",
                    format_args!("{}: failed to retrieve data device size", self.name()),
                );
                return Err(pd_err(e));
            }
        };
        if data_size < sb_size {
            log::print(
                Level::Err,
                c"thin",
                format_args!(
                    "{}: pool target ({} blocks) too small: expected {}",
                    self.name(),
                    data_size,
                    sb_size
                ),
            );
            return Err(EINVAL);
        }
        if data_size == sb_size {
            return Ok(false);
        }
        if meta.pmd.needs_check() {
            log::print(
                Level::Err,
                c"thin",
                format_args!(
                    "{}: unable to grow the data device until repaired.",
                    self.name()
                ),
            );
            return Ok(false);
        }
        if sb_size > 0 {
            log::print(
                Level::Info,
                c"thin",
                format_args!(
                    "{}: growing the data device from {} to {} blocks",
                    self.name(),
                    sb_size,
                    data_size
                ),
            );
        }
        let r = meta.pmd.resize_data_dev(data_size);
        self.metadata_low_check(meta);
        if let Err(e) = r {
            self.metadata_operation_failed(meta, "dm_pool_resize_data_dev", e);
            return Err(pd_err(e));
        }
        Ok(true)
    }

    /// Upstream `pool_resume`: requeue bios waiting for space, clear the
    /// low-water trigger and the suspended flag, run the worker and start
    /// the waker.
    pub(crate) fn resume(&self) {
        self.requeue_retry.store(true, Ordering::Release);
        self.resume_active_thins();
        self.low_water_triggered.store(false, Ordering::Release);
        self.suspended.store(false, Ordering::Release);
        self.worker.kick();
        self.worker.start_waker();
    }

    /// Upstream `pool_presuspend`: thin tables can no longer bind, and
    /// every active thin is suspended (noflush) so no I/O reaches the pool
    /// while it is suspended.
    pub(crate) fn presuspend(&self) {
        let thins = {
            let active = self.active.read();
            self.suspended.store(true, Ordering::Release);
            self.hold_active(&active)
        };
        for md in thins.iter() {
            md.internal_suspend_noflush();
        }
    }

    /// Counted references on the active thins' devices, so they can be
    /// suspended or resumed without holding `active` (dm takes their
    /// suspend locks; upstream walks the list under RCU with a reference
    /// on each thin for the same reason).
    fn hold_active(&self, active: &Vec<ActiveThin>) -> Vec<MappedDevice> {
        let mut held = Vec::new();
        for t in active.iter() {
            if let Some(md) = t.md.hold() {
                if held.try_push(md).is_err() {
                    log::print(
                        Level::Err,
                        c"thin",
                        format_args!("{}: cannot allocate the list of active thins", self.name()),
                    );
                    break;
                }
            }
        }
        held
    }

    /// Upstream `pool_presuspend_undo`.
    pub(crate) fn presuspend_undo(&self) {
        self.resume_active_thins();
        self.suspended.store(false, Ordering::Release);
    }

    fn resume_active_thins(&self) {
        if !self.is_suspended() {
            return;
        }
        let thins = self.hold_active(&self.active.read());
        for md in thins.iter() {
            md.internal_resume();
        }
    }

    /// Registers an active thin table (upstream: added to `active_thins`
    /// in `thin_ctr`); refused while the pool is suspended.
    pub(crate) fn add_active_thin(&self, key: usize, md: MdRef) -> Result<(), ThinBindError> {
        let mut active = self.active.write();
        if self.is_suspended() {
            return Err(ThinBindError::Suspended);
        }
        active
            .try_push(ActiveThin { key, md })
            .map_err(|_| ThinBindError::NoMem)
    }

    /// Unregisters an active thin table (`thin_dtr`).
    pub(crate) fn remove_active_thin(&self, key: usize) {
        let mut active = self.active.write();
        if let Some(i) = active.iter().position(|t| t.key == key) {
            active.remove(i);
        }
    }

    /// A thin device starts a noflush suspend: its bios waiting for space
    /// go back to dm core (`BLK_STS_DM_REQUEUE`), and so will later ones
    /// (upstream `do_noflush_start`).
    pub(crate) fn start_requeue(&self, dev_id: u64) {
        {
            let mut ids = self.requeue_ids.write();
            if !ids.iter().any(|&i| i == dev_id) && ids.try_push(dev_id).is_err() {
                return;
            }
        }
        let mut ws = self.ws.write();
        let mut retry = core::mem::replace(&mut ws.retry, BioList::new());
        while let Some(bio) = retry.pop() {
            if Self::dev_of(&bio) == dev_id {
                bio.end(Status::Requeue);
            } else {
                ws.retry.push(bio);
            }
        }
    }

    /// The noflush suspend of a thin device ended (`do_noflush_stop`).
    pub(crate) fn stop_requeue(&self, dev_id: u64) {
        let mut ids = self.requeue_ids.write();
        if let Some(i) = ids.iter().position(|&i| i == dev_id) {
            ids.remove(i);
        }
    }

    fn dev_of(bio: &Bio) -> u64 {
        // SAFETY: every bio on the pool's queues was deferred by the thin
        // target's `map`, which wrote a `ThinBio` into per-bio data of
        // `THIN_BIO_SIZE` bytes (the thin's `per_io_data_size`).
        unsafe { bio.per_bio::<ThinBio>() }.dev_id
    }

    /// The external origin of the thin table `bio` came through.
    fn origin_of(bio: &Bio) -> *const Origin {
        // SAFETY: as in `dev_of`.
        unsafe { bio.per_bio::<ThinBio>() }.origin
    }

    /// Upstream `process_cell`'s read of an unprovisioned block of a thin
    /// with an external origin: from the origin as far as it reaches,
    /// zeros beyond.
    fn read_origin(&self, mut bio: Bio, origin: &Origin) {
        let size = origin.sectors.load(Ordering::Acquire);
        let start = bio.sector();
        let end = start.saturating_add(u64::from(bio.size()) >> 9);
        if end <= size {
            let dev = &origin.bdev;
            bio.remap(dev, start);
            bio.submit();
        } else if start < size {
            bio.zero_fill();
            // `size - start` sectors fit in the bio's u32 byte count.
            bio.set_size(u32::try_from((size - start) << 9).unwrap_or(0));
            bio.remap(&origin.bdev, start);
            bio.submit();
        } else {
            bio.zero_fill_and_end();
        }
    }

    /// Upstream `pool_postsuspend`: stop the waker, drain the worker,
    /// commit.
    pub(crate) fn postsuspend(&self) {
        self.no_space_deadline_ns.store(0, Ordering::Release);
        self.worker.stop_waker();
        self.worker.drain();
        let mut meta = self.meta.write();
        let _ = self.commit(&mut meta);
    }

    /// Unbinds `ti` if the pool is bound to it (its table is going away).
    pub(crate) fn unbind(&self, ti: TargetHandle) {
        let mut b = self.bound.write();
        if b.ti.is_some_and(|t| t.key() == ti.key()) {
            b.ti = None;
        }
    }

    /// Upstream `do_no_space_timeout`: out of data space for longer than
    /// `no_space_timeout`, the pool stops queueing: waiting bios fail with
    /// -ENOSPC, and so do later ones.
    fn check_no_space_timeout(&self, ws: &mut WorkerState) {
        let at = self.no_space_deadline_ns.load(Ordering::Acquire);
        if at == 0 || now_ns() < at {
            return;
        }
        self.no_space_deadline_ns.store(0, Ordering::Release);
        if self.mode() != PoolMode::OutOfDataSpace || self.error_if_no_space.load(Ordering::Acquire)
        {
            return;
        }
        self.error_if_no_space.store(true, Ordering::Release);
        self.event();
        log::print(
            Level::Info,
            c"thin",
            format_args!(
                "{}: switching pool to {} (error IO) mode",
                self.name(),
                PoolMode::OutOfDataSpace.description()
            ),
        );
        let retry = core::mem::replace(&mut ws.retry, BioList::new());
        retry.fail(Status::NoSpace);
    }

    /// The effective features of the bound table (status words).
    pub(crate) fn bound_features(&self) -> PoolFeatures {
        let mut f = self.bound.read().features;
        f.error_if_no_space = self.error_if_no_space.load(Ordering::Acquire);
        f
    }

    //--------------------------------------------------------------------
    // The worker.

    /// Upstream `should_error_unserviceable_bio` + `handle_unserviceable_bio`.
    fn unserviceable(&self, ws: &mut WorkerState, bio: Bio) {
        let m = self.mode();
        match mode::unserviceable(m, self.error_if_no_space.load(Ordering::Acquire)) {
            Unserviceable::Queue => {
                let dev_id = Self::dev_of(&bio);
                if self.requeue_ids.read().iter().any(|&i| i == dev_id) {
                    bio.end(Status::Requeue);
                } else {
                    ws.retry.push(bio);
                }
            }
            Unserviceable::NoSpace => bio.end(Status::NoSpace),
            Unserviceable::IoError => {
                if m == PoolMode::Write {
                    log::print(
                        Level::Err,
                        c"thin",
                        format_args!("bio unserviceable, yet pool is in PM_WRITE mode"),
                    );
                }
                bio.end(Status::IoErr);
            }
        }
    }

    /// Sends a remapped bio on, or holds it for the next commit if it is a
    /// flush/FUA bio to a thin that changed in this transaction (upstream
    /// `issue`).
    fn issue(&self, ws: &mut WorkerState, meta: &MetaState, td: &ThinDevice, bio: Bio) {
        if !(bio.is_flush_or_fua() && meta.pmd.thin_changed(td)) {
            bio.submit();
            return;
        }
        if meta.pmd.thin_aborted_changes(td) {
            bio.end(Status::IoErr);
            return;
        }
        ws.flush_waiters.push(bio);
    }

    fn remap(&self, bio: &mut Bio, block: u64) {
        let (_, offset) = self.block_of(bio.sector());
        self.count_io(bio);
        bio.remap(&self.data, self.data_sector(block, offset));
    }

    /// Counts a thin bio being remapped to a data block in `all_io` until
    /// its `end_io` (once per bio), while discards are enabled.  Called
    /// with `meta` held (by `map`, or by the worker), so a discard that
    /// unmaps the block after it waits for it.
    pub(crate) fn count_io<B: BioInfo>(&self, bio: &B) {
        if !self.discard_enabled.load(Ordering::Acquire) {
            return;
        }
        // SAFETY: a thin bio's per-bio data is a `ThinBio` (`THIN_BIO_SIZE`
        // bytes, 8-byte aligned by dm core and by its layout), written
        // first thing in `map`; only this bio's owner touches it.
        unsafe {
            let pb = bio.per_bio_ptr::<ThinBio>();
            if (*pb).counted & COUNTED_ALL_IO == 0 {
                (*pb).all_io_gen = self.all_io.inc();
                (*pb).counted |= COUNTED_ALL_IO;
            }
        }
    }

    /// Upstream `thin_endio`: a thin bio finished; it leaves the deferred
    /// sets that counted it, waking the worker if something waits for
    /// them (any context, IRQ included).
    pub(crate) fn end_io(&self, bio: &EndIoBio<'_>) {
        // SAFETY: a thin bio's per-bio data is a `ThinBio`, written first
        // thing in `map`.
        let pb = unsafe { bio.per_bio::<ThinBio>() };
        let mut kick = false;
        if pb.counted & COUNTED_SHARED_READ != 0 && self.shared_reads.dec(pb.shared_gen) {
            kick |= self.quiescing.load(Ordering::Acquire) > 0;
        }
        if pb.counted & COUNTED_ALL_IO != 0 && self.all_io.dec(pb.all_io_gen) {
            kick |= self.discards_quiescing.load(Ordering::Acquire) > 0;
        }
        if kick {
            self.worker.kick();
        }
    }

    /// One deferred bio (upstream `process_bio` and its read-only and fail
    /// variants).
    fn process_bio(&self, ws: &mut WorkerState, bio: Bio) {
        let mode = self.mode();
        if mode == PoolMode::Fail {
            bio.end(Status::IoErr);
            return;
        }
        let op = bio.op();
        if op == Op::Discard {
            self.process_discard(ws, bio);
            return;
        }
        let mut bio = bio;
        // A WRITE_ZEROES that may unmap what it covers (no REQ_NOUNMAP).
        let mut may_unmap = false;
        if op == Op::WriteZeroes {
            // `map` split it: whole blocks, or (with REQ_NOUNMAP) one
            // block, or a part of one.
            let bs = u64::from(self.block_size);
            let (_, offset) = self.block_of(bio.sector());
            let sectors = u64::from(bio.size()) >> 9;
            may_unmap = !bio.is_nounmap();
            if may_unmap && offset == 0 && sectors >= bs {
                self.process_write_zeroes_blocks(ws, bio);
                return;
            }
            // Zeroed like a write of zeros (below): the block is
            // provisioned if need be (REQ_NOUNMAP: the range stays
            // allocated, as upstream's writes of zeros leave it) and the
            // WRITE_ZEROES goes to its data block.  The thin honours
            // REQ_NOUNMAP itself; the data device may deallocate behind the
            // mapped block, which reads zeros the same (and a loop device
            // on tmpfs cannot zero a range otherwise).
            bio.clear_nounmap();
        } else if !matches!(op, Op::Read | Op::Write) {
            bio.end(Status::NotSupp);
            return;
        }
        let dev_id = Self::dev_of(&bio);
        let (vblock, _) = self.block_of(bio.sector());
        if bio.size() == 0 {
            // An empty flush: nothing to provision.
            let meta = self.meta.read();
            match meta.thin(dev_id) {
                Some(td) => {
                    let mut bio = bio;
                    self.remap(&mut bio, 0);
                    self.issue(ws, &meta, td, bio);
                }
                None => bio.end(Status::IoErr),
            }
            return;
        }
        if let Some(p) = ws
            .provisions
            .iter_mut()
            .find(|p| p.dev_id == dev_id && p.vblock == vblock)
        {
            p.waiters.push(bio);
            return;
        }
        let meta = self.meta.read();
        let Some(td) = meta.thin(dev_id) else {
            bio.end(Status::IoErr);
            return;
        };
        match meta.pmd.lookup(td, vblock) {
            Ok(l) if !l.shared => {
                let mut bio = bio;
                self.remap(&mut bio, l.block);
                self.issue(ws, &meta, td, bio);
            }
            Ok(l) if op == Op::Read => {
                // Upstream `process_shared_bio`'s read side: counted until
                // it finishes, so that breaking this sharing waits for it.
                let mut bio = bio;
                self.remap(&mut bio, l.block);
                self.count_shared_read(&mut bio);
                self.issue(ws, &meta, td, bio);
            }
            Ok(l) => {
                drop(meta);
                if mode != PoolMode::Write && mode != PoolMode::OutOfDataSpace {
                    self.unserviceable(ws, bio);
                    return;
                }
                // Upstream `break_sharing`.
                self.provision(ws, dev_id, vblock, Source::Shared(l.block), bio);
            }
            Err(PdError::NotFound) => {
                drop(meta);
                let origin = Self::origin_of(&bio);
                if may_unmap && origin.is_null() {
                    // Unprovisioned, and may stay so: it reads as zeros.
                    bio.end(Status::Ok);
                } else if op == Op::Read {
                    // SAFETY: a non-null origin is the thin table's, alive
                    // while its bio is in flight.
                    match unsafe { origin.as_ref() } {
                        Some(o) => self.read_origin(bio, o),
                        None => bio.zero_fill_and_end(),
                    }
                } else if mode != PoolMode::Write {
                    self.unserviceable(ws, bio);
                } else if origin.is_null() {
                    self.provision(ws, dev_id, vblock, Source::Fresh, bio);
                } else {
                    self.provision(ws, dev_id, vblock, Source::External(origin), bio);
                }
            }
            Err(e) => {
                log::print(
                    Level::Err,
                    c"thin",
                    format_args!(
                        "{}: dm_thin_find_block() failed: error = {}",
                        // Upstream's function for the pool's mode.
                        if matches!(mode, PoolMode::Write | PoolMode::OutOfDataSpace) {
                            "process_cell"
                        } else {
                            "__process_bio_read_only"
                        },
                        -e.errno()
                    ),
                );
                bio.end(Status::IoErr);
            }
        }
    }

    /// The `delete` message (upstream `dm_pool_delete_thin_device`, which
    /// releases the device's whole mapping tree in one hold of the
    /// metadata lock, stalling every thin's I/O meanwhile): the device
    /// leaves the trees at once, then its tree is released
    /// `DELETE_STEP_NODES` nodes at a time, the lock released between
    /// steps so that other thins' bios go on.  The periodic commit waits
    /// for the end (a delete is committed whole); a flush meanwhile
    /// finishes it first.  Takes and gives back the metadata lock.
    pub(crate) fn delete_thin<'a>(
        &'a self,
        mut meta: WriteGuard<'a, MetaState>,
        id: u64,
    ) -> (WriteGuard<'a, MetaState>, Result<(), PdError>) {
        if let Err(e) = meta.pmd.delete_thin_begin(id) {
            return (meta, Err(e));
        }
        loop {
            match meta.pmd.delete_step(DELETE_STEP_NODES) {
                Ok(true) => return (meta, Ok(())),
                Ok(false) => {}
                Err(e) => return (meta, Err(e)),
            }
            drop(meta);
            sleep_us(100, 200);
            meta = self.meta.write();
        }
    }

    /// Counts a read of a shared block in `shared_reads` until its
    /// `end_io` (however it ends).
    fn count_shared_read(&self, bio: &mut Bio) {
        // SAFETY: the bio is a thin bio whose per-bio data is a `ThinBio`
        // (`THIN_BIO_SIZE` bytes, 8-byte aligned by dm core and by its
        // layout); only its owner (the worker now) touches it.
        unsafe {
            let pb = bio.per_bio_ptr::<ThinBio>();
            if (*pb).counted & COUNTED_SHARED_READ == 0 {
                (*pb).shared_gen = self.shared_reads.inc();
                (*pb).counted |= COUNTED_SHARED_READ;
            }
        }
    }

    /// Upstream `provision_block` (`Fresh`, `External`: the block's data
    /// comes from the external origin as far as it reaches) and
    /// `break_sharing` (`Shared`: the data block the virtual block maps to
    /// now).
    fn provision(&self, ws: &mut WorkerState, dev_id: u64, vblock: u64, src: Source, bio: Bio) {
        let bs = u64::from(self.block_size);
        // What to copy: (device, first sector, sectors); a copy shorter
        // than a block (the origin ends inside it) gets its tail zeroed.
        let copy: Option<(CopyFrom<'_>, u64, u64)> = match src {
            Source::Fresh => None,
            Source::Shared(b) => Some((CopyFrom::Pool, self.data_sector(b, 0), bs)),
            Source::External(o) => {
                // SAFETY: the origin of the thin table `bio` came through,
                // alive while the bio is in flight (it is held until the
                // provision finishes).
                let o = unsafe { &*o };
                let size = o.sectors.load(Ordering::Acquire);
                let begin = vblock.saturating_mul(bs);
                if begin.saturating_add(bs) <= size {
                    Some((CopyFrom::Origin(&o.bdev), begin, bs))
                } else if begin < size {
                    Some((CopyFrom::Origin(&o.bdev), begin, size - begin))
                } else {
                    None
                }
            }
        };
        let origin = match src {
            Source::Shared(b) => Some(b),
            _ => None,
        };
        let mut meta = self.meta_write_keeping_cache();
        let block = match self.alloc_data_block(&mut meta) {
            Ok(b) => b,
            Err(PdError::NoSpace) => {
                drop(meta);
                self.unserviceable(ws, bio);
                return;
            }
            Err(e) => {
                let func = if origin.is_some() {
                    "break_sharing"
                } else {
                    "provision_block"
                };
                log::print(
                    Level::Err,
                    c"thin",
                    format_args!(
                        "{}: alloc_data_block() failed: error = {}",
                        func,
                        -e.errno()
                    ),
                );
                bio.end(Status::IoErr);
                return;
            }
        };
        let zero = self.zero_new_blocks.load(Ordering::Acquire);
        if copy.is_none() && !zero {
            let r = meta.insert(dev_id, vblock, block);
            self.metadata_low_check(&mut meta);
            if let Err(e) = r {
                self.metadata_operation_failed(&mut meta, "dm_thin_insert_block", e);
                bio.end(Status::IoErr);
                return;
            }
            self.cache_new_mapping(dev_id, vblock, block);
            let mut bio = bio;
            self.remap(&mut bio, block);
            match meta.thin(dev_id) {
                Some(td) => self.issue(ws, &meta, td, bio),
                None => bio.end(Status::IoErr),
            }
            return;
        }
        drop(meta);
        let whole = u64::from(bio.size()) == bs << 9;
        // A partial plain write to a fresh block that needs zeroing:
        // beyond upstream (which zeroes the whole block, then issues the
        // write), one write of the whole block carries the bio's data
        // with zeros around it, and the bio ends after the insert; one
        // I/O and one worker round trip less per provision.
        let padded = copy.is_none() && !whole && bio.op() == Op::Write && !bio.is_flush_or_fua();
        // A copy that stops short of the block's end: its tail is zeroed
        // too (when zeroing is on).
        let tail = match copy {
            Some((_, _, len)) if len < bs && zero => Some(len),
            _ => None,
        };
        let njobs: u32 = if whole {
            0
        } else {
            1 + u32::from(tail.is_some())
        };
        // Reserve everything first, so that nothing can fail once the I/O
        // is under way.
        let mut jobs: [Option<KBox<PrepareJob>>; 2] = [None, None];
        if njobs > 0 {
            let reserved = self.reserve_job_results(2);
            for slot in jobs.iter_mut().take(njobs as usize) {
                *slot = KBox::new(PrepareJob { pool: self, id: 0 }, GFP_NOIO).ok();
            }
            if !reserved || jobs.iter().take(njobs as usize).any(|j| j.is_none()) {
                self.release_block(block);
                bio.end(Status::IoErr);
                return;
            }
        }
        if ws.provisions.try_reserve(1).is_err() {
            self.release_block(block);
            bio.end(Status::IoErr);
            return;
        }
        let id = ws.next_id;
        ws.next_id = ws.next_id.wrapping_add(1);
        // Breaking sharing: the mapping changes only after every read of
        // a shared block issued so far finished.  Counted as quiescing
        // first, so a read finishing meanwhile wakes the worker.
        let quiesce = match origin {
            Some(_) => {
                self.quiescing.fetch_add(1, Ordering::AcqRel);
                let q = self.shared_reads.barrier();
                if q.is_none() {
                    self.quiescing.fetch_sub(1, Ordering::AcqRel);
                }
                q
            }
            None => None,
        };
        let mut p = Provision {
            id,
            dev_id,
            vblock,
            data_block: block,
            waiters: BioList::new(),
            quiesce,
            jobs_left: njobs + u32::from(whole),
            jobs_ok: true,
            prepared: None,
            overwrite: None,
            zero_hole: None,
        };
        if whole {
            // The write covers the whole block: no zeroing or copying; the
            // write goes to the new block and the mapping is inserted when
            // it is done (upstream `io_overwrites_block`).
            self.write_to_new_block(ws, p, bio);
            return;
        }
        let to = self.data_sector(block, 0);
        let [mut j0, j1] = jobs;
        let write_zeroes =
            self.zero_with_write_zeroes.load(Ordering::Acquire) && self.data.write_zeroes();
        if padded && write_zeroes {
            // Beyond upstream: the bio goes straight to the new block and
            // the rest of the block is zeroed beside it with WRITE_ZEROES
            // (nothing written where the device can unmap instead); the
            // mapping is inserted when both are done.
            if let Some(mut job) = j0.take() {
                job.id = id;
                let (_, offset) = self.block_of(bio.sector());
                let hole = (offset, u64::from(bio.size()) >> 9);
                self.jobs_outstanding.fetch_add(1, Ordering::AcqRel);
                match zero_ranges(&*self.data, &self.around(block, hole), true, job) {
                    Ok(()) => {
                        p.zero_hole = Some(hole);
                        // The zeroing and the write itself.
                        p.jobs_left = 2;
                        self.write_to_new_block(ws, p, bio);
                        return;
                    }
                    Err(job) => {
                        self.jobs_outstanding.fetch_sub(1, Ordering::AcqRel);
                        j0 = Some(job);
                    }
                }
            }
        }
        if padded {
            if let Some(mut job) = j0.take() {
                job.id = id;
                let (_, offset) = self.block_of(bio.sector());
                self.jobs_outstanding.fetch_add(1, Ordering::AcqRel);
                match padded_write(&self.pool_dev, to, bs, &bio, offset, job) {
                    Ok(()) => {
                        // The bio is kept (its pages are being written)
                        // and ended after the insert, as a whole-block
                        // write is.
                        p.overwrite = Some(bio);
                        // Room was reserved above: this cannot fail.
                        let _ = ws.provisions.try_push(p);
                        return;
                    }
                    Err(job) => {
                        // It does not fit in one bio (or no memory):
                        // zero, then write.
                        self.jobs_outstanding.fetch_sub(1, Ordering::AcqRel);
                        j0 = Some(job);
                    }
                }
            }
        }
        // Zero or copy into the new block, then insert the mapping, then
        // issue.
        if copy.is_none() && write_zeroes {
            p.zero_hole = Some((0, 0));
        }
        p.waiters.push(bio);
        // Room was reserved above: this cannot fail.
        let _ = ws.provisions.try_push(p);
        if let Some(mut job) = j0 {
            job.id = id;
            self.jobs_outstanding.fetch_add(1, Ordering::AcqRel);
            match copy {
                Some((CopyFrom::Pool, from, len)) => {
                    self.kcopyd
                        .copy(&self.pool_dev, from, &self.pool_dev, to, len, job)
                }
                Some((CopyFrom::Origin(dev), from, len)) => {
                    self.kcopyd.copy(dev, from, &self.pool_dev, to, len, job)
                }
                None if write_zeroes => self.start_zero_ranges(&[[to, bs]], true, job),
                None => self.start_zero(to, bs, job),
            }
        }
        if let (Some(mut job), Some(len)) = (j1, tail) {
            job.id = id;
            self.jobs_outstanding.fetch_add(1, Ordering::AcqRel);
            self.start_zero(to.saturating_add(len), bs - len, job);
        }
    }

    /// Zeroes `count` sectors of the pool device from `sector` for a
    /// provision (`job`, counted in `jobs_outstanding`, its result's room
    /// reserved); a zeroing that cannot start is recorded as failed.
    fn start_zero(&self, sector: u64, count: u64, job: KBox<PrepareJob>) {
        let id = job.id;
        if zero_out(&self.pool_dev, sector, count, job).is_err() {
            // Room was reserved by `reserve_job_results`.
            let _ = self.jobs_done.write().try_push((id, false));
            self.worker.kick();
        }
    }

    /// Zeroes `ranges` of the data device for a provision (`job`, counted
    /// in `jobs_outstanding`, its result's room reserved), with
    /// WRITE_ZEROES if `write_zeroes` and the device offers it; a zeroing
    /// that cannot start is recorded as failed.
    fn start_zero_ranges(&self, ranges: &[[u64; 2]], write_zeroes: bool, job: KBox<PrepareJob>) {
        let id = job.id;
        if zero_ranges(&*self.data, ranges, write_zeroes, job).is_err() {
            // Room was reserved by `reserve_job_results`.
            let _ = self.jobs_done.write().try_push((id, false));
            self.worker.kick();
        }
    }

    /// A provision's WRITE_ZEROES zeroing failed: zeroing goes back to
    /// zero pages for good (logged once), and this block is zeroed again
    /// that way around the sectors its bio writes.  False if that could
    /// not even start (the provision fails).
    fn retry_zeroing(&self, p: &mut Provision, hole: (u64, u64)) -> bool {
        if self.zero_with_write_zeroes.swap(false, Ordering::AcqRel) {
            log::print(
                Level::Warn,
                c"thin",
                format_args!(
                    "zeroing a new block with WRITE_ZEROES failed: zeroing with writes from now on"
                ),
            );
        }
        if !self.reserve_job_results(1) {
            return false;
        }
        let Ok(job) = KBox::new(
            PrepareJob {
                pool: self,
                id: p.id,
            },
            GFP_NOIO,
        ) else {
            return false;
        };
        p.jobs_left = p.jobs_left.saturating_add(1);
        self.jobs_outstanding.fetch_add(1, Ordering::AcqRel);
        self.start_zero_ranges(&self.around(p.data_block, hole), false, job);
        true
    }

    /// The data device's sectors of block `block` around `hole` (offset
    /// in the block, count; clipped to the block): what zeroing must
    /// cover when a bio writes the hole itself.
    fn around(&self, block: u64, hole: (u64, u64)) -> [[u64; 2]; 2] {
        let bs = u64::from(self.block_size);
        let to = self.data_sector(block, 0);
        let (off, len) = hole;
        let off = off.min(bs);
        let end = off.saturating_add(len).min(bs);
        [[to, off], [to.saturating_add(end), bs - end]]
    }

    /// Adds provision `p` and sends its write `bio` straight to the new
    /// block; the bio comes back through its hook when done, and is ended
    /// after the mapping is inserted.
    fn write_to_new_block(&self, ws: &mut WorkerState, p: Provision, bio: Bio) {
        let (id, block) = (p.id, p.data_block);
        // Room was reserved by `provision`: this cannot fail.
        let _ = ws.provisions.try_push(p);
        let mut bio = bio;
        self.remap(&mut bio, block);
        // SAFETY: the bio is a thin bio whose per-bio data is a `ThinBio`
        // (`THIN_BIO_SIZE` bytes, 8-byte aligned by dm core and by its
        // layout), not hooked; the pool outlives the I/O (the thin holds a
        // reference on it while its bio is in flight).
        unsafe {
            let pb = bio.per_bio_ptr::<ThinBio>();
            (*pb).provision = id;
            bio.submit_hooked(core::ptr::addr_of_mut!((*pb).hook), self);
        }
    }

    /// Makes room in `jobs_done` for the results of every job in flight
    /// plus `n` more, so that a job's completion never allocates.
    fn reserve_job_results(&self, n: usize) -> bool {
        let outstanding = self.jobs_outstanding.load(Ordering::Acquire);
        let mut done = self.jobs_done.write();
        let need = usize::try_from(outstanding)
            .unwrap_or(usize::MAX)
            .saturating_add(n)
            .saturating_sub(done.len());
        done.try_reserve(need).is_ok()
    }

    /// Gives back a data block allocated for a provision that failed.
    fn release_block(&self, block: u64) {
        let mut meta = self.meta_write_keeping_cache();
        let r = meta.pmd.dec_data_range(block, block.saturating_add(1));
        self.metadata_low_check(&mut meta);
        if let Err(e) = r {
            self.metadata_operation_failed(&mut meta, "dm_pool_dec_data_range", e);
        }
    }

    /// Records finished kcopyd jobs and whole-block writes in their
    /// provisions.
    fn collect_prepared(&self, ws: &mut WorkerState) {
        let done = core::mem::take(&mut *self.jobs_done.write());
        for &(id, ok) in done.iter() {
            self.jobs_outstanding.fetch_sub(1, Ordering::AcqRel);
            if let Some(p) = ws.provisions.iter_mut().find(|p| p.id == id) {
                p.jobs_left = p.jobs_left.saturating_sub(1);
                if let (false, Some(hole)) = (ok, p.zero_hole.take()) {
                    if self.retry_zeroing(p, hole) {
                        continue;
                    }
                }
                p.jobs_ok &= ok;
                if p.jobs_left == 0 {
                    p.prepared = Some(p.jobs_ok);
                }
            } else if let Some(d) = ws.discards.iter_mut().find(|d| d.id == id) {
                d.passdown = Some(Some(ok));
            }
        }
        for bio in self.overwrites_done.take() {
            // SAFETY: a bio on `overwrites_done` is a thin bio whose
            // per-bio data is a `ThinBio`.
            let id = unsafe { bio.per_bio::<ThinBio>() }.provision;
            match ws.provisions.iter_mut().find(|p| p.id == id) {
                Some(p) => {
                    p.jobs_left = p.jobs_left.saturating_sub(1);
                    p.jobs_ok &= !bio.failed();
                    if p.jobs_left == 0 {
                        p.prepared = Some(p.jobs_ok);
                    }
                    p.overwrite = Some(bio);
                }
                None => bio.end(Status::IoErr),
            }
        }
    }

    /// Finishes the provisions whose I/O is done and whose shared reads
    /// (when breaking sharing) have finished (upstream
    /// `process_prepared_mapping`, `complete_overwrite_bio`).
    fn process_prepared(&self, ws: &mut WorkerState) {
        self.collect_prepared(ws);
        let mut i = 0;
        while let Some(p) = ws.provisions.get(i) {
            let quiesced = p.quiesce.map_or(true, |g| self.shared_reads.passed(g));
            if p.prepared.is_none() || !quiesced {
                i += 1;
                continue;
            }
            // The last provision takes its place and is looked at next
            // (the order does not matter: each has its own cell).
            let Some(p) = ws.provisions.swap_remove(i) else {
                break;
            };
            if p.quiesce.is_some() {
                self.quiescing.fetch_sub(1, Ordering::AcqRel);
            }
            self.finish_provision(ws, p);
        }
    }

    /// Inserts a prepared provision's mapping and issues its bios.
    fn finish_provision(&self, ws: &mut WorkerState, p: Provision) {
        let Provision {
            dev_id,
            vblock,
            data_block,
            waiters,
            prepared,
            overwrite,
            ..
        } = p;
        if prepared != Some(true) {
            // As upstream's `process_prepared_mapping` with `m->status`
            // set: the bios fail, nothing is logged, and the data block
            // allocated for the mapping is NOT given back (upstream leaks
            // it in the data space map until a repair; the pool's used
            // data block count shows it, and ours must count the same).
            if let Some(bio) = overwrite {
                if bio.failed() {
                    // The write's own error reaches its submitter.
                    bio.end_as_is();
                } else {
                    // Its data went in a padded write, which failed.
                    bio.end(Status::IoErr);
                }
            }
            waiters.fail(Status::IoErr);
            return;
        }
        let mut meta = self.meta_write_keeping_cache();
        if self.mode() >= PoolMode::OutOfMetadataSpace {
            drop(meta);
            if let Some(bio) = overwrite {
                bio.end(Status::IoErr);
            }
            waiters.fail(Status::IoErr);
            return;
        }
        let r = meta.insert(dev_id, vblock, data_block);
        self.metadata_low_check(&mut meta);
        if let Err(e) = r {
            self.metadata_operation_failed(&mut meta, "dm_thin_insert_block", e);
            drop(meta);
            if let Some(bio) = overwrite {
                bio.end(Status::IoErr);
            }
            waiters.fail(Status::IoErr);
            return;
        }
        self.cache_new_mapping(dev_id, vblock, data_block);
        if let Some(bio) = overwrite {
            match meta.thin(dev_id) {
                Some(td) if bio.is_flush_or_fua() && meta.pmd.thin_changed(td) => {
                    if meta.pmd.thin_aborted_changes(td) {
                        bio.end(Status::IoErr);
                    } else {
                        ws.completion_waiters.push(bio);
                    }
                }
                _ => bio.end_as_is(),
            }
        }
        self.issue_waiters(ws, &meta, dev_id, data_block, waiters);
    }

    /// Issues the bios that waited for a provision, now mapped to `block`.
    fn issue_waiters(
        &self,
        ws: &mut WorkerState,
        meta: &MetaState,
        dev_id: u64,
        block: u64,
        mut waiters: BioList,
    ) {
        while let Some(mut bio) = waiters.pop() {
            self.remap(&mut bio, block);
            match meta.thin(dev_id) {
                Some(td) => self.issue(ws, meta, td, bio),
                None => bio.end(Status::IoErr),
            }
        }
    }

    /// WRITE_ZEROES of whole blocks without `REQ_NOUNMAP` (beyond
    /// upstream): the blocks are unmapped as by a discard (passed down
    /// when the pool passes discards down), so they read as zeros.  A
    /// read-only or out-of-metadata-space pool cannot unmap: it answers
    /// EOPNOTSUPP, so that `blkdev_issue_zeroout` falls back to writing
    /// zeros, which then fare as upstream's writes do.
    fn process_write_zeroes_blocks(&self, ws: &mut WorkerState, bio: Bio) {
        if self.mode() >= PoolMode::OutOfMetadataSpace {
            bio.end(Status::NotSupp);
            return;
        }
        if !Self::origin_of(&bio).is_null() {
            // Not offered with an external origin (`thin_ctr`).
            bio.end(Status::NotSupp);
            return;
        }
        self.process_discard(ws, bio);
    }

    /// The whole blocks a discard covers: `[begin, end)` (upstream
    /// `get_bio_block_range`: the start rounded up, the end down).
    fn discard_blocks(&self, bio: &Bio) -> (u64, u64) {
        let bs = u64::from(self.block_size);
        let b = bio.sector();
        let e = b.saturating_add(u64::from(bio.size()) >> 9);
        let begin = b.saturating_add(bs - 1) / bs;
        let end = e / bs;
        (begin, end.max(begin))
    }

    /// Upstream `process_discard_bio` + `process_discard_cell_*`: unmaps
    /// the whole blocks the discard covers; partial blocks are left as
    /// they are.
    fn process_discard(&self, ws: &mut WorkerState, bio: Bio) {
        if !self.discard_enabled.load(Ordering::Acquire) {
            bio.end(Status::NotSupp);
            return;
        }
        if self.mode() >= PoolMode::OutOfMetadataSpace {
            // Read-only: discards succeed without effect (upstream
            // `process_bio_success`).
            bio.end(Status::Ok);
            return;
        }
        let dev_id = Self::dev_of(&bio);
        let (begin, end) = self.discard_blocks(&bio);
        if begin == end {
            // The discard covers less than a block.
            bio.end(Status::Ok);
            return;
        }
        // Upstream's virtual cell: wait for provisions and discards of
        // this range.
        let busy = ws
            .provisions
            .iter()
            .any(|p| p.dev_id == dev_id && p.vblock >= begin && p.vblock < end)
            || ws
                .discards
                .iter()
                .any(|d| d.dev_id == dev_id && d.begin < end && begin < d.end);
        if busy {
            ws.discard_waiters.push(bio);
            return;
        }
        if ws.discards.try_reserve(1).is_err() {
            bio.end(Status::IoErr);
            return;
        }
        let mut runs: Vec<[u64; 3]> = Vec::new();
        let mut failed = false;
        let mut meta = self.meta.write();
        let mut cur = begin;
        while cur < end {
            let step = {
                let MetaState { pmd, thins } = &mut *meta;
                let Some(td) = thins.iter().find(|t| t.td.id() == dev_id).map(|t| &t.td) else {
                    failed = true;
                    break;
                };
                match pmd.find_mapped_range(td, cur, end) {
                    // Nothing (more) mapped, or a lookup error: upstream
                    // stops silently, completing what it unmapped.
                    Err(_) => break,
                    Ok(r) => {
                        let len = r.thin_end.saturating_sub(r.thin_begin);
                        if runs.try_reserve(1).is_err() {
                            break;
                        }
                        match pmd.remove_range(td, r.thin_begin, r.thin_end) {
                            Err(e) => Err(("dm_thin_remove_range", e)),
                            Ok(()) => {
                                // Held until the I/O issued to these blocks
                                // finished and the passdown is done.
                                let data_end = r.pool_begin.saturating_add(len);
                                match pmd.inc_data_range(r.pool_begin, data_end) {
                                    Err(e) => Err(("dm_pool_inc_data_range", e)),
                                    Ok(()) => {
                                        let shared = u64::from(r.maybe_shared);
                                        // Room was reserved above.
                                        let _ = runs.try_push([r.pool_begin, len, shared]);
                                        Ok(r.thin_end)
                                    }
                                }
                            }
                        }
                    }
                }
            };
            self.metadata_low_check(&mut meta);
            match step {
                Ok(next) => cur = next,
                Err((op, e)) => {
                    self.metadata_operation_failed(&mut meta, op, e);
                    failed = true;
                    break;
                }
            }
        }
        drop(meta);
        if runs.is_empty() {
            bio.end(if failed { Status::IoErr } else { Status::Ok });
            return;
        }
        let id = ws.next_id;
        ws.next_id = ws.next_id.wrapping_add(1);
        self.discards_quiescing.fetch_add(1, Ordering::AcqRel);
        let quiesce = self.all_io.barrier();
        if quiesce.is_none() {
            self.discards_quiescing.fetch_sub(1, Ordering::AcqRel);
        }
        // Room was reserved above: this cannot fail.
        let _ = ws.discards.try_push(DiscardOp {
            id,
            dev_id,
            begin,
            end,
            bio: Some(bio),
            runs,
            failed,
            quiesce,
            passdown: None,
        });
    }

    /// Moves discards on: once the I/O to their blocks issued before the
    /// unmapping finished, passes the blocks no device uses any more down
    /// to the data device, then drops the extra references and ends the
    /// discard (upstream `process_prepared_discard_*`).
    fn process_discards(&self, ws: &mut WorkerState) {
        let mut i = 0;
        while let Some(d) = ws.discards.get_mut(i) {
            match d.passdown {
                Some(None) => {
                    i += 1;
                    continue;
                }
                Some(Some(_)) => {}
                None => {
                    if let Some(g) = d.quiesce {
                        if !self.all_io.passed(g) {
                            i += 1;
                            continue;
                        }
                        d.quiesce = None;
                        self.discards_quiescing.fetch_sub(1, Ordering::AcqRel);
                    }
                    if !d.failed
                        && self.discard_passdown.load(Ordering::Acquire)
                        && self.start_passdown(d)
                    {
                        d.passdown = Some(None);
                        i += 1;
                        continue;
                    }
                }
            }
            let Some(d) = ws.discards.remove(i) else {
                break;
            };
            self.finish_discard(ws, d);
        }
    }

    /// Discards the data blocks of `d`'s runs that no other device uses
    /// (upstream `passdown_double_checking_shared_status`); false if
    /// nothing was issued.
    fn start_passdown(&self, d: &DiscardOp) -> bool {
        let bs = u64::from(self.block_size);
        let mut ranges: Vec<[u64; 2]> = Vec::new();
        let mut add = |b: u64, e: u64| -> bool {
            if ranges.try_reserve(1).is_err() {
                return false;
            }
            let _ = ranges.try_push([self.data_sector(b, 0), (e - b).saturating_mul(bs)]);
            true
        };
        {
            let mut meta = self.meta.write();
            for &[db, len, shared] in d.runs.iter() {
                let end = db.saturating_add(len);
                if shared == 0 {
                    if !add(db, end) {
                        return false;
                    }
                    continue;
                }
                // Runs of blocks that are no longer shared.
                let mut b = db;
                while b < end {
                    let unshared = |meta: &mut MetaState, x: u64| {
                        matches!(meta.pmd.block_is_shared(x), Ok(false))
                    };
                    if !unshared(&mut meta, b) {
                        b += 1;
                        continue;
                    }
                    let mut e = b + 1;
                    while e < end && unshared(&mut meta, e) {
                        e += 1;
                    }
                    if !add(b, e) {
                        return false;
                    }
                    b = e;
                }
            }
        }
        if ranges.is_empty() {
            return false;
        }
        let reserved = self.reserve_job_results(1);
        let Ok(job) = KBox::new(
            PrepareJob {
                pool: self,
                id: d.id,
            },
            GFP_NOIO,
        ) else {
            return false;
        };
        if !reserved {
            return false;
        }
        self.jobs_outstanding.fetch_add(1, Ordering::AcqRel);
        if self.data.discard(&ranges, job).is_err() {
            self.jobs_outstanding.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Drops a finished discard's extra references and ends its bio (a
    /// failed passdown does not matter: the blocks are unmapped anyway).
    fn finish_discard(&self, ws: &mut WorkerState, d: DiscardOp) {
        let mut failed = d.failed;
        if self.mode() < PoolMode::OutOfMetadataSpace {
            let mut meta = self.meta_write_keeping_cache();
            for &[db, len, _] in d.runs.iter() {
                let r = meta.pmd.dec_data_range(db, db.saturating_add(len));
                self.metadata_low_check(&mut meta);
                if let Err(e) = r {
                    self.metadata_operation_failed(&mut meta, "dm_pool_dec_data_range", e);
                    failed = true;
                    break;
                }
            }
        }
        if let Some(bio) = d.bio {
            if !failed && bio.op() == Op::WriteZeroes && bio.is_flush_or_fua() {
                // Durable only once the unmapping is committed.
                ws.completion_waiters.push(bio);
                return;
            }
            bio.end(if failed { Status::IoErr } else { Status::Ok });
        }
    }

    /// Group commit (beyond upstream, which commits at once): bios wait
    /// for a commit while provisions are in flight, which finish in
    /// moments and kick the worker.  The commit waits for them, at most
    /// as long as the last commit took, so that their new mappings are
    /// committed with it: a flush that their thins send next finds
    /// nothing changed and goes straight to the data device instead of
    /// costing a commit of its own (upstream `bio_triggers_commit`).
    /// With several thins writing new blocks and syncing, commits are
    /// shared; a single writer (nothing in flight at its flush) never
    /// waits.  Returns whether the commit is held.
    fn hold_commit(&self, ws: &mut WorkerState) -> bool {
        if ws.flush_waiters.is_empty() && ws.completion_waiters.is_empty() {
            return false;
        }
        if ws.provisions.is_empty() || self.mode() != PoolMode::Write {
            return false;
        }
        let now = now_ns();
        if ws.commit_held_since == 0 {
            ws.commit_held_since = now;
        }
        now.saturating_sub(ws.commit_held_since) < ws.last_commit_cost
    }

    /// Commits for the bios waiting on it, or because the pool changed
    /// and a commit period passed since the worker's last commit (upstream
    /// `process_deferred_bios`' commit part and `need_commit_due_to_time`).
    fn process_commit(&self, ws: &mut WorkerState) {
        if self.hold_commit(ws) {
            return;
        }
        if ws.flush_waiters.is_empty() && ws.completion_waiters.is_empty() {
            let since = now_ns().saturating_sub(self.last_commit_ns.load(Ordering::Acquire));
            if since < u64::from(COMMIT_PERIOD_MS) * 1_000_000 {
                return;
            }
            let meta = self.meta.read();
            // A delete in progress is committed whole, when it is done.
            if !meta.pmd.pool_changed() || meta.pmd.delete_pending() {
                return;
            }
        }
        let start = now_ns();
        let r = {
            let mut meta = self.meta_write_keeping_cache();
            self.commit(&mut meta)
        };
        let end = now_ns();
        ws.commit_held_since = 0;
        ws.last_commit_cost = end.saturating_sub(start).min(GROUP_COMMIT_MAX_NS);
        if r.is_ok() {
            self.last_commit_ns.store(end, Ordering::Release);
        }
        let mut done = core::mem::replace(&mut ws.completion_waiters, BioList::new());
        while let Some(bio) = done.pop() {
            if r.is_err() {
                bio.end(Status::IoErr);
            } else {
                bio.end_as_is();
            }
        }
        let mut waiters = core::mem::replace(&mut ws.flush_waiters, BioList::new());
        while let Some(bio) = waiters.pop() {
            if r.is_err() {
                bio.end(Status::IoErr);
            } else if bio.is_preflush() {
                // The data device was flushed by the commit.
                bio.end(Status::Ok);
            } else {
                bio.submit();
            }
        }
    }
}

impl WorkerOps for Pool {
    fn run(&self) {
        let mut ws = self.ws.write();
        self.check_no_space_timeout(&mut ws);
        self.process_prepared(&mut ws);
        self.process_discards(&mut ws);
        if self.mode() >= PoolMode::OutOfMetadataSpace {
            let retry = core::mem::replace(&mut ws.retry, BioList::new());
            retry.fail(Status::IoErr);
        } else if self.requeue_retry.swap(false, Ordering::AcqRel) {
            let mut retry = core::mem::replace(&mut ws.retry, BioList::new());
            while let Some(bio) = retry.pop() {
                self.process_bio(&mut ws, bio);
            }
        }
        for bio in self.deferred.take() {
            self.process_bio(&mut ws, bio);
        }
        let mut waiting = core::mem::replace(&mut ws.discard_waiters, BioList::new());
        while let Some(bio) = waiting.pop() {
            self.process_bio(&mut ws, bio);
        }
        // Discards started above that need not wait go on now.
        self.process_discards(&mut ws);
        self.process_commit(&mut ws);
    }

    /// The waker only runs the worker, which decides whether a commit is
    /// due (upstream `do_waker`).
    fn tick(&self) {}
}

impl HookedCompletion for Pool {
    /// A whole-block write to a new block finished (IRQ context): the
    /// worker inserts the mapping, then completes it.
    fn io_done(&self, bio: Bio) {
        self.overwrites_done.push(bio);
        self.worker.kick();
    }
}

impl Drop for Pool {
    /// Upstream `__pool_destroy` + `dm_pool_metadata_close`: stop the
    /// waker, drain the worker, commit unless read-only or failed.
    fn drop(&mut self) {
        self.worker.stop_waker();
        self.worker.drain();
        let meta = self.meta.get_mut();
        if meta.pmd.failed() || meta.pmd.bm().is_read_only() {
            return;
        }
        if let Err(e) = meta.pmd.commit() {
            log::print(
                Level::Warn,
                c"thin metadata",
                format_args!("__commit_transaction() failed, error = {}", -e.errno()),
            );
        }
    }
}

/// A zeroing, copying or passdown job: tells the pool's worker which
/// provision or discard finished its I/O.
struct PrepareJob {
    pool: *const Pool,
    id: u64,
}

// SAFETY: the pool is `Sync`; the pointer is only used to reach it.
unsafe impl Send for PrepareJob {}

impl IoJob for PrepareJob {
    fn done(self: KBox<Self>, ok: bool) {
        // SAFETY: a pool's kcopyd client is its first field, dropped (which
        // waits for every kcopyd job) before the rest of the pool; zeroing
        // and passdown jobs belong to a provision or discard whose thin
        // bio is still in flight, which keeps the pool alive (the thin
        // holds it and cannot go while it has bios in flight).
        let pool = unsafe { &*self.pool };
        // Capacity was reserved when the job was issued: no allocation.
        let _ = pool.jobs_done.write().try_push((self.id, ok));
        pool.worker.kick();
    }
}
