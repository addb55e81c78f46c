//! The commit hook's pre-commit step (upstream's `pre_commit_fn`, the
//! kernel's data-device flush): it runs before every commit that writes,
//! including the commits inside `reserve_metadata_snap` and `close`, before
//! any metadata block of that commit reaches the device; a failing
//! pre-commit fails the commit and leaves the on-disk superblock as it was;
//! nothing calls it while the pool is not in service.

mod thin_common;

use std::cell::Cell;

use host_tests::mem_bm::MemBm;
use pdata::pdata::error::{Error, Result};
use pdata::pdata::thin::committed::{CommitHook, Roots};
use pdata::pdata::thin::metadata::PoolMetadata;
use thin_common::*;

/// Counts pre-commit calls, records the device writes seen at each call,
/// and fails when told to.
struct Probe<'a> {
    bm: &'a MemBm,
    calls: Cell<u32>,
    writes_at_call: Cell<Option<u64>>,
    fail: Cell<bool>,
}

impl<'a> Probe<'a> {
    fn new(bm: &'a MemBm) -> Self {
        Probe {
            bm,
            calls: Cell::new(0),
            writes_at_call: Cell::new(None),
            fail: Cell::new(false),
        }
    }
}

impl CommitHook for &Probe<'_> {
    fn publish(&self, _roots: Option<Roots>) {}

    fn pre_commit(&self) -> Result<()> {
        self.calls.set(self.calls.get() + 1);
        self.writes_at_call.set(Some(self.bm.stats().writes));
        if self.fail.get() {
            Err(Error::Io)
        } else {
            Ok(())
        }
    }
}

/// A formatted image with a data space map of 100 blocks.
fn image() -> host_tests::mem_bm::Image {
    format(256, 100).bm().durable_image()
}

#[test]
fn every_writing_commit_runs_pre_commit_before_any_write() {
    let bm = MemBm::from_image(image());
    let probe = Probe::new(&bm);
    let mut pmd = PoolMetadata::open_with_hook(&bm, opts(false), &probe).unwrap();
    // Not in service: commit writes nothing and does not call the hook.
    pmd.commit().unwrap();
    assert_eq!(probe.calls.get(), 0, "commit of an unchanged pool");
    pmd.create_thin(1).unwrap();
    let td = pmd.open_thin(1).unwrap();
    let b = pmd.alloc_data_block().unwrap();
    pmd.insert(&td, 7, b).unwrap();
    let before = bm.stats().writes;
    pmd.commit().unwrap();
    assert_eq!(probe.calls.get(), 1);
    assert_eq!(
        probe.writes_at_call.get(),
        Some(before),
        "pre-commit ran after a block of the commit was written"
    );
    assert!(bm.stats().writes > before, "the commit wrote nothing");
    // The commit inside reserve_metadata_snap.
    pmd.insert(&td, 8, b).unwrap();
    pmd.reserve_metadata_snap().unwrap();
    assert_eq!(probe.calls.get(), 2, "reserve_metadata_snap's commit");
    pmd.close_thin(td);
    // The commit inside close.
    let calls = probe.calls.get();
    assert!(pmd.close().is_ok());
    assert_eq!(probe.calls.get(), calls + 1, "close's commit");
}

#[test]
fn failing_pre_commit_fails_the_commit_and_writes_nothing() {
    let bm = MemBm::from_image(image());
    let probe = Probe::new(&bm);
    let mut pmd = PoolMetadata::open_with_hook(&bm, opts(false), &probe).unwrap();
    pmd.create_thin(1).unwrap();
    let durable = bm.durable_image();
    probe.fail.set(true);
    let writes = bm.stats().writes;
    assert_eq!(pmd.commit(), Err(Error::Io));
    assert_eq!(bm.stats().writes, writes, "a block was written");
    assert!(
        bm.durable_image().same_contents(&durable),
        "the device changed although the pre-commit step failed"
    );
    assert_eq!(pmd.reserve_metadata_snap(), Err(Error::Io));
    // Once the data device flush works again, the commit goes through and
    // the new device is durable.
    probe.fail.set(false);
    pmd.abort().unwrap();
    pmd.create_thin(2).unwrap();
    pmd.commit().unwrap();
    drop(pmd);
    let reopened = open_image(bm.durable_image()).unwrap();
    let ids = reopened.device_ids().unwrap();
    assert_eq!(ids.len(), 1);
    assert!(ids.iter().any(|&id| id == 2), "device 2 not durable");
}

/// An abort after a commit whose superblock write failed reopens the
/// superblock from the device, not the uncommitted copy in the cache.
#[test]
fn abort_after_failed_superblock_write_rereads_the_device() {
    let bm = MemBm::from_image(image());
    let mut pmd = PoolMetadata::open(&bm, opts(false)).unwrap();
    pmd.create_thin(1).unwrap();
    pmd.set_transaction_id(0, 3).unwrap();
    pmd.commit().unwrap();
    pmd.create_thin(2).unwrap();
    pmd.set_transaction_id(3, 7).unwrap();
    bm.fail_writes_of(0);
    assert!(pmd.commit().is_err(), "the commit must fail");
    bm.clear_faults();
    pmd.abort().unwrap();
    assert_eq!(
        pmd.transaction_id().unwrap(),
        3,
        "uncommitted transaction id"
    );
    let ids = pmd.device_ids().unwrap();
    assert_eq!(ids.len(), 1, "uncommitted device 2 survived the abort");
    // The pool carries on from the committed state.
    pmd.create_thin(4).unwrap();
    pmd.commit().unwrap();
    drop(pmd);
    let reopened = open_image(bm.durable_image()).unwrap();
    assert_eq!(reopened.transaction_id().unwrap(), 3);
    assert_eq!(reopened.device_ids().unwrap().len(), 2);
}
