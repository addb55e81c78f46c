// SPDX-License-Identifier: GPL-2.0

//! The `thin` target (upstream's `struct thin_c` and `thin_*` target
//! operations).
//!
//! The constructor validates its table line exactly as upstream's
//! `thin_ctr` does, in the same order (argument count, origin string,
//! origin device, pool device, device id, pool mapped device, pool object,
//! pool mode, thin device, pool suspended), with upstream's messages.
//!
//! `map` never waits: it remaps a bio to a mapped, unshared data block
//! found in the current transaction with a try-read of the metadata and
//! cache-only block reads, completes reads of unprovisioned blocks with
//! zeros, and defers everything else (discards and WRITE_ZEROES included)
//! to the pool's worker (see [`pool`](super::pool)).  With an external origin, reads of
//! unprovisioned blocks go to the worker too, which reads them from the
//! origin.

use core::ffi::CStr;
use core::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use kernel::alloc::{KBox, KVVec};

use kernel::prelude::*;

use super::pool::{Origin, PoolMode, ThinBindError, ThinBio, THIN_BIO_SIZE};
use super::registry::{self, PoolRef};
use crate::dm::args::Args;
use crate::dm::bdev::Bdev;
use crate::dm::bio::{BioInfo, EndIoBio, MapBio, Mapped, Op, Status};
use crate::dm::dev::{DmDev, MappedDevice, Mode};
use crate::dm::status::StatusWriter;
use crate::dm::target::{
    Callout, CtrError, QueueLimits, StatusKind, Target, TargetCtx, TargetHandle,
};

/// Upstream `BIO_PRISON_MAX_RANGE`: the most blocks one discard covers
/// (the thin's `max_hw_discard_sectors` is this many blocks).
const BIO_PRISON_MAX_RANGE: u32 = 1024;
use crate::pdata::error::Error as PdError;
use crate::thin::map_cache::{CachedMapping, MapCache, Slot};
use crate::thin::table;

/// A `thin` table (upstream's `struct thin_c`).
pub(crate) struct ThinTarget {
    pool: PoolRef,
    pool_dev: DmDev,
    origin_dev: Option<DmDev>,
    /// The external origin as the pool's worker uses it (boxed: bios in
    /// flight point to it).
    origin: Option<KBox<Origin>>,
    dev_id: u64,
    /// Identity of this table's target (the pool's active list key).
    key: usize,
    /// Registered in the pool's active list.
    active: bool,
    /// In a noflush suspend: bios go back to dm core (upstream
    /// `requeue_mode`).
    requeue: AtomicBool,
}

#[vtable]
impl Target for ThinTarget {
    const NAME: &'static CStr = c"thin";
    const VERSION: [u32; 3] = super::TARGET_VERSION;
    const FEATURES: u64 = 0;

    fn ctr(ti: &mut TargetCtx<'_>, args: &Args<'_>) -> Result<KBox<Self>, CtrError> {
        let argv = args.bytes();
        table::thin_check_args(argv)?;
        let origin_dev = match args.c_str(2) {
            Some(path) => Some(
                DmDev::get(ti, path, Mode::Read)
                    .map_err(|e| CtrError::new(c"Error opening origin device", e))?,
            ),
            None => None,
        };
        let origin = match &origin_dev {
            Some(d) => {
                let bdev = Bdev::open(d.dev_t())
                    .map_err(|e| CtrError::new(c"Error opening origin device", e))?;
                let sectors = AtomicU64::new(bdev.nr_sectors());
                Some(
                    KBox::new(Origin { bdev, sectors }, GFP_KERNEL)
                        .map_err(|_| CtrError::new(c"Error opening origin device", ENOMEM))?,
                )
            }
            None => None,
        };
        let (Some(pool_path), Some(id_arg)) = (args.c_str(0), argv.get(1)) else {
            return Err(CtrError::new(c"Invalid argument count", EINVAL));
        };
        let pool_dev = DmDev::get(ti, pool_path, Mode::Table)
            .map_err(|e| CtrError::new(c"Error opening pool device", e))?;
        let dev_id = table::thin_dev_id(id_arg)?;
        let Some(pool_md) = MappedDevice::get(pool_dev.dev_t()) else {
            return Err(CtrError::new(c"Couldn't get pool mapped device", EINVAL));
        };
        let Some(pool) = registry::find_by_md(pool_md.key()) else {
            return Err(CtrError::new(c"Couldn't find pool object", EINVAL));
        };
        if pool.mode() == PoolMode::Fail {
            return Err(CtrError::new(
                c"Couldn't open thin device, Pool is in fail mode",
                EINVAL,
            ));
        }
        if let Err(e) = pool.open_thin(dev_id) {
            return Err(CtrError::new(
                c"Couldn't open thin internal device",
                kernel::error::Error::from_errno(-e.errno()),
            ));
        }
        // From here on the thin device is open: `ThinTarget`'s drop closes
        // it if a later step fails.
        let mut thin = ThinTarget {
            pool,
            pool_dev,
            origin,
            origin_dev,
            dev_id,
            key: ti.handle().key(),
            active: false,
            requeue: AtomicBool::new(false),
        };
        // Beyond upstream, no `max_io_len` of one block: `map` remaps a
        // bio over several blocks whole when the mapping cache shows them
        // mapped to consecutive data blocks, and otherwise keeps only the
        // first block's part (dm core sends the rest as another bio).
        ti.set_flush_bios(1, true);
        ti.set_per_io_data_size(THIN_BIO_SIZE);
        // In case the pool supports discards, pass them on.
        if thin.pool.discard_enabled() {
            ti.set_discards(1, true, true);
            // Beyond upstream: WRITE_ZEROES unmaps whole blocks as a
            // discard does (so it needs discards) and zeroes partial ones;
            // not with an external origin, whose data unmapping would
            // expose again.  dm core offers it only if the pool device
            // does (the pool passes it on when its data device has it).
            if thin.origin.is_none() {
                ti.set_write_zeroes_bios(1);
            }
        }
        match thin.pool.add_active_thin(thin.key, ti.md()) {
            Ok(()) => thin.active = true,
            Err(ThinBindError::Suspended) => {
                return Err(CtrError::new(
                    c"Unable to activate thin device while pool is suspended",
                    EINVAL,
                ))
            }
            Err(ThinBindError::NoMem) => {
                return Err(CtrError::new(c"Cannot allocate thin context", ENOMEM))
            }
        }
        KBox::new(thin, GFP_KERNEL)
            .map_err(|_| CtrError::new(c"Cannot allocate thin context", ENOMEM))
    }

    /// Upstream's `thin_bio_map`, without ever waiting.
    fn map<'a>(&self, mut bio: MapBio<'a>) -> Mapped<'a> {
        let pool = &*self.pool;
        // First, so that `end_io` always finds it.
        // SAFETY: this target's `per_io_data_size` is `THIN_BIO_SIZE`.
        unsafe { bio.set_per_bio(ThinBio::new(self.dev_id, self.origin_ptr())) };
        if self.requeue.load(Ordering::Acquire) {
            let (bio, mapped) = bio.defer();
            bio.end(Status::Requeue);
            return mapped;
        }
        if pool.mode() == PoolMode::Fail {
            return bio.kill();
        }
        let op = bio.op();
        if op == Op::WriteZeroes {
            // Beyond upstream (which has no WRITE_ZEROES).  dm core does
            // not split these at block boundaries: keep a partial head,
            // the whole blocks (one block with REQ_NOUNMAP: each is
            // provisioned like a write), or a partial tail, and let dm
            // core send the rest as another bio; the worker handles each.
            let bs = u64::from(pool.block_size);
            let (_, offset) = pool.block_of(bio.sector());
            let sectors = u64::from(bio.size()) >> 9;
            let keep = if offset != 0 || bio.is_nounmap() {
                bs.saturating_sub(offset)
            } else if sectors >= bs {
                sectors.saturating_sub(sectors.checked_rem(bs).unwrap_or(0))
            } else {
                sectors
            };
            bio.accept_partial(u32::try_from(keep).unwrap_or(u32::MAX));
            let (bio, mapped) = bio.defer();
            pool.defer(bio);
            return mapped;
        }
        let (vblock, offset) = pool.block_of(bio.sector());
        let bs = u64::from(pool.block_size);
        let sectors = u64::from(bio.size()) >> 9;
        // Blocks the bio spans (at least one; more only for reads and
        // writes, which dm core no longer splits at block boundaries).
        let blocks = offset.saturating_add(sectors).saturating_add(bs - 1) / bs;
        let fast = matches!(op, Op::Read | Op::Write) && !bio.is_flush_or_fua();
        // Beyond upstream: mappings looked up before, in the metadata's
        // current write generation, without taking `meta` (see
        // `map_cache`); a bio over several blocks mapped to consecutive
        // data blocks goes down whole.  Counted first, then the generation
        // looked at again: unchanged, no change to the metadata began
        // before the count, so a discard unmapping a block later waits
        // for this bio as if it had been counted under `meta`.  Changed,
        // the bio takes the locked way below (counting is once per bio).
        if let (true, Some(cache)) = (fast, &pool.map_cache) {
            let generation = pool.meta.generation();
            if let Some(block) = cached_run(cache, self.dev_id, vblock, blocks, generation) {
                pool.count_io(&bio);
                fence(Ordering::SeqCst);
                if pool.meta.generation() == generation {
                    return bio.remap_to(&pool.data, pool.data_sector(block, offset));
                }
            }
        }
        if blocks > 1 && matches!(op, Op::Read | Op::Write) {
            // The first block's part only (upstream's `max_io_len`).
            bio.accept_partial(u32::try_from(bs - offset).unwrap_or(u32::MAX));
        }
        if !fast {
            let (bio, mapped) = bio.defer();
            pool.defer(bio);
            return mapped;
        }
        let meta = pool.meta.try_read();
        let found = match &meta {
            Some(meta) => match meta.thin(self.dev_id) {
                Some(td) => meta.pmd.try_lookup(td, vblock),
                None => Err(PdError::Invalid),
            },
            None => Err(PdError::WouldBlock),
        };
        match found {
            Ok(l) if !l.shared => {
                // Counted while `meta` is held: a discard unmapping the
                // block later waits for this bio.
                pool.count_io(&bio);
                if let (Some(cache), Some(meta)) = (&pool.map_cache, &meta) {
                    let m = CachedMapping {
                        block: l.block,
                        shared: false,
                    };
                    cache.put(self.dev_id, vblock, meta.generation(), m);
                }
                drop(meta);
                bio.remap_to(&pool.data, pool.data_sector(l.block, offset))
            }
            Err(PdError::NotFound) if op == Op::Read && self.origin.is_none() => {
                let (bio, mapped) = bio.defer();
                bio.zero_fill_and_end();
                mapped
            }
            // The cached metadata itself is bad: upstream's `thin_bio_map`
            // fails the bio at once (the validator logged why).
            Err(PdError::Corrupt(_)) | Err(PdError::Io) => {
                drop(meta);
                bio.kill()
            }
            _ => {
                let (bio, mapped) = bio.defer();
                pool.defer(bio);
                mapped
            }
        }
    }

    /// Upstream's `thin_io_hints`: discards in whole blocks; beyond
    /// upstream, WRITE_ZEROES of as much (dm core turns it off again
    /// unless the pool device has it).
    fn io_hints(&self, limits: &mut QueueLimits<'_>) {
        if self.pool.discard_enabled() {
            let bs = self.pool.block_size;
            limits.set_discard_granularity(bs << 9);
            limits.set_max_hw_discard_sectors(bs.saturating_mul(BIO_PRISON_MAX_RANGE));
            if self.origin.is_none() {
                limits.set_max_write_zeroes_sectors(bs.saturating_mul(BIO_PRISON_MAX_RANGE));
            }
        }
    }

    /// Upstream's `thin_preresume`: the origin's size is read again.
    fn preresume(&self, _ti: TargetHandle) -> Result {
        if let Some(o) = &self.origin {
            o.sectors.store(o.bdev.nr_sectors(), Ordering::Release);
        }
        Ok(())
    }

    /// Upstream's `thin_endio`.
    fn end_io(&self, bio: EndIoBio<'_>) {
        self.pool.end_io(&bio);
    }

    /// Upstream's `thin_status`.
    fn status(&self, kind: StatusKind, _flags: u32, out: &mut StatusWriter<'_>) {
        use core::fmt::Write;
        if self.pool.mode() == PoolMode::Fail {
            let _ = out.write_str("Fail");
            return;
        }
        let _ = match kind {
            StatusKind::Info => self.write_info(out),
            StatusKind::Table => {
                let r = write!(out, "{} {}", self.pool_dev.name(), self.dev_id);
                match &self.origin_dev {
                    Some(origin) => r.and_then(|()| write!(out, " {}", origin.name())),
                    None => r,
                }
            }
            StatusKind::Ima => Ok(()),
        };
    }

    /// Upstream's `thin_iterate_devices`: the pool device, as far as the
    /// bound pool table reaches in whole blocks.
    fn iterate_devices(&self, callout: &mut Callout<'_>) -> i32 {
        let bs = u64::from(self.pool.block_size);
        let blocks = self.pool.bound_len().checked_div(bs).unwrap_or(0);
        if blocks == 0 {
            return 0;
        }
        callout.call(&self.pool_dev, 0, blocks.saturating_mul(bs))
    }

    /// Upstream's `thin_presuspend`: a noflush suspend hands this thin's
    /// waiting bios back to dm core.
    fn presuspend(&self, ti: TargetHandle) {
        if ti.noflush_suspending() {
            self.requeue.store(true, Ordering::Release);
            self.pool.start_requeue(self.dev_id);
        }
    }

    /// Upstream's `thin_postsuspend`: leave requeue mode.
    fn postsuspend(&self, _ti: TargetHandle) {
        if self.requeue.swap(false, Ordering::AcqRel) {
            self.pool.stop_requeue(self.dev_id);
        }
    }
}

/// Longest run of blocks `map` remaps as one bio from the mapping cache.
const MAX_CACHED_RUN: u64 = 64;

/// The data block of `vblock` if the cache maps the `n` virtual blocks
/// from it, in `generation`, to consecutive unshared data blocks.
fn cached_run(
    cache: &MapCache<KVVec<Slot>>,
    dev_id: u64,
    vblock: u64,
    n: u64,
    generation: u64,
) -> Option<u64> {
    if n == 0 || n > MAX_CACHED_RUN {
        return None;
    }
    let first = cache.get(dev_id, vblock, generation)?;
    if first.shared {
        return None;
    }
    for i in 1..n {
        let m = cache.get(dev_id, vblock.checked_add(i)?, generation)?;
        if m.shared || Some(m.block) != first.block.checked_add(i) {
            return None;
        }
    }
    Some(first.block)
}

impl ThinTarget {
    /// This table's external origin for the per-bio data (null if none).
    fn origin_ptr(&self) -> *const Origin {
        match &self.origin {
            Some(o) => &**o,
            None => core::ptr::null(),
        }
    }

    fn write_info(&self, out: &mut StatusWriter<'_>) -> core::fmt::Result {
        use core::fmt::Write;
        let meta = self.pool.meta.read();
        let Some(td) = meta.thin(self.dev_id) else {
            return out.write_str("-");
        };
        let bs = u64::from(self.pool.block_size);
        let mapped = match meta.pmd.mapped_count(td) {
            Ok(m) => m,
            Err(e) => {
                crate::dm::log::print(
                    crate::dm::log::Level::Err,
                    c"thin",
                    format_args!("dm_thin_get_mapped_count returned {}", -e.errno()),
                );
                return out.write_str("Error");
            }
        };
        let highest = match meta.pmd.highest_mapped(td) {
            Ok(h) => h,
            Err(e) => {
                crate::dm::log::print(
                    crate::dm::log::Level::Err,
                    c"thin",
                    format_args!("dm_thin_get_highest_mapped_block returned {}", -e.errno()),
                );
                return out.write_str("Error");
            }
        };
        drop(meta);
        write!(out, "{} ", mapped.saturating_mul(bs))?;
        match highest {
            Some(h) => write!(
                out,
                "{}",
                h.saturating_add(1).saturating_mul(bs).saturating_sub(1)
            ),
            None => out.write_str("-"),
        }
    }
}

impl Drop for ThinTarget {
    /// Upstream's `thin_dtr`: close the thin device; dropping the pool
    /// reference afterwards may destroy the pool.
    fn drop(&mut self) {
        if self.active {
            self.pool.remove_active_thin(self.key);
        }
        if self.requeue.load(Ordering::Acquire) {
            self.pool.stop_requeue(self.dev_id);
        }
        self.pool.close_thin(self.dev_id);
    }
}
