//! Space maps: reference counts of metadata blocks (the self-hosting
//! [`metadata`] space map, owned by the transaction manager) and of data
//! blocks (the [`disk`] space map), sharing the on-disk bitmap format and
//! the low-level operations in `ll` (upstream `dm-space-map-common.c`).
//!
//! Counts 0, 1 and 2 live in 2-bit bitmap entries; 3 means "3 or more,
//! see the overflow ref-count btree" (key = block, value = u32 count).

pub mod bitmap;
pub mod disk;
pub(crate) mod ll;
pub mod metadata;

use super::btree::node::{rd32, rd64, wr32, wr64};
use super::error::{Error, Result};

/// Entries (blocks) described by one bitmap block: (4096 - 16) * 4.
pub const ENTRIES_PER_BLOCK: u64 = 16320;

/// Maximum number of bitmaps of the metadata space map (one index block).
pub const MAX_METADATA_BITMAPS: u64 = 255;

/// Maximum size of the metadata space map in blocks (4,161,600).
pub const MAX_METADATA_BLOCKS: u64 = MAX_METADATA_BITMAPS * ENTRIES_PER_BLOCK;

/// Size of an on-disk space-map root (`disk_sm_root`).
pub const SM_ROOT_SIZE: usize = 32;

/// Size of an on-disk index entry (`disk_index_entry`).
pub const INDEX_ENTRY_SIZE: usize = 16;

/// One bitmap's index entry (`disk_index_entry`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexEntry {
    /// Location of the bitmap block.
    pub blocknr: u64,
    /// Number of zero entries in the bitmap.
    pub nr_free: u32,
    /// Hint: every entry below this one is in use.
    pub none_free_before: u32,
}

impl IndexEntry {
    /// Decodes 16 little-endian bytes.
    pub fn unpack(b: &[u8]) -> Result<IndexEntry> {
        if b.len() < INDEX_ENTRY_SIZE {
            return Err(Error::Invalid);
        }
        Ok(IndexEntry {
            blocknr: rd64(b, 0),
            nr_free: rd32(b, 8),
            none_free_before: rd32(b, 12),
        })
    }

    /// Encodes into 16 little-endian bytes.
    pub fn pack(&self, out: &mut [u8]) {
        wr64(out, 0, self.blocknr);
        wr32(out, 8, self.nr_free);
        wr32(out, 12, self.none_free_before);
    }

    /// The 16-byte encoding.
    pub fn to_bytes(&self) -> [u8; INDEX_ENTRY_SIZE] {
        let mut b = [0u8; INDEX_ENTRY_SIZE];
        self.pack(&mut b);
        b
    }
}

/// The in-core summary of a low-level space map, which is also its
/// on-disk root (`disk_sm_root`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SmRoot {
    /// Number of blocks managed.
    pub nr_blocks: u64,
    /// Blocks with a non-zero count.
    pub nr_allocated: u64,
    /// Data SM: root of the bitmap-index btree; metadata SM: the index block.
    pub bitmap_root: u64,
    /// Root of the overflow ref-count btree.
    pub ref_count_root: u64,
}

impl SmRoot {
    /// Decodes a 32-byte root.
    pub fn unpack(b: &[u8]) -> Result<SmRoot> {
        if b.len() < SM_ROOT_SIZE {
            return Err(Error::Invalid);
        }
        Ok(SmRoot {
            nr_blocks: rd64(b, 0),
            nr_allocated: rd64(b, 8),
            bitmap_root: rd64(b, 16),
            ref_count_root: rd64(b, 24),
        })
    }

    /// Encodes into `out[..32]`.
    pub fn pack(&self, out: &mut [u8]) -> Result<()> {
        if out.len() < SM_ROOT_SIZE {
            return Err(Error::NoSpace);
        }
        wr64(out, 0, self.nr_blocks);
        wr64(out, 8, self.nr_allocated);
        wr64(out, 16, self.bitmap_root);
        wr64(out, 24, self.ref_count_root);
        Ok(())
    }
}
