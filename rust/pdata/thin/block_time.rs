//! Bottom-level mapping values: a 40-bit data block and a 24-bit time
//! stamp packed into one u64 (`pack_block_time` / `unpack_block_time` in
//! `dm-thin-metadata.c`): `value = (data_block << 24) | time`.
//!
//! Upstream does not mask when packing, so a block >= 2^40 or a time >=
//! 2^24 would silently corrupt the value; here packing refuses both with
//! [`Error::Invalid`].

use crate::pdata::error::{Error, Result};

/// Number of bits of the time stamp.
pub const TIME_BITS: u32 = 24;
/// Number of bits of the data block.
pub const BLOCK_BITS: u32 = 40;
/// Largest time stamp a mapping can hold.
pub const MAX_TIME: u32 = (1 << TIME_BITS) - 1;
/// Largest data block a mapping can hold.
pub const MAX_DATA_BLOCK: u64 = (1 << BLOCK_BITS) - 1;

/// Packs `block` and `time` into a mapping value.
pub fn pack_block_time(block: u64, time: u32) -> Result<u64> {
    if block > MAX_DATA_BLOCK || time > MAX_TIME {
        return Err(Error::Invalid);
    }
    Ok((block << TIME_BITS) | u64::from(time))
}

/// Splits a mapping value into `(data_block, time)`.
pub fn unpack_block_time(v: u64) -> (u64, u32) {
    (v >> TIME_BITS, (v & u64::from(MAX_TIME)) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        assert_eq!(pack_block_time(1, 0), Ok(1 << 24));
        assert_eq!(pack_block_time(0, 5), Ok(5));
        assert_eq!(
            pack_block_time(0x12_3456_789a, 0xbc_def0),
            Ok(0x1234_5678_9abc_def0)
        );
        assert_eq!(
            unpack_block_time(0x1234_5678_9abc_def0),
            (0x12_3456_789a, 0xbc_def0)
        );
    }

    #[test]
    fn round_trip_edges() {
        for &b in &[0, 1, 0xffff, MAX_DATA_BLOCK - 1, MAX_DATA_BLOCK] {
            for &t in &[0, 1, 0x7f_ffff, MAX_TIME] {
                let v = pack_block_time(b, t);
                assert_eq!(v.map(unpack_block_time), Ok((b, t)));
            }
        }
    }

    #[test]
    fn refuses_overflow() {
        assert_eq!(pack_block_time(MAX_DATA_BLOCK + 1, 0), Err(Error::Invalid));
        assert_eq!(pack_block_time(u64::MAX, 0), Err(Error::Invalid));
        assert_eq!(pack_block_time(0, MAX_TIME + 1), Err(Error::Invalid));
        assert_eq!(pack_block_time(0, u32::MAX), Err(Error::Invalid));
    }
}
