//! Per-device details (`struct disk_device_details`, 24 bytes, packed),
//! the values of the details tree keyed by thin device id.
//!
//! ```text
//! off size field
//!   0    8 mapped_blocks     entries in the device's mapping tree
//!   8    8 transaction_id    pool trans_id when the device was created
//!  16    4 creation_time     pool time at creation
//!  20    4 snapshotted_time  pool time when last snapshotted
//! ```

use crate::pdata::error::{Corruption, Error, Result};

/// Size of one encoded entry.
pub const DEVICE_DETAILS_SIZE: usize = 24;

/// The details of one thin device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DeviceDetails {
    /// Number of mapped blocks.
    pub mapped_blocks: u64,
    /// Pool transaction id at creation.
    pub transaction_id: u64,
    /// Pool time at creation.
    pub creation_time: u32,
    /// Pool time of the last snapshot of (or from) this device.
    pub snapshotted_time: u32,
}

impl DeviceDetails {
    /// Decodes the first 24 bytes of `b`; a shorter slice is corrupt.
    pub fn unpack(b: &[u8]) -> Result<Self> {
        let b: &[u8; DEVICE_DETAILS_SIZE] = b
            .get(..DEVICE_DETAILS_SIZE)
            .and_then(|s| s.try_into().ok())
            .ok_or(Error::Corrupt(Corruption::Metadata))?;
        let mut a8 = [0u8; 8];
        let mut a4 = [0u8; 4];
        a8.copy_from_slice(&b[0..8]);
        let mapped_blocks = u64::from_le_bytes(a8);
        a8.copy_from_slice(&b[8..16]);
        let transaction_id = u64::from_le_bytes(a8);
        a4.copy_from_slice(&b[16..20]);
        let creation_time = u32::from_le_bytes(a4);
        a4.copy_from_slice(&b[20..24]);
        let snapshotted_time = u32::from_le_bytes(a4);
        Ok(DeviceDetails {
            mapped_blocks,
            transaction_id,
            creation_time,
            snapshotted_time,
        })
    }

    /// Encodes into the 24 bytes of an array.
    pub fn pack(&self) -> [u8; DEVICE_DETAILS_SIZE] {
        let mut out = [0u8; DEVICE_DETAILS_SIZE];
        out[0..8].copy_from_slice(&self.mapped_blocks.to_le_bytes());
        out[8..16].copy_from_slice(&self.transaction_id.to_le_bytes());
        out[16..20].copy_from_slice(&self.creation_time.to_le_bytes());
        out[20..24].copy_from_slice(&self.snapshotted_time.to_le_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_layout() {
        let d = DeviceDetails {
            mapped_blocks: 0x0102_0304_0506_0708,
            transaction_id: 9,
            creation_time: 0xaabb_ccdd,
            snapshotted_time: 3,
        };
        let b = d.pack();
        assert_eq!(b[0], 8);
        assert_eq!(b[7], 1);
        assert_eq!(b[8], 9);
        assert_eq!(&b[16..20], &[0xdd, 0xcc, 0xbb, 0xaa]);
        assert_eq!(b[20], 3);
        assert_eq!(DeviceDetails::unpack(&b), Ok(d));
        let mut longer = [0u8; 30];
        longer[..24].copy_from_slice(&b);
        assert_eq!(DeviceDetails::unpack(&longer), Ok(d));
    }

    #[test]
    fn short_slice_is_corrupt() {
        assert_eq!(
            DeviceDetails::unpack(&[0u8; 23]),
            Err(Error::Corrupt(Corruption::Metadata))
        );
    }
}
