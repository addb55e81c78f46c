// SPDX-License-Identifier: GPL-2.0

//! The pool's mapping cache: recent `(thin, virtual block) -> data block`
//! lookups, read by the thin target's `map` without any lock (beyond
//! upstream, whose `map` takes the metadata lock and walks the btree
//! through dm-bufio for every bio: on the lockdep kernel those lock
//! operations are most of a thin's cost over dm-linear).
//!
//! Every entry is tagged with the metadata lock's write generation (see
//! `RwSem::generation`): it is filled only by a lookup made under the
//! read lock, so it states the btree's answer in that generation, and any
//! change to the metadata takes the write lock, which starts a new
//! generation and so retires every entry at once.  A reader compares the
//! tag with the current generation and, after counting its bio where a
//! later change would wait for it, checks the generation again (the
//! caller's part, `ThinTarget::map`).
//!
//! Each slot is a small seqlock: a filler takes it by making the sequence
//! odd (another filler meanwhile skips the slot), a reader retries
//! nothing and treats a torn read as a miss.  Direct-mapped: slot index
//! from the virtual block plus a per-thin offset, so a thin's consecutive
//! blocks never collide with each other.  Pure code over atomics, shared
//! with the host tests (`rust/host-tests/tests/map_cache.rs`).

use core::ops::Deref;
use core::sync::atomic::{fence, AtomicU64, Ordering};

/// Thin device ids are 24 bits (upstream `MAX_DEV_ID`); virtual blocks in
/// a key take the other 40 (larger ones are not cached).
const VBLOCK_BITS: u32 = 40;
/// The shared flag in a slot's value word.
const SHARED: u64 = 1 << 63;

/// One cache entry.  Zeroed slots are empty (tag 0 is never current).
pub struct Slot {
    /// Even when stable, odd while a filler writes the other words.
    seq: AtomicU64,
    /// `dev_id << 40 | vblock`.
    key: AtomicU64,
    /// The metadata generation the entry was looked up in, plus one.
    tag: AtomicU64,
    /// The data block, with [`SHARED`].
    val: AtomicU64,
}

impl Slot {
    /// An empty slot.
    pub const fn new() -> Self {
        Slot {
            seq: AtomicU64::new(0),
            key: AtomicU64::new(0),
            tag: AtomicU64::new(0),
            val: AtomicU64::new(0),
        }
    }
}

impl Default for Slot {
    fn default() -> Self {
        Self::new()
    }
}

/// A cached mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CachedMapping {
    /// The data block.
    pub block: u64,
    /// Whether the block may be shared with a snapshot.
    pub shared: bool,
}

/// The cache over slot storage `S` (a power-of-two number of slots).
pub struct MapCache<S> {
    slots: S,
    mask: u64,
}

impl<S: Deref<Target = [Slot]>> MapCache<S> {
    /// A cache over `slots`; `None` unless their number is a nonzero
    /// power of two.
    pub fn new(slots: S) -> Option<Self> {
        let n = slots.len();
        if n == 0 || !n.is_power_of_two() {
            return None;
        }
        let mask = u64::try_from(n - 1).ok()?;
        Some(MapCache { slots, mask })
    }

    /// The key of `(dev_id, vblock)` and its slot, if it can be cached.
    fn slot(&self, dev_id: u64, vblock: u64) -> Option<(u64, &Slot)> {
        if dev_id >= 1 << (64 - VBLOCK_BITS) || vblock >= 1 << VBLOCK_BITS {
            return None;
        }
        let key = dev_id << VBLOCK_BITS | vblock;
        // Thins start at different offsets (a large odd multiplier).
        let i = vblock.wrapping_add(dev_id.wrapping_mul(0x9e37_79b9)) & self.mask;
        let slot = self.slots.get(usize::try_from(i).ok()?)?;
        Some((key, slot))
    }

    /// The mapping of `vblock` in thin `dev_id` if it was cached in
    /// metadata generation `generation`.
    pub fn get(&self, dev_id: u64, vblock: u64, generation: u64) -> Option<CachedMapping> {
        let (key, s) = self.slot(dev_id, vblock)?;
        let tag = generation.checked_add(1)?;
        let s1 = s.seq.load(Ordering::Acquire);
        if s1 & 1 != 0 {
            return None;
        }
        let k = s.key.load(Ordering::Relaxed);
        let t = s.tag.load(Ordering::Relaxed);
        let v = s.val.load(Ordering::Relaxed);
        // Orders the loads above before the second look at `seq`: words
        // written by a filler that started after `s1` make it differ.
        fence(Ordering::Acquire);
        if s.seq.load(Ordering::Relaxed) != s1 || k != key || t != tag {
            return None;
        }
        Some(CachedMapping {
            block: v & !SHARED,
            shared: v & SHARED != 0,
        })
    }

    /// Records that `vblock` of thin `dev_id` maps to `m` in metadata
    /// generation `generation`.  The caller holds the metadata lock for
    /// reading (so the generation is current and stays so meanwhile).
    pub fn put(&self, dev_id: u64, vblock: u64, generation: u64, m: CachedMapping) {
        let Some((key, s)) = self.slot(dev_id, vblock) else {
            return;
        };
        let Some(tag) = generation.checked_add(1) else {
            return;
        };
        if m.block & SHARED != 0 {
            return;
        }
        let s1 = s.seq.load(Ordering::Relaxed);
        if s1 & 1 != 0
            || s.seq
                .compare_exchange(s1, s1.wrapping_add(1), Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return; // another filler has the slot
        }
        // The odd sequence is visible before any of the words change.
        fence(Ordering::Release);
        s.key.store(key, Ordering::Relaxed);
        s.tag.store(tag, Ordering::Relaxed);
        s.val.store(
            m.block | if m.shared { SHARED } else { 0 },
            Ordering::Relaxed,
        );
        s.seq.store(s1.wrapping_add(2), Ordering::Release);
    }
}
