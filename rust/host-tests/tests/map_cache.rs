//! The pool's lock-free mapping cache (`rust/thin/map_cache.rs`): an
//! entry answers only for its own key and the metadata generation it was
//! filled in, keys that do not fit are never cached, and under
//! concurrent fillers and readers on few slots (many collisions) no
//! reader ever sees a torn entry: every hit is exactly what some filler
//! put for that key in that generation.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use pdata::map_cache::{CachedMapping, MapCache, Slot};

fn cache(n: usize) -> MapCache<Vec<Slot>> {
    MapCache::new((0..n).map(|_| Slot::new()).collect::<Vec<_>>()).expect("power of two")
}

fn m(block: u64, shared: bool) -> CachedMapping {
    CachedMapping { block, shared }
}

#[test]
fn sizes_other_than_powers_of_two_are_refused() {
    assert!(MapCache::new(Vec::<Slot>::new()).is_none());
    assert!(MapCache::new((0..3).map(|_| Slot::new()).collect::<Vec<_>>()).is_none());
    assert!(MapCache::new((0..4).map(|_| Slot::new()).collect::<Vec<_>>()).is_some());
}

#[test]
fn an_entry_answers_for_its_key_and_generation_only() {
    let c = cache(64);
    assert_eq!(
        c.get(0, 0, 0),
        None,
        "an empty slot is no entry, even for key 0"
    );
    c.put(3, 10, 7, m(1234, false));
    assert_eq!(c.get(3, 10, 7), Some(m(1234, false)));
    assert_eq!(c.get(3, 10, 8), None, "a later generation retires it");
    assert_eq!(c.get(3, 10, 6), None);
    assert_eq!(c.get(4, 10, 7), None, "another thin");
    assert_eq!(c.get(3, 11, 7), None, "another block");
    c.put(3, 11, 7, m((1 << 40) - 1, true));
    assert_eq!(c.get(3, 11, 7), Some(m((1 << 40) - 1, true)));
    // Refilled in the next generation: the new answer.
    c.put(3, 10, 8, m(99, false));
    assert_eq!(c.get(3, 10, 8), Some(m(99, false)));
    assert_eq!(c.get(3, 10, 7), None);
}

#[test]
fn keys_and_values_that_do_not_fit_are_not_cached() {
    let c = cache(64);
    c.put(1 << 24, 5, 1, m(5, false));
    assert_eq!(c.get(1 << 24, 5, 1), None, "device ids are 24 bits");
    c.put(0, 1 << 40, 1, m(5, false));
    assert_eq!(c.get(0, 1 << 40, 1), None, "virtual blocks of 40 bits");
    c.put(0, 9, 1, m(1 << 63, false));
    assert_eq!(
        c.get(0, 9, 1),
        None,
        "a block that would hide the shared flag"
    );
    c.put(0, 9, u64::MAX, m(1, false));
    assert_eq!(
        c.get(0, 9, u64::MAX),
        None,
        "the last generation has no tag"
    );
    // The largest ones that fit do.
    c.put((1 << 24) - 1, (1 << 40) - 1, 1, m(2, false));
    assert_eq!(c.get((1 << 24) - 1, (1 << 40) - 1, 1), Some(m(2, false)));
}

#[test]
fn colliding_keys_never_answer_for_each_other() {
    let c = cache(8);
    // With 8 slots, blocks 1 and 9 of one thin share a slot.
    c.put(0, 1, 1, m(100, false));
    c.put(0, 9, 1, m(900, false));
    assert_eq!(c.get(0, 9, 1), Some(m(900, false)));
    assert_eq!(c.get(0, 1, 1), None);
    // Consecutive blocks of one thin do not collide.
    for v in 0..8 {
        c.put(2, v, 1, m(v + 50, false));
    }
    for v in 0..8 {
        assert_eq!(c.get(2, v, 1), Some(m(v + 50, false)));
    }
}

/// The mapping the "btree" has for a key in a generation.
fn truth(dev: u64, vblock: u64, generation: u64) -> CachedMapping {
    let x = dev
        .wrapping_mul(0x1_0000_01b3)
        .wrapping_add(vblock.wrapping_mul(0x9e37_79b9))
        .wrapping_add(generation.wrapping_mul(0x85eb_ca6b));
    m(x & ((1 << 40) - 1), x >> 63 != 0)
}

#[test]
fn concurrent_fillers_and_readers_never_see_a_torn_entry() {
    let c = Arc::new(cache(16));
    let generation = Arc::new(AtomicU64::new(1));
    let stop = Arc::new(AtomicBool::new(false));
    let hits = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for t in 0..4u64 {
        let (c, generation, stop, hits) =
            (c.clone(), generation.clone(), stop.clone(), hits.clone());
        threads.push(thread::spawn(move || {
            let mut x = t.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1;
            while !stop.load(Ordering::Relaxed) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let (dev, vblock) = (x % 3, (x >> 8) % 64);
                let g = generation.load(Ordering::SeqCst);
                if x & (1 << 20) != 0 {
                    c.put(dev, vblock, g, truth(dev, vblock, g));
                } else if let Some(found) = c.get(dev, vblock, g) {
                    assert_eq!(
                        found,
                        truth(dev, vblock, g),
                        "dev {dev} block {vblock} gen {g}"
                    );
                    hits.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let end = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < end {
        thread::sleep(Duration::from_millis(2));
        generation.fetch_add(1, Ordering::SeqCst);
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("a reader saw a wrong entry");
    }
    assert!(
        hits.load(Ordering::Relaxed) > 1000,
        "the test exercised few hits"
    );
}
