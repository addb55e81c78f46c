//! Deletion of a whole (multi-level) tree (`BT:dm_btree_del`): an
//! iterative depth-first walk with an explicit, bounded stack.  A node
//! with more than one reference is only decremented; an exclusively
//! owned node has its children (or, in last-level leaves, its values via
//! `dec`) released first, then is decremented itself.

use super::node;
use super::{check_child, ValueType, MAX_DEPTH};
use crate::env::Vec;
use crate::pdata::block_manager::BlockManager;
use crate::pdata::error::{Corruption, Error, Result};
use crate::pdata::transaction_manager::Tm;
use crate::pdata::validators::BTREE_NODE;

#[derive(Clone, Copy)]
struct Frame {
    b: u64,
    level: u32,
    nr_children: u32,
    current_child: u32,
    internal: bool,
}

fn push_frame<B: BlockManager>(
    tm: &mut Tm<'_, B>,
    stack: &mut Vec<Frame>,
    b: u64,
    level: u32,
    levels: u32,
    leaf_vs: usize,
) -> Result<()> {
    if stack.len() >= MAX_DEPTH - 1 {
        return Err(Error::Corrupt(Corruption::Depth));
    }
    check_child(tm.bm(), b)?;
    if tm.ref_count(b)? > 1 {
        // Shared: drop our reference, leave the children alone.
        return tm.dec(b);
    }
    let g = tm.read_lock(b, &BTREE_NODE)?;
    let vs = if level + 1 < levels { 8 } else { leaf_vs };
    node::check_shape(&g, vs)?;
    let internal = node::is_internal(&g);
    let nr = node::nr_entries(&g);
    if internal || level + 1 < levels {
        for i in 0..nr {
            let c = node::value64(&g, i);
            if c < tm.bm().nr_blocks() {
                tm.bm().prefetch(c);
            }
        }
    }
    stack.try_push(Frame {
        b,
        level,
        nr_children: nr,
        current_child: 0,
        internal,
    })
}

/// Releases the tree at `root` with `levels` levels whose last-level
/// leaves hold values of type `V` (`dec` is called for the values of
/// every leaf that is freed).
pub fn del<'a, B: BlockManager + 'a, V: ValueType<B>>(
    tm: &mut Tm<'a, B>,
    vt: &mut V,
    root: u64,
    levels: u32,
) -> Result<()> {
    if levels == 0 || levels as usize > super::MAX_LEVELS {
        return Err(Error::Invalid);
    }
    let mut stack: Vec<Frame> = Vec::try_with_capacity(MAX_DEPTH)?;
    push_frame(tm, &mut stack, root, 0, levels, V::SIZE)?;
    while let Some(f) = stack.last_mut() {
        let fr = *f;
        if fr.current_child >= fr.nr_children {
            stack.pop();
            tm.dec(fr.b)?;
            continue;
        }
        if fr.internal || fr.level + 1 < levels {
            let child = {
                let g = tm.read_lock(fr.b, &BTREE_NODE)?;
                node::value64(&g, fr.current_child)
            };
            f.current_child += 1;
            let level = if fr.internal { fr.level } else { fr.level + 1 };
            push_frame(tm, &mut stack, child, level, levels, V::SIZE)?;
        } else {
            {
                let g = tm.read_lock(fr.b, &BTREE_NODE)?;
                let vals = node::values(&g, 0, fr.nr_children);
                vt.dec(tm, vals)?;
            }
            stack.pop();
            tm.dec(fr.b)?;
        }
    }
    Ok(())
}
