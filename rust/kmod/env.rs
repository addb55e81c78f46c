// SPDX-License-Identifier: GPL-2.0

//! Kernel flavour of the platform seam the shared persistent-data tree
//! (`rust/pdata`) uses: fallible vectors and boxes over `KVec`/`KBox`
//! allocating with `GFP_NOIO` (pdata runs in the I/O path: reclaim must
//! not recurse into the device being serviced), and crc32c from the
//! kernel's libcrc32c.  The host flavour (`rust/pdata-host/env.rs`) has the
//! same names and signatures.

use core::ops::{Deref, DerefMut};

use kernel::alloc::{flags::GFP_NOIO, KBox, KVec};

use crate::pdata::error::{Error, Result};

/// A growable vector whose growth can fail with [`Error::NoMem`].
pub struct Vec<T>(KVec<T>);

impl<T> Default for Vec<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Vec<T> {
    /// An empty vector (no allocation).
    pub const fn new() -> Self {
        Vec(KVec::new())
    }

    /// An empty vector with room for `n` elements.
    pub fn try_with_capacity(n: usize) -> Result<Self> {
        KVec::with_capacity(n, GFP_NOIO)
            .map(Vec)
            .map_err(|_| Error::NoMem)
    }

    /// Makes room for `n` more elements.
    pub fn try_reserve(&mut self, n: usize) -> Result<()> {
        self.0.reserve(n, GFP_NOIO).map_err(|_| Error::NoMem)
    }

    /// Appends `x`.
    pub fn try_push(&mut self, x: T) -> Result<()> {
        self.0.push(x, GFP_NOIO).map_err(|_| Error::NoMem)
    }

    /// Inserts `x` at `index`, shifting later elements; `Invalid` if
    /// `index > len`.
    pub fn try_insert(&mut self, index: usize, x: T) -> Result<()> {
        let len = self.0.len();
        if index > len {
            return Err(Error::Invalid);
        }
        self.try_reserve(1)?;
        let p = self.0.as_mut_ptr();
        // SAFETY: capacity is at least `len + 1` (reserved above), so the
        // shifted range `index..len` moved one slot up stays inside the
        // allocation, and slot `index` is then written before `len` grows.
        unsafe {
            core::ptr::copy(p.add(index), p.add(index + 1), len - index);
            p.add(index).write(x);
            self.0.set_len(len + 1);
        }
        Ok(())
    }

    /// Removes and returns the element at `index`, if any.
    pub fn remove(&mut self, index: usize) -> Option<T> {
        let len = self.0.len();
        if index >= len {
            return None;
        }
        let p = self.0.as_mut_ptr();
        // SAFETY: `index < len`: the element is read out exactly once, the
        // tail `index+1..len` is moved down over it, and `len` shrinks by
        // one so the stale last slot is no longer considered initialised.
        unsafe {
            let x = p.add(index).read();
            core::ptr::copy(p.add(index + 1), p.add(index), len - index - 1);
            self.0.set_len(len - 1);
            Some(x)
        }
    }

    /// Removes and returns the element at `index`, if any, moving the last
    /// element into its place (order not kept; O(1)).
    pub fn swap_remove(&mut self, index: usize) -> Option<T> {
        let len = self.0.len();
        if index >= len {
            return None;
        }
        let p = self.0.as_mut_ptr();
        // SAFETY: `index < len`: the element is read out exactly once, the
        // last element (possibly the same slot) is moved into its place,
        // and `len` shrinks by one so the stale last slot is no longer
        // considered initialised.
        unsafe {
            let x = p.add(index).read();
            core::ptr::copy(p.add(len - 1), p.add(index), 1);
            self.0.set_len(len - 1);
            Some(x)
        }
    }

    /// Removes and returns the last element.
    pub fn pop(&mut self) -> Option<T> {
        let len = self.0.len();
        if len == 0 {
            return None;
        }
        // SAFETY: the last element is initialised; shrinking `len` first
        // makes the read the only owner of the value.
        unsafe {
            self.0.set_len(len - 1);
            Some(self.0.as_mut_ptr().add(len - 1).read())
        }
    }

    /// Drops the elements from `len` on.
    pub fn truncate(&mut self, len: usize) {
        while self.0.len() > len {
            drop(self.pop());
        }
    }

    /// Drops every element.
    pub fn clear(&mut self) {
        self.truncate(0)
    }
}

impl<T: Clone> Vec<T> {
    /// Resizes to `n` elements, filling with clones of `value`.
    pub fn try_resize(&mut self, n: usize, value: T) -> Result<()> {
        let len = self.0.len();
        if n <= len {
            self.truncate(n);
            return Ok(());
        }
        self.0
            .extend_with(n - len, value, GFP_NOIO)
            .map_err(|_| Error::NoMem)
    }

    /// Appends clones of every element of `s`.
    pub fn try_extend_from_slice(&mut self, s: &[T]) -> Result<()> {
        self.0
            .extend_from_slice(s, GFP_NOIO)
            .map_err(|_| Error::NoMem)
    }
}

impl<T> Deref for Vec<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T> DerefMut for Vec<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.0
    }
}

/// A heap allocation whose creation can fail with [`Error::NoMem`].
pub struct Box<T>(KBox<T>);

impl<T> Box<T> {
    /// Moves `x` to the heap.  Keep `T` small: `x` passes through the stack.
    pub fn try_new(x: T) -> Result<Self> {
        KBox::new(x, GFP_NOIO).map(Box).map_err(|_| Error::NoMem)
    }
}

impl<T> Deref for Box<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for Box<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

/// crc32c continuing from register `crc`, raw register out (the kernel's
/// `crc32c()` from libcrc32c, hardware accelerated where available).
pub fn crc32c(mut crc: u32, data: &[u8]) -> u32 {
    for chunk in data.chunks(1 << 30) {
        // SAFETY: `chunk` is valid for reads of its length, which fits in
        // a `c_uint`.
        crc = unsafe { kernel::bindings::crc32c(crc, chunk.as_ptr().cast(), chunk.len() as _) };
    }
    crc
}

/// Logs `device-mapper: <prefix>: <message>` at error level, as upstream's
/// `DMERR` with `DM_MSG_PREFIX <prefix>` does.
pub fn log_error(prefix: &str, args: core::fmt::Arguments<'_>) {
    crate::dm::log::print_line(crate::dm::log::Level::Err, format_args!("{prefix}: {args}"));
}
