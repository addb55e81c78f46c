// SPDX-License-Identifier: GPL-2.0

//! dm_thin_rs: device-mapper thin provisioning (`thin-pool` and `thin`
//! targets, version 1.23.0 like upstream's dm-thin-pool) in Rust.
//!
//! This is the crate root of the module.  It mounts:
//! - [`dm`]: the safe device-mapper layer, the only place with FFI `unsafe`
//!   (target registration, table arguments, status output, devices, bios,
//!   kernel log lines in upstream's format);
//! - [`thin`]: the two targets;
//! - [`env`]: the platform seam the shared persistent-data tree uses;
//! - [`pdata`]: the persistent-data layer shared with the host crate
//!   `rust/pdata-host` (block manager, transaction manager, space maps,
//!   btree, thin metadata), compiled here with the kernel's lints.

use kernel::prelude::*;

#[macro_use]
mod dm;
#[path = "kmod/env.rs"]
pub mod env;
#[path = "pdata/mod.rs"]
pub mod pdata;
pub mod thin;

module! {
    type: DmThinModule,
    name: "dm_thin_rs",
    author: "dm-thin-rs developers",
    description: "device-mapper thin provisioning targets (thin-pool, thin) in Rust",
    license: "GPL",
}

/// The module: owns the two target registrations.
///
/// Fields drop in declaration order, so `thin` is unregistered before
/// `pool`, the reverse of registration.
struct DmThinModule {
    _thin: Pin<KBox<dm::target::Registration<thin::thin_target::ThinTarget>>>,
    _pool: Pin<KBox<dm::target::Registration<thin::pool_target::PoolTarget>>>,
}

impl kernel::Module for DmThinModule {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let pool = KBox::pin_init(dm::target::Registration::new(module), GFP_KERNEL)?;
        let thin = KBox::pin_init(dm::target::Registration::new(module), GFP_KERNEL)?;
        Ok(DmThinModule {
            _thin: thin,
            _pool: pool,
        })
    }
}
