//! The 2-bit-per-block bitmap blocks of both space maps
//! (`SMC:sm_lookup_bitmap`, `sm_set_bitmap`, `sm_find_free`): a 16-byte
//! header, then 510 little-endian u64 words of 32 entries each.  Entry `j`
//! of a word keeps the *high* bit of its value at bit `2j` and the *low*
//! bit at bit `2j + 1`.

use super::ENTRIES_PER_BLOCK;
use crate::pdata::block_manager::Block;
use crate::pdata::btree::node::{rd64, wr64};

/// Size of the bitmap block header.
pub const BITMAP_HEADER_SIZE: usize = 16;

#[inline]
fn word_off(entry: u32) -> usize {
    BITMAP_HEADER_SIZE + 8 * (entry >> 5) as usize
}

/// Value (0..=3) of entry `entry`.
#[inline]
pub fn lookup(bm: &Block, entry: u32) -> u32 {
    let w = rd64(bm, word_off(entry));
    let s = (entry & 31) * 2;
    let hi = ((w >> s) & 1) as u32;
    let lo = ((w >> (s + 1)) & 1) as u32;
    (hi << 1) | lo
}

/// Sets entry `entry` to `val` (0..=3).
#[inline]
pub fn set(bm: &mut Block, entry: u32, val: u32) {
    let off = word_off(entry);
    let mut w = rd64(bm, off);
    let s = (entry & 31) * 2;
    w &= !(3u64 << s);
    if val & 2 != 0 {
        w |= 1 << s;
    }
    if val & 1 != 0 {
        w |= 1 << (s + 1);
    }
    wr64(bm, off, w);
}

/// Whether every entry of the word is non-zero.
#[inline]
fn word_used(w: u64) -> bool {
    !(w | (w >> 1)) & 0x5555_5555_5555_5555 == 0
}

/// First zero entry in `[begin, end)` (`end` is capped at 16320).
pub fn find_free(bm: &Block, mut begin: u32, end: u32) -> Option<u32> {
    let end = end.min(ENTRIES_PER_BLOCK as u32);
    while begin < end {
        if begin & 31 == 0 && word_used(rd64(bm, word_off(begin))) {
            begin += 32;
            continue;
        }
        if lookup(bm, begin) == 0 {
            return Some(begin);
        }
        begin += 1;
    }
    None
}
