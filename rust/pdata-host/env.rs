//! Host flavour of the platform seam the shared `pdata` tree uses:
//! fallible growable vectors, boxes and crc32c.  The kernel module's
//! `env.rs` offers the same names and signatures over `KVec`/`KBox`.

use core::ops::{Deref, DerefMut};

use crate::pdata::error::{Error, Result};

/// A growable vector whose growth can fail with [`Error::NoMem`].
#[derive(Debug, Default)]
pub struct Vec<T>(alloc::vec::Vec<T>);

impl<T> Vec<T> {
    /// An empty vector (no allocation).
    pub const fn new() -> Self {
        Vec(alloc::vec::Vec::new())
    }

    /// An empty vector with room for `n` elements.
    pub fn try_with_capacity(n: usize) -> Result<Self> {
        let mut v = Self::new();
        v.try_reserve(n)?;
        Ok(v)
    }

    /// Makes room for `n` more elements.
    pub fn try_reserve(&mut self, n: usize) -> Result<()> {
        self.0.try_reserve(n).map_err(|_| Error::NoMem)
    }

    /// Appends `x`.
    pub fn try_push(&mut self, x: T) -> Result<()> {
        self.try_reserve(1)?;
        self.0.push(x);
        Ok(())
    }

    /// Inserts `x` at `index`, shifting later elements; `Invalid` if
    /// `index > len`.
    pub fn try_insert(&mut self, index: usize, x: T) -> Result<()> {
        if index > self.0.len() {
            return Err(Error::Invalid);
        }
        self.try_reserve(1)?;
        self.0.insert(index, x);
        Ok(())
    }

    /// Removes and returns the element at `index`, if any.
    pub fn remove(&mut self, index: usize) -> Option<T> {
        if index < self.0.len() {
            Some(self.0.remove(index))
        } else {
            None
        }
    }

    /// Removes and returns the last element.
    pub fn pop(&mut self) -> Option<T> {
        self.0.pop()
    }

    /// Drops the elements from `len` on.
    pub fn truncate(&mut self, len: usize) {
        self.0.truncate(len)
    }

    /// Drops every element.
    pub fn clear(&mut self) {
        self.0.clear()
    }
}

impl<T: Clone> Vec<T> {
    /// Resizes to `n` elements, filling with clones of `value`.
    pub fn try_resize(&mut self, n: usize, value: T) -> Result<()> {
        if n > self.0.len() {
            self.try_reserve(n - self.0.len())?;
        }
        self.0.resize(n, value);
        Ok(())
    }

    /// Appends clones of every element of `s`.
    pub fn try_extend_from_slice(&mut self, s: &[T]) -> Result<()> {
        self.try_reserve(s.len())?;
        self.0.extend_from_slice(s);
        Ok(())
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
#[derive(Debug)]
pub struct Box<T>(alloc::boxed::Box<T>);

impl<T> Box<T> {
    /// Moves `x` to the heap.  Keep `T` small: `x` passes through the stack.
    pub fn try_new(x: T) -> Result<Self> {
        Ok(Box(alloc::boxed::Box::new(x)))
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
/// `crc32c()` convention).
pub fn crc32c(crc: u32, data: &[u8]) -> u32 {
    crate::pdata::checksum::crc32c_sw(crc, data)
}

/// Logs an error line the way the kernel module does (`device-mapper:
/// <prefix>: <message>`, upstream's DMERR).  The host build has no kernel
/// log: the line is dropped.
pub fn log_error(prefix: &str, args: core::fmt::Arguments<'_>) {
    let _ = (prefix, args);
}
