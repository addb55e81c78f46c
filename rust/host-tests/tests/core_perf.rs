//! Rough throughput figures of the core operations on the in-memory block
//! manager (run with `PDATA_BENCH=1 cargo test --release -p host-tests
//! --test core_perf -- --nocapture`).  Without `PDATA_BENCH` it runs a
//! small size and only checks the results.

mod core_common;

use std::time::Instant;

use core_common::*;
use pdata::pdata::btree::{self, Plain};
use pdata::pdata::space_map::disk::DiskSm;
use pdata::pdata::transaction_manager::{Reader, Tm};

#[test]
fn core_throughput() {
    let bench = std::env::var("PDATA_BENCH").is_ok();
    let n: u64 = if bench { 1_000_000 } else { 20_000 };
    let (bm, mut st) = setup(65_536);
    bm.set_crash_tracking(false);
    let mut tm = Tm::new(&bm, &mut st);
    let mut dsm = DiskSm::create(&mut tm, 0).unwrap();
    dsm.extend(&mut tm, 4 * n).unwrap();
    commit(&mut tm, Some(&mut dsm));
    let mut top = btree::empty(&mut tm, 8).unwrap();

    let t = Instant::now();
    for k in 0..n {
        let d = dsm.new_block(&mut tm).unwrap();
        top = btree::insert(
            &mut tm,
            &mut DataRefs { dsm: &mut dsm },
            top,
            &[1, k],
            &d.to_le_bytes(),
        )
        .unwrap();
    }
    commit(&mut tm, Some(&mut dsm));
    let ins = t.elapsed();

    let r = Reader::non_blocking(&bm);
    let t = Instant::now();
    let mut x = Xs(1);
    let mut v = [0u8; 8];
    let mut sum = 0u64;
    for _ in 0..n {
        let k = x.below(n);
        btree::lookup(&r, top, &[1, k], &mut v).unwrap();
        // Data blocks were allocated in order: key k maps to block k.
        assert_eq!(u64::from_le_bytes(v), k);
        sum = sum.wrapping_add(k);
    }
    let look = t.elapsed();

    let t = Instant::now();
    let mut x = Xs(2);
    for _ in 0..n / 4 {
        let k = x.below(n);
        let d = dsm.new_block(&mut tm).unwrap();
        top = btree::insert(
            &mut tm,
            &mut DataRefs { dsm: &mut dsm },
            top,
            &[1, k],
            &d.to_le_bytes(),
        )
        .unwrap();
    }
    commit(&mut tm, Some(&mut dsm));
    let over = t.elapsed();

    let t = Instant::now();
    btree::del(&mut tm, &mut DataRefs { dsm: &mut dsm }, top, 2).unwrap();
    commit(&mut tm, Some(&mut dsm));
    let del = t.elapsed();
    assert_eq!(dsm.nr_free(), 4 * n);
    let _ = sum;
    let _ = Plain::<8>;
    if bench {
        let per = |d: std::time::Duration, c: u64| d.as_nanos() as f64 / c as f64;
        eprintln!(
            "sequential provision (alloc + insert): {:.0} ns/op",
            per(ins, n)
        );
        eprintln!(
            "random non-blocking lookup (2 levels): {:.0} ns/op",
            per(look, n)
        );
        eprintln!(
            "random overwrite (alloc + insert + dec): {:.0} ns/op",
            per(over, n / 4)
        );
        eprintln!(
            "delete tree of {n} mappings: {:.1} ms",
            del.as_secs_f64() * 1e3
        );
    }
}
