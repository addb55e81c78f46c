//! The kernel block manager stores the self pointer and checksum of a
//! block itself when dm-bufio writes it out (`seal_standard` with the
//! validator's `csum_salt`) instead of calling the validator's `prepare`
//! at every write unlock: for every validator that declares a salt, both
//! must produce the same bytes, and the result must pass the validator's
//! own check (and fail it once a sealed byte changes).

use pdata::pdata::block_manager::{seal_standard, Block, Validator, BLOCK_SIZE};
use pdata::pdata::thin::superblock::{RAW_VALIDATOR, SB_VALIDATOR};
use pdata::pdata::validators::{BTREE_NODE, SM_BITMAP, SM_INDEX};

/// A block that passes each validator's type-specific rules once sealed:
/// an empty btree leaf (flags 2, max_entries 126, value size 24), or the
/// superblock magic; bitmap and index blocks have none.
fn sample(v: &Validator, seed: u8) -> Box<Block> {
    let mut b = Box::new([0u8; BLOCK_SIZE]);
    for (i, x) in b.iter_mut().enumerate().skip(64) {
        *x = (i as u8).wrapping_mul(31).wrapping_add(seed);
    }
    // Stale seal fields, as a shadow copy carries its origin's.
    b[..4].copy_from_slice(&0xdead_beef_u32.to_le_bytes());
    b[8..16].copy_from_slice(&77u64.to_le_bytes());
    match v.name {
        "btree_node" => {
            b[4..8].copy_from_slice(&2u32.to_le_bytes());
            b[16..20].copy_from_slice(&0u32.to_le_bytes());
            b[20..24].copy_from_slice(&126u32.to_le_bytes());
            b[24..28].copy_from_slice(&24u32.to_le_bytes());
        }
        "superblock" => {
            b[4..8].copy_from_slice(&0u32.to_le_bytes());
            b[16..32].fill(0);
            b[32..40].copy_from_slice(&27_022_010u64.to_le_bytes());
            b[40..44].copy_from_slice(&2u32.to_le_bytes());
        }
        _ => {}
    }
    b
}

#[test]
fn standard_seal_equals_prepare() {
    for v in [&BTREE_NODE, &SM_BITMAP, &SM_INDEX, &SB_VALIDATOR] {
        let salt = v
            .csum_salt
            .unwrap_or_else(|| panic!("{} declares no salt", v.name));
        for (seed, loc) in [
            (1u8, 0u64),
            (2, 5),
            (3, 123_456),
            (4, u64::from(u32::MAX) + 9),
        ] {
            let mut by_prepare = sample(v, seed);
            let mut by_seal = by_prepare.clone();
            (v.prepare)(&mut by_prepare, loc);
            seal_standard(&mut by_seal, loc, salt);
            assert!(
                by_prepare[..] == by_seal[..],
                "{} at {loc}: seals differ",
                v.name
            );
            (v.check)(&by_seal, loc).unwrap_or_else(|e| panic!("{} at {loc}: {e:?}", v.name));
            assert!(
                (v.check)(&by_seal, loc + 1).is_err(),
                "{}: wrong location accepted",
                v.name
            );
            let mut flipped = by_seal.clone();
            flipped[BLOCK_SIZE - 1] ^= 1;
            assert!(
                (v.check)(&flipped, loc).is_err(),
                "{}: bad checksum accepted",
                v.name
            );
        }
    }
}

#[test]
fn raw_validator_is_sealed_by_prepare_only() {
    assert!(RAW_VALIDATOR.csum_salt.is_none());
}
