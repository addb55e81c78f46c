// SPDX-License-Identifier: GPL-2.0

//! The module's parameters.  6.12's Rust `module!` macro has none, so
//! they are declared in `glue.c` with `module_param_named` (same names,
//! types, permissions and defaults as upstream dm-thin's) and read here.

use super::glue;

/// `no_space_timeout`: seconds a pool out of data space queues bios
/// before failing them with -ENOSPC (0: forever).  Read each time, so a
/// write to `/sys/module/dm_thin_rs/parameters/no_space_timeout` applies
/// to the next switch to out-of-data-space mode, as upstream.
pub(crate) fn no_space_timeout_secs() -> u32 {
    // SAFETY: reads a plain integer parameter.
    unsafe { glue::dmthin_no_space_timeout() }
}
