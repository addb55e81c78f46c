//! Block checksums as upstream computes them (`dm_bm_checksum`): crc32c
//! seeded with `0xffffffff` over bytes 4..4096 of the block, without the
//! final inversion, XORed with a per-block-type salt.  `crc32c_sw` is a
//! portable table-driven crc32c; the crate root's `env::crc32c` may use a
//! faster platform routine with the same raw-register convention.

use super::block_manager::Block;

/// Salt of the thin superblock checksum (`SUPERBLOCK_CSUM_XOR`).
pub const SUPERBLOCK_CSUM_XOR: u32 = 160774;
/// Salt of btree node checksums (`BTREE_CSUM_XOR`).
pub const BTREE_CSUM_XOR: u32 = 121107;
/// Salt of space-map bitmap checksums (`BITMAP_CSUM_XOR`).
pub const BITMAP_CSUM_XOR: u32 = 240779;
/// Salt of the metadata space-map index checksum (`INDEX_CSUM_XOR`).
pub const INDEX_CSUM_XOR: u32 = 160478;

const fn make_table() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82f6_3b78
            } else {
                c >> 1
            };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut s = 1;
    while s < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[s - 1][i];
            t[s][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        s += 1;
    }
    t
}

static TABLE: [[u32; 256]; 8] = make_table();

/// crc32c (Castagnoli) of `data` continuing from register value `crc`,
/// returning the raw register (no final inversion), like the kernel's
/// `crc32c()`.
pub fn crc32c_sw(mut crc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let lo = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) ^ crc;
        let hi = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
        crc = TABLE[7][(lo & 0xff) as usize]
            ^ TABLE[6][((lo >> 8) & 0xff) as usize]
            ^ TABLE[5][((lo >> 16) & 0xff) as usize]
            ^ TABLE[4][(lo >> 24) as usize]
            ^ TABLE[3][(hi & 0xff) as usize]
            ^ TABLE[2][((hi >> 8) & 0xff) as usize]
            ^ TABLE[1][((hi >> 16) & 0xff) as usize]
            ^ TABLE[0][(hi >> 24) as usize];
    }
    for &b in chunks.remainder() {
        crc = (crc >> 8) ^ TABLE[0][((crc ^ b as u32) & 0xff) as usize];
    }
    crc
}

/// The checksum upstream stores in the first four bytes of a block.
pub fn block_checksum(block: &Block, xor: u32) -> u32 {
    crate::env::crc32c(0xffff_ffff, &block[4..]) ^ xor
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_check_value() {
        // The standard crc32c check value of "123456789" is 0xe3069283
        // (with initial and final inversion).
        assert_eq!(crc32c_sw(!0, b"123456789") ^ !0, 0xe306_9283);
    }

    #[test]
    fn split_input_matches_whole() {
        let data: [u8; 37] = core::array::from_fn(|i| (i * 7 + 3) as u8);
        let whole = crc32c_sw(!0, &data);
        let (a, b) = data.split_at(13);
        assert_eq!(crc32c_sw(crc32c_sw(!0, a), b), whole);
    }
}
