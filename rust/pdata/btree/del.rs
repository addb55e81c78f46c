//! Deletion of a whole (multi-level) tree (`BT:dm_btree_del`): an
//! iterative depth-first walk with an explicit, bounded stack, which may
//! also be run in steps ([`DelCursor`]).  A node
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

/// A tree being released in steps (upstream has only the whole walk,
/// `dm_btree_del`): the walk's stack survives between [`DelCursor::step`]
/// calls, so the caller may let other users of the metadata in between.
/// Sound because every node on the stack had a single reference, the
/// cursor's: nobody else can reach or change it until the cursor
/// releases it.
pub struct DelCursor {
    stack: Vec<Frame>,
    levels: u32,
    leaf_vs: usize,
}

impl DelCursor {
    /// Starts releasing the tree at `root` (`levels` levels, last-level
    /// leaves holding values of type `V`).  A shared root is only
    /// decremented here, and the cursor is done at once.
    pub fn start<'a, B: BlockManager + 'a, V: ValueType<B>>(
        tm: &mut Tm<'a, B>,
        root: u64,
        levels: u32,
    ) -> Result<Self> {
        if levels == 0 || levels as usize > super::MAX_LEVELS {
            return Err(Error::Invalid);
        }
        let mut c = DelCursor {
            stack: Vec::try_with_capacity(MAX_DEPTH)?,
            levels,
            leaf_vs: V::SIZE,
        };
        push_frame(tm, &mut c.stack, root, 0, levels, V::SIZE)?;
        Ok(c)
    }

    /// Whether the whole tree has been released.
    pub fn is_done(&self) -> bool {
        self.stack.is_empty()
    }

    /// Visits at most `budget` nodes (at least one), releasing what it can;
    /// true when the whole tree has been released.  `vt` must be the value
    /// type the cursor was started with.
    pub fn step<'a, B: BlockManager + 'a, V: ValueType<B>>(
        &mut self,
        tm: &mut Tm<'a, B>,
        vt: &mut V,
        budget: usize,
    ) -> Result<bool> {
        if V::SIZE != self.leaf_vs {
            return Err(Error::Invalid);
        }
        let levels = self.levels;
        let mut left = budget.max(1);
        while let Some(f) = self.stack.last_mut() {
            if left == 0 {
                return Ok(false);
            }
            left -= 1;
            let fr = *f;
            if fr.current_child >= fr.nr_children {
                self.stack.pop();
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
                push_frame(tm, &mut self.stack, child, level, levels, V::SIZE)?;
            } else {
                {
                    let g = tm.read_lock(fr.b, &BTREE_NODE)?;
                    let vals = node::values(&g, 0, fr.nr_children);
                    vt.dec(tm, vals)?;
                }
                self.stack.pop();
                tm.dec(fr.b)?;
            }
        }
        Ok(true)
    }
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
    let mut c = DelCursor::start::<B, V>(tm, root, levels)?;
    c.step(tm, vt, usize::MAX)?;
    Ok(())
}
