// SPDX-License-Identifier: GPL-2.0

//! Kernel log lines in upstream's format.
//!
//! Upstream dm-thin logs through `DMERR`/`DMWARN`/`DMINFO` with
//! `DM_MSG_PREFIX "thin"`, i.e. `device-mapper: thin: <message>`.  The
//! kernel crate's `pr_*!` macros would prefix our module name instead, so
//! these macros call `_printk` with dm's prefix, keeping our lines
//! identical to upstream's for the same event.

use core::ffi::CStr;
use core::fmt;

/// Log levels used by dm targets.
#[derive(Clone, Copy)]
pub(crate) enum Level {
    /// `KERN_ERR`.
    Err,
    /// `KERN_WARNING`.
    Warn,
    /// `KERN_INFO`.
    Info,
}

/// Prints `device-mapper: <prefix>: <args>` at `level`.
pub(crate) fn print(level: Level, prefix: &CStr, args: fmt::Arguments<'_>) {
    let format: &CStr = match level {
        Level::Err => c"\x013device-mapper: %s: %pA\n",
        Level::Warn => c"\x014device-mapper: %s: %pA\n",
        Level::Info => c"\x016device-mapper: %s: %pA\n",
    };
    // SAFETY: `format` and `prefix` are NUL-terminated; `%s` consumes
    // `prefix` and `%pA` consumes a pointer to a `fmt::Arguments`, which the
    // kernel's Rust printk support formats; both outlive the call.
    unsafe {
        kernel::bindings::_printk(
            format.as_ptr().cast(),
            prefix.as_ptr(),
            core::ptr::from_ref(&args).cast::<core::ffi::c_void>(),
        );
    }
}

/// Prints `device-mapper: <args>` at `level` (the caller formats the
/// prefix into `args`).
pub(crate) fn print_line(level: Level, args: fmt::Arguments<'_>) {
    let format: &CStr = match level {
        Level::Err => c"\x013device-mapper: %pA\n",
        Level::Warn => c"\x014device-mapper: %pA\n",
        Level::Info => c"\x016device-mapper: %pA\n",
    };
    // SAFETY: `format` is NUL-terminated and `%pA` consumes a pointer to
    // a `fmt::Arguments`, which outlives the call.
    unsafe {
        kernel::bindings::_printk(
            format.as_ptr().cast(),
            core::ptr::from_ref(&args).cast::<core::ffi::c_void>(),
        );
    }
}

/// `DMWARN`: logs `device-mapper: thin: ...` at warning level.
macro_rules! dm_warn {
    ($($arg:tt)*) => {
        $crate::dm::log::print($crate::dm::log::Level::Warn, c"thin", format_args!($($arg)*))
    };
}
