// SPDX-License-Identifier: GPL-2.0

//! The arguments dm core hands a constructor or a message handler.

use core::ffi::CStr;

use kernel::ffi::{c_char, c_uint};

use kernel::alloc::{flags::GFP_KERNEL, KVec};
use kernel::error::Result;

/// The `argc/argv` of a constructor or message, borrowed for the call.
pub(crate) struct Args<'a> {
    strs: KVec<&'a CStr>,
    bytes: KVec<&'a [u8]>,
}

impl<'a> Args<'a> {
    /// Collects `argv[0..argc]`.
    ///
    /// # Safety
    ///
    /// `argv` must point to `argc` valid NUL-terminated strings that stay
    /// valid and unchanged for `'a` (dm core guarantees this for the
    /// duration of a `ctr` or `message` call).
    pub(crate) unsafe fn from_raw(argc: c_uint, argv: *const *mut c_char) -> Result<Self> {
        let n = argc as usize;
        let mut strs = KVec::with_capacity(n, GFP_KERNEL)?;
        let mut bytes = KVec::with_capacity(n, GFP_KERNEL)?;
        for i in 0..n {
            // SAFETY: `i < argc`, and the caller guarantees `argv` has
            // `argc` valid entries.
            let p = unsafe { *argv.add(i) };
            // SAFETY: each entry is a valid NUL-terminated string living
            // for `'a` (caller's guarantee).
            let s = unsafe { CStr::from_ptr(p.cast_const().cast()) };
            strs.push(s, GFP_KERNEL)?;
            bytes.push(s.to_bytes(), GFP_KERNEL)?;
        }
        Ok(Args { strs, bytes })
    }

    /// The arguments as byte strings (without NULs), for the pure parsers.
    pub(crate) fn bytes(&self) -> &[&'a [u8]] {
        &self.bytes
    }

    /// Argument `i` as a C string, if present.
    pub(crate) fn c_str(&self, i: usize) -> Option<&'a CStr> {
        self.strs.get(i).copied()
    }
}
