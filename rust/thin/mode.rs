//! The pool mode state machine of upstream's `set_pool_mode` and the
//! per-mode decisions of the data path (`should_error_unserviceable_bio`,
//! `pool_message`'s mode check, status words and log wording).
//!
//! Pure code (core only) so the host tests check every transition with
//! cargo; the pool (`pool.rs`) applies the side effects (metadata
//! read-only or read-write, failing queued bios, events, log lines).

/// Pool modes, in upstream's order (`enum pool_mode`): every mode from
/// `OutOfMetadataSpace` on is read-only.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
#[repr(u8)]
pub enum PoolMode {
    /// Normal.
    Write = 0,
    /// No free data blocks: unserviceable bios queue or fail.
    OutOfDataSpace = 1,
    /// No free metadata blocks: read-only.
    OutOfMetadataSpace = 2,
    /// Read-only (requested, or after a metadata error).
    ReadOnly = 3,
    /// Metadata unusable: every bio fails.
    Fail = 4,
}

impl PoolMode {
    /// The mode stored as `as u8`; unknown values read as `Fail`.
    pub fn from_u8(v: u8) -> Self {
        match v {
            0 => PoolMode::Write,
            1 => PoolMode::OutOfDataSpace,
            2 => PoolMode::OutOfMetadataSpace,
            3 => PoolMode::ReadOnly,
            _ => PoolMode::Fail,
        }
    }

    /// The status word (`pool_status`).
    pub fn status_word(self) -> &'static str {
        match self {
            PoolMode::Write => "rw",
            PoolMode::OutOfDataSpace => "out_of_data_space",
            _ => "ro",
        }
    }

    /// The mode in upstream's "switching pool to ... mode" log line.
    pub fn description(self) -> &'static str {
        match self {
            PoolMode::Write => "write",
            PoolMode::OutOfDataSpace => "out-of-data-space",
            PoolMode::OutOfMetadataSpace | PoolMode::ReadOnly => "read-only",
            PoolMode::Fail => "fail",
        }
    }

    /// Metadata may not change (the block manager is read-only).
    pub fn is_read_only(self) -> bool {
        self >= PoolMode::OutOfMetadataSpace
    }

    /// Pool messages are refused (-EOPNOTSUPP) in this mode.
    pub fn refuses_messages(self) -> bool {
        self >= PoolMode::OutOfMetadataSpace
    }
}

/// The mode `set_pool_mode(new)` really enters from `old`: never write
/// mode while the metadata needs checking (stay in the old mode, or go
/// read-only if already in write mode), and never out of fail mode.
pub fn next_mode(old: PoolMode, new: PoolMode, needs_check: bool) -> PoolMode {
    let mut new = new;
    if new == PoolMode::Write && needs_check {
        new = if old != new { old } else { PoolMode::ReadOnly };
    }
    if old == PoolMode::Fail {
        new = old;
    }
    new
}

/// What happens to a bio that needs space or a metadata change the pool
/// cannot give (`should_error_unserviceable_bio`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Unserviceable {
    /// Wait for space (out of data space, queue mode).
    Queue,
    /// Fail with -ENOSPC (out of data space, `error_if_no_space`).
    NoSpace,
    /// Fail with -EIO (read-only and fail modes; write mode, which should
    /// not get here, logs).
    IoError,
}

/// [`Unserviceable`] for a pool in `mode`.
pub fn unserviceable(mode: PoolMode, error_if_no_space: bool) -> Unserviceable {
    match mode {
        PoolMode::OutOfDataSpace if error_if_no_space => Unserviceable::NoSpace,
        PoolMode::OutOfDataSpace => Unserviceable::Queue,
        _ => Unserviceable::IoError,
    }
}

#[cfg(test)]
#[path = "mode_tests.rs"]
mod tests;
