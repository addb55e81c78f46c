//! Tests of the in-memory block manager: caching, validators, dirty
//! write-out at flush, locking, read-only mode, read_try_lock misses.

use host_tests::mem_bm::{Image, MemBm};
use pdata::pdata::block_manager::{Block, BlockManager, Validator, BLOCK_SIZE};
use pdata::pdata::error::{Corruption, Error, Result};

/// Test block format: bytes 0..4 = xor-sum of bytes 16.., bytes 8..16 = self.
fn sum(b: &Block) -> u32 {
    b[16..].chunks(4).fold(0x1234_5678u32, |a, c| {
        a.rotate_left(5) ^ u32::from_le_bytes(c.try_into().unwrap())
    })
}

fn check(b: &Block, loc: u64) -> Result<()> {
    if u64::from_le_bytes(b[8..16].try_into().unwrap()) != loc {
        return Err(Error::Corrupt(Corruption::Location));
    }
    if u32::from_le_bytes(b[0..4].try_into().unwrap()) != sum(b) {
        return Err(Error::Corrupt(Corruption::Checksum));
    }
    Ok(())
}

fn prepare(b: &mut Block, loc: u64) {
    b[8..16].copy_from_slice(&loc.to_le_bytes());
    let s = sum(b);
    b[0..4].copy_from_slice(&s.to_le_bytes());
}

static V: Validator = Validator {
    name: "test",
    check,
    prepare,
    csum_salt: None,
};

fn ok_check(_: &Block, _: u64) -> Result<()> {
    Ok(())
}
fn no_prepare(_: &mut Block, _: u64) {}

static RAW: Validator = Validator {
    name: "raw",
    check: ok_check,
    prepare: no_prepare,
    csum_salt: None,
};

/// Writes a block with `fill` at byte 100 and flushes it.
fn put(bm: &MemBm, b: u64, fill: u8) {
    let mut g = bm.write_lock_zero(b, &V).unwrap();
    g[100] = fill;
    drop(g);
}

#[test]
fn new_device_is_zero_and_sized() {
    let bm = MemBm::new(16);
    assert_eq!(bm.nr_blocks(), 16);
    let g = bm.read_lock(3, &RAW).unwrap();
    assert!(g.iter().all(|&x| x == 0));
    assert_eq!(g.len(), BLOCK_SIZE);
    drop(g);
    assert!(matches!(
        bm.read_lock(16, &RAW),
        Err(Error::Corrupt(Corruption::OutOfRange))
    ));
}

#[test]
fn writes_reach_device_only_at_flush_with_prepare() {
    let bm = MemBm::new(8);
    put(&bm, 2, 7);
    assert!(bm.is_dirty(2));
    assert_eq!(bm.dirty_blocks(), vec![2]);
    // Not on the device yet.
    assert!(bm.device_block(2).iter().all(|&x| x == 0));
    assert_eq!(bm.stats().writes, 0);
    assert_eq!(bm.stats().prepares, 0);
    bm.flush().unwrap();
    let s = bm.stats();
    assert_eq!((s.writes, s.prepares, s.flushes), (1, 1, 1));
    let d = bm.device_block(2);
    assert_eq!(d[100], 7);
    // prepare filled in the self pointer and checksum.
    assert!(check(&d, 2).is_ok());
    assert!(!bm.is_dirty(2));
    // A second flush writes nothing.
    bm.flush().unwrap();
    assert_eq!(bm.stats().writes, 1);
}

#[test]
fn validator_checked_on_first_read_only() {
    let bm = MemBm::new(8);
    put(&bm, 1, 9);
    bm.flush().unwrap();
    bm.drop_cache();
    assert!(!bm.is_cached(1));
    let before = bm.stats();
    let g = bm.read_lock(1, &V).unwrap();
    assert_eq!(g[100], 9);
    drop(g);
    let s = bm.stats();
    assert_eq!(s.reads - before.reads, 1);
    assert_eq!(s.checks - before.checks, 1);
    // Cached and validated: no new check, no read.
    drop(bm.read_lock(1, &V).unwrap());
    drop(bm.write_lock(1, &V).unwrap());
    let s2 = bm.stats();
    assert_eq!((s2.reads, s2.checks), (s.reads, s.checks));
    // A different validator triggers a new check.
    drop(bm.read_lock(1, &RAW).unwrap());
    assert_eq!(bm.stats().checks, s.checks + 1);
    // and switching back checks again.
    drop(bm.read_lock(1, &V).unwrap());
    assert_eq!(bm.stats().checks, s.checks + 2);
}

#[test]
fn validator_failure_reported_and_rechecked() {
    let bm = MemBm::new(8);
    // Block 3 on the device has a bad checksum.
    let mut raw = vec![0u8; BLOCK_SIZE];
    raw[8..16].copy_from_slice(&3u64.to_le_bytes());
    raw[0] = 1;
    bm.poke_device(3, raw.as_slice().try_into().unwrap());
    assert_eq!(
        bm.read_lock(3, &V).err(),
        Some(Error::Corrupt(Corruption::Checksum))
    );
    // Wrong location.
    let mut good = vec![0u8; BLOCK_SIZE];
    prepare(good.as_mut_slice().try_into().unwrap(), 4);
    bm.poke_device(5, good.as_slice().try_into().unwrap());
    assert_eq!(
        bm.read_lock(5, &V).err(),
        Some(Error::Corrupt(Corruption::Location))
    );
    // A failed check is not remembered as validated: each lock checks again.
    let c = bm.stats().checks;
    assert!(bm.read_lock(3, &V).is_err());
    assert!(bm.write_lock(3, &V).is_err());
    assert_eq!(bm.stats().checks, c + 2);
    // The raw validator accepts it.
    assert!(bm.read_lock(3, &RAW).is_ok());
}

#[test]
fn write_lock_zero_zeroes_without_reading() {
    let bm = MemBm::new(8);
    put(&bm, 4, 1);
    bm.flush().unwrap();
    bm.drop_cache();
    let r = bm.stats().reads;
    let g = bm.write_lock_zero(4, &V).unwrap();
    assert!(g.iter().all(|&x| x == 0));
    drop(g);
    assert_eq!(bm.stats().reads, r);
    // Cached block gets zeroed too.
    put(&bm, 4, 5);
    let g = bm.write_lock_zero(4, &V).unwrap();
    assert_eq!(g[100], 0);
    drop(g);
    // The validator is set: reading with V does not check.
    let c = bm.stats().checks;
    drop(bm.read_lock(4, &V).unwrap());
    assert_eq!(bm.stats().checks, c);
}

#[test]
fn read_try_lock_misses_then_hits() {
    let bm = MemBm::new(8);
    put(&bm, 2, 3);
    bm.flush().unwrap();
    bm.drop_cache();
    assert_eq!(bm.read_try_lock(2, &V).err(), Some(Error::WouldBlock));
    assert_eq!(bm.stats().reads, 0);
    bm.prefetch(2);
    assert!(bm.is_cached(2));
    let g = bm.read_try_lock(2, &V).unwrap();
    assert_eq!(g[100], 3);
    drop(g);
    bm.drop_cache();
    drop(bm.read_lock(2, &V).unwrap());
    assert!(bm.read_try_lock(2, &V).is_ok());
}

#[test]
fn several_guards_at_once() {
    let bm = MemBm::new(8);
    let mut a = bm.write_lock_zero(1, &V).unwrap();
    let mut b = bm.write_lock_zero(2, &V).unwrap();
    let r0 = bm.read_lock(0, &RAW).unwrap();
    let r0b = bm.read_lock(0, &RAW).unwrap();
    a[200] = 1;
    b[200] = 2;
    assert_eq!(r0[0], r0b[0]);
    assert_eq!(bm.locked_count(), 3);
    drop((a, b, r0, r0b));
    assert_eq!(bm.locked_count(), 0);
    assert_eq!(bm.dirty_blocks(), vec![1, 2]);
}

#[test]
fn conflicting_locks_busy_when_not_panicking() {
    let bm = MemBm::new(8);
    bm.set_panic_on_conflict(false);
    let w = bm.write_lock_zero(1, &V).unwrap();
    assert_eq!(bm.read_lock(1, &V).err(), Some(Error::Busy));
    assert_eq!(bm.write_lock(1, &V).err(), Some(Error::Busy));
    assert_eq!(bm.write_lock_zero(1, &V).err(), Some(Error::Busy));
    drop(w);
    let r = bm.read_lock(1, &V).unwrap();
    assert_eq!(bm.write_lock(1, &V).err(), Some(Error::Busy));
    assert!(bm.read_lock(1, &V).is_ok());
    drop(r);
    assert!(bm.write_lock(1, &V).is_ok());
}

#[test]
#[should_panic(expected = "conflicting lock")]
fn conflicting_locks_panic_by_default() {
    let bm = MemBm::new(8);
    let _r = bm.read_lock(1, &RAW).unwrap();
    let _w = bm.write_lock(1, &RAW);
}

#[test]
fn read_only_mode() {
    let bm = MemBm::new(8);
    put(&bm, 1, 1);
    bm.set_read_only(true);
    assert!(bm.is_read_only());
    assert_eq!(bm.write_lock(1, &V).err(), Some(Error::ReadOnly));
    assert_eq!(bm.write_lock_zero(2, &V).err(), Some(Error::ReadOnly));
    assert_eq!(bm.flush().err(), Some(Error::ReadOnly));
    assert!(bm.read_lock(1, &V).is_ok());
    bm.set_read_only(false);
    bm.flush().unwrap();
    assert_eq!(bm.device_block(1)[100], 1);
}

#[test]
fn drop_cache_keeps_dirty_discard_loses_them() {
    let bm = MemBm::new(8);
    put(&bm, 1, 1);
    put(&bm, 2, 2);
    bm.flush().unwrap();
    put(&bm, 2, 22);
    bm.drop_cache();
    assert!(!bm.is_cached(1));
    assert!(bm.is_cached(2) && bm.is_dirty(2));
    assert_eq!(bm.read_lock(2, &V).unwrap()[100], 22);
    bm.discard_cache();
    assert_eq!(bm.cached_count(), 0);
    assert_eq!(bm.read_lock(2, &V).unwrap()[100], 2);
    bm.flush().unwrap();
    assert_eq!(bm.stats().writes, 2);
}

#[test]
fn prepare_on_read_locked_dirty_block_at_flush() {
    let bm = MemBm::new(8);
    put(&bm, 3, 3);
    let r = bm.read_lock(3, &V).unwrap();
    bm.flush().unwrap();
    assert_eq!(r[100], 3);
    drop(r);
    assert!(check(&bm.device_block(3), 3).is_ok());
}

#[test]
fn write_locked_block_not_written_at_flush() {
    // A block that is dirty and write-locked again stays dirty over a flush
    // (upstream marks it dirty only at unlock).
    let bm = MemBm::new(8);
    put(&bm, 3, 3);
    let mut w = bm.write_lock(3, &V).unwrap();
    w[100] = 4;
    bm.flush().unwrap();
    assert_eq!(bm.device_block(3)[100], 0);
    drop(w);
    bm.flush().unwrap();
    assert_eq!(bm.device_block(3)[100], 4);
}

#[test]
fn cache_limit_writes_back_and_evicts() {
    let bm = MemBm::new(64);
    bm.set_cache_limit(8);
    for b in 0..32 {
        put(&bm, b, b as u8 + 1);
    }
    assert!(bm.cached_count() <= 8);
    // Evicted blocks were written out (no device flush yet).
    assert!(bm.stats().writes >= 24);
    assert_eq!(bm.stats().flushes, 0);
    bm.flush().unwrap();
    for b in 0..32 {
        assert_eq!(bm.read_lock(b, &V).unwrap()[100], b as u8 + 1);
    }
}

#[test]
fn image_round_trip_through_file() {
    let bm = MemBm::new(10);
    for b in [0u64, 3, 9] {
        put(&bm, b, b as u8 + 10);
    }
    bm.flush().unwrap();
    let dir = std::env::temp_dir().join(format!("hostbm-img-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("img.bin");
    bm.save_image(&path).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 10 * 4096);
    let bm2 = MemBm::load_image(&path).unwrap();
    assert_eq!(bm2.nr_blocks(), 10);
    assert!(bm2.image().same_contents(&bm.image()));
    assert_eq!(bm2.read_lock(9, &V).unwrap()[100], 19);
    let img = Image::load(&path).unwrap();
    assert_eq!(img.block(3)[100], 13);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn many_blocks_fast() {
    // 20k blocks written, flushed, re-read: exercises the hot path.
    let n = 20_000u64;
    let bm = MemBm::new(n);
    bm.set_crash_tracking(false);
    for b in 0..n {
        let mut g = bm.write_lock_zero(b, &V).unwrap();
        g[16..24].copy_from_slice(&b.to_le_bytes());
    }
    bm.flush().unwrap();
    bm.drop_cache();
    for b in (0..n).rev() {
        let g = bm.read_lock(b, &V).unwrap();
        assert_eq!(u64::from_le_bytes(g[16..24].try_into().unwrap()), b);
    }
    assert_eq!(bm.stats().reads, n);
}
