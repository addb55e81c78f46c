// SPDX-License-Identifier: GPL-2.0

//! The `thin-pool` target.
//!
//! The constructor validates its table line exactly as upstream's
//! `pool_ctr` does, in the same order (argument count, device strings,
//! feature group, metadata device, data device, block size, low water
//! mark, metadata open), with upstream's messages.  The metadata is opened
//! as upstream's `pool_create` does — a blank metadata device is formatted,
//! an existing one validated (superblock, data block size, feature flags,
//! space maps) — and closed again.  The pool itself (worker,
//! provisioning, messages) is not implemented yet: a valid line is then
//! refused with "Pool is not implemented yet" and -EOPNOTSUPP, never a
//! fake pool.

use core::ffi::CStr;
use kernel::alloc::KBox;
use kernel::bindings;

use kernel::prelude::*;

use crate::dm::args::Args;
use crate::dm::bio::{MapBio, Mapped};
use crate::dm::bufio::BufioBm;
use crate::dm::dev::{DmDev, Mode};
use crate::dm::status::StatusWriter;
use crate::dm::target::{Callout, CtrError, StatusKind, Target, TargetCtx};
use crate::pdata::block_manager::BLOCK_SECTORS;
use crate::pdata::error::Error as PdError;
use crate::pdata::thin::metadata::{OpenOptions, PoolMetadata};
use crate::thin::table::{self, PoolFeatures, RequestedMode};

/// Metadata devices larger than this many sectors get a warning: the
/// metadata space map cannot use more (`THIN_METADATA_MAX_SECTORS_WARNING`).
const THIN_METADATA_MAX_SECTORS_WARNING: u64 = 16 * (1024 * 1024 * 1024 >> 9);
/// The most metadata sectors a pool uses (`THIN_METADATA_MAX_SECTORS`):
/// 255 bitmaps of 16320 blocks of 8 sectors.
const THIN_METADATA_MAX_SECTORS: u64 = 255 * ((1 << 14) - 64) * 8;

/// A `thin-pool` table (upstream's `struct pool_c`).
pub(crate) struct PoolTarget {
    len: u64,
    metadata_dev: DmDev,
    data_dev: DmDev,
    block_size: u32,
    low_water_blocks: u64,
    requested: PoolFeatures,
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
        // Upstream `__pool_find` -> `pool_create` -> `dm_pool_metadata_open`:
        // open the metadata, formatting a blank device unless read_only.
        // No pool object ever exists yet, so the lookups by metadata device
        // and mapped device find nothing.
        open_metadata(&metadata_dev, block_size, features.mode)?;
        let _pool = PoolTarget {
            len: ti.len(),
            metadata_dev,
            data_dev,
            block_size,
            low_water_blocks,
            requested: features,
        };
        let eopnotsupp = kernel::error::Error::from_errno(-(bindings::EOPNOTSUPP as i32));
        Err(CtrError::new(c"Pool is not implemented yet", eopnotsupp))
    }

    /// Upstream's `pool_map`: the pool device is a linear view of the data
    /// device.
    fn map<'a>(&self, bio: MapBio<'a>) -> Mapped<'a> {
        bio.remap(&self.data_dev)
    }

    /// Upstream's `pool_status`.  Table output reflects the requested
    /// features, in upstream's order.  Info output needs the metadata,
    /// which is not implemented yet: it reports `Error`, as upstream does
    /// when a metadata query fails.
    fn status(&self, kind: StatusKind, _flags: u32, out: &mut StatusWriter<'_>) {
        use core::fmt::Write;
        let _ = match kind {
            StatusKind::Info => out.write_str("Error"),
            StatusKind::Table => self.write_table(out),
            StatusKind::Ima => Ok(()),
        };
    }

    /// Upstream's `pool_iterate_devices`: the whole data device range.
    fn iterate_devices(&self, callout: &mut Callout<'_>) -> i32 {
        callout.call(&self.data_dev, 0, self.len)
    }
}

impl PoolTarget {
    fn write_table(&self, out: &mut StatusWriter<'_>) -> core::fmt::Result {
        use core::fmt::Write;
        write!(
            out,
            "{} {} {} {} ",
            self.metadata_dev.name(),
            self.data_dev.name(),
            self.block_size,
            self.low_water_blocks
        )?;
        write!(out, "{} ", self.requested.words().count())?;
        for word in self.requested.words() {
            write!(out, "{word} ")?;
        }
        Ok(())
    }
}

/// Opens the pool metadata as upstream's `dm_pool_metadata_open` does
/// (format a blank device unless the pool is read-only; validate the
/// superblock, data block size and feature flags; open both space maps),
/// then closes it again, committing a fresh format.  Failures are
/// upstream's "Error creating metadata object" with the metadata error's
/// errno.
fn open_metadata(dev: &DmDev, block_size: u32, mode: RequestedMode) -> Result<(), CtrError> {
    let fail = |e: PdError| {
        CtrError::new(
            c"Error creating metadata object",
            kernel::error::Error::from_errno(-e.errno()),
        )
    };
    let nr_blocks = dev.nr_sectors().min(THIN_METADATA_MAX_SECTORS) / u64::from(BLOCK_SECTORS);
    let bm = BufioBm::new(dev, nr_blocks).map_err(|e| {
        // Upstream's DMERR from dm-thin-metadata.c ("thin metadata" prefix).
        crate::dm::log::print(
            crate::dm::log::Level::Err,
            c"thin metadata",
            format_args!("could not create block manager"),
        );
        fail(e)
    })?;
    let opts = OpenOptions {
        data_block_size: block_size,
        format: mode == RequestedMode::Write,
        read_only: dev.read_only(),
    };
    let pmd = PoolMetadata::open(bm, opts).map_err(fail)?;
    pmd.close().map_err(|(_, e)| fail(e))?;
    Ok(())
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
