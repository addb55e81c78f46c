//! In-place accessors for btree nodes inside a 4 KiB block buffer
//! (upstream `dm-btree-internal.h`): the 32-byte header, the key array at
//! byte 32 and the value array at `32 + 8 * max_entries`, plus the array
//! edits (insert, delete, shifts, copies) the btree algorithms use.
//!
//! Every accessor is bounds-checked through `get`, so a header that slipped
//! past validation can at worst produce wrong values, never a panic; the
//! callers validate headers (see [`check_shape`]) before trusting them.

use crate::pdata::block_manager::{Block, BLOCK_SIZE};
use crate::pdata::error::{Corruption, Error, Result};

/// Flag bit of an internal node.
pub const INTERNAL_NODE: u32 = 1;
/// Flag bit of a leaf node.
pub const LEAF_NODE: u32 = 2;
/// Size of the node header in bytes.
pub const HEADER_SIZE: usize = 32;

const OFF_FLAGS: usize = 4;
const OFF_NR_ENTRIES: usize = 16;
const OFF_MAX_ENTRIES: usize = 20;
const OFF_VALUE_SIZE: usize = 24;

/// Reads a little-endian u64 at `off` (0 when out of range).
#[inline]
pub(crate) fn rd64(b: &[u8], off: usize) -> u64 {
    match b.get(off..off.wrapping_add(8)) {
        Some(s) => <[u8; 8]>::try_from(s).map_or(0, u64::from_le_bytes),
        None => 0,
    }
}

/// Reads a little-endian u32 at `off` (0 when out of range).
#[inline]
pub(crate) fn rd32(b: &[u8], off: usize) -> u32 {
    match b.get(off..off.wrapping_add(4)) {
        Some(s) => <[u8; 4]>::try_from(s).map_or(0, u32::from_le_bytes),
        None => 0,
    }
}

/// Writes a little-endian u64 at `off` (ignored when out of range).
#[inline]
pub(crate) fn wr64(b: &mut [u8], off: usize, v: u64) {
    if let Some(s) = b.get_mut(off..off.wrapping_add(8)) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

/// Writes a little-endian u32 at `off` (ignored when out of range).
#[inline]
pub(crate) fn wr32(b: &mut [u8], off: usize, v: u32) {
    if let Some(s) = b.get_mut(off..off.wrapping_add(4)) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

/// Capacity of a node with values of `value_size` bytes
/// (`BT:calc_max_entries`): as many key/value pairs as fit after the
/// header, rounded down to a multiple of 3.
pub const fn calc_max_entries(value_size: usize) -> u32 {
    let total = (BLOCK_SIZE - HEADER_SIZE) / (8 + value_size);
    (3 * (total / 3)) as u32
}

/// Node flags.
#[inline]
pub fn flags(n: &Block) -> u32 {
    rd32(n, OFF_FLAGS)
}

/// Whether the node is internal.
#[inline]
pub fn is_internal(n: &Block) -> bool {
    flags(n) & INTERNAL_NODE != 0
}

/// Whether the node is a leaf.
#[inline]
pub fn is_leaf(n: &Block) -> bool {
    flags(n) & LEAF_NODE != 0
}

/// Number of entries in use.
#[inline]
pub fn nr_entries(n: &Block) -> u32 {
    rd32(n, OFF_NR_ENTRIES)
}

/// Capacity of the node.
#[inline]
pub fn max_entries(n: &Block) -> u32 {
    rd32(n, OFF_MAX_ENTRIES)
}

/// Size of each value in bytes.
#[inline]
pub fn value_size(n: &Block) -> u32 {
    rd32(n, OFF_VALUE_SIZE)
}

#[inline]
pub(crate) fn set_flags(n: &mut Block, v: u32) {
    wr32(n, OFF_FLAGS, v)
}

#[inline]
pub(crate) fn set_nr_entries(n: &mut Block, v: u32) {
    wr32(n, OFF_NR_ENTRIES, v)
}

#[inline]
pub(crate) fn set_max_entries(n: &mut Block, v: u32) {
    wr32(n, OFF_MAX_ENTRIES, v)
}

#[inline]
pub(crate) fn set_value_size(n: &mut Block, v: u32) {
    wr32(n, OFF_VALUE_SIZE, v)
}

/// Sets the self pointer (normally done by the validator on write-out).
#[inline]
pub(crate) fn set_blocknr(n: &mut Block, v: u64) {
    wr64(n, 8, v)
}

/// Byte offset of key `i`.
#[inline]
fn key_off(i: u32) -> usize {
    (i as usize).saturating_mul(8).saturating_add(HEADER_SIZE)
}

/// Byte offset of value `i`.
#[inline]
pub(crate) fn value_off(n: &Block, i: u32) -> usize {
    // Saturating: with an unchecked header the offset is merely out of
    // range (reads give 0), never an overflow.
    (max_entries(n) as usize)
        .saturating_mul(8)
        .saturating_add(HEADER_SIZE)
        .saturating_add((value_size(n) as usize).saturating_mul(i as usize))
}

/// Key `i`.
#[inline]
pub fn key(n: &Block, i: u32) -> u64 {
    rd64(n, key_off(i))
}

/// Sets key `i`.
#[inline]
pub(crate) fn set_key(n: &mut Block, i: u32, k: u64) {
    wr64(n, key_off(i), k)
}

/// Value `i` read as a u64 (internal nodes, 8-byte values).
#[inline]
pub fn value64(n: &Block, i: u32) -> u64 {
    rd64(n, value_off(n, i))
}

/// Sets value `i` as a u64.
#[inline]
pub(crate) fn set_value64(n: &mut Block, i: u32, v: u64) {
    let off = value_off(n, i);
    wr64(n, off, v)
}

/// The bytes of values `i .. i + count` (empty if out of range).
#[inline]
pub fn values(n: &Block, i: u32, count: u32) -> &[u8] {
    let off = value_off(n, i);
    let len = value_size(n) as usize * count as usize;
    n.get(off..off.saturating_add(len)).unwrap_or(&[])
}

/// The bytes of value `i`, mutable (empty if out of range).
#[inline]
pub(crate) fn value_mut(n: &mut Block, i: u32) -> &mut [u8] {
    let off = value_off(n, i);
    let len = value_size(n) as usize;
    n.get_mut(off..off.saturating_add(len)).unwrap_or(&mut [])
}

/// Binary search (`BT:bsearch`): index of `key` if present, else the
/// last index with a smaller key (`want_hi == false`, may be -1) or the
/// first with a bigger one (`want_hi == true`, may be `nr_entries`).
#[inline]
fn bsearch(n: &Block, key: u64, want_hi: bool) -> i64 {
    let mut lo: i64 = -1;
    let mut hi: i64 = nr_entries(n) as i64;
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        let mk = self::key(n, mid as u32);
        if mk == key {
            return mid;
        }
        if mk < key {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    if want_hi {
        hi
    } else {
        lo
    }
}

/// Last index whose key is `<= key`, or -1.
#[inline]
pub fn lower_bound(n: &Block, key: u64) -> i64 {
    bsearch(n, key, false)
}

/// First index whose key is `>= key`, or `nr_entries`.
#[inline]
pub fn upper_bound(n: &Block, key: u64) -> i64 {
    bsearch(n, key, true)
}

/// Whether the node holds `key`.
#[inline]
pub fn contains_key(n: &Block, key: u64) -> bool {
    let i = lower_bound(n, key);
    i >= 0 && self::key(n, i as u32) == key
}

/// Zero-fills `n` and makes it an empty node.
pub(crate) fn init_empty(n: &mut Block, flags: u32, value_size: u32) {
    n.fill(0);
    set_flags(n, flags);
    set_nr_entries(n, 0);
    set_max_entries(n, calc_max_entries(value_size as usize));
    set_value_size(n, value_size);
}

/// Copies the header shape (flags, max_entries, value_size) of `src`
/// into `dst` and gives `dst` zero entries.
pub(crate) fn init_like(dst: &mut Block, src: &Block) {
    set_flags(dst, flags(src));
    set_nr_entries(dst, 0);
    set_max_entries(dst, max_entries(src));
    set_value_size(dst, value_size(src));
}

/// Checks that the header describes a layout that fits the block and that
/// its value size is the one expected: 8 for internal nodes, `leaf_vs`
/// for leaves.  Done on every node a walk visits, so accessors can trust
/// the header.
#[inline]
pub fn check_shape(n: &Block, leaf_vs: usize) -> Result<()> {
    let vs = value_size(n) as usize;
    let max = max_entries(n) as usize;
    let nr = nr_entries(n) as usize;
    // Exactly one of the two kinds: upstream's walks disagree on which
    // bit wins when both are set (lookups test INTERNAL, removal tests
    // LEAF), which would let two walks see different trees.
    let expect = match (is_internal(n), is_leaf(n)) {
        (true, false) => 8,
        (false, true) => leaf_vs,
        _ => return Err(Error::Corrupt(Corruption::Node)),
    };
    let fits = vs
        .checked_add(8)
        .and_then(|e| e.checked_mul(max))
        .and_then(|t| t.checked_add(HEADER_SIZE))
        .is_some_and(|t| t <= BLOCK_SIZE);
    if vs != expect || nr > max || !fits {
        return Err(Error::Corrupt(Corruption::Node));
    }
    Ok(())
}

/// Whether entries `0..=last` of a node with this header lie inside the
/// block (guards the raw copies below even if a header was not checked).
#[inline]
fn fits(n: &Block, last: u32) -> bool {
    let max = max_entries(n) as usize;
    let vs = value_size(n) as usize;
    last < max_entries(n)
        && vs
            .checked_add(8)
            .and_then(|e| e.checked_mul(max))
            .and_then(|t| t.checked_add(HEADER_SIZE))
            .is_some_and(|t| t <= BLOCK_SIZE)
}

/// Inserts `key`/`value` at `index` (`BT:insert_at`).
pub(crate) fn insert_at(n: &mut Block, index: u32, key: u64, value: &[u8]) -> Result<()> {
    let nr = nr_entries(n);
    let max = max_entries(n);
    let vs = value_size(n) as usize;
    if index > nr || index >= max || nr >= max || value.len() != vs || !fits(n, nr) {
        return Err(Error::Corrupt(Corruption::Node));
    }
    let ko = key_off(index);
    let kend = key_off(nr);
    n.copy_within(ko..kend, ko + 8);
    wr64(n, ko, key);
    let vo = value_off(n, index);
    let vend = value_off(n, nr);
    n.copy_within(vo..vend, vo + vs);
    if let Some(d) = n.get_mut(vo..vo + vs) {
        d.copy_from_slice(value);
    }
    set_nr_entries(n, nr + 1);
    Ok(())
}

/// Deletes entry `index`, shifting later entries down (`BTR:delete_at`).
pub(crate) fn delete_at(n: &mut Block, index: u32) -> Result<()> {
    let nr = nr_entries(n);
    if index >= nr || !fits(n, nr - 1) {
        return Err(Error::Corrupt(Corruption::Node));
    }
    let vs = value_size(n) as usize;
    let to_copy = (nr - index - 1) as usize;
    if to_copy > 0 {
        let ko = key_off(index);
        n.copy_within(ko + 8..ko + 8 + 8 * to_copy, ko);
        let vo = value_off(n, index);
        n.copy_within(vo + vs..vo + vs + vs * to_copy, vo);
    }
    set_nr_entries(n, nr - 1);
    Ok(())
}

/// Moves `count` entries inside one node from `src` to `dst` (regions may
/// overlap).
pub(crate) fn move_entries(n: &mut Block, dst: u32, src: u32, count: u32) -> Result<()> {
    if count == 0 {
        return Ok(());
    }
    let max = max_entries(n);
    if dst.saturating_add(count) > max || src.saturating_add(count) > max || !fits(n, max - 1) {
        return Err(Error::Corrupt(Corruption::Node));
    }
    let c = count as usize;
    n.copy_within(key_off(src)..key_off(src) + 8 * c, key_off(dst));
    let vs = value_size(n) as usize;
    let so = value_off(n, src);
    let d = value_off(n, dst);
    n.copy_within(so..so + vs * c, d);
    Ok(())
}

/// Copies `count` entries from `src[soff..]` to `dst[doff..]` (different
/// nodes of the same value size).
pub(crate) fn copy_entries(
    dst: &mut Block,
    doff: u32,
    src: &Block,
    soff: u32,
    count: u32,
) -> Result<()> {
    if count == 0 {
        return Ok(());
    }
    let vs = value_size(dst) as usize;
    if vs != value_size(src) as usize
        || doff.saturating_add(count) > max_entries(dst)
        || soff.saturating_add(count) > max_entries(src)
        || !fits(dst, max_entries(dst).saturating_sub(1))
        || !fits(src, max_entries(src).saturating_sub(1))
    {
        return Err(Error::Corrupt(Corruption::Node));
    }
    let c = count as usize;
    let (dk, sk) = (key_off(doff), key_off(soff));
    match (dst.get_mut(dk..dk + 8 * c), src.get(sk..sk + 8 * c)) {
        (Some(d), Some(s)) => d.copy_from_slice(s),
        _ => return Err(Error::Corrupt(Corruption::Node)),
    }
    let (dv, sv) = (value_off(dst, doff), value_off(src, soff));
    match (dst.get_mut(dv..dv + vs * c), src.get(sv..sv + vs * c)) {
        (Some(d), Some(s)) => d.copy_from_slice(s),
        _ => return Err(Error::Corrupt(Corruption::Node)),
    }
    Ok(())
}
