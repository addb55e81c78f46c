//! The pool metadata object (upstream `struct dm_pool_metadata` and the
//! `dm_pool_*` / `dm_thin_*` calls of `dm-thin-metadata.c`): format and
//! open, thin device creation, snapshots and deletion, mapping lookups and
//! updates, metadata snapshots, space accounting, resize, and the
//! commit/abort transaction boundary.
//!
//! # Design
//!
//! [`PoolMetadata`] owns the block manager, the transaction state
//! ([`TmState`], which holds the metadata space map) and the data space
//! map, plus the in-core copy of the superblock fields of the current
//! transaction (time, roots, held root, transaction id, flags) and the
//! in-core details of open or changed thin devices.  Device details reach
//! the details tree only at commit, for devices marked changed
//! (`__write_changed_details`).
//!
//! Five btree "views" of upstream map onto value types here:
//! - `info` (two levels, data-block values) -> [`DataBlocks`] with keys
//!   `[dev, vblock]`; the upper level's values are subtree roots counted
//!   in the metadata space map;
//! - `tl_info` (top level only) -> [`Subtrees`]: inc takes a reference on
//!   a device tree root, dec deletes the device tree;
//! - `bl_info` (one device's tree) -> [`DataBlocks`] with key `[vblock]`;
//! - `details_info` -> `Plain<24>`;
//! - `nb_info` -> the same walks through a non-blocking reader.
//!
//! Thin device handles ([`ThinDevice`]) are returned by
//! [`PoolMetadata::open_thin`] and given back with
//! [`PoolMetadata::close_thin`]; they only carry the device id, the
//! in-core state lives in the metadata object (upstream's `td` list).
//!
//! "In service": [`PoolMetadata::commit`] does nothing until the first
//! mutating call since open (upstream `pmd_write_lock`), so opening and
//! closing an unchanged pool never rewrites the superblock.
//!
//! Concurrent lookups: [`PoolMetadata::committed_roots`] gives the roots
//! of the last commit, and [`PoolMetadata::open_with_hook`] takes a
//! [`CommitHook`] (e.g. a [`RootsCell`](super::committed::RootsCell))
//! that receives them at open, at the end of every commit (including the
//! one inside [`PoolMetadata::reserve_metadata_snap`]) and after every
//! abort, and is told when they are unusable (a failed commit or abort).
//! Readers on other threads then look blocks up with
//! [`lookup_committed`](super::committed::lookup_committed) through a
//! shared block manager while this object, owned by one writer, keeps
//! working; [`super::committed`] states the rule that makes this safe.
//!
//! After any error from a mutating call the caller must
//! [`PoolMetadata::abort`]: the in-core state may then be half-updated,
//! exactly as upstream.  If reopening fails during abort the object is
//! in `fail_io` state and every later call answers [`Error::Invalid`].
//!
//! Deviations from upstream, on purpose:
//! - abort re-reads every superblock field (upstream keeps the in-core
//!   time and transaction id) and reloads the details of still-open
//!   devices from disk (upstream keeps their stale in-core details); a
//!   device that no longer exists after the abort is dropped from the
//!   in-core list and its handle answers [`Error::NotFound`];
//! - a snapshot that would push the time past 2^24 - 1 (which cannot be
//!   stored in a mapping) is refused with [`Error::Invalid`], and so is a
//!   mapping to a data block >= 2^40;
//! - the abort invalidates the block manager's cache instead of creating
//!   a new block manager: the superblock and everything else are reread
//!   from the device.

use super::block_time::{pack_block_time, unpack_block_time, MAX_TIME};
use super::committed::{CommitHook, Roots};
use super::device_details::{DeviceDetails, DEVICE_DETAILS_SIZE};
use super::superblock::{
    is_unformatted, Superblock, LOG_PREFIX, NEEDS_CHECK_FLAG, RAW_VALIDATOR, SB_VALIDATOR,
    SPACE_MAP_ROOT_SIZE, SUPERBLOCK_LOCATION,
};
use crate::env::Vec;
use crate::pdata::block_manager::BlockManager;
use crate::pdata::btree::{self, for_each_run_of, node, DelCursor, Plain, ValueType};
use crate::pdata::error::{Error, Result};
use crate::pdata::space_map::disk::DiskSm;
use crate::pdata::transaction_manager::{Reader, Tm, TmState};

/// Largest number of metadata blocks upstream uses (255 bitmaps); the
/// superblock's `metadata_nr_blocks` is capped at it.
pub const MAX_METADATA_BLOCKS: u64 = crate::pdata::space_map::MAX_METADATA_BLOCKS;

/// Upper bound of the metadata reserve in blocks (16 MiB).
pub const MAX_METADATA_RESERVE: u64 = 4096;

//------------------------------------------------------------------------
// Value types.

/// Bottom-level mapping values: packed block/time whose data blocks are
/// counted in the data space map (`data_block_inc/dec/equal`).
pub(crate) struct DataBlocks<'s> {
    sm: &'s mut DiskSm,
}

fn data_blocks_of(values: &[u8]) -> impl Iterator<Item = u64> + '_ {
    values
        .chunks_exact(8)
        .map(|c| unpack_block_time(node::rd64(c, 0)).0)
}

impl<B: BlockManager> ValueType<B> for DataBlocks<'_> {
    const SIZE: usize = 8;

    fn inc(&mut self, tm: &mut Tm<'_, B>, values: &[u8]) -> Result<()> {
        let sm = &mut *self.sm;
        for_each_run_of(data_blocks_of(values), &mut |b, e| sm.inc_blocks(tm, b, e))
    }

    fn dec(&mut self, tm: &mut Tm<'_, B>, values: &[u8]) -> Result<()> {
        let sm = &mut *self.sm;
        for_each_run_of(data_blocks_of(values), &mut |b, e| sm.dec_blocks(tm, b, e))
    }

    fn equal(&self, old: &[u8], new: &[u8]) -> bool {
        match (old.get(..8), new.get(..8)) {
            (Some(a), Some(b)) => {
                unpack_block_time(node::rd64(a, 0)).0 == unpack_block_time(node::rd64(b, 0)).0
            }
            _ => false,
        }
    }
}

/// Top-level values: roots of per-device mapping trees
/// (`subtree_inc/dec/equal`).  Dropping a reference deletes the tree.
pub(crate) struct Subtrees<'s> {
    data: DataBlocks<'s>,
}

impl<B: BlockManager> ValueType<B> for Subtrees<'_> {
    const SIZE: usize = 8;

    fn inc(&mut self, tm: &mut Tm<'_, B>, values: &[u8]) -> Result<()> {
        for c in values.chunks_exact(8) {
            tm.inc(node::rd64(c, 0))?;
        }
        Ok(())
    }

    /// As upstream's `subtree_dec`, a subtree that cannot be released
    /// (corrupt, unreadable) is logged and left allocated; the caller's
    /// operation goes on.
    fn dec(&mut self, tm: &mut Tm<'_, B>, values: &[u8]) -> Result<()> {
        for c in values.chunks_exact(8) {
            if btree::del(tm, &mut self.data, node::rd64(c, 0), 1).is_err() {
                log_btree_delete_failed();
            }
        }
        Ok(())
    }

    fn equal(&self, old: &[u8], new: &[u8]) -> bool {
        old == new
    }
}

/// Upstream `subtree_dec`'s line for a subtree it could not release.
fn log_btree_delete_failed() {
    crate::env::log_error(LOG_PREFIX, format_args!("btree delete failed"));
}

/// The top-level mapping tree's values while a device is detached for a
/// stepwise delete: shadowing shares subtrees as [`Subtrees`] does, but
/// the removed device's subtree root is kept (in `root`), not released.
struct DetachSubtree {
    root: Option<u64>,
}

impl<B: BlockManager> ValueType<B> for DetachSubtree {
    const SIZE: usize = 8;

    fn inc(&mut self, tm: &mut Tm<'_, B>, values: &[u8]) -> Result<()> {
        for c in values.chunks_exact(8) {
            tm.inc(node::rd64(c, 0))?;
        }
        Ok(())
    }

    fn dec(&mut self, _tm: &mut Tm<'_, B>, values: &[u8]) -> Result<()> {
        // A remove releases exactly the removed value.
        match (self.root, values.len()) {
            (None, 8) => {
                self.root = Some(node::rd64(values, 0));
                Ok(())
            }
            _ => Err(Error::Invalid),
        }
    }
}

type Details = Plain<DEVICE_DETAILS_SIZE>;

//------------------------------------------------------------------------

/// Options for [`PoolMetadata::open`].
#[derive(Clone, Copy, Debug)]
pub struct OpenOptions {
    /// Data block size in sectors; must match the superblock's.
    pub data_block_size: u32,
    /// Format the device if block 0 is all zero (refused when read-only).
    pub format: bool,
    /// The metadata device itself is read-only (upstream `bdev_read_only`):
    /// compat-ro features are then accepted, formatting is refused and the
    /// block manager is put in read-only mode.  (The pool's `read_only`
    /// table feature is not this: it opens with `format: false` and then
    /// calls [`PoolMetadata::set_read_only`].)
    pub read_only: bool,
}

/// Result of a mapping lookup (`struct dm_thin_lookup_result`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LookupResult {
    /// The data block.
    pub block: u64,
    /// Whether the block may be shared with a snapshot (the device was
    /// snapshotted after the mapping was made).
    pub shared: bool,
}

/// A run found by [`PoolMetadata::find_mapped_range`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MappedRange {
    /// First virtual block of the run.
    pub thin_begin: u64,
    /// One past the last virtual block of the run.
    pub thin_end: u64,
    /// Data block of `thin_begin`; the run maps to consecutive blocks.
    pub pool_begin: u64,
    /// The "shared" flag common to the whole run.
    pub maybe_shared: bool,
}

/// Handle of an open thin device (upstream `struct dm_thin_device *`).
/// Give it back with [`PoolMetadata::close_thin`].
#[derive(Debug)]
pub struct ThinDevice {
    id: u64,
}

impl ThinDevice {
    /// The device id.
    pub fn id(&self) -> u64 {
        self.id
    }
}

/// In-core state of a thin device (upstream `struct dm_thin_device`).
struct DevState {
    id: u64,
    open_count: u32,
    changed: bool,
    aborted_with_changes: bool,
    details: DeviceDetails,
}

/// The persistent-data objects that are rebuilt on abort.
struct Persistent {
    tm: TmState,
    data_sm: DiskSm,
}

/// The thin-pool metadata of one metadata device.  `H` receives the
/// committed roots after every commit (see [`super::committed`]); the
/// default `()` publishes nothing.
pub struct PoolMetadata<B: BlockManager, H: CommitHook = ()> {
    bm: B,
    hook: H,
    committed: Roots,
    pd: Option<Persistent>,
    data_block_size: u32,
    device_read_only: bool,
    time: u32,
    root: u64,
    details_root: u64,
    held_root: u64,
    trans_id: u64,
    flags: u32,
    devices: Vec<DevState>,
    metadata_reserve: u64,
    fail_io: bool,
    in_service: bool,
    /// A deleted device's mapping tree still being released
    /// ([`PoolMetadata::delete_thin_begin`]); finished before any commit.
    pending_delete: Option<DelCursor>,
}

impl<B: BlockManager> PoolMetadata<B> {
    /// Opens the metadata on `bm`, formatting it first if block 0 is all
    /// zero and `opts.format` is set (upstream `dm_pool_metadata_open`).
    /// An unformatted device that may not be formatted gives
    /// [`Error::ReadOnly`] (upstream -EPERM).
    pub fn open(bm: B, opts: OpenOptions) -> Result<Self> {
        Self::open_with_hook(bm, opts, ())
    }
}

impl<B: BlockManager, H: CommitHook> PoolMetadata<B, H> {
    /// Like [`PoolMetadata::open`], and publishes the committed roots
    /// through `hook` now, after every commit and after every abort (see
    /// [`super::committed`]).
    pub fn open_with_hook(bm: B, opts: OpenOptions, hook: H) -> Result<Self> {
        if opts.read_only {
            bm.set_read_only(true);
        }
        let mut pmd = PoolMetadata {
            bm,
            hook,
            committed: Roots::default(),
            pd: None,
            data_block_size: opts.data_block_size,
            device_read_only: opts.read_only,
            time: 0,
            root: 0,
            details_root: 0,
            held_root: 0,
            trans_id: 0,
            flags: 0,
            devices: Vec::new(),
            metadata_reserve: 0,
            fail_io: false,
            in_service: false,
            pending_delete: None,
        };
        pmd.open_or_format(opts.format && !opts.read_only)?;
        pmd.begin_transaction()?;
        pmd.set_metadata_reserve();
        pmd.committed = Roots {
            mapping_root: pmd.root,
            details_root: pmd.details_root,
        };
        pmd.hook.publish(Some(pmd.committed));
        Ok(pmd)
    }

    /// The mapping and details roots of the last commit (or of the
    /// superblock read at open or abort), not those of the transaction in
    /// progress: lookups on them need only the block manager (see
    /// [`super::committed::lookup_committed`] and the rule in
    /// [`super::committed`]).
    pub fn committed_roots(&self) -> Roots {
        self.committed
    }

    /// Closes the metadata: commits (unless failed or read-only) and
    /// returns the block manager (upstream `dm_pool_metadata_close`).
    /// [`Error::Busy`] (and the object back) while a device is open.
    pub fn close(mut self) -> core::result::Result<B, (Self, Error)> {
        if self.devices.iter().any(|d| d.open_count > 0) {
            return Err((self, Error::Busy));
        }
        if !self.fail_io && !self.bm.is_read_only() {
            // Upstream only logs a failed commit here.
            let _ = self.commit_transaction();
        }
        Ok(self.bm)
    }

    /// The block manager (for tests and the kernel's cache management).
    pub fn bm(&self) -> &B {
        &self.bm
    }

    //--------------------------------------------------------------------
    // Open, format, begin, commit, abort.

    fn open_or_format(&mut self, format: bool) -> Result<()> {
        let unformatted = {
            let g = self.bm.read_lock(SUPERBLOCK_LOCATION, &RAW_VALIDATOR)?;
            is_unformatted(&g)
        };
        if unformatted {
            if format {
                self.format_metadata()
            } else {
                Err(Error::ReadOnly)
            }
        } else {
            self.open_metadata()
        }
    }

    fn format_metadata(&mut self) -> Result<()> {
        let mut tm_state = TmState::create(&self.bm, SUPERBLOCK_LOCATION)?;
        let mut tm = Tm::new(&self.bm, &mut tm_state);
        let mut data_sm = DiskSm::create(&mut tm, 0)?;
        let root = btree::empty(&mut tm, 8)?;
        let details_root = btree::empty(&mut tm, DEVICE_DETAILS_SIZE)?;

        // __write_initial_superblock
        let nr = self.bm.nr_blocks().min(MAX_METADATA_BLOCKS);
        data_sm.commit(&mut tm)?;
        tm.pre_commit()?;
        let mut sb = Superblock::initial(self.data_block_size, nr);
        tm.copy_sm_root(&mut sb.metadata_sm_root)?;
        data_sm.copy_root(&mut sb.data_sm_root)?;
        sb.data_mapping_root = root;
        sb.device_details_root = details_root;
        let mut g = tm.write_lock_zero(SUPERBLOCK_LOCATION, &SB_VALIDATOR)?;
        sb.pack(&mut g);
        tm.commit(g)?;

        self.root = root;
        self.details_root = details_root;
        self.held_root = 0;
        self.pd = Some(Persistent {
            tm: tm_state,
            data_sm,
        });
        Ok(())
    }

    fn open_metadata(&mut self) -> Result<()> {
        // Log lines as upstream's __open_metadata.
        let log = |msg: &str| crate::env::log_error(LOG_PREFIX, format_args!("{msg}"));
        let sb = {
            let g = self
                .bm
                .read_lock(SUPERBLOCK_LOCATION, &SB_VALIDATOR)
                .inspect_err(|_| log("couldn't read superblock"))?;
            Superblock::unpack(&g)
        };
        sb.check_open(self.data_block_size, self.device_read_only)?;
        let mut tm_state = TmState::open(&self.bm, &sb.metadata_sm_root)
            .inspect_err(|_| log("tm_open_with_sm failed"))?;
        let data_sm = {
            let mut tm = Tm::new(&self.bm, &mut tm_state);
            DiskSm::open(&mut tm, &sb.data_sm_root).inspect_err(|_| log("sm_disk_open failed"))?
        };
        self.root = sb.data_mapping_root;
        self.details_root = sb.device_details_root;
        self.held_root = sb.held_root;
        self.pd = Some(Persistent {
            tm: tm_state,
            data_sm,
        });
        Ok(())
    }

    fn begin_transaction(&mut self) -> Result<()> {
        let sb = {
            let g = self.bm.read_lock(SUPERBLOCK_LOCATION, &SB_VALIDATOR)?;
            Superblock::unpack(&g)
        };
        self.time = sb.time;
        self.root = sb.data_mapping_root;
        self.details_root = sb.device_details_root;
        self.held_root = sb.held_root;
        self.trans_id = sb.trans_id;
        self.flags = sb.flags;
        self.data_block_size = sb.data_block_size;
        Ok(())
    }

    fn set_metadata_reserve(&mut self) {
        self.metadata_reserve = match self.pd.as_ref() {
            Some(pd) => (pd.tm.sm.nr_blocks() / 10).min(MAX_METADATA_RESERVE),
            None => MAX_METADATA_RESERVE,
        };
    }

    fn write_changed_details(&mut self) -> Result<()> {
        let pd = self.pd.as_mut().ok_or(Error::Invalid)?;
        let mut tm = Tm::new(&self.bm, &mut pd.tm);
        let mut i = 0;
        while let Some(d) = self.devices.get_mut(i) {
            if d.changed {
                let v = d.details.pack();
                self.details_root = btree::insert(
                    &mut tm,
                    &mut Details::default(),
                    self.details_root,
                    &[d.id],
                    &v,
                )?;
                if d.open_count > 0 {
                    d.changed = false;
                } else {
                    self.devices.remove(i);
                    continue;
                }
            }
            i += 1;
        }
        Ok(())
    }

    /// `__commit_transaction`: runs the hook's pre-commit step (the data
    /// device flush) first, then writes.  Publishes the new committed
    /// roots through the hook, or withdraws them if the commit failed (the
    /// committed state is then unknown until an abort).
    fn commit_transaction(&mut self) -> Result<()> {
        if !self.in_service {
            return Ok(());
        }
        // A delete is committed whole.
        self.finish_delete()?;
        self.hook.pre_commit()?;
        match self.write_commit() {
            Ok(()) => {
                self.committed = Roots {
                    mapping_root: self.root,
                    details_root: self.details_root,
                };
                self.hook.publish(Some(self.committed));
                Ok(())
            }
            Err(e) => {
                self.hook.publish(None);
                Err(e)
            }
        }
    }

    /// Writes the changed details, commits the space maps and writes the
    /// superblock.
    fn write_commit(&mut self) -> Result<()> {
        self.write_changed_details()?;
        let pd = self.pd.as_mut().ok_or(Error::Invalid)?;
        let mut tm = Tm::new(&self.bm, &mut pd.tm);
        pd.data_sm.commit(&mut tm)?;
        tm.pre_commit()?;
        let mut data_root = [0u8; SPACE_MAP_ROOT_SIZE];
        let mut meta_root = [0u8; SPACE_MAP_ROOT_SIZE];
        pd.data_sm.copy_root(&mut data_root)?;
        tm.copy_sm_root(&mut meta_root)?;
        let mut g = tm.write_lock(SUPERBLOCK_LOCATION, &SB_VALIDATOR)?;
        let mut sb = Superblock::unpack(&g);
        sb.time = self.time;
        sb.data_mapping_root = self.root;
        sb.device_details_root = self.details_root;
        sb.held_root = self.held_root;
        sb.trans_id = self.trans_id;
        sb.flags = self.flags;
        sb.data_sm_root = data_root;
        sb.metadata_sm_root = meta_root;
        sb.pack_commit_fields(&mut g);
        tm.commit(g)
    }

    /// Commits the current transaction (upstream `dm_pool_commit_metadata`).
    /// The hook's pre-commit step (upstream's pre-commit callback: flush
    /// the data device) runs first.  Does nothing, successfully, until the
    /// pool is in service.
    pub fn commit(&mut self) -> Result<()> {
        self.check_ok()?;
        self.commit_transaction()?;
        self.begin_transaction()
    }

    /// Drops every change since the last commit and reopens from disk
    /// (upstream `dm_pool_abort_metadata`).  Open devices that had
    /// changes are marked "aborted with changes".  On failure the object
    /// enters the `fail_io` state.
    pub fn abort(&mut self) -> Result<()> {
        self.check_ok()?;
        self.in_service = true;
        for d in self.devices.iter_mut() {
            d.aborted_with_changes = d.changed;
        }
        self.pd = None;
        self.pending_delete = None;
        // Reopen from the device, not from cached (possibly uncommitted)
        // copies, as upstream's fresh block manager does.
        self.bm.invalidate();
        let r = self
            .open_or_format(false)
            .and_then(|()| self.begin_transaction())
            .and_then(|()| self.reload_devices());
        match r {
            Ok(()) => {
                self.set_metadata_reserve();
                self.committed = Roots {
                    mapping_root: self.root,
                    details_root: self.details_root,
                };
                self.hook.publish(Some(self.committed));
                Ok(())
            }
            Err(e) => {
                self.pd = None;
                self.fail_io = true;
                self.hook.publish(None);
                Err(e)
            }
        }
    }

    /// After an abort: keeps only open devices and reloads their details
    /// from the committed details tree.
    fn reload_devices(&mut self) -> Result<()> {
        let mut i = 0;
        while let Some(d) = self.devices.get(i) {
            if d.open_count == 0 {
                self.devices.remove(i);
                continue;
            }
            let id = d.id;
            match self.read_details(id) {
                Ok(details) => {
                    if let Some(d) = self.devices.get_mut(i) {
                        d.details = details;
                        d.changed = false;
                    }
                    i += 1;
                }
                Err(Error::NotFound) => {
                    self.devices.remove(i);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    //--------------------------------------------------------------------
    // Helpers.

    fn check_ok(&self) -> Result<()> {
        if self.fail_io || self.pd.is_none() {
            Err(Error::Invalid)
        } else {
            Ok(())
        }
    }

    /// Upstream `pmd_write_lock`: a mutating call puts the pool in service.
    fn write_op(&mut self) -> Result<()> {
        self.in_service = true;
        self.check_ok()
    }

    fn reader(&self) -> Reader<'_, B> {
        Reader::new(&self.bm)
    }

    fn read_details(&self, id: u64) -> Result<DeviceDetails> {
        let mut v = [0u8; DEVICE_DETAILS_SIZE];
        btree::lookup(&self.reader(), self.details_root, &[id], &mut v)?;
        DeviceDetails::unpack(&v)
    }

    /// Whether device `id` exists: in core (created in this transaction,
    /// not yet written) or in the details tree.  Upstream checks only the
    /// tree, which lets a second `create_thin` of a device created in the
    /// same transaction clobber its mapping tree.
    fn details_exist(&self, id: u64) -> Result<bool> {
        if self.dev_index(id).is_some() {
            return Ok(true);
        }
        match self.read_details(id) {
            Ok(_) => Ok(true),
            Err(Error::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn dev_index(&self, id: u64) -> Option<usize> {
        self.devices.iter().position(|d| d.id == id)
    }

    fn dev(&self, td: &ThinDevice) -> Result<&DevState> {
        self.devices
            .iter()
            .find(|d| d.id == td.id && d.open_count > 0)
            .ok_or(Error::NotFound)
    }

    fn dev_mut(&mut self, td: &ThinDevice) -> Result<&mut DevState> {
        self.devices
            .iter_mut()
            .find(|d| d.id == td.id && d.open_count > 0)
            .ok_or(Error::NotFound)
    }

    /// `__open_device`: returns the index of the in-core device, loading
    /// it (or creating it when `create`), and increments its open count.
    fn open_device(&mut self, id: u64, create: bool) -> Result<usize> {
        if let Some(i) = self.dev_index(id) {
            if create {
                return Err(Error::Exists);
            }
            let d = self.devices.get_mut(i).ok_or(Error::Invalid)?;
            d.open_count = d.open_count.checked_add(1).ok_or(Error::Invalid)?;
            return Ok(i);
        }
        let (details, changed) = match self.read_details(id) {
            Ok(d) => (d, false),
            Err(Error::NotFound) if create => (
                DeviceDetails {
                    mapped_blocks: 0,
                    transaction_id: self.trans_id,
                    creation_time: self.time,
                    snapshotted_time: self.time,
                },
                true,
            ),
            Err(e) => return Err(e),
        };
        self.devices.try_push(DevState {
            id,
            open_count: 1,
            changed,
            aborted_with_changes: false,
            details,
        })?;
        Ok(self.devices.len() - 1)
    }

    fn close_device(&mut self, i: usize) {
        if let Some(d) = self.devices.get_mut(i) {
            d.open_count = d.open_count.saturating_sub(1);
        }
    }

    /// Runs `f` with a transaction handle and the data space map.
    fn with_tm<R>(
        &mut self,
        f: impl FnOnce(&mut Tm<'_, B>, &mut DiskSm) -> Result<R>,
    ) -> Result<R> {
        let pd = self.pd.as_mut().ok_or(Error::Invalid)?;
        let mut tm = Tm::new(&self.bm, &mut pd.tm);
        f(&mut tm, &mut pd.data_sm)
    }

    //--------------------------------------------------------------------
    // Devices.

    /// Creates an empty thin device (upstream `dm_pool_create_thin`).
    pub fn create_thin(&mut self, id: u64) -> Result<()> {
        self.write_op()?;
        if self.details_exist(id)? {
            return Err(Error::Exists);
        }
        let mut root = self.root;
        self.with_tm(|tm, sm| {
            let dev_root = btree::empty(tm, 8)?;
            let mut vt = Subtrees {
                data: DataBlocks { sm },
            };
            root = btree::insert(tm, &mut vt, root, &[id], &dev_root.to_le_bytes())?;
            Ok(())
        })?;
        self.root = root;
        let i = self.open_device(id, true)?;
        self.close_device(i);
        Ok(())
    }

    /// Creates snapshot `id` of device `origin` (upstream
    /// `dm_pool_create_snap`): shares the origin's tree and advances the
    /// time; both devices get the new snapshotted time.
    pub fn create_snap(&mut self, id: u64, origin: u64) -> Result<()> {
        self.write_op()?;
        if self.details_exist(id)? {
            return Err(Error::Exists);
        }
        let mut v = [0u8; 8];
        btree::lookup(&self.reader(), self.root, &[origin], &mut v)?;
        let origin_root = u64::from_le_bytes(v);
        if self.time >= MAX_TIME {
            return Err(Error::Invalid);
        }
        let mut root = self.root;
        self.with_tm(|tm, sm| {
            tm.inc(origin_root)?;
            let mut vt = Subtrees {
                data: DataBlocks { sm },
            };
            match btree::insert(tm, &mut vt, root, &[id], &origin_root.to_le_bytes()) {
                Ok(r) => {
                    root = r;
                    Ok(())
                }
                Err(e) => {
                    let _ = tm.dec(origin_root);
                    Err(e)
                }
            }
        })?;
        self.root = root;
        self.time = self.time.checked_add(1).ok_or(Error::Invalid)?;
        let time = self.time;
        let snap = self.open_device(id, true)?;
        // __set_snapshot_details
        let r = self.open_device(origin, false);
        let o = match r {
            Ok(o) => o,
            Err(e) => {
                self.close_device(snap);
                return Err(e);
            }
        };
        let mapped = match self.devices.get_mut(o) {
            Some(od) => {
                od.changed = true;
                od.details.snapshotted_time = time;
                od.details.mapped_blocks
            }
            None => 0,
        };
        if let Some(sd) = self.devices.get_mut(snap) {
            sd.details.mapped_blocks = mapped;
            sd.details.snapshotted_time = time;
        }
        self.close_device(o);
        self.close_device(snap);
        Ok(())
    }

    /// Deletes a thin device and its mappings (upstream
    /// `dm_pool_delete_thin_device`).  [`Error::Busy`] if it is open.
    pub fn delete_thin(&mut self, id: u64) -> Result<()> {
        self.delete_thin_begin(id)?;
        self.finish_delete()
    }

    /// Starts deleting device `id`: it leaves the details and mapping trees
    /// at once (it is gone for every other call), and its mapping tree is
    /// released by [`PoolMetadata::delete_step`] calls, or as a whole
    /// before the next commit.  Beyond upstream, which releases it under
    /// one lock hold: the caller may let other users of the metadata in
    /// between steps.  A delete still pending is finished first.
    pub fn delete_thin_begin(&mut self, id: u64) -> Result<()> {
        self.write_op()?;
        self.finish_delete()?;
        let i = self.open_device(id, false)?;
        if self.devices.get(i).is_some_and(|d| d.open_count > 1) {
            self.close_device(i);
            return Err(Error::Busy);
        }
        self.devices.remove(i);
        let (mut root, mut details_root) = (self.root, self.details_root);
        let r = self.with_tm(|tm, _sm| {
            // A device created in this transaction has no details entry
            // yet (upstream fails here with -ENODATA after dropping the
            // in-core device).
            match btree::remove(tm, &mut Details::default(), details_root, &[id]) {
                Ok(r) => details_root = r,
                Err(Error::NotFound) => {}
                Err(e) => return Err(e),
            }
            let mut vt = DetachSubtree { root: None };
            root = btree::remove(tm, &mut vt, root, &[id])?;
            let dev_root = vt.root.ok_or(Error::Invalid)?;
            Ok(dev_root)
        });
        self.root = root;
        self.details_root = details_root;
        let dev_root = r?;
        let cursor = self.with_tm(|tm, _sm| DelCursor::start::<B, DataBlocks<'_>>(tm, dev_root, 1));
        match cursor {
            Ok(c) if !c.is_done() => self.pending_delete = Some(c),
            Ok(_) => {}
            // As upstream's `subtree_dec`: logged, the delete stands.
            Err(_) => log_btree_delete_failed(),
        }
        Ok(())
    }

    /// Releases a little more of a deleted device's mapping tree (at most
    /// `budget` btree nodes visited); true when nothing is left to release.
    /// A tree that cannot be released (corrupt, unreadable) is logged and
    /// the rest of it left allocated, as upstream's `subtree_dec` does: the
    /// delete itself stands.
    pub fn delete_step(&mut self, budget: usize) -> Result<bool> {
        let Some(mut cursor) = self.pending_delete.take() else {
            return Ok(true);
        };
        let r = self.with_tm(|tm, sm| {
            let mut vt = DataBlocks { sm };
            cursor.step(tm, &mut vt, budget)
        });
        match r {
            Ok(false) => {
                self.pending_delete = Some(cursor);
                Ok(false)
            }
            Ok(true) => Ok(true),
            Err(_) => {
                log_btree_delete_failed();
                Ok(true)
            }
        }
    }

    /// Whether a deleted device's mapping tree is still being released.
    pub fn delete_pending(&self) -> bool {
        self.pending_delete.is_some()
    }

    fn finish_delete(&mut self) -> Result<()> {
        self.delete_step(usize::MAX).map(|_| ())
    }

    /// Compare-and-swap of the userspace transaction id (upstream
    /// `dm_pool_set_metadata_transaction_id`).
    pub fn set_transaction_id(&mut self, current: u64, new: u64) -> Result<()> {
        self.write_op()?;
        if self.trans_id != current {
            crate::env::log_error(LOG_PREFIX, format_args!("mismatched transaction id"));
            return Err(Error::Invalid);
        }
        self.trans_id = new;
        Ok(())
    }

    /// The in-core userspace transaction id.
    pub fn transaction_id(&self) -> Result<u64> {
        self.check_ok()?;
        Ok(self.trans_id)
    }

    /// The in-core snapshot time counter.
    pub fn time(&self) -> u32 {
        self.time
    }

    /// Opens thin device `id` (upstream `dm_pool_open_thin_device`);
    /// does not put the pool in service.
    pub fn open_thin(&mut self, id: u64) -> Result<ThinDevice> {
        self.check_ok()?;
        self.open_device(id, false)?;
        Ok(ThinDevice { id })
    }

    /// Closes a handle from [`PoolMetadata::open_thin`].
    pub fn close_thin(&mut self, td: ThinDevice) {
        if let Some(i) = self.dev_index(td.id) {
            self.close_device(i);
        }
    }

    /// The details of an open device as they would be committed.
    pub fn device_details(&self, td: &ThinDevice) -> Result<DeviceDetails> {
        self.check_ok()?;
        Ok(self.dev(td)?.details)
    }

    /// Number of mapped blocks of an open device.
    pub fn mapped_count(&self, td: &ThinDevice) -> Result<u64> {
        self.check_ok()?;
        Ok(self.dev(td)?.details.mapped_blocks)
    }

    /// Whether the device changed in this transaction.
    pub fn thin_changed(&self, td: &ThinDevice) -> bool {
        self.dev(td).is_ok_and(|d| d.changed)
    }

    /// Whether the last abort dropped changes of this device.
    pub fn thin_aborted_changes(&self, td: &ThinDevice) -> bool {
        self.dev(td).is_ok_and(|d| d.aborted_with_changes)
    }

    /// Whether any device changed in this transaction.
    pub fn pool_changed(&self) -> bool {
        self.devices.iter().any(|d| d.changed)
    }

    /// Every existing device id in increasing order: those in the details
    /// tree plus those created in this transaction (for tools and tests;
    /// no upstream equivalent).
    pub fn device_ids(&self) -> Result<Vec<u64>> {
        self.check_ok()?;
        let mut ids: Vec<u64> = Vec::new();
        let mut v = [0u8; DEVICE_DETAILS_SIZE];
        let mut next = 0u64;
        loop {
            match btree::lookup_next(&self.reader(), self.details_root, &[next], &mut v) {
                Ok(k) => {
                    ids.try_push(k)?;
                    match k.checked_add(1) {
                        Some(n) => next = n,
                        None => break,
                    }
                }
                Err(Error::NotFound) => break,
                Err(e) => return Err(e),
            }
        }
        for d in self.devices.iter() {
            if let Err(pos) = ids.binary_search(&d.id) {
                ids.try_insert(pos, d.id)?;
            }
        }
        Ok(ids)
    }

    /// The details of device `id` as they would be committed now (in-core
    /// copy if loaded, else the details tree).
    pub fn details_of(&self, id: u64) -> Result<DeviceDetails> {
        self.check_ok()?;
        match self.dev_index(id).and_then(|i| self.devices.get(i)) {
            Some(d) => Ok(d.details),
            None => self.read_details(id),
        }
    }

    /// The first mapping of device `id` at or after virtual block `from`:
    /// `(vblock, data_block, time)`, or `None` (for tools and tests).
    pub fn next_mapping(&self, id: u64, from: u64) -> Result<Option<(u64, u64, u32)>> {
        self.check_ok()?;
        let mut v = [0u8; 8];
        match btree::lookup_next(&self.reader(), self.root, &[id, from], &mut v) {
            Ok(k) => {
                let (b, t) = unpack_block_time(u64::from_le_bytes(v));
                Ok(Some((k, b, t)))
            }
            Err(Error::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    //--------------------------------------------------------------------
    // Mappings.

    fn unpack_lookup(d: &DevState, v: u64) -> LookupResult {
        let (block, time) = unpack_block_time(v);
        LookupResult {
            block,
            shared: d.details.snapshotted_time > time,
        }
    }

    fn find_block(&self, td: &ThinDevice, vblock: u64, can_block: bool) -> Result<LookupResult> {
        self.check_ok()?;
        let d = self.dev(td)?;
        let r = if can_block {
            Reader::new(&self.bm)
        } else {
            Reader::non_blocking(&self.bm)
        };
        let mut v = [0u8; 8];
        btree::lookup(&r, self.root, &[td.id, vblock], &mut v)?;
        Ok(Self::unpack_lookup(d, u64::from_le_bytes(v)))
    }

    /// Looks up virtual block `vblock` (may read blocks).
    /// [`Error::NotFound`] if unmapped.
    pub fn lookup(&self, td: &ThinDevice, vblock: u64) -> Result<LookupResult> {
        self.find_block(td, vblock, true)
    }

    /// Like [`PoolMetadata::lookup`] but only uses cached blocks:
    /// [`Error::WouldBlock`] when a block would have to be read.
    pub fn try_lookup(&self, td: &ThinDevice, vblock: u64) -> Result<LookupResult> {
        self.find_block(td, vblock, false)
    }

    /// Finds the first run of mapped blocks in `[begin, end)` that map to
    /// consecutive data blocks with the same shared flag (upstream
    /// `dm_thin_find_mapped_range`).  [`Error::NotFound`] if none.
    pub fn find_mapped_range(&self, td: &ThinDevice, begin: u64, end: u64) -> Result<MappedRange> {
        self.check_ok()?;
        let d = self.dev(td)?;
        if end < begin {
            return Err(Error::NotFound);
        }
        let mut v = [0u8; 8];
        let first = btree::lookup_next(&self.reader(), self.root, &[td.id, begin], &mut v)?;
        if first >= end {
            return Err(Error::NotFound);
        }
        let l = Self::unpack_lookup(d, u64::from_le_bytes(v));
        // first < end, so these cannot overflow; block < 2^40.
        let mut cur = first.saturating_add(1);
        let mut pool_end = l.block.saturating_add(1);
        while cur < end {
            match self.find_block(td, cur, true) {
                Ok(n) => {
                    if n.block != pool_end || n.shared != l.shared {
                        break;
                    }
                }
                Err(Error::NotFound) => break,
                Err(e) => return Err(e),
            }
            pool_end = pool_end.saturating_add(1);
            cur = cur.saturating_add(1);
        }
        Ok(MappedRange {
            thin_begin: first,
            thin_end: cur,
            pool_begin: l.block,
            maybe_shared: l.shared,
        })
    }

    /// Maps `vblock` to `data_block` at the current time (upstream
    /// `dm_thin_insert_block`).  An overwritten different block loses a
    /// reference; the data block's own reference comes from its
    /// allocation.
    pub fn insert(&mut self, td: &ThinDevice, vblock: u64, data_block: u64) -> Result<()> {
        self.write_op()?;
        self.dev(td)?;
        let v = pack_block_time(data_block, self.time)?;
        let id = td.id;
        let mut root = self.root;
        let inserted = self.with_tm(|tm, sm| {
            let (r, inserted) = btree::insert_notify(
                tm,
                &mut DataBlocks { sm },
                root,
                &[id, vblock],
                &v.to_le_bytes(),
            )?;
            root = r;
            Ok(inserted)
        })?;
        self.root = root;
        let d = self.dev_mut(td)?;
        d.changed = true;
        if inserted {
            d.details.mapped_blocks = d.details.mapped_blocks.saturating_add(1);
        }
        Ok(())
    }

    /// Unmaps one virtual block (the pre-6.x `dm_thin_remove_block`);
    /// [`Error::NotFound`] if it is not mapped.
    pub fn remove(&mut self, td: &ThinDevice, vblock: u64) -> Result<()> {
        self.write_op()?;
        self.dev(td)?;
        let id = td.id;
        let mut root = self.root;
        self.with_tm(|tm, sm| {
            root = btree::remove(tm, &mut DataBlocks { sm }, root, &[id, vblock])?;
            Ok(())
        })?;
        self.root = root;
        let d = self.dev_mut(td)?;
        d.details.mapped_blocks = d.details.mapped_blocks.saturating_sub(1);
        d.changed = true;
        Ok(())
    }

    /// Unmaps every block in `[begin, end)` (upstream
    /// `dm_thin_remove_range` / `__remove_range`).
    pub fn remove_range(&mut self, td: &ThinDevice, begin: u64, end: u64) -> Result<()> {
        self.write_op()?;
        self.dev(td)?;
        let id = td.id;
        let mut v = [0u8; 8];
        btree::lookup(&self.reader(), self.root, &[id], &mut v)?;
        let mut mapping_root = u64::from_le_bytes(v);
        let mut root = self.root;
        let mut total: u64 = 0;
        let r = self.with_tm(|tm, sm| {
            // Take an extra reference so removing the device from the
            // top level does not delete its tree.
            tm.inc(mapping_root)?;
            root = btree::remove(
                tm,
                &mut Subtrees {
                    data: DataBlocks { sm: &mut *sm },
                },
                root,
                &[id],
            )?;
            let mut begin = begin;
            while begin < end {
                let mut v = [0u8; 8];
                match btree::lookup_next(&tm.reader(), mapping_root, &[begin], &mut v) {
                    Ok(k) => begin = k,
                    Err(Error::NotFound) => break,
                    Err(e) => return Err(e),
                }
                if begin >= end {
                    break;
                }
                let (r, count) = btree::remove_leaves(
                    tm,
                    &mut DataBlocks { sm: &mut *sm },
                    mapping_root,
                    &[begin],
                    end,
                )?;
                mapping_root = r;
                total = total.saturating_add(count);
            }
            root = btree::insert(
                tm,
                &mut Subtrees {
                    data: DataBlocks { sm },
                },
                root,
                &[id],
                &mapping_root.to_le_bytes(),
            )?;
            Ok(())
        });
        self.root = root;
        let d = self.dev_mut(td)?;
        d.details.mapped_blocks = d.details.mapped_blocks.saturating_sub(total);
        d.changed = true;
        r
    }

    /// Highest mapped virtual block of the device, `None` if it has no
    /// mappings (upstream `dm_thin_get_highest_mapped_block`).
    pub fn highest_mapped(&self, td: &ThinDevice) -> Result<Option<u64>> {
        self.check_ok()?;
        self.dev(td)?;
        let mut v = [0u8; 8];
        btree::lookup(&self.reader(), self.root, &[td.id], &mut v)?;
        btree::find_highest_key(&self.reader(), u64::from_le_bytes(v))
    }

    //--------------------------------------------------------------------
    // Data blocks.

    /// Allocates a data block (count 1) (upstream
    /// `dm_pool_alloc_data_block`).  [`Error::NoSpace`] when full.
    pub fn alloc_data_block(&mut self) -> Result<u64> {
        self.write_op()?;
        self.with_tm(|tm, sm| sm.new_block(tm))
    }

    /// Whether data block `b` has more than one reference.
    pub fn block_is_shared(&mut self, b: u64) -> Result<bool> {
        self.check_ok()?;
        self.with_tm(|tm, sm| Ok(sm.get_count(tm, b)? > 1))
    }

    /// Reference count of data block `b`.
    pub fn data_block_count(&mut self, b: u64) -> Result<u32> {
        self.check_ok()?;
        self.with_tm(|tm, sm| sm.get_count(tm, b))
    }

    /// Increments the counts of data blocks `[b, e)`.
    pub fn inc_data_range(&mut self, b: u64, e: u64) -> Result<()> {
        self.write_op()?;
        self.with_tm(|tm, sm| sm.inc_blocks(tm, b, e))
    }

    /// Decrements the counts of data blocks `[b, e)`.
    pub fn dec_data_range(&mut self, b: u64, e: u64) -> Result<()> {
        self.write_op()?;
        self.with_tm(|tm, sm| sm.dec_blocks(tm, b, e))
    }

    //--------------------------------------------------------------------
    // Metadata snapshot.

    /// Commits, then takes a metadata snapshot (upstream
    /// `dm_pool_reserve_metadata_snap`).  [`Error::Busy`] (and nothing
    /// else happens) if one is held.  The held root reaches disk with the
    /// next commit.
    pub fn reserve_metadata_snap(&mut self) -> Result<()> {
        self.write_op()?;
        if self.held_root != 0 {
            crate::env::log_error(
                LOG_PREFIX,
                format_args!(
                    "Pool metadata snapshot already exists: release this before taking another."
                ),
            );
            return Err(Error::Busy);
        }
        self.commit_transaction()?;
        let held = self.with_tm(|tm, _sm| {
            tm.inc(SUPERBLOCK_LOCATION)?;
            let (mut copy, loc, inc) = match tm.shadow(SUPERBLOCK_LOCATION, &SB_VALIDATOR) {
                Ok(x) => x,
                Err(e) => {
                    let _ = tm.dec(SUPERBLOCK_LOCATION);
                    return Err(e);
                }
            };
            if !inc {
                return Err(Error::Invalid);
            }
            let mut sb = Superblock::unpack(&copy);
            sb.data_sm_root = [0; SPACE_MAP_ROOT_SIZE];
            sb.metadata_sm_root = [0; SPACE_MAP_ROOT_SIZE];
            sb.pack_commit_fields(&mut copy);
            drop(copy);
            tm.inc(sb.data_mapping_root)?;
            tm.inc(sb.device_details_root)?;
            Ok(loc)
        })?;
        self.held_root = held;
        Ok(())
    }

    /// Releases the metadata snapshot (upstream
    /// `dm_pool_release_metadata_snap`).  [`Error::Invalid`] if none.
    pub fn release_metadata_snap(&mut self) -> Result<()> {
        self.write_op()?;
        let held = self.held_root;
        if held == 0 {
            crate::env::log_error(
                LOG_PREFIX,
                format_args!("No pool metadata snapshot found: nothing to release."),
            );
            return Err(Error::Invalid);
        }
        let sb = {
            let g = self.reader().lock(held, &SB_VALIDATOR)?;
            Superblock::unpack(&g)
        };
        self.held_root = 0;
        self.with_tm(|tm, sm| {
            btree::del(tm, &mut DataBlocks { sm }, sb.data_mapping_root, 2)?;
            btree::del(tm, &mut Details::default(), sb.device_details_root, 1)?;
            tm.dec(held)
        })
    }

    /// Location of the held metadata snapshot, 0 if none.
    pub fn metadata_snap(&self) -> Result<u64> {
        self.check_ok()?;
        Ok(self.held_root)
    }

    //--------------------------------------------------------------------
    // Space accounting and resize.

    /// Free data blocks as upstream reports them (blocks freed in this
    /// transaction count as free).
    pub fn free_data_blocks(&self) -> Result<u64> {
        self.check_ok()?;
        let pd = self.pd.as_ref().ok_or(Error::Invalid)?;
        Ok(pd.data_sm.nr_free())
    }

    /// Size of the data space map (committed size).
    pub fn data_dev_size(&self) -> Result<u64> {
        self.check_ok()?;
        let pd = self.pd.as_ref().ok_or(Error::Invalid)?;
        Ok(pd.data_sm.nr_blocks())
    }

    /// Free metadata blocks as upstream reports them: the space map's
    /// free count minus the reserve, floored at 0.
    pub fn free_metadata_blocks(&self) -> Result<u64> {
        self.check_ok()?;
        let pd = self.pd.as_ref().ok_or(Error::Invalid)?;
        Ok(pd.tm.sm.nr_free().saturating_sub(self.metadata_reserve))
    }

    /// Size of the metadata space map in blocks.
    pub fn metadata_dev_size(&self) -> Result<u64> {
        self.check_ok()?;
        let pd = self.pd.as_ref().ok_or(Error::Invalid)?;
        Ok(pd.tm.sm.nr_blocks())
    }

    /// Registers the low-free-metadata threshold (upstream
    /// `dm_pool_register_metadata_threshold`); the event is
    /// edge-triggered, see [`PoolMetadata::take_metadata_threshold_event`].
    pub fn set_metadata_threshold(&mut self, threshold: u64) -> Result<()> {
        self.check_ok()?;
        let pd = self.pd.as_mut().ok_or(Error::Invalid)?;
        pd.tm.sm.set_threshold(threshold);
        Ok(())
    }

    /// Whether the metadata free count fell to or below the threshold
    /// since the last call (upstream calls `metadata_low_callback`).
    pub fn take_metadata_threshold_event(&mut self) -> bool {
        match self.pd.as_mut() {
            Some(pd) => pd.tm.sm.take_threshold_event(),
            None => false,
        }
    }

    /// The metadata reserve in blocks: min(4096, nr_blocks / 10).
    pub fn metadata_reserve(&self) -> u64 {
        self.metadata_reserve
    }

    /// Grows the data space map to `new_count` blocks (upstream
    /// `dm_pool_resize_data_dev`); [`Error::Invalid`] on shrink.  Commit
    /// before allocating the new space.
    pub fn resize_data_dev(&mut self, new_count: u64) -> Result<()> {
        self.write_op()?;
        self.with_tm(|tm, sm| {
            let old = sm.nr_blocks();
            if new_count == old {
                Ok(())
            } else if new_count < old {
                Err(Error::Invalid)
            } else {
                sm.extend(tm, new_count - old)
            }
        })
    }

    /// Grows the metadata space map to `new_count` blocks (upstream
    /// `dm_pool_resize_metadata_dev`); [`Error::Invalid`] on shrink.
    pub fn resize_metadata_dev(&mut self, new_count: u64) -> Result<()> {
        self.write_op()?;
        self.with_tm(|tm, _sm| {
            let old = tm.sm_nr_blocks();
            if new_count == old {
                Ok(())
            } else if new_count < old {
                Err(Error::Invalid)
            } else {
                tm.sm_extend_by(new_count - old)
            }
        })?;
        self.set_metadata_reserve();
        Ok(())
    }

    //--------------------------------------------------------------------
    // Flags and modes.

    /// Sets NEEDS_CHECK in core and in the cached superblock (upstream
    /// `dm_pool_metadata_set_needs_check`; not a commit).
    pub fn set_needs_check(&mut self) -> Result<()> {
        self.write_op()?;
        self.flags |= NEEDS_CHECK_FLAG;
        let mut g = self.bm.write_lock(SUPERBLOCK_LOCATION, &SB_VALIDATOR)?;
        super::superblock::set_flags(&mut g, self.flags);
        Ok(())
    }

    /// Whether NEEDS_CHECK is set.
    pub fn needs_check(&self) -> bool {
        self.flags & NEEDS_CHECK_FLAG != 0
    }

    /// The in-core superblock flags.
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// Switches the block manager to read-only mode.
    pub fn set_read_only(&mut self) {
        self.bm.set_read_only(true);
    }

    /// Switches the block manager back to read-write mode.
    pub fn set_read_write(&mut self) {
        self.bm.set_read_only(false);
    }

    /// Whether the pool has been put in service since open.
    pub fn in_service(&self) -> bool {
        self.in_service
    }

    /// Whether an abort failed and the object only accepts close.
    pub fn failed(&self) -> bool {
        self.fail_io
    }

    /// The data block size in sectors.
    pub fn data_block_size(&self) -> u32 {
        self.data_block_size
    }
}
