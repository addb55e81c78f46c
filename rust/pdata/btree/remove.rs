//! Btree removal with rebalancing (`dm-btree-remove.c`): on the way down
//! each child on the path is merged with or refilled from its siblings so
//! that every non-root node keeps at least `max_entries / 3` entries.

use super::lookup::{contains, lookup_next_key};
use super::node;
use super::{
    check_child, inc_children, shadow_child, BlockRefs, Spine, ValueType, MAX_DEPTH, MAX_LEVELS,
};
use crate::pdata::block_manager::{Block, BlockManager};
use crate::pdata::error::{Corruption, Error, Result};
use crate::pdata::transaction_manager::Tm;
use crate::pdata::validators::BTREE_NODE;

fn merge_threshold(n: &Block) -> u32 {
    node::max_entries(n) / 3
}

/// Shifts a node's entries by `shift` places (negative: towards 0,
/// dropping the first `-shift`) (`BTR:node_shift`).
fn node_shift(n: &mut Block, shift: i64) -> Result<()> {
    let nr = node::nr_entries(n) as i64;
    if shift < 0 {
        let s = -shift;
        if s > nr {
            return Err(Error::Corrupt(Corruption::Node));
        }
        node::move_entries(n, 0, s as u32, (nr - s) as u32)
    } else {
        node::move_entries(n, shift as u32, 0, nr as u32)
    }
}

/// Copies entries between neighbours (`BTR:node_copy`): negative `shift`
/// appends the first `-shift` of `right` to `left`; positive copies the
/// last `shift` of `left` to the front of `right`.
fn node_copy(left: &mut Block, right: &mut Block, shift: i64) -> Result<()> {
    let nr_left = node::nr_entries(left) as i64;
    if shift < 0 {
        node::copy_entries(left, nr_left as u32, right, 0, (-shift) as u32)
    } else {
        if shift > nr_left {
            return Err(Error::Corrupt(Corruption::Node));
        }
        node::copy_entries(right, 0, left, (nr_left - shift) as u32, shift as u32)
    }
}

/// Moves `count` entries from the end of `left` to the front of `right`
/// (negative: from the front of `right` to the end of `left`)
/// (`BTR:shift`).
fn shift(left: &mut Block, right: &mut Block, count: i64) -> Result<()> {
    let nr_left = node::nr_entries(left) as i64;
    let nr_right = node::nr_entries(right) as i64;
    let max = node::max_entries(left) as i64;
    if max != node::max_entries(right) as i64 {
        return Err(Error::Corrupt(Corruption::Node));
    }
    let new_left = nr_left - count;
    let new_right = nr_right + count;
    if new_left < 0 || new_left > max || new_right < 0 || new_right > max {
        return Err(Error::Corrupt(Corruption::Node));
    }
    if count == 0 {
        return Ok(());
    }
    if count > 0 {
        node_shift(right, count)?;
        node_copy(left, right, count)?;
    } else {
        node_copy(left, right, count)?;
        node_shift(right, count)?;
    }
    node::set_nr_entries(left, new_left as u32);
    node::set_nr_entries(right, new_right as u32);
    Ok(())
}

struct Child<'a, B: BlockManager + 'a> {
    index: u32,
    g: B::WriteGuard<'a>,
    loc: u64,
}

fn init_child<'a, B: BlockManager + 'a, V: ValueType<B>>(
    tm: &mut Tm<'a, B>,
    vt: &mut V,
    parent: &mut Block,
    index: u32,
    leaf_vs: usize,
) -> Result<Child<'a, B>> {
    let (g, loc) = shadow_child(tm, vt, parent, index, leaf_vs)?;
    Ok(Child { index, g, loc })
}

/// `BTR:__rebalance2`: merges `r` into `l` or evens them out.
fn rebalance2_children<'a, B: BlockManager + 'a>(
    tm: &mut Tm<'a, B>,
    parent: &mut Block,
    l: &mut Child<'a, B>,
    r: Child<'a, B>,
) -> Result<()> {
    let mut r = r;
    let nr_left = node::nr_entries(&l.g);
    let nr_right = node::nr_entries(&r.g);
    let threshold = 2 * (merge_threshold(&l.g) + 1);
    if nr_left + nr_right < threshold {
        // Merge: the right block goes, its children stay referenced by
        // the left one.
        node_copy(&mut l.g, &mut r.g, -(nr_right as i64))?;
        node::set_nr_entries(&mut l.g, nr_left + nr_right);
        node::delete_at(parent, r.index)?;
        let loc = r.loc;
        drop(r);
        tm.dec(loc)?;
    } else {
        let target_left = (nr_left + nr_right) / 2;
        shift(&mut l.g, &mut r.g, nr_left as i64 - target_left as i64)?;
        node::set_key(parent, r.index, node::key(&r.g, 0));
    }
    Ok(())
}

fn rebalance2<'a, B: BlockManager + 'a, V: ValueType<B>>(
    tm: &mut Tm<'a, B>,
    vt: &mut V,
    parent: &mut Block,
    left_index: u32,
    leaf_vs: usize,
) -> Result<()> {
    let mut left = init_child(tm, vt, parent, left_index, leaf_vs)?;
    let right = init_child(tm, vt, parent, left_index + 1, leaf_vs)?;
    rebalance2_children(tm, parent, &mut left, right)
}

/// `BTR:delete_center_node`.
fn delete_center_node<'a, B: BlockManager + 'a>(
    tm: &mut Tm<'a, B>,
    parent: &mut Block,
    l: &mut Child<'a, B>,
    c: Child<'a, B>,
    mut r: Child<'a, B>,
) -> Result<()> {
    let mut c = c;
    let nr_left = node::nr_entries(&l.g);
    let nr_center = node::nr_entries(&c.g);
    let nr_right = node::nr_entries(&r.g);
    let max = node::max_entries(&l.g);
    let sh = (max - nr_left.min(max)).min(nr_center);
    if nr_left + sh > max {
        return Err(Error::Corrupt(Corruption::Node));
    }
    node_copy(&mut l.g, &mut c.g, -(sh as i64))?;
    node::set_nr_entries(&mut l.g, nr_left + sh);
    if sh != nr_center {
        let sh2 = nr_center - sh;
        if nr_right + sh2 > max {
            return Err(Error::Corrupt(Corruption::Node));
        }
        node_shift(&mut r.g, sh2 as i64)?;
        node_copy(&mut c.g, &mut r.g, sh2 as i64)?;
        node::set_nr_entries(&mut r.g, nr_right + sh2);
    }
    node::set_key(parent, r.index, node::key(&r.g, 0));
    node::delete_at(parent, c.index)?;
    r.index -= 1;
    let loc = c.loc;
    drop(c);
    tm.dec(loc)?;
    rebalance2_children(tm, parent, l, r)
}

/// `BTR:redistribute3`.
fn redistribute3_children<'a, B: BlockManager + 'a>(
    parent: &mut Block,
    l: &mut Child<'a, B>,
    c: &mut Child<'a, B>,
    r: &mut Child<'a, B>,
) -> Result<()> {
    let mut nr_left = node::nr_entries(&l.g) as i64;
    let nr_center = node::nr_entries(&c.g) as i64;
    let mut nr_right = node::nr_entries(&r.g) as i64;
    let max = node::max_entries(&l.g) as i64;
    let total = nr_left + nr_center + nr_right;
    let target_right = total / 3;
    let remainder = if target_right * 3 != total { 1 } else { 0 };
    let target_left = target_right + remainder;
    if target_left > max || target_right > max {
        return Err(Error::Corrupt(Corruption::Node));
    }
    if nr_left < nr_right {
        let mut s = nr_left - target_left;
        if s < 0 && nr_center < -s {
            // Not enough in the central node.
            shift(&mut l.g, &mut c.g, -nr_center)?;
            s += nr_center;
            shift(&mut l.g, &mut r.g, s)?;
            nr_right += s;
        } else {
            shift(&mut l.g, &mut c.g, s)?;
        }
        shift(&mut c.g, &mut r.g, target_right - nr_right)?;
    } else {
        let mut s = target_right - nr_right;
        if s > 0 && nr_center < s {
            shift(&mut c.g, &mut r.g, nr_center)?;
            s -= nr_center;
            shift(&mut l.g, &mut r.g, s)?;
            nr_left -= s;
        } else {
            shift(&mut c.g, &mut r.g, s)?;
        }
        shift(&mut l.g, &mut c.g, nr_left - target_left)?;
    }
    node::set_key(parent, c.index, node::key(&c.g, 0));
    node::set_key(parent, r.index, node::key(&r.g, 0));
    Ok(())
}

fn rebalance3<'a, B: BlockManager + 'a, V: ValueType<B>>(
    tm: &mut Tm<'a, B>,
    vt: &mut V,
    parent: &mut Block,
    left_index: u32,
    leaf_vs: usize,
) -> Result<()> {
    let mut l = init_child(tm, vt, parent, left_index, leaf_vs)?;
    let mut c = init_child(tm, vt, parent, left_index + 1, leaf_vs)?;
    let mut r = init_child(tm, vt, parent, left_index + 2, leaf_vs)?;
    let max = node::max_entries(&l.g);
    if max != node::max_entries(&c.g) || max != node::max_entries(&r.g) {
        return Err(Error::Corrupt(Corruption::Node));
    }
    let total = node::nr_entries(&l.g) + node::nr_entries(&c.g) + node::nr_entries(&r.g);
    let threshold = merge_threshold(&l.g) * 4 + 1;
    if total < threshold {
        delete_center_node(tm, parent, &mut l, c, r)
    } else {
        redistribute3_children(parent, &mut l, &mut c, &mut r)
    }
}

/// Makes sure the child of the current node on the path to `key` can
/// lose an entry (`BTR:rebalance_children`).
fn rebalance_children<'a, B: BlockManager + 'a, V: ValueType<B>>(
    s: &mut Spine<'a, B>,
    tm: &mut Tm<'a, B>,
    vt: &mut V,
    key: u64,
    leaf_vs: usize,
) -> Result<()> {
    let (n, nloc) = s.cur.as_mut().ok_or(Error::Invalid)?;
    let nloc = *nloc;
    let nr = node::nr_entries(n);
    if nr == 1 {
        // A single child: pull it up into this node.
        let b = node::value64(n, 0);
        check_child(tm.bm(), b)?;
        let shared = tm.is_shared(b)?;
        let child = tm.read_lock(b, &BTREE_NODE)?;
        node::check_shape(&child, leaf_vs)?;
        if shared {
            inc_children(tm, &child, vt)?;
        }
        n.copy_from_slice(&child[..]);
        node::set_blocknr(n, nloc);
        drop(child);
        return tm.dec(b);
    }
    let i = node::lower_bound(n, key);
    if i < 0 {
        return Err(Error::NotFound);
    }
    let i = i as u32;
    let has_left = i > 0;
    let has_right = i + 1 < nr;
    if !has_left {
        rebalance2(tm, vt, n, i, leaf_vs)
    } else if !has_right {
        rebalance2(tm, vt, n, i - 1, leaf_vs)
    } else {
        rebalance3(tm, vt, n, i - 1, leaf_vs)
    }
}

/// Walks one level down towards `key`, rebalancing; leaves the leaf
/// current.  With `nearest`, `index` is the leaf's lower bound of `key`
/// (may be -1); otherwise the key must be present
/// (`BTR:remove_raw`, `remove_nearest`).
#[allow(clippy::too_many_arguments)]
fn remove_raw<'a, B: BlockManager + 'a, V: ValueType<B>>(
    s: &mut Spine<'a, B>,
    tm: &mut Tm<'a, B>,
    vt: &mut V,
    mut root: u64,
    key: u64,
    index: &mut i64,
    leaf_vs: usize,
    nearest: bool,
) -> Result<()> {
    let mut i = *index;
    for _ in 0..MAX_DEPTH {
        s.step(tm, vt, root, leaf_vs)?;
        if s.has_parent() {
            s.patch_parent(i)?;
        }
        if !node::is_leaf(s.cur()?) {
            rebalance_children(s, tm, vt, key, leaf_vs)?;
        }
        let n = s.cur()?;
        if node::is_leaf(n) {
            let j = node::lower_bound(n, key);
            if nearest {
                *index = j;
                return Ok(());
            }
            if j < 0 || j as u32 >= node::nr_entries(n) || node::key(n, j as u32) != key {
                return Err(Error::NotFound);
            }
            *index = j;
            return Ok(());
        }
        i = node::lower_bound(n, key);
        if i < 0 || i as u32 >= node::nr_entries(n) {
            return Err(Error::NotFound);
        }
        root = node::value64(n, i as u32);
    }
    Err(Error::Corrupt(Corruption::Depth))
}

/// Removes `keys` (one key per level) and calls `dec` on its value;
/// returns the new root (`BT:dm_btree_remove`).  A missing key gives
/// [`Error::NotFound`] and leaves the tree untouched.
pub fn remove<'a, B: BlockManager + 'a, V: ValueType<B>>(
    tm: &mut Tm<'a, B>,
    vt: &mut V,
    root: u64,
    keys: &[u64],
) -> Result<u64> {
    let (&last_key, upper) = keys.split_last().ok_or(Error::Invalid)?;
    if !contains(&tm.reader(), root, keys, V::SIZE)? {
        return Err(Error::NotFound);
    }
    let mut s: Spine<'a, B> = Spine::new();
    let mut index: i64 = 0;
    let mut block = root;
    for &k in upper {
        remove_raw(&mut s, tm, &mut BlockRefs, block, k, &mut index, 8, false)?;
        block = node::value64(s.cur()?, index as u32);
    }
    remove_raw(&mut s, tm, vt, block, last_key, &mut index, V::SIZE, false)?;
    {
        let (n, _) = s.cur.as_mut().ok_or(Error::Invalid)?;
        let idx = index as u32;
        let v = node::values(n, idx, 1);
        vt.dec(tm, v)?;
        node::delete_at(n, idx)?;
    }
    s.root.ok_or(Error::Invalid)
}

/// One step of [`remove_leaves`]; returns the new root and whether a key
/// was removed (`BTR:remove_one`).
fn remove_one<'a, B: BlockManager + 'a, V: ValueType<B>>(
    tm: &mut Tm<'a, B>,
    vt: &mut V,
    root: u64,
    keys: &mut [u64],
    end_key: u64,
) -> (u64, Result<()>) {
    let mut s: Spine<'a, B> = Spine::new();
    let r = remove_one_inner(&mut s, tm, vt, root, keys, end_key);
    (s.root.unwrap_or(root), r)
}

fn remove_one_inner<'a, B: BlockManager + 'a, V: ValueType<B>>(
    s: &mut Spine<'a, B>,
    tm: &mut Tm<'a, B>,
    vt: &mut V,
    root: u64,
    keys: &mut [u64],
    end_key: u64,
) -> Result<()> {
    let (last, upper) = keys.split_last_mut().ok_or(Error::Invalid)?;
    let mut index: i64 = 0;
    let mut block = root;
    for &mut k in upper {
        remove_raw(s, tm, &mut BlockRefs, block, k, &mut index, 8, false)?;
        block = node::value64(s.cur()?, index as u32);
    }
    remove_raw(s, tm, vt, block, *last, &mut index, V::SIZE, true)?;
    let (n, _) = s.cur.as_mut().ok_or(Error::Invalid)?;
    let idx = index.max(0) as u32;
    if idx >= node::nr_entries(n) {
        return Err(Error::NotFound);
    }
    let k = node::key(n, idx);
    if k >= *last && k < end_key {
        let v = node::values(n, idx, 1);
        vt.dec(tm, v)?;
        node::delete_at(n, idx)?;
        *last = k.checked_add(1).ok_or(Error::Invalid)?;
        Ok(())
    } else {
        Err(Error::NotFound)
    }
}

/// Removes the entries of the last level with keys in `[keys.last, end_key)`
/// one at a time, stopping at the first gap the walk cannot cross (as
/// upstream: callers find the first present key with `lookup_next`
/// first); returns the new root and the number removed
/// (`BT:dm_btree_remove_leaves`).
pub fn remove_leaves<'a, B: BlockManager + 'a, V: ValueType<B>>(
    tm: &mut Tm<'a, B>,
    vt: &mut V,
    mut root: u64,
    keys: &[u64],
    end_key: u64,
) -> Result<(u64, u64)> {
    if keys.is_empty() || keys.len() > MAX_LEVELS {
        return Err(Error::Invalid);
    }
    let mut k = [0u64; MAX_LEVELS];
    let kk = k.get_mut(..keys.len()).ok_or(Error::Invalid)?;
    kk.copy_from_slice(keys);
    let mut nr_removed = 0u64;
    loop {
        let (new_root, r) = remove_one(tm, vt, root, kk, end_key);
        root = new_root;
        match r {
            Ok(()) => nr_removed += 1,
            Err(Error::NotFound) => {
                // If `lookup_next` sees the first key but the removal walk
                // did not, the tree is inconsistent (on a valid tree both
                // walks agree).  Say so: callers that position `keys` with
                // `lookup_next` and repeat until nothing is left (upstream
                // `__remove_range`) would otherwise loop forever.
                if nr_removed == 0 {
                    let first = kk.last().copied().ok_or(Error::Invalid)?;
                    match lookup_next_key(&tm.reader(), root, kk, V::SIZE) {
                        Ok(k) if k == first => return Err(Error::Corrupt(Corruption::Node)),
                        Ok(_) | Err(Error::NotFound) => {}
                        Err(e) => return Err(e),
                    }
                }
                return Ok((root, nr_removed));
            }
            Err(e) => return Err(e),
        }
    }
}
