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

/// Self pointer, then checksum; failures are logged as upstream logs them:
/// `<prefix>: <what> failed: blocknr N != wanted L` and
/// `... csum C != wanted S` (computed, then stored).
fn check_common(b: &Block, location: u64, xor: u32, prefix: &str, what: &str) -> Result<()> {
    let blocknr = stored_blocknr(b);
    if blocknr != location {
        crate::env::log_error(
            prefix,
            format_args!("{what} failed: blocknr {blocknr} != wanted {location}"),
        );
        return Err(Error::Corrupt(Corruption::Location));
    }
    let csum = block_checksum(b, xor);
    let stored = stored_csum(b);
    if csum != stored {
        crate::env::log_error(
            prefix,
            format_args!("{what} failed: csum {csum} != wanted {stored}"),
        );
        return Err(Error::Corrupt(Corruption::Checksum));
    }
    Ok(())
}

/// Log prefix of upstream's dm-btree-spine.c.
const BTREE_PREFIX: &str = "btree spine";
/// Log prefix of upstream's dm-space-map-common.c.
const SM_PREFIX: &str = "space map common";

fn node_error(msg: &str) -> Error {
    crate::env::log_error(BTREE_PREFIX, format_args!("node_check failed: {msg}"));
    Error::Corrupt(Corruption::Node)
}

fn prepare_common(b: &mut Block, location: u64, xor: u32) {
    node::wr64(b, 8, location);
    let csum = block_checksum(b, xor);
    node::wr32(b, 0, csum);
}

fn btree_check(b: &Block, location: u64) -> Result<()> {
    check_common(b, location, BTREE_CSUM_XOR, BTREE_PREFIX, "node_check")?;
    let nr = node::nr_entries(b) as usize;
    let max = node::max_entries(b) as usize;
    let vs = node::value_size(b) as usize;
    // 32 + (8 + value_size) * max_entries <= 4096, computed without overflow.
    let fits = vs
        .checked_add(8)
        .and_then(|e| e.checked_mul(max))
        .and_then(|t| t.checked_add(node::HEADER_SIZE))
        .is_some_and(|t| t <= BLOCK_SIZE);
    if !fits {
        return Err(node_error("max_entries too large"));
    }
    if nr > max {
        return Err(node_error("too many entries"));
    }
    let flags = node::flags(b);
    let kind = flags & (node::INTERNAL_NODE | node::LEAF_NODE);
    // Upstream refuses neither bit; both bits is refused too (stricter:
    // upstream never writes it and its walks disagree on such a node).
    if kind == 0 {
        return Err(node_error("node is neither INTERNAL or LEAF"));
    }
    if kind != node::INTERNAL_NODE && kind != node::LEAF_NODE {
        return Err(node_error("node is both INTERNAL and LEAF"));
    }
    // Stricter than upstream (which never writes anything else): internal
    // nodes carry 8-byte child pointers and keys strictly increase.
    if flags & node::INTERNAL_NODE != 0 && vs != 8 {
        return Err(node_error("internal node value size is not 8"));
    }
    let mut prev = 0u64;
    for i in 0..nr as u32 {
        let k = node::key(b, i);
        if i > 0 && k <= prev {
            return Err(node_error("keys out of order"));
        }
        prev = k;
    }
    Ok(())
}

fn btree_prepare(b: &mut Block, location: u64) {
    prepare_common(b, location, BTREE_CSUM_XOR)
}

fn bitmap_check(b: &Block, location: u64) -> Result<()> {
    check_common(b, location, BITMAP_CSUM_XOR, SM_PREFIX, "bitmap check")
}

fn bitmap_prepare(b: &mut Block, location: u64) {
    prepare_common(b, location, BITMAP_CSUM_XOR)
}

fn index_check(b: &Block, location: u64) -> Result<()> {
    check_common(b, location, INDEX_CSUM_XOR, SM_PREFIX, "index_check")
}

fn index_prepare(b: &mut Block, location: u64) {
    prepare_common(b, location, INDEX_CSUM_XOR)
}

/// Validator of btree nodes ("btree_node", XOR 121107).
pub static BTREE_NODE: Validator = Validator {
    name: "btree_node",
    check: btree_check,
    prepare: btree_prepare,
    csum_salt: Some(BTREE_CSUM_XOR),
};

/// Validator of space-map bitmap blocks ("sm_bitmap", XOR 240779).
pub static SM_BITMAP: Validator = Validator {
    name: "sm_bitmap",
    check: bitmap_check,
    prepare: bitmap_prepare,
    csum_salt: Some(BITMAP_CSUM_XOR),
};

/// Validator of the metadata space-map index block ("index", XOR 160478).
pub static SM_INDEX: Validator = Validator {
    name: "index",
    check: index_check,
    prepare: index_prepare,
    csum_salt: Some(INDEX_CSUM_XOR),
};
