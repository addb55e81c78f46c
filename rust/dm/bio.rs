// SPDX-License-Identifier: GPL-2.0

//! The bio a target's `map` receives.
//!
//! [`MapBio`] is handed to `map` by value and the only way to produce the
//! [`Mapped`] that `map` must return is to consume it: remap it to a device,
//! kill it, or requeue it.  So a bio cannot be forgotten inside `map`, and a
//! `Mapped` from one call cannot be returned for another (it borrows the
//! bio's lifetime).

use core::marker::PhantomData;

use kernel::bindings;

use super::dev::DmDev;

/// A bio inside `map`.
///
/// # Invariants
///
/// `bio` is the valid bio dm core passed to `map` for `'a`.
pub(crate) struct MapBio<'a> {
    bio: *mut bindings::bio,
    _life: PhantomData<&'a mut bindings::bio>,
}

/// What `map` did with its bio (`DM_MAPIO_*`).
#[must_use]
pub(crate) struct Mapped<'a> {
    code: u32,
    _life: PhantomData<&'a mut bindings::bio>,
}

impl<'a> MapBio<'a> {
    /// Wraps the bio passed to `map`.
    ///
    /// # Safety
    ///
    /// `bio` must be the valid bio dm core passed to the current `map`
    /// call, not used elsewhere while the `MapBio` exists.
    pub(crate) unsafe fn from_raw(bio: *mut bindings::bio) -> Self {
        // INVARIANT: the caller passes map's valid bio.
        MapBio {
            bio,
            _life: PhantomData,
        }
    }

    fn done(code: u32) -> Mapped<'a> {
        Mapped {
            code,
            _life: PhantomData,
        }
    }

    /// Sends the bio, unchanged in offset, to `dev` (`DM_MAPIO_REMAPPED`).
    pub(crate) fn remap(self, dev: &DmDev) -> Mapped<'a> {
        // SAFETY: `bio` is valid (type invariant) and `dev` holds a valid
        // block device.
        unsafe { bindings::bio_set_dev(self.bio, dev.bdev()) };
        Self::done(bindings::DM_MAPIO_REMAPPED)
    }

    /// Fails the bio with an I/O error (`DM_MAPIO_KILL`).
    pub(crate) fn kill(self) -> Mapped<'a> {
        Self::done(bindings::DM_MAPIO_KILL)
    }

    /// Hands the bio back to dm core to be resubmitted (`DM_MAPIO_REQUEUE`).
    #[allow(dead_code, reason = "no target requeues until the pool lands")]
    pub(crate) fn requeue(self) -> Mapped<'a> {
        Self::done(bindings::DM_MAPIO_REQUEUE)
    }
}

impl Mapped<'_> {
    /// The `DM_MAPIO_*` value for dm core.
    pub(crate) fn code(self) -> u32 {
        self.code
    }
}
