//! The thin-pool superblock (metadata block 0): its on-disk layout, its
//! validator and the rules upstream applies when a pool is opened
//! (`struct thin_disk_superblock`, `sb_check`, `__check_incompat_features`
//! in `dm-thin-metadata.c`).
//!
//! ```text
//! off  size  field
//!   0     4  csum                 crc32c of bytes 4..4096 ^ 160774
//!   4     4  flags                bit 0 = NEEDS_CHECK; unknown bits kept
//!   8     8  blocknr              the block's own location
//!  16    16  uuid                 zero at format, ignored
//!  32     8  magic                27022010
//!  40     4  version              2 at format, ignored on open
//!  44     4  time                 snapshot counter
//!  48     8  trans_id             userspace transaction id
//!  56     8  held_root            metadata snapshot copy, 0 = none
//!  64   128  data_space_map_root  first 32 bytes used, rest ignored
//! 192   128  metadata_space_map_root  (same)
//! 320     8  data_mapping_root    top level of the mapping tree
//! 328     8  device_details_root  details tree
//! 336     4  data_block_size      sectors; must match the table
//! 340     4  metadata_block_size  8; ignored on open
//! 344     8  metadata_nr_blocks   size at format; ignored afterwards
//! 352     4  compat_flags         ignored
//! 356     4  compat_ro_flags      refused unless the device is read-only
//! 360     4  incompat_flags       any bit refuses the open
//! 364  3732  unused               zero at format, kept by commits
//! ```
//!
//! Everything a commit changes lies in the first 512-byte sector, so a
//! sector-atomic write of block 0 switches between two consistent states.

use crate::pdata::block_manager::{Block, Validator, BLOCK_SECTORS};
use crate::pdata::checksum::{block_checksum, SUPERBLOCK_CSUM_XOR};
use crate::pdata::error::{Corruption, Error, Result};

/// Location of the superblock (`THIN_SUPERBLOCK_LOCATION`).
pub const SUPERBLOCK_LOCATION: u64 = 0;
/// Superblock magic number (`THIN_SUPERBLOCK_MAGIC`).
pub const SUPERBLOCK_MAGIC: u64 = 27_022_010;
/// Version written at format (`THIN_VERSION`).
pub const THIN_VERSION: u32 = 2;
/// Flag bit: the metadata needs checking by userspace.
pub const NEEDS_CHECK_FLAG: u32 = 1;
/// Size of each space-map root slot in the superblock.
pub const SPACE_MAP_ROOT_SLOT: usize = 128;
/// Bytes of a space-map root that are meaningful (`struct disk_sm_root`).
pub const SPACE_MAP_ROOT_SIZE: usize = 32;
/// Size of `struct thin_disk_superblock`.
pub const SUPERBLOCK_STRUCT_SIZE: usize = 364;

/// Offset of `csum`.
pub const OFF_CSUM: usize = 0;
/// Offset of `flags`.
pub const OFF_FLAGS: usize = 4;
/// Offset of `blocknr`.
pub const OFF_BLOCKNR: usize = 8;
/// Offset of `uuid`.
pub const OFF_UUID: usize = 16;
/// Offset of `magic`.
pub const OFF_MAGIC: usize = 32;
/// Offset of `version`.
pub const OFF_VERSION: usize = 40;
/// Offset of `time`.
pub const OFF_TIME: usize = 44;
/// Offset of `trans_id`.
pub const OFF_TRANS_ID: usize = 48;
/// Offset of `held_root`.
pub const OFF_HELD_ROOT: usize = 56;
/// Offset of `data_space_map_root`.
pub const OFF_DATA_SM_ROOT: usize = 64;
/// Offset of `metadata_space_map_root`.
pub const OFF_METADATA_SM_ROOT: usize = 192;
/// Offset of `data_mapping_root`.
pub const OFF_DATA_MAPPING_ROOT: usize = 320;
/// Offset of `device_details_root`.
pub const OFF_DEVICE_DETAILS_ROOT: usize = 328;
/// Offset of `data_block_size`.
pub const OFF_DATA_BLOCK_SIZE: usize = 336;
/// Offset of `metadata_block_size`.
pub const OFF_METADATA_BLOCK_SIZE: usize = 340;
/// Offset of `metadata_nr_blocks`.
pub const OFF_METADATA_NR_BLOCKS: usize = 344;
/// Offset of `compat_flags`.
pub const OFF_COMPAT_FLAGS: usize = 352;
/// Offset of `compat_ro_flags`.
pub const OFF_COMPAT_RO_FLAGS: usize = 356;
/// Offset of `incompat_flags`.
pub const OFF_INCOMPAT_FLAGS: usize = 360;

/// Supported compat feature bits (`THIN_FEATURE_COMPAT_SUPP`).
pub const FEATURE_COMPAT_SUPP: u32 = 0;
/// Supported compat-ro feature bits (`THIN_FEATURE_COMPAT_RO_SUPP`).
pub const FEATURE_COMPAT_RO_SUPP: u32 = 0;
/// Supported incompat feature bits (`THIN_FEATURE_INCOMPAT_SUPP`).
pub const FEATURE_INCOMPAT_SUPP: u32 = 0;

//------------------------------------------------------------------------

fn get_u32(b: &Block, off: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(off..off + 4) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}

fn get_u64(b: &Block, off: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(off..off + 8) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

fn put(b: &mut Block, off: usize, bytes: &[u8]) {
    if let Some(s) = b.get_mut(off..off + bytes.len()) {
        s.copy_from_slice(bytes);
    }
}

fn get_array<const N: usize>(b: &Block, off: usize) -> [u8; N] {
    let mut a = [0u8; N];
    if let Some(s) = b.get(off..off + N) {
        a.copy_from_slice(s);
    }
    a
}

/// The decoded superblock fields.  Space-map roots hold only the 32
/// meaningful bytes of their 128-byte slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Superblock {
    /// Checksum as stored.
    pub csum: u32,
    /// Flag bits (bit 0 = NEEDS_CHECK).
    pub flags: u32,
    /// Self location as stored.
    pub blocknr: u64,
    /// Unused identifier.
    pub uuid: [u8; 16],
    /// Magic number.
    pub magic: u64,
    /// Format version.
    pub version: u32,
    /// Snapshot time counter.
    pub time: u32,
    /// Userspace transaction id.
    pub trans_id: u64,
    /// Location of the metadata snapshot copy, 0 if none.
    pub held_root: u64,
    /// Data space-map root (`struct disk_sm_root`).
    pub data_sm_root: [u8; SPACE_MAP_ROOT_SIZE],
    /// Metadata space-map root (`struct disk_sm_root`).
    pub metadata_sm_root: [u8; SPACE_MAP_ROOT_SIZE],
    /// Root of the top level of the mapping tree.
    pub data_mapping_root: u64,
    /// Root of the device details tree.
    pub device_details_root: u64,
    /// Data block size in sectors.
    pub data_block_size: u32,
    /// Metadata block size in sectors.
    pub metadata_block_size: u32,
    /// Metadata device size in blocks at format time.
    pub metadata_nr_blocks: u64,
    /// Compatible feature flags.
    pub compat_flags: u32,
    /// Read-only compatible feature flags.
    pub compat_ro_flags: u32,
    /// Incompatible feature flags.
    pub incompat_flags: u32,
}

impl Superblock {
    /// Decodes every field of `b` (no validation).
    pub fn unpack(b: &Block) -> Self {
        Superblock {
            csum: get_u32(b, OFF_CSUM),
            flags: get_u32(b, OFF_FLAGS),
            blocknr: get_u64(b, OFF_BLOCKNR),
            uuid: get_array(b, OFF_UUID),
            magic: get_u64(b, OFF_MAGIC),
            version: get_u32(b, OFF_VERSION),
            time: get_u32(b, OFF_TIME),
            trans_id: get_u64(b, OFF_TRANS_ID),
            held_root: get_u64(b, OFF_HELD_ROOT),
            data_sm_root: get_array(b, OFF_DATA_SM_ROOT),
            metadata_sm_root: get_array(b, OFF_METADATA_SM_ROOT),
            data_mapping_root: get_u64(b, OFF_DATA_MAPPING_ROOT),
            device_details_root: get_u64(b, OFF_DEVICE_DETAILS_ROOT),
            data_block_size: get_u32(b, OFF_DATA_BLOCK_SIZE),
            metadata_block_size: get_u32(b, OFF_METADATA_BLOCK_SIZE),
            metadata_nr_blocks: get_u64(b, OFF_METADATA_NR_BLOCKS),
            compat_flags: get_u32(b, OFF_COMPAT_FLAGS),
            compat_ro_flags: get_u32(b, OFF_COMPAT_RO_FLAGS),
            incompat_flags: get_u32(b, OFF_INCOMPAT_FLAGS),
        }
    }

    /// Writes every field into `b`, leaving bytes past the struct and the
    /// checksum alone (the validator seals the block).  The unused 96
    /// bytes of each space-map root slot are zeroed.
    pub fn pack(&self, b: &mut Block) {
        put(b, OFF_FLAGS, &self.flags.to_le_bytes());
        put(b, OFF_BLOCKNR, &self.blocknr.to_le_bytes());
        put(b, OFF_UUID, &self.uuid);
        put(b, OFF_MAGIC, &self.magic.to_le_bytes());
        put(b, OFF_VERSION, &self.version.to_le_bytes());
        self.pack_commit_fields(b);
        put(b, OFF_DATA_BLOCK_SIZE, &self.data_block_size.to_le_bytes());
        put(
            b,
            OFF_METADATA_BLOCK_SIZE,
            &self.metadata_block_size.to_le_bytes(),
        );
        put(
            b,
            OFF_METADATA_NR_BLOCKS,
            &self.metadata_nr_blocks.to_le_bytes(),
        );
        put(b, OFF_COMPAT_FLAGS, &self.compat_flags.to_le_bytes());
        put(b, OFF_COMPAT_RO_FLAGS, &self.compat_ro_flags.to_le_bytes());
        put(b, OFF_INCOMPAT_FLAGS, &self.incompat_flags.to_le_bytes());
    }

    /// Writes only the fields a commit updates (`__commit_transaction`):
    /// time, mapping root, details root, held root, transaction id, flags
    /// and both space-map roots (32 bytes each, the slot's rest zeroed).
    pub fn pack_commit_fields(&self, b: &mut Block) {
        put(b, OFF_TIME, &self.time.to_le_bytes());
        put(
            b,
            OFF_DATA_MAPPING_ROOT,
            &self.data_mapping_root.to_le_bytes(),
        );
        put(
            b,
            OFF_DEVICE_DETAILS_ROOT,
            &self.device_details_root.to_le_bytes(),
        );
        put(b, OFF_HELD_ROOT, &self.held_root.to_le_bytes());
        put(b, OFF_TRANS_ID, &self.trans_id.to_le_bytes());
        put(b, OFF_FLAGS, &self.flags.to_le_bytes());
        put_sm_root(b, OFF_DATA_SM_ROOT, &self.data_sm_root);
        put_sm_root(b, OFF_METADATA_SM_ROOT, &self.metadata_sm_root);
    }

    /// Checks the open-time rules of `__open_metadata` and
    /// `__check_incompat_features`: the data block size must be the
    /// requested one, no unknown incompat feature may be set, and no
    /// unknown compat-ro feature unless the device is read-only.  Every
    /// failure is [`Error::Invalid`] (upstream's -EINVAL).
    pub fn check_open(&self, data_block_size: u32, device_read_only: bool) -> Result<()> {
        if self.data_block_size != data_block_size {
            crate::env::log_error(
                LOG_PREFIX,
                format_args!(
                    "changing the data block size (from {} to {}) is not supported",
                    self.data_block_size, data_block_size
                ),
            );
            return Err(Error::Invalid);
        }
        let incompat = self.incompat_flags & !FEATURE_INCOMPAT_SUPP;
        if incompat != 0 {
            crate::env::log_error(
                LOG_PREFIX,
                format_args!(
                    "could not access metadata due to unsupported optional features ({incompat:x})."
                ),
            );
            return Err(Error::Invalid);
        }
        let compat_ro = self.compat_ro_flags & !FEATURE_COMPAT_RO_SUPP;
        if !device_read_only && compat_ro != 0 {
            crate::env::log_error(
                LOG_PREFIX,
                format_args!(
                    "could not access metadata RDWR due to unsupported optional features ({compat_ro:x})."
                ),
            );
            return Err(Error::Invalid);
        }
        Ok(())
    }

    /// The superblock `__write_initial_superblock` builds (before the
    /// space-map roots and tree roots are filled in by the caller).
    pub fn initial(data_block_size: u32, metadata_nr_blocks: u64) -> Self {
        Superblock {
            magic: SUPERBLOCK_MAGIC,
            version: THIN_VERSION,
            metadata_block_size: BLOCK_SECTORS,
            metadata_nr_blocks,
            data_block_size,
            ..Superblock::default()
        }
    }
}

fn put_sm_root(b: &mut Block, off: usize, root: &[u8; SPACE_MAP_ROOT_SIZE]) {
    put(b, off, root);
    if let Some(s) = b.get_mut(off + SPACE_MAP_ROOT_SIZE..off + SPACE_MAP_ROOT_SLOT) {
        s.fill(0);
    }
}

/// Writes `flags` into the superblock in `b` (upstream
/// `dm_pool_metadata_set_needs_check` updates only this field).
pub fn set_flags(b: &mut Block, flags: u32) {
    put(b, OFF_FLAGS, &flags.to_le_bytes());
}

/// Whether block 0 is "unformatted": all 4096 bytes zero
/// (`__superblock_all_zeroes`).
pub fn is_unformatted(b: &Block) -> bool {
    b.iter().all(|&x| x == 0)
}

//------------------------------------------------------------------------

/// Upstream's `sb_check`, with its log lines ("thin metadata" prefix).
fn sb_check(b: &Block, location: u64) -> Result<()> {
    let blocknr = get_u64(b, OFF_BLOCKNR);
    if blocknr != location {
        crate::env::log_error(
            LOG_PREFIX,
            format_args!("sb_check failed: blocknr {blocknr}: wanted {location}"),
        );
        return Err(Error::Corrupt(Corruption::Location));
    }
    let magic = get_u64(b, OFF_MAGIC);
    if magic != SUPERBLOCK_MAGIC {
        crate::env::log_error(
            LOG_PREFIX,
            format_args!("sb_check failed: magic {magic}: wanted {SUPERBLOCK_MAGIC}"),
        );
        return Err(Error::Corrupt(Corruption::Magic));
    }
    let csum = block_checksum(b, SUPERBLOCK_CSUM_XOR);
    let stored = get_u32(b, OFF_CSUM);
    if stored != csum {
        crate::env::log_error(
            LOG_PREFIX,
            format_args!("sb_check failed: csum {csum}: wanted {stored}"),
        );
        return Err(Error::Corrupt(Corruption::Checksum));
    }
    Ok(())
}

/// Log prefix of upstream's dm-thin-metadata.c (`DM_MSG_PREFIX`).
pub const LOG_PREFIX: &str = "thin metadata";

fn sb_prepare(b: &mut Block, location: u64) {
    put(b, OFF_BLOCKNR, &location.to_le_bytes());
    let csum = block_checksum(b, SUPERBLOCK_CSUM_XOR);
    put(b, OFF_CSUM, &csum.to_le_bytes());
}

/// Validator of superblocks (upstream `sb_validator`): location first,
/// then magic, then checksum (XOR 160774).
pub static SB_VALIDATOR: Validator = Validator {
    name: "superblock",
    check: sb_check,
    prepare: sb_prepare,
    csum_salt: Some(SUPERBLOCK_CSUM_XOR),
};

/// Validator used to read block 0 before knowing whether it is formatted
/// (upstream passes no validator): accepts anything.
pub static RAW_VALIDATOR: Validator = Validator {
    name: "raw",
    check: raw_check,
    prepare: raw_prepare,
    csum_salt: None,
};

fn raw_check(_b: &Block, _location: u64) -> Result<()> {
    Ok(())
}

fn raw_prepare(_b: &mut Block, _location: u64) {}

//------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdata::block_manager::BLOCK_SIZE;

    use std::boxed::Box;

    fn sample() -> Superblock {
        let mut s = Superblock::initial(128, 1000);
        s.flags = 0x8000_0001;
        s.uuid = [7; 16];
        s.time = 42;
        s.trans_id = 0x1122_3344_5566_7788;
        s.held_root = 99;
        s.data_sm_root = core::array::from_fn(|i| i as u8 + 1);
        s.metadata_sm_root = core::array::from_fn(|i| 100 + i as u8);
        s.data_mapping_root = 5;
        s.device_details_root = 6;
        s.compat_flags = 3;
        s.compat_ro_flags = 0;
        s.incompat_flags = 0;
        s
    }

    fn sealed(s: &Superblock, loc: u64) -> Box<Block> {
        let mut b = Box::new([0u8; BLOCK_SIZE]);
        s.pack(&mut b);
        sb_prepare(&mut b, loc);
        b
    }

    #[test]
    fn offsets_are_contiguous() {
        assert_eq!(OFF_FLAGS, OFF_CSUM + 4);
        assert_eq!(OFF_BLOCKNR, OFF_FLAGS + 4);
        assert_eq!(OFF_UUID, OFF_BLOCKNR + 8);
        assert_eq!(OFF_MAGIC, OFF_UUID + 16);
        assert_eq!(OFF_VERSION, OFF_MAGIC + 8);
        assert_eq!(OFF_TIME, OFF_VERSION + 4);
        assert_eq!(OFF_TRANS_ID, OFF_TIME + 4);
        assert_eq!(OFF_HELD_ROOT, OFF_TRANS_ID + 8);
        assert_eq!(OFF_DATA_SM_ROOT, OFF_HELD_ROOT + 8);
        assert_eq!(OFF_METADATA_SM_ROOT, OFF_DATA_SM_ROOT + SPACE_MAP_ROOT_SLOT);
        assert_eq!(
            OFF_DATA_MAPPING_ROOT,
            OFF_METADATA_SM_ROOT + SPACE_MAP_ROOT_SLOT
        );
        assert_eq!(OFF_DEVICE_DETAILS_ROOT, OFF_DATA_MAPPING_ROOT + 8);
        assert_eq!(OFF_DATA_BLOCK_SIZE, OFF_DEVICE_DETAILS_ROOT + 8);
        assert_eq!(OFF_METADATA_BLOCK_SIZE, OFF_DATA_BLOCK_SIZE + 4);
        assert_eq!(OFF_METADATA_NR_BLOCKS, OFF_METADATA_BLOCK_SIZE + 4);
        assert_eq!(OFF_COMPAT_FLAGS, OFF_METADATA_NR_BLOCKS + 8);
        assert_eq!(OFF_COMPAT_RO_FLAGS, OFF_COMPAT_FLAGS + 4);
        assert_eq!(OFF_INCOMPAT_FLAGS, OFF_COMPAT_RO_FLAGS + 4);
        assert_eq!(SUPERBLOCK_STRUCT_SIZE, OFF_INCOMPAT_FLAGS + 4);
        assert!(SUPERBLOCK_STRUCT_SIZE < 512);
    }

    #[test]
    fn round_trip() {
        let s = sample();
        let b = sealed(&s, 0);
        let u = Superblock::unpack(&b);
        assert_eq!(u.csum, get_u32(&b, 0));
        let mut expect = s;
        expect.csum = u.csum;
        expect.blocknr = 0;
        assert_eq!(u, expect);
        assert_eq!(sb_check(&b, 0), Ok(()));
        // Tail past the struct stays zero.
        assert!(b[SUPERBLOCK_STRUCT_SIZE..].iter().all(|&x| x == 0));
    }

    #[test]
    fn known_bytes() {
        let s = sample();
        let b = sealed(&s, 0);
        assert_eq!(&b[32..40], &27_022_010u64.to_le_bytes());
        assert_eq!(&b[40..44], &2u32.to_le_bytes());
        assert_eq!(&b[44..48], &42u32.to_le_bytes());
        assert_eq!(b[64], 1);
        assert_eq!(b[95], 32);
        assert!(b[96..192].iter().all(|&x| x == 0));
        assert_eq!(b[192], 100);
        assert_eq!(&b[336..340], &128u32.to_le_bytes());
        assert_eq!(&b[340..344], &8u32.to_le_bytes());
        assert_eq!(&b[344..352], &1000u64.to_le_bytes());
    }

    #[test]
    fn commit_fields_keep_the_rest_and_zero_slot_tails() {
        let s = sample();
        let mut b = sealed(&s, 0);
        b[1000] = 0xab;
        b[100] = 0xcd; // junk in the data SM slot tail (upstream may leave it)
        b[200] = 0xcd; // inside the metadata SM root: will be overwritten
        let mut t = s;
        t.time = 43;
        t.trans_id = 1;
        t.held_root = 0;
        t.data_mapping_root = 77;
        t.uuid = [0; 16];
        t.version = 9;
        t.pack_commit_fields(&mut b);
        let u = Superblock::unpack(&b);
        assert_eq!(u.time, 43);
        assert_eq!(u.trans_id, 1);
        assert_eq!(u.data_mapping_root, 77);
        assert_eq!(u.uuid, [7; 16], "uuid is not a commit field");
        assert_eq!(u.version, 2, "version is not a commit field");
        assert_eq!(b[1000], 0xab);
        assert_eq!(b[100], 0);
        assert_eq!(u.metadata_sm_root, s.metadata_sm_root);
    }

    #[test]
    fn validator_order() {
        let s = sample();
        let b = sealed(&s, 0);
        // Wrong location beats everything.
        let mut bad = b.clone();
        bad[OFF_MAGIC] ^= 1;
        bad[OFF_CSUM] ^= 1;
        assert_eq!(sb_check(&bad, 3), Err(Error::Corrupt(Corruption::Location)));
        // Magic before checksum.
        assert_eq!(sb_check(&bad, 0), Err(Error::Corrupt(Corruption::Magic)));
        let mut bad = b.clone();
        bad[OFF_CSUM] ^= 1;
        assert_eq!(sb_check(&bad, 0), Err(Error::Corrupt(Corruption::Checksum)));
        // A change anywhere in the block (tail included) breaks the checksum.
        let mut bad = b.clone();
        bad[4095] ^= 0x10;
        assert_eq!(sb_check(&bad, 0), Err(Error::Corrupt(Corruption::Checksum)));
        // The stored checksum is the salted crc of bytes 4..
        let raw = crate::pdata::checksum::crc32c_sw(0xffff_ffff, &b[4..]) ^ 160_774;
        assert_eq!(get_u32(&b, 0), raw);
    }

    #[test]
    fn held_copy_validates_at_its_location() {
        let s = sample();
        let b = sealed(&s, 17);
        assert_eq!(Superblock::unpack(&b).blocknr, 17);
        assert_eq!(sb_check(&b, 17), Ok(()));
        assert_eq!(sb_check(&b, 0), Err(Error::Corrupt(Corruption::Location)));
    }

    #[test]
    fn open_rules() {
        let s = sample();
        assert_eq!(s.check_open(128, false), Ok(()));
        assert_eq!(s.check_open(256, false), Err(Error::Invalid));
        let mut t = s;
        t.incompat_flags = 1 << 31;
        assert_eq!(t.check_open(128, false), Err(Error::Invalid));
        assert_eq!(t.check_open(128, true), Err(Error::Invalid));
        let mut t = s;
        t.compat_ro_flags = 4;
        assert_eq!(t.check_open(128, false), Err(Error::Invalid));
        assert_eq!(t.check_open(128, true), Ok(()));
        // Ignored fields.
        let mut t = s;
        t.compat_flags = !0;
        t.version = 77;
        t.metadata_block_size = 3;
        t.metadata_nr_blocks = 1;
        t.uuid = [0xff; 16];
        assert_eq!(t.check_open(128, false), Ok(()));
    }

    #[test]
    fn unformatted() {
        let mut b = Box::new([0u8; BLOCK_SIZE]);
        assert!(is_unformatted(&b));
        b[4095] = 1;
        assert!(!is_unformatted(&b));
    }
}
