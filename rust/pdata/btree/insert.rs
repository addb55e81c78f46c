//! Btree insertion (`BT:insert`, `btree_insert_raw`, the split and
//! redistribute helpers) and the overwrite-leaf walk the space maps use to
//! update overflow ref counts in place (`BT:btree_get_overwrite_leaf`).

use super::node::{self, INTERNAL_NODE};
use super::{check_child, empty, shadow_child, BlockRefs, Spine, ValueType, MAX_DEPTH};
use crate::pdata::block_manager::{Block, BlockManager};
use crate::pdata::error::{Corruption, Error, Result};
use crate::pdata::transaction_manager::Tm;
use crate::pdata::validators::BTREE_NODE;

/// Minimum free entries in a sibling worth moving entries into
/// (`SPACE_THRESHOLD`).
const SPACE_THRESHOLD: u32 = 8;

/// Evens out the entries of two nodes (`BT:redistribute2`).
pub(crate) fn redistribute2(left: &mut Block, right: &mut Block) -> Result<()> {
    let nr_left = node::nr_entries(left);
    let nr_right = node::nr_entries(right);
    let total = nr_left + nr_right;
    let target_left = total / 2;
    let target_right = total - target_left;
    if nr_left < target_left {
        let delta = target_left - nr_left;
        node::copy_entries(left, nr_left, right, 0, delta)?;
        node::move_entries(right, 0, delta, nr_right - delta)?;
    } else if nr_left > target_left {
        let delta = nr_left - target_left;
        if nr_right > 0 {
            node::move_entries(right, delta, 0, nr_right)?;
        }
        node::copy_entries(right, 0, left, target_left, delta)?;
    }
    node::set_nr_entries(left, target_left);
    node::set_nr_entries(right, target_right);
    Ok(())
}

/// Spreads the entries of `left` and `right` over three nodes; `center`
/// is empty (`BT:redistribute3`).
fn redistribute3(left: &mut Block, center: &mut Block, right: &mut Block) -> Result<()> {
    let nr_left = node::nr_entries(left);
    let nr_right = node::nr_entries(right);
    if node::nr_entries(center) != 0 {
        return Err(Error::Corrupt(Corruption::Node));
    }
    let total = nr_left + nr_right;
    let target_left = total / 3;
    let target_center = (total - target_left) / 2;
    let target_right = total - target_left - target_center;
    if nr_left < target_left {
        let left_short = target_left - nr_left;
        node::copy_entries(left, nr_left, right, 0, left_short)?;
        node::copy_entries(center, 0, right, left_short, target_center)?;
        node::move_entries(right, 0, nr_right - target_right, target_right)?;
    } else if nr_left < target_left + target_center {
        let left_to_center = nr_left - target_left;
        node::copy_entries(center, 0, left, target_left, left_to_center)?;
        node::copy_entries(
            center,
            left_to_center,
            right,
            0,
            target_center - left_to_center,
        )?;
        node::move_entries(right, 0, nr_right - target_right, target_right)?;
    } else {
        let right_short = target_right - nr_right;
        node::move_entries(right, right_short, 0, nr_right)?;
        node::copy_entries(right, 0, left, nr_left - right_short, right_short)?;
        node::copy_entries(center, 0, left, target_left, nr_left - target_left)?;
    }
    node::set_nr_entries(left, target_left);
    node::set_nr_entries(center, target_center);
    node::set_nr_entries(right, target_right);
    Ok(())
}

/// Splits the full root beneath itself: its entries go to two new
/// children and it becomes an internal node pointing at them
/// (`BT:btree_split_beneath`).  The root stays the spine's current node.
fn split_beneath<'a, B: BlockManager + 'a>(s: &mut Spine<'a, B>, tm: &mut Tm<'a, B>) -> Result<()> {
    let (pn, _) = s.cur.as_mut().ok_or(Error::Invalid)?;
    let nr = node::nr_entries(pn);
    let nr_left = nr / 2;
    let nr_right = nr - nr_left;

    let (mut ln, lloc) = tm.new_block(&BTREE_NODE)?;
    node::init_like(&mut ln, pn);
    node::copy_entries(&mut ln, 0, pn, 0, nr_left)?;
    node::set_nr_entries(&mut ln, nr_left);

    let (mut rn, rloc) = tm.new_block(&BTREE_NODE)?;
    node::init_like(&mut rn, pn);
    node::copy_entries(&mut rn, 0, pn, nr_left, nr_right)?;
    node::set_nr_entries(&mut rn, nr_right);

    node::set_flags(pn, INTERNAL_NODE);
    node::set_nr_entries(pn, 2);
    node::set_max_entries(pn, node::calc_max_entries(8));
    node::set_value_size(pn, 8);
    node::set_key(pn, 0, node::key(&ln, 0));
    node::set_value64(pn, 0, lloc);
    node::set_key(pn, 1, node::key(&rn, 0));
    node::set_value64(pn, 1, rloc);
    Ok(())
}

/// Moves entries from the current node into its left sibling
/// (`BT:rebalance_left`).
fn rebalance_left<'a, B: BlockManager + 'a, V: ValueType<B>>(
    s: &mut Spine<'a, B>,
    tm: &mut Tm<'a, B>,
    vt: &mut V,
    parent_index: u32,
    key: u64,
    leaf_vs: usize,
) -> Result<()> {
    let (pn, _) = s.parent.as_mut().ok_or(Error::Invalid)?;
    let (mut sib, sloc) = shadow_child(tm, vt, pn, parent_index - 1, leaf_vs)?;
    let (cur, _) = s.cur.as_mut().ok_or(Error::Invalid)?;
    redistribute2(&mut sib, cur)?;
    let first = node::key(cur, 0);
    node::set_key(pn, parent_index, first);
    if key < first {
        s.cur = Some((sib, sloc));
    }
    Ok(())
}

/// Moves entries from the current node into its right sibling
/// (`BT:rebalance_right`).
fn rebalance_right<'a, B: BlockManager + 'a, V: ValueType<B>>(
    s: &mut Spine<'a, B>,
    tm: &mut Tm<'a, B>,
    vt: &mut V,
    parent_index: u32,
    key: u64,
    leaf_vs: usize,
) -> Result<()> {
    let (pn, _) = s.parent.as_mut().ok_or(Error::Invalid)?;
    let (mut sib, sloc) = shadow_child(tm, vt, pn, parent_index + 1, leaf_vs)?;
    let (cur, _) = s.cur.as_mut().ok_or(Error::Invalid)?;
    redistribute2(cur, &mut sib)?;
    let first = node::key(&sib, 0);
    node::set_key(pn, parent_index + 1, first);
    if key >= first {
        s.cur = Some((sib, sloc));
    }
    Ok(())
}

/// Free entries of node `b`.
fn free_space<B: BlockManager>(tm: &Tm<'_, B>, b: u64, leaf_vs: usize) -> Result<u32> {
    let g = tm.read_lock(b, &BTREE_NODE)?;
    node::check_shape(&g, leaf_vs)?;
    Ok(node::max_entries(&g) - node::nr_entries(&g))
}

/// Splits the current node into two (`BT:split_one_into_two`).
fn split_one_into_two<'a, B: BlockManager + 'a>(
    s: &mut Spine<'a, B>,
    tm: &mut Tm<'a, B>,
    parent_index: u32,
    key: u64,
) -> Result<()> {
    let (left, _) = s.cur.as_mut().ok_or(Error::Invalid)?;
    let (mut right, rloc) = tm.new_block(&BTREE_NODE)?;
    node::init_like(&mut right, left);
    redistribute2(left, &mut right)?;
    let first = node::key(&right, 0);
    let (pn, _) = s.parent.as_mut().ok_or(Error::Invalid)?;
    node::insert_at(pn, parent_index + 1, first, &rloc.to_le_bytes())?;
    if key >= first {
        s.cur = Some((right, rloc));
    }
    Ok(())
}

/// Splits the current node and a neighbour into three
/// (`BT:split_two_into_three`).
fn split_two_into_three<'a, B: BlockManager + 'a, V: ValueType<B>>(
    s: &mut Spine<'a, B>,
    tm: &mut Tm<'a, B>,
    vt: &mut V,
    parent_index: u32,
    key: u64,
    leaf_vs: usize,
) -> Result<()> {
    let cur = s.cur.take().ok_or(Error::Invalid)?;
    let (pn, _) = s.parent.as_mut().ok_or(Error::Invalid)?;
    let (middle_index, mut left, mut right) = if parent_index == 0 {
        let r = shadow_child(tm, vt, pn, parent_index + 1, leaf_vs)?;
        (1, cur, r)
    } else {
        let l = shadow_child(tm, vt, pn, parent_index - 1, leaf_vs)?;
        (parent_index, l, cur)
    };
    let (mut middle, mloc) = tm.new_block(&BTREE_NODE)?;
    node::init_like(&mut middle, &left.0);
    redistribute3(&mut left.0, &mut middle, &mut right.0)?;

    let rfirst = node::key(&right.0, 0);
    let mfirst = node::key(&middle, 0);
    node::set_key(pn, middle_index, rfirst);
    node::insert_at(pn, middle_index, mfirst, &mloc.to_le_bytes())?;

    s.cur = Some(if key < mfirst {
        left
    } else if key < rfirst {
        (middle, mloc)
    } else {
        right
    });
    Ok(())
}

/// Makes room in the full current (non-root) node
/// (`BT:rebalance_or_split`).
fn rebalance_or_split<'a, B: BlockManager + 'a, V: ValueType<B>>(
    s: &mut Spine<'a, B>,
    tm: &mut Tm<'a, B>,
    vt: &mut V,
    parent_index: u32,
    key: u64,
    leaf_vs: usize,
) -> Result<()> {
    let (left_b, right_b, nr_parent) = {
        let (pn, _) = s.parent.as_ref().ok_or(Error::Invalid)?;
        let nr = node::nr_entries(pn);
        if parent_index >= nr {
            return Err(Error::Corrupt(Corruption::Node));
        }
        let l = if parent_index > 0 {
            Some(node::value64(pn, parent_index - 1))
        } else {
            None
        };
        let r = if parent_index + 1 < nr {
            Some(node::value64(pn, parent_index + 1))
        } else {
            None
        };
        (l, r, nr)
    };
    let mut left_shared = false;
    let mut right_shared = false;
    if let Some(lb) = left_b {
        check_child(tm.bm(), lb)?;
        left_shared = tm.is_shared(lb)?;
        if !left_shared && free_space(tm, lb, leaf_vs)? >= SPACE_THRESHOLD {
            return rebalance_left(s, tm, vt, parent_index, key, leaf_vs);
        }
    }
    if let Some(rb) = right_b {
        check_child(tm.bm(), rb)?;
        right_shared = tm.is_shared(rb)?;
        if !right_shared && free_space(tm, rb, leaf_vs)? >= SPACE_THRESHOLD {
            return rebalance_right(s, tm, vt, parent_index, key, leaf_vs);
        }
    }
    if left_shared
        || right_shared
        || nr_parent <= 2
        || parent_index == 0
        || parent_index + 1 == nr_parent
    {
        split_one_into_two(s, tm, parent_index, key)
    } else {
        split_two_into_three(s, tm, vt, parent_index, key, leaf_vs)
    }
}

/// Whether `n` can take `key` without splitting (`BT:has_space_for_insert`).
fn has_space_for_insert(n: &Block, key: u64) -> bool {
    if node::nr_entries(n) == node::max_entries(n) {
        return node::is_leaf(n) && node::contains_key(n, key);
    }
    true
}

/// Walks one level down to the leaf where `key` belongs, shadowing and
/// making room on the way; leaves the leaf current in the spine and sets
/// `index` to the position of `key` in it (`BT:btree_insert_raw`).
fn insert_raw<'a, B: BlockManager + 'a, V: ValueType<B>>(
    s: &mut Spine<'a, B>,
    tm: &mut Tm<'a, B>,
    vt: &mut V,
    mut root: u64,
    key: u64,
    index: &mut i64,
    leaf_vs: usize,
) -> Result<()> {
    let mut i = *index;
    let mut top = true;
    let mut depth = 0;
    loop {
        depth += 1;
        if depth > MAX_DEPTH {
            return Err(Error::Corrupt(Corruption::Depth));
        }
        s.step(tm, vt, root, leaf_vs)?;
        if s.has_parent() {
            s.patch_parent(i)?;
        }
        if !has_space_for_insert(s.cur()?, key) {
            if top {
                split_beneath(s, tm)?;
            } else {
                rebalance_or_split(s, tm, vt, i as u32, key, leaf_vs)?;
            }
        }
        let n = s.cur()?;
        i = node::lower_bound(n, key);
        if node::is_leaf(n) {
            break;
        }
        if i < 0 {
            // Lower the bound of the first child to the new key.
            node::set_key(n, 0, key);
            i = 0;
        }
        if i as u32 >= node::nr_entries(n) {
            return Err(Error::Corrupt(Corruption::Node));
        }
        root = node::value64(n, i as u32);
        top = false;
    }
    let n = s.cur()?;
    if i < 0 || node::key(n, i as u32) != key {
        i += 1;
    }
    *index = i;
    Ok(())
}

fn need_insert(n: &Block, key: u64, index: i64) -> bool {
    index < 0 || index as u32 >= node::nr_entries(n) || node::key(n, index as u32) != key
}

/// Inserts or overwrites `value` under `keys` (one key per level); returns
/// the new root (`BT:dm_btree_insert`).
pub fn insert<'a, B: BlockManager + 'a, V: ValueType<B>>(
    tm: &mut Tm<'a, B>,
    vt: &mut V,
    root: u64,
    keys: &[u64],
    value: &[u8],
) -> Result<u64> {
    insert_notify(tm, vt, root, keys, value).map(|(r, _)| r)
}

/// Like [`insert`] but also says whether the key was new (`true`) or an
/// existing value was overwritten (`false`) (`BT:dm_btree_insert_notify`).
/// An overwritten value gets `dec` unless `equal` says it matches.
pub fn insert_notify<'a, B: BlockManager + 'a, V: ValueType<B>>(
    tm: &mut Tm<'a, B>,
    vt: &mut V,
    root: u64,
    keys: &[u64],
    value: &[u8],
) -> Result<(u64, bool)> {
    let (&last_key, upper) = keys.split_last().ok_or(Error::Invalid)?;
    if value.len() != V::SIZE || keys.len() > super::MAX_LEVELS {
        return Err(Error::Invalid);
    }
    let mut s: Spine<'a, B> = Spine::new();
    let mut index: i64 = -1;
    let mut block = root;
    for &k in upper {
        insert_raw(&mut s, tm, &mut BlockRefs, block, k, &mut index, 8)?;
        if need_insert(s.cur()?, k, index) {
            let new_tree = empty(tm, V::SIZE)?;
            node::insert_at(s.cur()?, index as u32, k, &new_tree.to_le_bytes())?;
        }
        block = node::value64(s.cur()?, index as u32);
    }
    insert_raw(&mut s, tm, vt, block, last_key, &mut index, V::SIZE)?;
    let inserted;
    {
        let (n, _) = s.cur.as_mut().ok_or(Error::Invalid)?;
        if need_insert(n, last_key, index) {
            node::insert_at(n, index as u32, last_key, value)?;
            inserted = true;
        } else {
            let old = node::values(n, index as u32, 1);
            if !vt.equal(old, value) {
                vt.dec(tm, old)?;
            }
            let dst = node::value_mut(n, index as u32);
            if dst.len() != value.len() {
                return Err(Error::Corrupt(Corruption::Node));
            }
            dst.copy_from_slice(value);
            inserted = false;
        }
    }
    Ok((s.root.ok_or(Error::Invalid)?, inserted))
}

/// Shadows the path to the leaf holding `key` in a single-level tree and
/// returns (new root, the leaf's write guard, index of `key`); the key
/// must exist (`BT:btree_get_overwrite_leaf`).
pub(crate) fn get_overwrite_leaf<'a, B: BlockManager + 'a, V: ValueType<B>>(
    tm: &mut Tm<'a, B>,
    vt: &mut V,
    mut root: u64,
    key: u64,
) -> Result<(u64, B::WriteGuard<'a>, u32)> {
    let mut s: Spine<'a, B> = Spine::new();
    let mut i: i64 = -1;
    for _ in 0..MAX_DEPTH {
        s.step(tm, vt, root, V::SIZE)?;
        if s.has_parent() {
            s.patch_parent(i)?;
        }
        let n = s.cur()?;
        i = node::lower_bound(n, key);
        if i < 0 || i as u32 >= node::nr_entries(n) {
            return Err(Error::Corrupt(Corruption::SpaceMap));
        }
        if node::is_leaf(n) {
            if node::key(n, i as u32) != key {
                return Err(Error::Corrupt(Corruption::SpaceMap));
            }
            let new_root = s.root.ok_or(Error::Invalid)?;
            let (leaf, _) = s.cur.take().ok_or(Error::Invalid)?;
            return Ok((new_root, leaf, i as u32));
        }
        root = node::value64(n, i as u32);
    }
    Err(Error::Corrupt(Corruption::Depth))
}
