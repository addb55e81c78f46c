// SPDX-License-Identifier: GPL-2.0

//! The two targets: `thin-pool` ([`pool_target`]) and `thin`
//! ([`thin_target`]), the pool object they share ([`pool`]) and the global
//! table that finds it ([`registry`]), plus the pure code shared with the
//! host tests: table lines ([`table`]), pool messages ([`message`]), the
//! pool mode state machine ([`mode`]) and the lock-free mapping cache
//! ([`map_cache`]).

pub mod map_cache;
pub mod message;
pub mod mode;
pub(crate) mod pool;
pub(crate) mod pool_target;
pub(crate) mod registry;
pub mod table;
pub(crate) mod thin_target;

/// Upstream dm-thin's target version (6.12), which lvm2 checks.
pub(crate) const TARGET_VERSION: [u32; 3] = [1, 23, 0];
