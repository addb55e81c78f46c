// SPDX-License-Identifier: GPL-2.0

//! The `thin-pool` target (upstream's `struct pool_c` and `pool_*`
//! target operations).
//!
//! The constructor validates its table line exactly as upstream's
//! `pool_ctr` does, in the same order (argument count, device strings,
//! feature group, metadata device, data device, block size, low water
//! mark), with upstream's messages, then finds the pool object of this
//! mapped device or metadata device in the pool table, or creates it
//! (opening the metadata, formatting a blank device unless `read_only`).
//! The pool object outlives reloads of the table; the table binds its
//! features to it at preresume.  The pool device itself is a linear view
//! of the data device.

use core::ffi::CStr;
use core::sync::atomic::{AtomicBool, Ordering};
use kernel::alloc::KBox;
use kernel::bindings;

use kernel::prelude::*;

use super::message::{self, Message};
use super::pool::{Pool, PoolMode, THIN_METADATA_MAX_SECTORS};
use super::registry::{self, PoolRef};
use crate::dm::args::Args;
use crate::dm::bio::{MapBio, Mapped};
use crate::dm::dev::{DmDev, Mode};
use crate::dm::log::{self, Level};
use crate::dm::status::StatusWriter;
use crate::dm::target::{
    Callout, CtrError, QueueLimits, StatusKind, Target, TargetCtx, TargetHandle,
};
use crate::pdata::error::Error as PdError;
use crate::thin::table::{self, PoolFeatures, RequestedMode};

/// Metadata devices larger than this many sectors get a warning: the
/// metadata space map cannot use more (`THIN_METADATA_MAX_SECTORS_WARNING`).
const THIN_METADATA_MAX_SECTORS_WARNING: u64 = 16 * (1024 * 1024 * 1024 >> 9);

/// `DM_STATUS_NOFLUSH_FLAG` (private `drivers/md/dm.h`).
const DM_STATUS_NOFLUSH_FLAG: u32 = 1;

/// A `thin-pool` table (upstream's `struct pool_c`).
pub(crate) struct PoolTarget {
    pool: PoolRef,
    ti: TargetHandle,
    len: u64,
    metadata_dev: DmDev,
    data_dev: DmDev,
    low_water_blocks: u64,
    requested: PoolFeatures,
    /// Requested features as adjusted for the devices (discard passdown
    /// turned off when the data device cannot take it).
    adjusted_passdown: AtomicBool,
}

#[vtable]
impl Target for PoolTarget {
    const NAME: &'static CStr = c"thin-pool";
    const VERSION: [u32; 3] = super::TARGET_VERSION;
    const FEATURES: u64 = (bindings::DM_TARGET_SINGLETON
        | bindings::DM_TARGET_ALWAYS_WRITEABLE
        | bindings::DM_TARGET_IMMUTABLE) as u64;

    fn ctr(ti: &mut TargetCtx<'_>, args: &Args<'_>) -> Result<KBox<Self>, CtrError> {
        let argv = args.bytes();
        let features = table::pool_check_args(argv)?;
        let (Some(meta_path), Some(data_path), Some(bs_arg), Some(lwm_arg)) =
            (args.c_str(0), args.c_str(1), argv.get(2), argv.get(3))
        else {
            return Err(CtrError::new(c"Invalid argument count", EINVAL));
        };
        let meta_mode = match features.mode {
            RequestedMode::ReadOnly => Mode::Read,
            RequestedMode::Write => Mode::ReadWrite,
        };
        let metadata_dev = DmDev::get(ti, meta_path, meta_mode)
            .map_err(|e| CtrError::new(c"Error opening metadata block device", e))?;
        warn_if_metadata_device_too_big(&metadata_dev);
        let data_dev = DmDev::get(ti, data_path, Mode::ReadWrite)
            .map_err(|e| CtrError::new(c"Error getting data device", e))?;
        let block_size = table::pool_block_size(bs_arg)?;
        let low_water_blocks = table::pool_low_water_mark(lwm_arg)?;
        let md = ti.md();
        let (pool, created) =
            registry::find_or_create(md.key(), metadata_dev.dev_t(), data_dev.dev_t(), || {
                Pool::create(
                    md,
                    metadata_dev.dev_t(),
                    data_dev.dev_t(),
                    block_size,
                    features.mode == RequestedMode::ReadOnly,
                )
                .map_err(|e| (e.msg, e.err))
            })
            .map_err(|(msg, err)| CtrError::new(msg, err))?;
        if !created && features.discard_enabled != pool.discard_enabled() {
            return Err(CtrError::new(
                c"Discard support cannot be disabled once enabled",
                EINVAL,
            ));
        }
        ti.set_flush_bios(1, false);
        if features.discard_enabled && features.discard_passdown {
            ti.set_discards(1, true, true);
        }
        // Beyond upstream: WRITE_ZEROES passes through to the data device
        // (dm core offers it only when the data device has it), so that
        // thins can offer it (dm core requires it of the pool device).
        if features.discard_enabled {
            ti.set_write_zeroes_bios(1);
        }
        let metadata_threshold = calc_metadata_threshold(&metadata_dev);
        // Upstream registers the metadata low water mark at every table
        // load, before the pre-commit callback (`pool_ctr`).
        pool.set_metadata_threshold(metadata_threshold)
            .map_err(|_| CtrError::new(c"Error registering metadata threshold", EINVAL))?;
        Ok(KBox::new(
            PoolTarget {
                pool,
                ti: ti.handle(),
                len: ti.len(),
                metadata_dev,
                data_dev,
                low_water_blocks,
                requested: features,
                adjusted_passdown: AtomicBool::new(features.discard_passdown),
            },
            GFP_KERNEL,
        )
        .map_err(|_| CtrError::new(c"Error allocating pool context", ENOMEM))?)
    }

    /// Upstream's `pool_map`: the pool device is a linear view of the data
    /// device.
    fn map<'a>(&self, bio: MapBio<'a>) -> Mapped<'a> {
        bio.remap(&self.data_dev)
    }

    /// Upstream's `pool_status`.
    fn status(&self, kind: StatusKind, flags: u32, out: &mut StatusWriter<'_>) {
        let _ = match kind {
            StatusKind::Info => self.write_info(flags, out),
            StatusKind::Table => self.write_table(out),
            StatusKind::Ima => Ok(()),
        };
    }

    /// Upstream's `pool_message`.
    fn message(&self, args: &Args<'_>, _out: &mut StatusWriter<'_>) -> Result {
        let pool = &*self.pool;
        if pool.mode().refuses_messages() {
            log::print(
                Level::Err,
                c"thin",
                format_args!(
                    "{}: unable to service pool target messages in READ_ONLY or FAIL mode",
                    pool.name()
                ),
            );
            return Err(super::pool::eopnotsupp());
        }
        let argv = args.bytes();
        let msg = match message::parse(argv) {
            Ok(m) => m,
            Err(e) => {
                dm_warn!("{}", e.warning);
                return Err(kernel::error::Error::from_errno(-e.errno));
            }
        };
        let mut meta = pool.meta.write();
        let r = match msg {
            Message::CreateThin { id } => meta.pmd.create_thin(id),
            Message::CreateSnap { id, origin } => meta.pmd.create_snap(id, origin),
            Message::Delete { id } => {
                let (m, r) = pool.delete_thin(meta, id);
                meta = m;
                r
            }
            Message::SetTransactionId { current, new } => meta.pmd.set_transaction_id(current, new),
            Message::ReserveMetadataSnap => {
                let _ = pool.commit(&mut meta);
                meta.pmd.reserve_metadata_snap()
            }
            Message::ReleaseMetadataSnap => meta.pmd.release_metadata_snap(),
        };
        pool.metadata_low_check(&mut meta);
        match r {
            Ok(()) => {
                let _ = pool.commit(&mut meta);
                Ok(())
            }
            Err(e) => {
                dm_warn!("{}", message::failure_warning(argv, &msg));
                Err(kernel::error::Error::from_errno(-e.errno()))
            }
        }
    }

    /// Upstream's `pool_iterate_devices`: the whole data device range.
    fn iterate_devices(&self, callout: &mut Callout<'_>) -> i32 {
        callout.call(&self.data_dev, 0, self.len)
    }

    /// Upstream's `pool_io_hints`: I/O sizes matched to the block size,
    /// and discard passdown turned off when the data device cannot take
    /// it.
    fn io_hints(&self, limits: &mut QueueLimits<'_>) {
        let bs = self.pool.block_size;
        let is_factor = |a: u32, b: u32| b != 0 && a % b == 0;
        if limits.max_sectors() < bs {
            let mut m = limits.max_sectors();
            while m > 1 && !is_factor(bs, m) {
                if m & (m - 1) == 0 {
                    m -= 1;
                }
                // rounddown_pow_of_two
                m = 1 << (31 - m.leading_zeros());
            }
            limits.set_max_sectors(m);
        }
        let io_opt_sectors = limits.io_opt() >> 9;
        if io_opt_sectors < bs || !is_factor(io_opt_sectors, bs) {
            if is_factor(bs, limits.max_sectors()) {
                limits.set_io_min(limits.max_sectors() << 9);
            } else {
                limits.set_io_min(bs << 9);
            }
            limits.set_io_opt(bs << 9);
        }
        if self.requested.discard_enabled {
            self.disable_discard_passdown_if_not_supported();
            if !self.adjusted_passdown.load(Ordering::Acquire) {
                limits.set_max_hw_discard_sectors(0);
            }
        } else {
            limits.set_discard_granularity(0);
        }
    }

    /// Upstream's `pool_presuspend`.
    fn presuspend(&self, _ti: TargetHandle) {
        self.pool.presuspend();
    }

    /// Upstream's `pool_presuspend_undo`.
    fn presuspend_undo(&self, _ti: TargetHandle) {
        self.pool.presuspend_undo();
    }

    /// Upstream's `pool_postsuspend`.
    fn postsuspend(&self, _ti: TargetHandle) {
        self.pool.postsuspend();
    }

    /// Upstream's `pool_preresume`: bind this table, grow the data space.
    fn preresume(&self, ti: TargetHandle) -> Result {
        let mut features = self.requested;
        if features.discard_enabled {
            features.discard_passdown = self.adjusted_passdown.load(Ordering::Acquire);
        }
        self.pool.preresume(
            ti,
            &features,
            &self.requested,
            self.low_water_blocks,
            self.len,
        )
    }

    /// Upstream's `pool_resume`.
    fn resume(&self, _ti: TargetHandle) {
        self.pool.resume();
    }
}

impl Drop for PoolTarget {
    /// Upstream's `pool_dtr`: unbind, then drop the pool reference (the
    /// last one destroys the pool).
    fn drop(&mut self) {
        self.pool.unbind(self.ti);
    }
}

impl PoolTarget {
    /// Upstream's `disable_discard_passdown_if_not_supported`.
    fn disable_discard_passdown_if_not_supported(&self) {
        if !self.adjusted_passdown.load(Ordering::Acquire) {
            return;
        }
        let max = self.data_dev.max_discard_sectors();
        let reason = if max == 0 {
            "discard unsupported"
        } else if max < self.pool.block_size {
            "max discard sectors smaller than a block"
        } else {
            return;
        };
        dm_warn!(
            "Data device ({}) {}: Disabling discard passdown.",
            self.data_dev.bdev_name(),
            reason
        );
        self.adjusted_passdown.store(false, Ordering::Release);
    }

    fn write_table(&self, out: &mut StatusWriter<'_>) -> core::fmt::Result {
        use core::fmt::Write;
        write!(
            out,
            "{} {} {} {} ",
            self.metadata_dev.name(),
            self.data_dev.name(),
            self.pool.block_size,
            self.low_water_blocks
        )?;
        write!(out, "{} ", self.requested.words().count())?;
        for word in self.requested.words() {
            write!(out, "{word} ")?;
        }
        Ok(())
    }

    fn write_info(&self, flags: u32, out: &mut StatusWriter<'_>) -> core::fmt::Result {
        use core::fmt::Write;
        let pool = &*self.pool;
        if pool.mode() == PoolMode::Fail {
            return out.write_str("Fail");
        }
        // A commit and reads change no mapping (a failed commit aborts,
        // which retires the mapping cache itself).
        let mut meta = pool.meta.write_keeping_generation();
        if flags & DM_STATUS_NOFLUSH_FLAG == 0 && !self.ti.suspended() {
            let _ = pool.commit(&mut meta);
        }
        let q = (|| -> Result<_, (&'static str, PdError)> {
            let trans = meta
                .pmd
                .transaction_id()
                .map_err(|e| ("dm_pool_get_metadata_transaction_id", e))?;
            let free_meta = meta
                .pmd
                .free_metadata_blocks()
                .map_err(|e| ("dm_pool_get_free_metadata_block_count", e))?;
            let total_meta = meta
                .pmd
                .metadata_dev_size()
                .map_err(|e| ("dm_pool_get_metadata_dev_size", e))?;
            let free_data = meta
                .pmd
                .free_data_blocks()
                .map_err(|e| ("dm_pool_get_free_block_count", e))?;
            let total_data = meta
                .pmd
                .data_dev_size()
                .map_err(|e| ("dm_pool_get_data_dev_size", e))?;
            let held = meta
                .pmd
                .metadata_snap()
                .map_err(|e| ("dm_pool_get_metadata_snap", e))?;
            Ok((trans, free_meta, total_meta, free_data, total_data, held))
        })();
        let needs_check = meta.pmd.needs_check();
        drop(meta);
        let (trans, free_meta, total_meta, free_data, total_data, held) = match q {
            Ok(v) => v,
            Err((what, e)) => {
                log::print(
                    Level::Err,
                    c"thin",
                    format_args!("{}: {} returned {}", pool.name(), what, -e.errno()),
                );
                return out.write_str("Error");
            }
        };
        write!(
            out,
            "{} {}/{} {}/{} ",
            trans,
            total_meta.saturating_sub(free_meta),
            total_meta,
            total_data.saturating_sub(free_data),
            total_data
        )?;
        if held != 0 {
            write!(out, "{held} ")?;
        } else {
            out.write_str("- ")?;
        }
        write!(out, "{} ", pool.mode().status_word())?;
        let f = pool.bound_features();
        out.write_str(if !f.discard_enabled {
            "ignore_discard "
        } else if f.discard_passdown {
            "discard_passdown "
        } else {
            "no_discard_passdown "
        })?;
        out.write_str(if f.error_if_no_space {
            "error_if_no_space "
        } else {
            "queue_if_no_space "
        })?;
        out.write_str(if needs_check { "needs_check " } else { "- " })?;
        // From the metadata device's size now, as upstream: a device grown
        // under this table shows its new threshold.
        write!(out, "{} ", calc_metadata_threshold(&self.metadata_dev))
    }
}

/// Upstream's `calc_metadata_threshold`: a quarter of the (capped)
/// metadata device in blocks, at most 1024.
fn calc_metadata_threshold(dev: &DmDev) -> u64 {
    let blocks = dev.nr_sectors().min(THIN_METADATA_MAX_SECTORS) / 8;
    (blocks / 4).min(1024)
}

/// Upstream's `warn_if_metadata_device_too_big`.
fn warn_if_metadata_device_too_big(dev: &DmDev) {
    if dev.nr_sectors() > THIN_METADATA_MAX_SECTORS_WARNING {
        dm_warn!(
            "Metadata device {} is larger than {} sectors: excess space will not be used.",
            dev.bdev_name(),
            THIN_METADATA_MAX_SECTORS
        );
    }
}
