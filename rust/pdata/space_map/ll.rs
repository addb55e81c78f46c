//! Low-level space-map operations shared by the metadata and data space
//! maps (`dm-space-map-common.c`): lookups, free-block search, set, and
//! range increment/decrement across bitmaps and the overflow tree, and
//! growth.  The two maps differ only in how index entries are stored,
//! abstracted by [`Ll`].

use super::bitmap;
use super::{IndexEntry, SmRoot, ENTRIES_PER_BLOCK};
use crate::pdata::block_manager::BlockManager;
use crate::pdata::btree::{self, node, Plain};
use crate::pdata::error::{Corruption, Error, Result};
use crate::pdata::transaction_manager::Tm;
use crate::pdata::validators::SM_BITMAP;

/// Overflow ref-count value type (u32, references nothing).
pub(crate) type RefCountValue = Plain<4>;

/// The in-core state of a low-level space map.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LlCore {
    pub(crate) root: SmRoot,
    /// Some index entry changed since the last commit.
    pub(crate) changed: bool,
}

/// Access to one low-level space map's state and index.  The metadata
/// space map's state lives inside the transaction manager (it is
/// self-hosting), so every access goes through `tm`.
pub(crate) trait Ll<B: BlockManager> {
    /// The summary fields.
    fn core<'s>(&'s mut self, tm: &'s mut Tm<'_, B>) -> &'s mut LlCore;
    /// Index entry of bitmap `index`.
    fn load_ie(&mut self, tm: &mut Tm<'_, B>, index: u64) -> Result<IndexEntry>;
    /// Stores the index entry of bitmap `index`.
    fn save_ie(&mut self, tm: &mut Tm<'_, B>, index: u64, ie: IndexEntry) -> Result<()>;
    /// Maximum number of bitmaps.
    fn max_index_entries(&self) -> u64;
    /// Writes the index out (at commit).
    fn commit_index(&mut self, tm: &mut Tm<'_, B>) -> Result<()>;
}

fn split(b: u64) -> (u64, u32) {
    (b / ENTRIES_PER_BLOCK, (b % ENTRIES_PER_BLOCK) as u32)
}

/// Bitmap value (0..=3) of block `b` (`sm_ll_lookup_bitmap`).
pub(crate) fn lookup_bitmap<B: BlockManager, L: Ll<B>>(
    l: &mut L,
    tm: &mut Tm<'_, B>,
    b: u64,
) -> Result<u32> {
    if b >= l.core(tm).root.nr_blocks {
        return Err(Error::Invalid);
    }
    let (index, bit) = split(b);
    let ie = l.load_ie(tm, index)?;
    let g = tm.read_lock(ie.blocknr, &SM_BITMAP)?;
    Ok(bitmap::lookup(&g, bit))
}

fn lookup_big_ref_count<B: BlockManager, L: Ll<B>>(
    l: &mut L,
    tm: &mut Tm<'_, B>,
    b: u64,
) -> Result<u32> {
    let root = l.core(tm).root.ref_count_root;
    let mut v = [0u8; 4];
    match btree::lookup(&tm.reader(), root, &[b], &mut v) {
        Ok(()) => Ok(u32::from_le_bytes(v)),
        Err(Error::NotFound) => Err(Error::Corrupt(Corruption::SpaceMap)),
        Err(e) => Err(e),
    }
}

/// Reference count of block `b` (`sm_ll_lookup`).
pub(crate) fn lookup<B: BlockManager, L: Ll<B>>(
    l: &mut L,
    tm: &mut Tm<'_, B>,
    b: u64,
) -> Result<u32> {
    let v = lookup_bitmap(l, tm, b)?;
    if v != 3 {
        return Ok(v);
    }
    lookup_big_ref_count(l, tm, b)
}

/// First free block in `[begin, end)` (`sm_ll_find_free_block`);
/// [`Error::NoSpace`] if none.
pub(crate) fn find_free_block<B: BlockManager, L: Ll<B>>(
    l: &mut L,
    tm: &mut Tm<'_, B>,
    begin: u64,
    end: u64,
) -> Result<u64> {
    let index_end = end.div_ceil(ENTRIES_PER_BLOCK);
    let (index_begin, mut bit_begin) = split(begin);
    let mut end_bit = (end % ENTRIES_PER_BLOCK) as u32;
    if end_bit == 0 {
        end_bit = ENTRIES_PER_BLOCK as u32;
    }
    let mut i = index_begin;
    while i < index_end {
        let ie = l.load_ie(tm, i)?;
        if ie.nr_free != 0 {
            let g = tm.read_lock(ie.blocknr, &SM_BITMAP)?;
            let bit_end = if i == index_end - 1 {
                end_bit
            } else {
                ENTRIES_PER_BLOCK as u32
            };
            if let Some(pos) = bitmap::find_free(&g, bit_begin.max(ie.none_free_before), bit_end) {
                return Ok(i * ENTRIES_PER_BLOCK + pos as u64);
            }
        }
        bit_begin = 0;
        i += 1;
    }
    Err(Error::NoSpace)
}

/// First block at or after `begin` that is free in `new` and was free (or
/// beyond the end) in the last committed state `old`
/// (`sm_ll_find_common_free_block`; like upstream it searches up to the
/// end of `new`).
pub(crate) fn find_common_free_block<B: BlockManager, O: Ll<B>, L: Ll<B>>(
    old: &mut O,
    new: &mut L,
    tm: &mut Tm<'_, B>,
    mut begin: u64,
) -> Result<u64> {
    loop {
        let end = new.core(tm).root.nr_blocks;
        let b = find_free_block(new, tm, begin, end)?;
        if b >= old.core(tm).root.nr_blocks {
            return Ok(b);
        }
        if lookup(old, tm, b)? == 0 {
            return Ok(b);
        }
        begin = b + 1;
    }
}

fn adjust_ie_alloc(ie: &mut IndexEntry, bit: u32) {
    ie.nr_free = ie.nr_free.wrapping_sub(1);
    if ie.none_free_before == bit {
        ie.none_free_before = bit + 1;
    }
}

fn adjust_ie_free(ie: &mut IndexEntry, bit: u32) {
    ie.nr_free = ie.nr_free.wrapping_add(1);
    ie.none_free_before = ie.none_free_before.min(bit);
}

fn add_allocated<B: BlockManager, L: Ll<B>>(l: &mut L, tm: &mut Tm<'_, B>, delta: i64) {
    let c = l.core(tm);
    c.root.nr_allocated = c.root.nr_allocated.wrapping_add(delta as u64);
}

/// Sets the count of `b` (`sm_ll_insert`); returns the change in
/// allocated blocks (-1, 0 or 1).
pub(crate) fn insert<B: BlockManager, L: Ll<B>>(
    l: &mut L,
    tm: &mut Tm<'_, B>,
    b: u64,
    ref_count: u32,
) -> Result<i64> {
    if b >= l.core(tm).root.nr_blocks {
        return Err(Error::Invalid);
    }
    let (index, bit) = split(b);
    let mut ie = l.load_ie(tm, index)?;
    let (mut g, loc, _) = tm.shadow(ie.blocknr, &SM_BITMAP)?;
    ie.blocknr = loc;
    let mut old = bitmap::lookup(&g, bit);
    if old > 2 {
        drop(g);
        old = lookup_big_ref_count(l, tm, b)?;
        g = tm.write_lock(loc, &SM_BITMAP)?;
    }
    if ref_count <= 2 {
        bitmap::set(&mut g, bit, ref_count);
        drop(g);
        if old > 2 {
            let root = l.core(tm).root.ref_count_root;
            let nr = btree::remove(tm, &mut RefCountValue::default(), root, &[b])?;
            l.core(tm).root.ref_count_root = nr;
        }
    } else {
        bitmap::set(&mut g, bit, 3);
        drop(g);
        let root = l.core(tm).root.ref_count_root;
        let nr = btree::insert(
            tm,
            &mut RefCountValue::default(),
            root,
            &[b],
            &ref_count.to_le_bytes(),
        )?;
        l.core(tm).root.ref_count_root = nr;
    }
    let delta = if ref_count != 0 && old == 0 {
        adjust_ie_alloc(&mut ie, bit);
        1
    } else if old != 0 && ref_count == 0 {
        adjust_ie_free(&mut ie, bit);
        -1
    } else {
        0
    };
    add_allocated(l, tm, delta);
    l.save_ie(tm, index, ie)?;
    Ok(delta)
}

//------------------------------------------------------------------------
// Range increment / decrement.

/// Intermediate state of a range operation within one bitmap
/// (`SMC:struct inc_context`).
struct IncCtx<'a, B: BlockManager + 'a> {
    ie: IndexEntry,
    bitmap: Option<B::WriteGuard<'a>>,
    overflow: Option<B::WriteGuard<'a>>,
}

impl<'a, B: BlockManager + 'a> IncCtx<'a, B> {
    fn reset(&mut self) {
        self.bitmap = None;
        self.overflow = None;
    }

    /// Re-takes the (already shadowed) bitmap with a plain write lock.
    fn ensure_bitmap(&mut self, tm: &Tm<'a, B>) -> Result<&mut B::WriteGuard<'a>> {
        if self.bitmap.is_none() {
            self.bitmap = Some(tm.write_lock(self.ie.blocknr, &SM_BITMAP)?);
        }
        self.bitmap.as_mut().ok_or(Error::Invalid)
    }
}

/// Index of `key` in the held overflow leaf, if it holds it.
fn overflow_index(leaf: &[u8; 4096], key: u64) -> Option<u32> {
    let i = node::lower_bound(leaf, key);
    if i >= 0 && (i as u32) < node::nr_entries(leaf) && node::key(leaf, i as u32) == key {
        Some(i as u32)
    } else {
        None
    }
}

fn read_count(leaf: &[u8; 4096], i: u32) -> u32 {
    node::rd32(node::values(leaf, i, 1), 0)
}

fn write_count(leaf: &mut [u8; 4096], i: u32, v: u32) {
    node::wr32(node::value_mut(leaf, i), 0, v)
}

/// Takes the overflow leaf holding `b` (shadowing its path) into `ic`;
/// returns the index of `b` in it.
fn get_overflow_leaf<'a, B: BlockManager + 'a, L: Ll<B>>(
    l: &mut L,
    tm: &mut Tm<'a, B>,
    ic: &mut IncCtx<'a, B>,
    b: u64,
) -> Result<u32> {
    // The bitmap must be unlocked: finding the leaf may allocate.
    ic.reset();
    let root = l.core(tm).root.ref_count_root;
    let (new_root, leaf, i) =
        btree::insert::get_overwrite_leaf(tm, &mut RefCountValue::default(), root, b)?;
    l.core(tm).root.ref_count_root = new_root;
    ic.overflow = Some(leaf);
    Ok(i)
}

fn inc_overflow<'a, B: BlockManager + 'a, L: Ll<B>>(
    l: &mut L,
    tm: &mut Tm<'a, B>,
    ic: &mut IncCtx<'a, B>,
    b: u64,
) -> Result<()> {
    if let Some(leaf) = ic.overflow.as_mut() {
        if let Some(i) = overflow_index(leaf, b) {
            let rc = read_count(leaf, i).checked_add(1).ok_or(Error::Invalid)?;
            write_count(leaf, i, rc);
            return Ok(());
        }
    }
    let i = get_overflow_leaf(l, tm, ic, b)?;
    let leaf = ic.overflow.as_mut().ok_or(Error::Invalid)?;
    let rc = read_count(leaf, i).checked_add(1).ok_or(Error::Invalid)?;
    write_count(leaf, i, rc);
    Ok(())
}

/// Decrements an overflow count; returns the old count.  A count of 3
/// leaves the tree (the bitmap then holds 2).
fn dec_overflow<'a, B: BlockManager + 'a, L: Ll<B>>(
    l: &mut L,
    tm: &mut Tm<'a, B>,
    ic: &mut IncCtx<'a, B>,
    b: u64,
) -> Result<u32> {
    let mut found = None;
    if let Some(leaf) = ic.overflow.as_mut() {
        if let Some(i) = overflow_index(leaf, b) {
            found = Some(i);
        }
    }
    let i = match found {
        Some(i) => i,
        None => get_overflow_leaf(l, tm, ic, b)?,
    };
    let leaf = ic.overflow.as_mut().ok_or(Error::Invalid)?;
    let rc = read_count(leaf, i);
    if rc > 3 {
        write_count(leaf, i, rc - 1);
        return Ok(rc);
    }
    if rc < 3 {
        return Err(Error::Corrupt(Corruption::SpaceMap));
    }
    ic.reset();
    let root = l.core(tm).root.ref_count_root;
    let nr = btree::remove(tm, &mut RefCountValue::default(), root, &[b])?;
    l.core(tm).root.ref_count_root = nr;
    Ok(rc)
}

/// Increments or decrements the blocks of `[b, e)` that live in the
/// bitmap of `b`; returns the first block not processed.
fn range_in_bitmap<'a, B: BlockManager + 'a, L: Ll<B>>(
    l: &mut L,
    tm: &mut Tm<'a, B>,
    mut b: u64,
    e: u64,
    inc: bool,
    nr_allocations: &mut i64,
) -> Result<u64> {
    let (index, mut bit) = split(b);
    let ie = l.load_ie(tm, index)?;
    let mut ic: IncCtx<'a, B> = IncCtx {
        ie,
        bitmap: None,
        overflow: None,
    };
    let (g, loc, _) = tm.shadow(ic.ie.blocknr, &SM_BITMAP)?;
    ic.ie.blocknr = loc;
    ic.bitmap = Some(g);
    let bit_end = (bit as u64 + (e - b)).min(ENTRIES_PER_BLOCK) as u32;
    while bit != bit_end {
        let bm = ic.ensure_bitmap(tm)?;
        let old = bitmap::lookup(bm, bit);
        if inc {
            match old {
                0 => {
                    bitmap::set(bm, bit, 1);
                    *nr_allocations += 1;
                    add_allocated(l, tm, 1);
                    adjust_ie_alloc(&mut ic.ie, bit);
                }
                1 => bitmap::set(bm, bit, 2),
                2 => {
                    bitmap::set(bm, bit, 3);
                    ic.reset();
                    let root = l.core(tm).root.ref_count_root;
                    let nr = btree::insert(
                        tm,
                        &mut RefCountValue::default(),
                        root,
                        &[b],
                        &3u32.to_le_bytes(),
                    )?;
                    l.core(tm).root.ref_count_root = nr;
                }
                _ => inc_overflow(l, tm, &mut ic, b)?,
            }
        } else {
            match old {
                0 => return Err(Error::Corrupt(Corruption::SpaceMap)),
                1 => {
                    bitmap::set(bm, bit, 0);
                    *nr_allocations -= 1;
                    add_allocated(l, tm, -1);
                    adjust_ie_free(&mut ic.ie, bit);
                }
                2 => bitmap::set(bm, bit, 1),
                _ => {
                    let old_rc = dec_overflow(l, tm, &mut ic, b)?;
                    if old_rc == 3 {
                        let bm = ic.ensure_bitmap(tm)?;
                        bitmap::set(bm, bit, 2);
                    }
                }
            }
        }
        bit += 1;
        b += 1;
    }
    ic.reset();
    l.save_ie(tm, index, ic.ie)?;
    Ok(b)
}

fn range<B: BlockManager, L: Ll<B>>(
    l: &mut L,
    tm: &mut Tm<'_, B>,
    mut b: u64,
    e: u64,
    inc: bool,
) -> Result<i64> {
    if b > e || e > l.core(tm).root.nr_blocks {
        return Err(Error::Invalid);
    }
    let mut nr_allocations = 0i64;
    while b != e {
        b = range_in_bitmap(l, tm, b, e, inc, &mut nr_allocations)?;
    }
    Ok(nr_allocations)
}

/// Increments the counts of `[b, e)` (`sm_ll_inc`); returns the number of
/// blocks that became allocated.
pub(crate) fn inc<B: BlockManager, L: Ll<B>>(
    l: &mut L,
    tm: &mut Tm<'_, B>,
    b: u64,
    e: u64,
) -> Result<i64> {
    range(l, tm, b, e, true)
}

/// Decrements the counts of `[b, e)` (`sm_ll_dec`); returns minus the
/// number of blocks that became free.
pub(crate) fn dec<B: BlockManager, L: Ll<B>>(
    l: &mut L,
    tm: &mut Tm<'_, B>,
    b: u64,
    e: u64,
) -> Result<i64> {
    range(l, tm, b, e, false)
}

/// Grows the map by `extra` blocks, allocating zeroed bitmaps whose index
/// entries say 16320 free (`sm_ll_extend`).
pub(crate) fn extend<B: BlockManager, L: Ll<B>>(
    l: &mut L,
    tm: &mut Tm<'_, B>,
    extra: u64,
) -> Result<()> {
    let old = l.core(tm).root.nr_blocks;
    let nr_blocks = old.checked_add(extra).ok_or(Error::Invalid)?;
    let old_blocks = old.div_ceil(ENTRIES_PER_BLOCK);
    let blocks = nr_blocks.div_ceil(ENTRIES_PER_BLOCK);
    if blocks > l.max_index_entries() {
        return Err(Error::Invalid);
    }
    l.core(tm).root.nr_blocks = nr_blocks;
    for i in old_blocks..blocks {
        let (g, loc) = tm.new_block(&SM_BITMAP)?;
        drop(g);
        let ie = IndexEntry {
            blocknr: loc,
            nr_free: ENTRIES_PER_BLOCK as u32,
            none_free_before: 0,
        };
        l.save_ie(tm, i, ie)?;
    }
    Ok(())
}

/// Writes the index out if it changed (`sm_ll_commit`).
pub(crate) fn commit<B: BlockManager, L: Ll<B>>(l: &mut L, tm: &mut Tm<'_, B>) -> Result<()> {
    if l.core(tm).changed {
        l.commit_index(tm)?;
        l.core(tm).changed = false;
    }
    Ok(())
}
