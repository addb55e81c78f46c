// SPDX-License-Identifier: GPL-2.0

//! A `core::fmt::Write` sink over the `result/maxlen` buffer dm core hands
//! `status` and `message`, with upstream's `DMEMIT` semantics: output past
//! the buffer is dropped (scnprintf truncation), the buffer always ends
//! with a NUL, and nothing is written past `maxlen`.

use core::fmt;
use kernel::ffi::{c_char, c_uint};

/// Writes into dm's result buffer.
///
/// # Invariants
///
/// `buf` is valid for writes of `maxlen` bytes for `'a`; `pos < maxlen`
/// whenever `maxlen > 0`, and `buf[pos]` is NUL.
pub(crate) struct StatusWriter<'a> {
    buf: *mut u8,
    maxlen: usize,
    pos: usize,
    _buf: core::marker::PhantomData<&'a mut [u8]>,
}

impl<'a> StatusWriter<'a> {
    /// Wraps dm's buffer and makes it an empty string.
    ///
    /// # Safety
    ///
    /// `result` must be valid for writes of `maxlen` bytes for `'a` and not
    /// be accessed through any other pointer meanwhile.
    pub(crate) unsafe fn new(result: *mut c_char, maxlen: c_uint) -> Self {
        let maxlen = maxlen as usize;
        if maxlen > 0 {
            // SAFETY: `maxlen > 0`, so byte 0 is inside the buffer.
            unsafe { result.cast::<u8>().write(0) };
        }
        // INVARIANT: `pos == 0 < maxlen` (when non-zero) and `buf[0]` is NUL.
        StatusWriter {
            buf: result.cast(),
            maxlen,
            pos: 0,
            _buf: core::marker::PhantomData,
        }
    }
}

impl fmt::Write for StatusWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.maxlen == 0 {
            return Ok(());
        }
        // Room for text, keeping one byte for the NUL.
        let room = self.maxlen - 1 - self.pos;
        let n = s.len().min(room);
        // SAFETY: `pos + n <= maxlen - 1`, so the copy and the NUL after it
        // stay inside the buffer (type invariant); `s` cannot overlap dm's
        // buffer, which nothing else accesses meanwhile.
        unsafe {
            core::ptr::copy_nonoverlapping(s.as_ptr(), self.buf.add(self.pos), n);
            self.buf.add(self.pos + n).write(0);
        }
        // INVARIANT: `pos + n <= maxlen - 1` and the byte there is NUL.
        self.pos += n;
        Ok(())
    }
}
