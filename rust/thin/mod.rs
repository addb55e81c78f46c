// SPDX-License-Identifier: GPL-2.0

//! The two targets: `thin-pool` ([`pool_target`]) and `thin`
//! ([`thin_target`]), plus the pure table-line parsing they share with the
//! host tests ([`table`]).

pub(crate) mod pool_target;
pub mod table;
pub(crate) mod thin_target;

/// Upstream dm-thin's target version (6.12), which lvm2 checks.
pub(crate) const TARGET_VERSION: [u32; 3] = [1, 23, 0];
