//! Read-only btree walks: exact lookup, lookup of the next key, highest
//! and lowest key (`BT:dm_btree_lookup`, `dm_btree_lookup_next`,
//! `dm_btree_find_highest_key`).  They allocate nothing, hold one read
//! guard at a time and work with a blocking or non-blocking [`Reader`].

use super::node;
use super::{check_child, MAX_DEPTH};
use crate::pdata::block_manager::BlockManager;
use crate::pdata::error::{Corruption, Error, Result};
use crate::pdata::transaction_manager::Reader;
use crate::pdata::validators::BTREE_NODE;

/// Walks one level from `root` to the leaf entry for `key`; returns the
/// leaf guard and the index of `key` in it.
fn find_exact<'a, B: BlockManager>(
    r: &Reader<'a, B>,
    mut block: u64,
    key: u64,
    leaf_vs: usize,
) -> Result<(B::ReadGuard<'a>, u32)> {
    for _ in 0..MAX_DEPTH {
        let g = r.lock(block, &BTREE_NODE)?;
        node::check_shape(&g, leaf_vs)?;
        let i = node::lower_bound(&g, key);
        if i < 0 || i as u32 >= node::nr_entries(&g) {
            return Err(Error::NotFound);
        }
        let i = i as u32;
        if node::is_internal(&g) {
            block = node::value64(&g, i);
            check_child(r.bm(), block)?;
            continue;
        }
        if node::key(&g, i) != key {
            return Err(Error::NotFound);
        }
        return Ok((g, i));
    }
    Err(Error::Corrupt(Corruption::Depth))
}

/// Follows the upper levels of a multi-level tree (`keys` without the
/// last one) and returns the root of the last level's tree.
fn descend_upper<B: BlockManager>(r: &Reader<'_, B>, mut root: u64, upper: &[u64]) -> Result<u64> {
    for &k in upper {
        let (g, i) = find_exact(r, root, k, 8)?;
        root = node::value64(&g, i);
        check_child(r.bm(), root)?;
    }
    Ok(root)
}

/// Looks up `keys` (one per level) and copies the value into `out`, whose
/// length must be the leaf value size.  [`Error::NotFound`] if absent.
pub fn lookup<B: BlockManager>(
    r: &Reader<'_, B>,
    root: u64,
    keys: &[u64],
    out: &mut [u8],
) -> Result<()> {
    let (last, upper) = keys.split_last().ok_or(Error::Invalid)?;
    let root = descend_upper(r, root, upper)?;
    let (g, i) = find_exact(r, root, *last, out.len())?;
    let v = node::values(&g, i, 1);
    if v.len() != out.len() {
        return Err(Error::Corrupt(Corruption::Node));
    }
    out.copy_from_slice(v);
    Ok(())
}

/// Whether `keys` is present in a tree whose last-level leaves hold
/// `leaf_vs`-byte values.
pub fn contains<B: BlockManager>(
    r: &Reader<'_, B>,
    root: u64,
    keys: &[u64],
    leaf_vs: usize,
) -> Result<bool> {
    let (last, upper) = keys.split_last().ok_or(Error::Invalid)?;
    let root = match descend_upper(r, root, upper) {
        Ok(x) => x,
        Err(Error::NotFound) => return Ok(false),
        Err(e) => return Err(e),
    };
    match find_exact(r, root, *last, leaf_vs) {
        Ok(_) => Ok(true),
        Err(Error::NotFound) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Finds the first entry of the last level whose key is `>=` the last of
/// `keys` (upper levels must match exactly); copies its value into `out`
/// and returns its key (`BT:dm_btree_lookup_next`).
pub fn lookup_next<B: BlockManager>(
    r: &Reader<'_, B>,
    root: u64,
    keys: &[u64],
    out: &mut [u8],
) -> Result<u64> {
    let leaf_vs = out.len();
    next_inner(r, root, keys, leaf_vs, Some(out))
}

/// Like [`lookup_next`] but only returns the key, for a tree whose
/// last-level leaves hold `leaf_vs`-byte values.
pub(crate) fn lookup_next_key<B: BlockManager>(
    r: &Reader<'_, B>,
    root: u64,
    keys: &[u64],
    leaf_vs: usize,
) -> Result<u64> {
    next_inner(r, root, keys, leaf_vs, None)
}

fn next_inner<B: BlockManager>(
    r: &Reader<'_, B>,
    root: u64,
    keys: &[u64],
    leaf_vs: usize,
    out: Option<&mut [u8]>,
) -> Result<u64> {
    let (&key, upper) = keys.split_last().ok_or(Error::Invalid)?;
    let mut block = descend_upper(r, root, upper)?;
    // The nearest right-hand subtree seen on the way down: if the leaf
    // has no key >= `key`, the answer is the lowest key under it.
    let mut candidate: Option<u64> = None;
    let mut depth = 0;
    loop {
        depth += 1;
        if depth > MAX_DEPTH {
            return Err(Error::Corrupt(Corruption::Depth));
        }
        let g = r.lock(block, &BTREE_NODE)?;
        node::check_shape(&g, leaf_vs)?;
        let nr = node::nr_entries(&g);
        if node::is_internal(&g) {
            let i = node::lower_bound(&g, key).max(0) as u32;
            if i >= nr {
                return Err(Error::NotFound);
            }
            if i + 1 < nr {
                candidate = Some(node::value64(&g, i + 1));
            }
            block = node::value64(&g, i);
            check_child(r.bm(), block)?;
            continue;
        }
        let i = node::upper_bound(&g, key);
        if i >= 0 && (i as u32) < nr {
            let i = i as u32;
            if let Some(out) = out {
                let v = node::values(&g, i, 1);
                if v.len() != out.len() {
                    return Err(Error::Corrupt(Corruption::Node));
                }
                out.copy_from_slice(v);
            }
            return Ok(node::key(&g, i));
        }
        match candidate.take() {
            None => return Err(Error::NotFound),
            Some(c) => {
                drop(g);
                check_child(r.bm(), c)?;
                let (k, ..) = find_edge(r, c, false, Some(leaf_vs), out)?
                    .ok_or(Error::Corrupt(Corruption::Node))?;
                // The right subtree's keys are above its separator, which
                // is above `key`; a smaller key means the separator lies
                // (upstream's recursive walk never answers below `key`,
                // and callers stepping with `k + 1` would loop).
                if k < key {
                    return Err(Error::Corrupt(Corruption::Node));
                }
                return Ok(k);
            }
        }
    }
}

/// Descends always to the first (or last) entry; returns the key found at
/// the leaf, or `None` for an empty tree.  With `leaf_vs`, every node's
/// shape is checked; `out` (of that length) receives the value.
fn find_edge<B: BlockManager>(
    r: &Reader<'_, B>,
    mut block: u64,
    highest: bool,
    leaf_vs: Option<usize>,
    out: Option<&mut [u8]>,
) -> Result<Option<(u64, ())>> {
    for _ in 0..MAX_DEPTH {
        let g = r.lock(block, &BTREE_NODE)?;
        if let Some(vs) = leaf_vs {
            node::check_shape(&g, vs)?;
        } else if !node::is_leaf(&g) && !node::is_internal(&g) {
            return Err(Error::Corrupt(Corruption::Node));
        }
        let nr = node::nr_entries(&g);
        if nr == 0 || nr > node::max_entries(&g) {
            return Ok(None);
        }
        let i = if highest { nr - 1 } else { 0 };
        if node::is_internal(&g) {
            block = node::value64(&g, i);
            check_child(r.bm(), block)?;
            continue;
        }
        if let Some(out) = out {
            let v = node::values(&g, i, 1);
            if v.len() != out.len() {
                return Err(Error::Corrupt(Corruption::Node));
            }
            out.copy_from_slice(v);
        }
        return Ok(Some((node::key(&g, i), ())));
    }
    Err(Error::Corrupt(Corruption::Depth))
}

/// Highest key of a single-level tree, or `None` if it is empty
/// (`BT:dm_btree_find_highest_key` with one level).
pub fn find_highest_key<B: BlockManager>(r: &Reader<'_, B>, root: u64) -> Result<Option<u64>> {
    Ok(find_edge(r, root, true, None, None)?.map(|(k, _)| k))
}

/// Lowest key of a single-level tree, or `None` if it is empty.
pub fn find_lowest_key<B: BlockManager>(r: &Reader<'_, B>, root: u64) -> Result<Option<u64>> {
    Ok(find_edge(r, root, false, None, None)?.map(|(k, _)| k))
}
