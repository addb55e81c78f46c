// SPDX-License-Identifier: GPL-2.0

//! The `thin` target.
//!
//! The constructor validates its table line exactly as upstream's
//! `thin_ctr` does, in the same order (argument count, origin string,
//! origin device, pool device, device id, pool mapped device, pool object),
//! with upstream's messages.  No pool object exists until the pool logic
//! lands, so every line that gets that far is refused with upstream's
//! "Couldn't find pool object".

use core::ffi::CStr;
use kernel::alloc::KBox;

use kernel::prelude::*;

use crate::dm::args::Args;
use crate::dm::bio::{MapBio, Mapped};
use crate::dm::dev::{DmDev, MappedDevice, Mode};
use crate::dm::status::StatusWriter;
use crate::dm::target::{CtrError, StatusKind, Target, TargetCtx};
use crate::thin::table;

/// A `thin` table (upstream's `struct thin_c`).
pub(crate) struct ThinTarget {
    pool_dev: DmDev,
    origin_dev: Option<DmDev>,
    dev_id: u64,
}

#[vtable]
impl Target for ThinTarget {
    const NAME: &'static CStr = c"thin";
    const VERSION: [u32; 3] = super::TARGET_VERSION;
    const FEATURES: u64 = 0;

    fn ctr(ti: &mut TargetCtx<'_>, args: &Args<'_>) -> Result<KBox<Self>, CtrError> {
        let argv = args.bytes();
        table::thin_check_args(argv)?;
        let origin_dev = match args.c_str(2) {
            Some(path) => Some(
                DmDev::get(ti, path, Mode::Read)
                    .map_err(|e| CtrError::new(c"Error opening origin device", e))?,
            ),
            None => None,
        };
        let (Some(pool_path), Some(id_arg)) = (args.c_str(0), argv.get(1)) else {
            return Err(CtrError::new(c"Invalid argument count", EINVAL));
        };
        let pool_dev = DmDev::get(ti, pool_path, Mode::Table)
            .map_err(|e| CtrError::new(c"Error opening pool device", e))?;
        let dev_id = table::thin_dev_id(id_arg)?;
        let Some(_pool_md) = MappedDevice::get(pool_dev.dev_t()) else {
            return Err(CtrError::new(c"Couldn't get pool mapped device", EINVAL));
        };
        let _thin = ThinTarget {
            pool_dev,
            origin_dev,
            dev_id,
        };
        // No pool objects exist yet (the pool constructor refuses every
        // table), so the lookup in the pool table always fails.
        Err(CtrError::new(c"Couldn't find pool object", EINVAL))
    }

    fn map<'a>(&self, bio: MapBio<'a>) -> Mapped<'a> {
        bio.kill()
    }

    /// Upstream's `thin_status`.  Info output needs the metadata, which is
    /// not implemented yet: it reports `Error`, as upstream does when a
    /// metadata query fails.
    fn status(&self, kind: StatusKind, _flags: u32, out: &mut StatusWriter<'_>) {
        use core::fmt::Write;
        let _ = match kind {
            StatusKind::Info => out.write_str("Error"),
            StatusKind::Table => {
                let r = write!(out, "{} {}", self.pool_dev.name(), self.dev_id);
                match &self.origin_dev {
                    Some(origin) => r.and_then(|()| write!(out, " {}", origin.name())),
                    None => r,
                }
            }
            StatusKind::Ima => Ok(()),
        };
    }
}
