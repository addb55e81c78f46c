//! Table-line parsing for the `thin-pool` and `thin` targets, step by step
//! as upstream's `pool_ctr`/`thin_ctr` (6.12 `drivers/md/dm-thin.c`) do it,
//! with upstream's error strings and codes.
//!
//! Pure code (core only) so the host tests check it with cargo; the
//! constructors call the steps in upstream's order, interleaved with
//! opening the devices (upstream parses the block size and low water mark
//! only after both devices are open, so the order decides which error a
//! bad line reports).

/// An error a constructor reports: the message for `ti->error` and the
/// positive errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableError {
    /// Message for `ti->error` (dm core logs it), NUL-terminated so the
    /// kernel can hand it to C as it is.
    msg_nul: &'static str,
    /// Positive errno returned from the constructor.
    pub errno: i32,
}

impl TableError {
    /// An error with message `msg_nul` (which must end in a NUL) and errno.
    pub const fn new(msg_nul: &'static str, errno: i32) -> Self {
        TableError { msg_nul, errno }
    }

    /// The message without its terminating NUL.
    pub fn msg(&self) -> &'static str {
        self.msg_nul.strip_suffix('\0').unwrap_or(self.msg_nul)
    }

    /// The message with its terminating NUL, for `ti->error`.
    pub fn msg_with_nul(&self) -> &'static [u8] {
        self.msg_nul.as_bytes()
    }
}

const EINVAL: i32 = 22;

macro_rules! einval {
    ($msg:literal) => {
        TableError::new(concat!($msg, "\0"), EINVAL)
    };
}

/// Smallest data block size in sectors (64 KiB).
pub const DATA_DEV_BLOCK_SIZE_MIN_SECTORS: u64 = 128;
/// Largest data block size in sectors (1 GiB).
pub const DATA_DEV_BLOCK_SIZE_MAX_SECTORS: u64 = 2_097_152;
/// Largest thin device id (24 bits).
pub const MAX_DEV_ID: u64 = (1 << 24) - 1;

/// Pool operating mode requested by the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestedMode {
    /// Normal read-write operation.
    Write,
    /// The `read_only` feature: no metadata changes.
    ReadOnly,
}

/// Pool features as requested in a table line (`struct pool_features`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolFeatures {
    /// Requested mode.
    pub mode: RequestedMode,
    /// Zero newly provisioned blocks (cleared by `skip_block_zeroing`).
    pub zero_new_blocks: bool,
    /// Discards enabled (cleared by `ignore_discard`).
    pub discard_enabled: bool,
    /// Discards passed down to the data device (cleared by
    /// `no_discard_passdown`).
    pub discard_passdown: bool,
    /// Fail instead of queueing when out of data space.
    pub error_if_no_space: bool,
}

impl Default for PoolFeatures {
    /// Upstream's `pool_features_init`.
    fn default() -> Self {
        PoolFeatures {
            mode: RequestedMode::Write,
            zero_new_blocks: true,
            discard_enabled: true,
            discard_passdown: true,
            error_if_no_space: false,
        }
    }
}

impl PoolFeatures {
    /// Feature words in upstream's table-output order (`emit_flags`),
    /// for the ones that differ from the defaults.
    pub fn words(&self) -> impl Iterator<Item = &'static str> {
        let flags = [
            (!self.zero_new_blocks, "skip_block_zeroing"),
            (!self.discard_enabled, "ignore_discard"),
            (!self.discard_passdown, "no_discard_passdown"),
            (self.mode == RequestedMode::ReadOnly, "read_only"),
            (self.error_if_no_space, "error_if_no_space"),
        ];
        flags.into_iter().filter(|(on, _)| *on).map(|(_, w)| w)
    }
}

/// First step of `pool_ctr`: argument count, metadata/data device strings
/// different, then the optional feature group (`parse_pool_features`).
/// Arguments after the feature group are ignored, as upstream does.
pub fn pool_check_args(argv: &[&[u8]]) -> Result<PoolFeatures, TableError> {
    if argv.len() < 4 {
        return Err(einval!("Invalid argument count"));
    }
    if argv[0] == argv[1] {
        return Err(einval!("Error setting metadata or data device"));
    }
    parse_pool_features(&argv[4..])
}

fn parse_pool_features(args: &[&[u8]]) -> Result<PoolFeatures, TableError> {
    let mut pf = PoolFeatures::default();
    let Some((count_arg, rest)) = args.split_first() else {
        return Ok(pf);
    };
    // dm_read_arg_group({0, 4}): "%u%c" parse, range, and enough words.
    let bad_count = einval!("Invalid number of pool feature arguments");
    let count = scan_u32(count_arg).ok_or(bad_count)?;
    if count > 4 || rest.len() < count as usize {
        return Err(bad_count);
    }
    for word in rest.iter().take(count as usize) {
        if word.eq_ignore_ascii_case(b"skip_block_zeroing") {
            pf.zero_new_blocks = false;
        } else if word.eq_ignore_ascii_case(b"ignore_discard") {
            pf.discard_enabled = false;
        } else if word.eq_ignore_ascii_case(b"no_discard_passdown") {
            pf.discard_passdown = false;
        } else if word.eq_ignore_ascii_case(b"read_only") {
            pf.mode = RequestedMode::ReadOnly;
        } else if word.eq_ignore_ascii_case(b"error_if_no_space") {
            pf.error_if_no_space = true;
        } else {
            return Err(einval!("Unrecognised pool feature requested"));
        }
    }
    Ok(pf)
}

/// The data block size argument (after the devices are open).
pub fn pool_block_size(arg: &[u8]) -> Result<u32, TableError> {
    let err = einval!("Invalid block size");
    let n = kstrtoull(arg).ok_or(err)?;
    if !(DATA_DEV_BLOCK_SIZE_MIN_SECTORS..=DATA_DEV_BLOCK_SIZE_MAX_SECTORS).contains(&n)
        || n & (DATA_DEV_BLOCK_SIZE_MIN_SECTORS - 1) != 0
    {
        return Err(err);
    }
    u32::try_from(n).map_err(|_| err)
}

/// The low water mark argument, in data blocks.
pub fn pool_low_water_mark(arg: &[u8]) -> Result<u64, TableError> {
    kstrtoull(arg).ok_or(einval!("Invalid low water mark"))
}

/// First step of `thin_ctr`: argument count and, with an external origin,
/// origin and pool device strings different.
pub fn thin_check_args(argv: &[&[u8]]) -> Result<(), TableError> {
    if argv.len() != 2 && argv.len() != 3 {
        return Err(einval!("Invalid argument count"));
    }
    if argv.len() == 3 && argv[0] == argv[2] {
        return Err(einval!("Error setting origin device"));
    }
    Ok(())
}

/// A thin device id (`read_dev_id`): decimal, at most [`MAX_DEV_ID`].
pub fn dev_id(arg: &[u8]) -> Option<u64> {
    kstrtoull(arg).filter(|&id| id <= MAX_DEV_ID)
}

/// The thin device id argument of a `thin` table line.
pub fn thin_dev_id(arg: &[u8]) -> Result<u64, TableError> {
    dev_id(arg).ok_or(einval!("Invalid device id"))
}

/// `kstrtoull(s, 10, ..)`: an optional `+`, decimal digits, an optional
/// single trailing newline; overflow is an error.
pub fn kstrtoull(s: &[u8]) -> Option<u64> {
    let s = s.strip_suffix(b"\n").unwrap_or(s);
    let s = s.strip_prefix(b"+").unwrap_or(s);
    if s.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(n)
}

/// `sscanf(s, "%u%c", ..) == 1` with the kernel's `vsscanf`: optional
/// leading white space, then decimal digits (no sign: `%u` takes none),
/// then nothing; the value wraps modulo 2^64 and is truncated to 32 bits,
/// as `simple_strntoull` and the `unsigned int` store do.
fn scan_u32(s: &[u8]) -> Option<u32> {
    let start = s.iter().position(|c| !c.is_ascii_whitespace())?;
    let digits = s.get(start..)?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: u64 = 0;
    for &c in digits {
        n = n.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
    }
    Some(n as u32)
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
