//! Block validators of the persistent-data structures: btree nodes
//! (`BTS:btree_node_validator`), space-map bitmaps
//! (`SMC:dm_sm_bitmap_validator`) and the metadata space-map index block
//! (`SMC:index_validator`).  Each checks the self pointer first
//! (`Corruption::Location`), then the salted crc32c
//! (`Corruption::Checksum`), then type-specific header rules; `prepare`
//! fills in the self pointer and checksum just before write-out.

use super::block_manager::{Block, Validator, BLOCK_SIZE};
use super::btree::node;
use super::checksum::{block_checksum, BITMAP_CSUM_XOR, BTREE_CSUM_XOR, INDEX_CSUM_XOR};
use super::error::{Corruption, Error, Result};

fn stored_csum(b: &Block) -> u32 {
    node::rd32(b, 0)
}

fn stored_blocknr(b: &Block) -> u64 {
    node::rd64(b, 8)
}

fn check_common(b: &Block, location: u64, xor: u32) -> Result<()> {
    if stored_blocknr(b) != location {
        return Err(Error::Corrupt(Corruption::Location));
    }
    if block_checksum(b, xor) != stored_csum(b) {
        return Err(Error::Corrupt(Corruption::Checksum));
    }
    Ok(())
}

fn prepare_common(b: &mut Block, location: u64, xor: u32) {
    node::wr64(b, 8, location);
    let csum = block_checksum(b, xor);
    node::wr32(b, 0, csum);
}

fn btree_check(b: &Block, location: u64) -> Result<()> {
    check_common(b, location, BTREE_CSUM_XOR)?;
    let nr = node::nr_entries(b) as usize;
    let max = node::max_entries(b) as usize;
    let vs = node::value_size(b) as usize;
    // 32 + (8 + value_size) * max_entries <= 4096, computed without overflow.
    let fits = vs
        .checked_add(8)
        .and_then(|e| e.checked_mul(max))
        .and_then(|t| t.checked_add(node::HEADER_SIZE))
        .is_some_and(|t| t <= BLOCK_SIZE);
    if !fits || nr > max {
        return Err(Error::Corrupt(Corruption::Node));
    }
    let flags = node::flags(b);
    if flags & (node::INTERNAL_NODE | node::LEAF_NODE) == 0 {
        return Err(Error::Corrupt(Corruption::Node));
    }
    // Stricter than upstream (which never writes anything else): internal
    // nodes carry 8-byte child pointers and keys strictly increase.
    if flags & node::INTERNAL_NODE != 0 && vs != 8 {
        return Err(Error::Corrupt(Corruption::Node));
    }
    let mut prev = 0u64;
    for i in 0..nr as u32 {
        let k = node::key(b, i);
        if i > 0 && k <= prev {
            return Err(Error::Corrupt(Corruption::Node));
        }
        prev = k;
    }
    Ok(())
}

fn btree_prepare(b: &mut Block, location: u64) {
    prepare_common(b, location, BTREE_CSUM_XOR)
}

fn bitmap_check(b: &Block, location: u64) -> Result<()> {
    check_common(b, location, BITMAP_CSUM_XOR)
}

fn bitmap_prepare(b: &mut Block, location: u64) {
    prepare_common(b, location, BITMAP_CSUM_XOR)
}

fn index_check(b: &Block, location: u64) -> Result<()> {
    check_common(b, location, INDEX_CSUM_XOR)
}

fn index_prepare(b: &mut Block, location: u64) {
    prepare_common(b, location, INDEX_CSUM_XOR)
}

/// Validator of btree nodes ("btree_node", XOR 121107).
pub static BTREE_NODE: Validator = Validator {
    name: "btree_node",
    check: btree_check,
    prepare: btree_prepare,
};

/// Validator of space-map bitmap blocks ("sm_bitmap", XOR 240779).
pub static SM_BITMAP: Validator = Validator {
    name: "sm_bitmap",
    check: bitmap_check,
    prepare: bitmap_prepare,
};

/// Validator of the metadata space-map index block ("index", XOR 160478).
pub static SM_INDEX: Validator = Validator {
    name: "index",
    check: index_check,
    prepare: index_prepare,
};
