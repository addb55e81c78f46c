//! Fault injection and power-cut simulation of the in-memory block manager.

use host_tests::mem_bm::{Fate, Image, MemBm, SECTOR_SIZE};
use pdata::pdata::block_manager::{Block, BlockManager, Validator};
use pdata::pdata::error::{Error, Result};

fn ok_check(_: &Block, _: u64) -> Result<()> {
    Ok(())
}
fn stamp(b: &mut Block, loc: u64) {
    b[8..16].copy_from_slice(&loc.to_le_bytes());
}
static V: Validator = Validator {
    name: "stamp",
    check: ok_check,
    prepare: stamp,
    csum_salt: None,
};

/// Fills block `b` (in the cache) entirely with `fill`, except the stamp.
fn put(bm: &MemBm, b: u64, fill: u8) {
    let mut g = bm.write_lock_zero(b, &V).unwrap();
    g.fill(fill);
}

fn fill_of(img: &Image, b: u64) -> u8 {
    img.block(b)[100]
}

#[test]
fn nth_read_fails_once() {
    let bm = MemBm::new(8);
    bm.fail_nth_read(3);
    assert!(bm.read_lock(0, &V).is_ok());
    assert!(bm.read_lock(1, &V).is_ok());
    assert_eq!(bm.read_lock(2, &V).err(), Some(Error::Io));
    assert!(!bm.is_cached(2));
    // Only the 3rd read failed; the retry is the 4th.
    assert!(bm.read_lock(2, &V).is_ok());
    assert_eq!(bm.stats().reads, 4);
    // Cache hits are not reads.
    bm.fail_nth_read(1);
    assert!(bm.read_lock(2, &V).is_ok());
    assert_eq!(bm.read_lock(5, &V).err(), Some(Error::Io));
}

#[test]
fn sticky_block_faults() {
    let bm = MemBm::new(8);
    bm.fail_reads_of(4);
    for _ in 0..3 {
        assert_eq!(bm.read_lock(4, &V).err(), Some(Error::Io));
    }
    assert_eq!(bm.write_lock(4, &V).err(), Some(Error::Io));
    // write_lock_zero does not read.
    put(&bm, 4, 1);
    bm.fail_writes_of(4);
    assert_eq!(bm.flush().err(), Some(Error::Io));
    assert!(bm.is_dirty(4));
    bm.clear_faults();
    bm.flush().unwrap();
    assert!(!bm.is_dirty(4));
    assert_eq!(bm.device_block(4)[100], 1);
}

#[test]
fn nth_write_fails_and_flush_reports_it() {
    let bm = MemBm::new(8);
    for b in 1..=4 {
        put(&bm, b, b as u8);
    }
    bm.fail_nth_write(2);
    assert_eq!(bm.flush().err(), Some(Error::Io));
    // Writes go in block order: block 2 failed, the others landed.
    assert_eq!(bm.stats().writes, 4);
    assert_eq!(bm.dirty_blocks(), vec![2]);
    assert_eq!(bm.device_block(2)[100], 0);
    assert_eq!(bm.device_block(3)[100], 3);
    // No device flush was issued: the landed writes are not durable.
    assert_eq!(bm.stats().flushes, 0);
    assert_eq!(bm.pending_count(), 3);
    assert_eq!(fill_of(&bm.durable_image(), 3), 0);
    // Retry succeeds and makes everything durable.
    bm.flush().unwrap();
    assert_eq!(bm.stats().writes, 5);
    assert_eq!(bm.pending_count(), 0);
    let d = bm.durable_image();
    for b in 1..=4 {
        assert_eq!(fill_of(&d, b), b as u8);
    }
}

#[test]
fn nth_flush_fails_leaving_writes_pending() {
    let bm = MemBm::new(8);
    put(&bm, 1, 1);
    bm.flush().unwrap();
    put(&bm, 1, 2);
    put(&bm, 2, 2);
    bm.fail_nth_flush(1);
    assert_eq!(bm.flush().err(), Some(Error::Io));
    // Blocks were written (clean now), but not durable.
    assert!(bm.dirty_blocks().is_empty());
    assert_eq!(bm.device_block(1)[100], 2);
    assert_eq!(bm.pending_count(), 2);
    assert_eq!(fill_of(&bm.durable_image(), 1), 1);
    // The next flush writes nothing new but completes the device flush.
    bm.flush().unwrap();
    assert_eq!(bm.stats().writes, 3);
    assert_eq!(bm.pending_count(), 0);
    assert_eq!(fill_of(&bm.durable_image(), 1), 2);
}

#[test]
fn nth_flush_counts_from_now() {
    let bm = MemBm::new(4);
    bm.flush().unwrap();
    bm.fail_nth_flush(2);
    assert!(bm.flush().is_ok());
    assert_eq!(bm.flush().err(), Some(Error::Io));
    assert!(bm.flush().is_ok());
}

#[test]
fn torn_write_fault_lands_prefix() {
    let bm = MemBm::new(4);
    put(&bm, 1, 0xaa);
    bm.flush().unwrap();
    put(&bm, 1, 0xbb);
    bm.tear_nth_write(1, 3);
    assert_eq!(bm.flush().err(), Some(Error::Io));
    let d = bm.device_block(1);
    assert!(d[16..3 * SECTOR_SIZE].iter().all(|&x| x == 0xbb));
    assert!(d[3 * SECTOR_SIZE..].iter().all(|&x| x == 0xaa));
    assert!(bm.is_dirty(1));
}

#[test]
fn crash_image_subsets() {
    let bm = MemBm::new(8);
    for b in 0..4 {
        put(&bm, b, 1);
    }
    bm.flush().unwrap();
    for b in 0..4 {
        put(&bm, b, 2);
    }
    bm.write_back().unwrap();
    assert_eq!(bm.pending_count(), 4);
    let w = bm.pending_writes();
    assert_eq!(
        w.iter().map(|w| w.block).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    let img = bm.crash_image(&[Fate::Landed, Fate::Lost, Fate::Landed]);
    assert_eq!(
        (0..4).map(|b| fill_of(&img, b)).collect::<Vec<_>>(),
        vec![2, 1, 2, 1]
    );
    // Exhaustive: 16 distinct images, each matching its subset.
    let all = bm.crash_images_exhaustive();
    assert_eq!(all.len(), 16);
    for (fates, img) in &all {
        for b in 0..4u64 {
            let want = if fates[b as usize] == Fate::Landed {
                2
            } else {
                1
            };
            assert_eq!(fill_of(img, b), want);
        }
    }
    for i in 0..all.len() {
        for j in i + 1..all.len() {
            assert!(!all[i].1.same_contents(&all[j].1));
        }
    }
    // All landed = current device; none = durable.
    assert!(all[15].1.same_contents(&bm.image()));
    assert!(all[0].1.same_contents(&bm.durable_image()));
}

#[test]
fn crash_image_applies_repeated_writes_in_order() {
    let bm = MemBm::new(4);
    put(&bm, 1, 1);
    bm.write_back().unwrap();
    put(&bm, 1, 2);
    bm.write_back().unwrap();
    assert_eq!(bm.pending_count(), 2);
    assert_eq!(fill_of(&bm.crash_image(&[Fate::Landed, Fate::Lost]), 1), 1);
    assert_eq!(fill_of(&bm.crash_image(&[Fate::Lost, Fate::Landed]), 1), 2);
    assert_eq!(
        fill_of(&bm.crash_image(&[Fate::Landed, Fate::Landed]), 1),
        2
    );
    assert_eq!(fill_of(&bm.crash_image(&[]), 1), 0);
}

#[test]
fn crash_image_torn() {
    let bm = MemBm::new(4);
    put(&bm, 2, 0x11);
    bm.flush().unwrap();
    put(&bm, 2, 0x22);
    bm.write_back().unwrap();
    for k in 0..=8usize {
        let img = bm.crash_image(&[Fate::Torn(k)]);
        let b = img.block(2);
        // Sector 0 also holds the stamp (bytes 8..16); check the rest.
        for s in 0..8 {
            let want = if s < k { 0x22 } else { 0x11 };
            assert_eq!(b[s * SECTOR_SIZE + 100], want, "k={k} s={s}");
        }
    }
}

#[test]
fn random_crash_images_are_reproducible_and_varied() {
    let bm = MemBm::new(64);
    for b in 0..40 {
        put(&bm, b, 1);
    }
    bm.flush().unwrap();
    for b in 0..40 {
        put(&bm, b, 2);
    }
    bm.write_back().unwrap();
    let a = bm.random_fates(7, 30);
    assert_eq!(a, bm.random_fates(7, 30));
    assert_ne!(a, bm.random_fates(8, 30));
    let landed = a.iter().filter(|f| **f != Fate::Lost).count();
    assert!(landed > 5 && landed < 35, "{landed}");
    assert!(a.iter().any(|f| matches!(f, Fate::Torn(_))));
    let img = bm.crash_image(&a);
    assert!(img.same_contents(&bm.crash_image_random(7, 30)));
    for (i, f) in a.iter().enumerate() {
        let b = img.block(i as u64);
        match f {
            Fate::Lost => assert_eq!(b[4000], 1),
            Fate::Landed => assert_eq!(b[4000], 2),
            Fate::Torn(k) => {
                assert!((1..=7).contains(k));
                assert_eq!(b[k * SECTOR_SIZE - 1], 2);
                assert_eq!(b[k * SECTOR_SIZE], 1);
            }
        }
    }
}

#[test]
fn reopen_after_crash() {
    let bm = MemBm::new(8);
    put(&bm, 1, 1);
    bm.flush().unwrap();
    put(&bm, 1, 2);
    put(&bm, 2, 2);
    bm.write_back().unwrap();
    let img = bm.crash_image(&[Fate::Lost, Fate::Landed]);
    let bm2 = MemBm::from_image(img);
    assert_eq!(bm2.pending_count(), 0);
    assert_eq!(bm2.read_lock(1, &V).unwrap()[100], 1);
    assert_eq!(bm2.read_lock(2, &V).unwrap()[100], 2);
    assert!(bm2.durable_image().same_contents(&bm2.image()));
}

#[test]
fn crash_tracking_off_keeps_no_log() {
    let bm = MemBm::new(8);
    bm.set_crash_tracking(false);
    put(&bm, 1, 1);
    bm.write_back().unwrap();
    assert_eq!(bm.pending_count(), 0);
}

#[test]
fn power_cut_mid_flush() {
    let bm = MemBm::new(16);
    for b in 0..10 {
        put(&bm, b, 1);
    }
    bm.flush().unwrap();
    for b in 0..10 {
        put(&bm, b, 2);
    }
    bm.power_cut_after_writes(4);
    assert!(!bm.is_powered_off());
    assert_eq!(bm.flush().err(), Some(Error::Io));
    assert!(bm.is_powered_off());
    // Exactly 4 writes were issued before the cut; no device flush.
    assert_eq!(bm.stats().writes, 14);
    assert_eq!(bm.pending_count(), 4);
    assert_eq!(bm.stats().flushes, 1);
    // Everything fails now, reads included.
    bm.drop_cache();
    assert_eq!(bm.read_lock(0, &V).err(), Some(Error::Io));
    assert_eq!(bm.flush().err(), Some(Error::Io));
    let img = bm.crash_image(&[Fate::Landed; 4]);
    for b in 0..10 {
        assert_eq!(fill_of(&img, b), if b < 4 { 2 } else { 1 });
    }
    bm.clear_faults();
    assert!(!bm.is_powered_off());
    assert!(bm.read_lock(0, &V).is_ok());
}

#[test]
fn prefetch_failure_is_silent_and_stats_reset() {
    let bm = MemBm::new(8);
    bm.fail_nth_read(1);
    bm.prefetch(3);
    assert!(!bm.is_cached(3));
    assert_eq!(bm.stats().reads, 1);
    bm.prefetch(3);
    assert!(bm.is_cached(3));
    bm.reset_stats();
    assert_eq!(bm.stats(), Default::default());
    // Faults set after a reset count from zero again.
    bm.fail_nth_read(1);
    assert_eq!(bm.read_lock(4, &V).err(), Some(Error::Io));
    assert_eq!(bm.stats().reads, 1);
}
