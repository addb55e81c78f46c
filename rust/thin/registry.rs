// SPDX-License-Identifier: GPL-2.0

//! The global pool table (upstream's `dm_thin_pool_table`): every live
//! [`Pool`], found by its mapped device (thin tables, reloads) or its
//! metadata device (a second pool on the same metadata is refused).
//!
//! Tables and thins hold a pool through a [`PoolRef`]: the count of
//! `PoolRef`s is kept in the table under its mutex (upstream's
//! `__pool_inc`/`__pool_dec`), and the last one to go removes the pool
//! from the table; the pool itself is then dropped outside the lock.
//! `PoolRef`s are only created and dropped in table constructors and
//! destructors (process context), never in the pool's worker, so a pool
//! is never destroyed from inside its own workqueue.

use core::ops::Deref;

use kernel::error::code::{EBUSY, EINVAL, ENOMEM};
use kernel::sync::Arc;

use super::pool::Pool;
use crate::dm::sync::PoolTableCell;
use crate::env::Vec;

/// A constructor failure: message and errno.
pub(crate) type CtrFail = (&'static core::ffi::CStr, kernel::error::Error);

struct Entry {
    pool: Arc<Pool>,
    users: usize,
}

static POOLS: PoolTableCell<Vec<Entry>> = PoolTableCell::new(Vec::new());

/// A counted reference to a registered pool.
pub(crate) struct PoolRef {
    pool: Arc<Pool>,
}

impl Deref for PoolRef {
    type Target = Pool;
    fn deref(&self) -> &Pool {
        &self.pool
    }
}

impl Drop for PoolRef {
    fn drop(&mut self) {
        let key: *const Pool = &*self.pool;
        let last = POOLS.with(|t| {
            let i = t.iter().position(|e| core::ptr::eq(&*e.pool, key))?;
            let e = t.get_mut(i)?;
            e.users = e.users.saturating_sub(1);
            if e.users == 0 {
                t.remove(i).map(|e| e.pool)
            } else {
                None
            }
        });
        // The table's reference (if this was the last user) drops here,
        // outside the lock; ours drops right after.
        drop(last);
    }
}

/// Finds the pool for a pool table as upstream's `__pool_find` does, or
/// creates and registers one with `create`, all under the table lock (so
/// two tables cannot create the same pool); returns a reference and
/// whether the pool was created.  The error is the constructor's message
/// and errno.
pub(crate) fn find_or_create(
    md_key: usize,
    metadata_dev: u32,
    data_dev: u32,
    create: impl FnOnce() -> Result<Arc<Pool>, CtrFail>,
) -> Result<(PoolRef, bool), CtrFail> {
    POOLS.with(|t| {
        let by_meta = t.iter_mut().find(|e| e.pool.metadata_dev == metadata_dev);
        if let Some(e) = by_meta {
            if e.pool.md_key() != md_key {
                return Err((c"metadata device already in use by a pool", EBUSY));
            }
            if e.pool.data.dev_t() != data_dev {
                return Err((c"data device already in use by a pool", EBUSY));
            }
            e.users = e.users.saturating_add(1);
            let pool = e.pool.clone();
            return Ok((PoolRef { pool }, false));
        }
        if let Some(e) = t.iter_mut().find(|e| e.pool.md_key() == md_key) {
            if e.pool.metadata_dev != metadata_dev || e.pool.data.dev_t() != data_dev {
                return Err((c"different pool cannot replace a pool", EINVAL));
            }
            e.users = e.users.saturating_add(1);
            let pool = e.pool.clone();
            return Ok((PoolRef { pool }, false));
        }
        let pool = create()?;
        t.try_push(Entry {
            pool: pool.clone(),
            users: 1,
        })
        .map_err(|_| (c"Error allocating memory for pool", ENOMEM))?;
        Ok((PoolRef { pool }, true))
    })
}

/// The pool whose mapped device is `md_key`, referenced (upstream
/// `__pool_table_lookup` + `__pool_inc` in `thin_ctr`).
pub(crate) fn find_by_md(md_key: usize) -> Option<PoolRef> {
    POOLS.with(|t| {
        let e = t.iter_mut().find(|e| e.pool.md_key() == md_key)?;
        e.users = e.users.saturating_add(1);
        Some(PoolRef {
            pool: e.pool.clone(),
        })
    })
}
