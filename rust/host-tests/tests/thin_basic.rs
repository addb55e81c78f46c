//! Basic behaviour of the thin metadata object: format, open, devices,
//! mappings, snapshots, commit/abort, accounting, in-service semantics.

mod thin_common;

use host_tests::mem_bm::MemBm;
use pdata::pdata::error::Error;
use pdata::pdata::thin::metadata::{OpenOptions, PoolMetadata};
use thin_common::*;

#[test]
fn format_then_reopen_empty() {
    let pmd = format(1024, 0);
    assert_eq!(pmd.device_ids().unwrap().len(), 0);
    assert_eq!(pmd.data_dev_size().unwrap(), 0);
    assert_eq!(pmd.metadata_dev_size().unwrap(), 1024);
    assert_eq!(pmd.metadata_reserve(), 102);
    let img = pmd.bm().durable_image();
    let pmd2 = open_image(img).unwrap();
    assert_eq!(pmd2.time(), 0);
    assert_eq!(pmd2.transaction_id().unwrap(), 0);
    assert_eq!(pmd2.device_ids().unwrap().len(), 0);
}

#[test]
fn unformatted_without_format_is_refused() {
    let bm = MemBm::new(64);
    let r = PoolMetadata::open(bm, opts(false));
    assert_eq!(r.err(), Some(Error::ReadOnly));
    let bm = MemBm::new(64);
    let r = PoolMetadata::open(
        bm,
        OpenOptions {
            data_block_size: DBS,
            format: true,
            read_only: true,
        },
    );
    assert_eq!(r.err(), Some(Error::ReadOnly));
}

#[test]
fn devices_mappings_snapshots() {
    let mut pmd = format(2048, 1000);
    pmd.create_thin(1).unwrap();
    assert_eq!(pmd.create_thin(1), Err(Error::Exists));
    let td = pmd.open_thin(1).unwrap();
    let mut blocks = Vec::new();
    for v in 0..100u64 {
        let b = pmd.alloc_data_block().unwrap();
        blocks.push(b);
        pmd.insert(&td, v * 2, b).unwrap();
    }
    assert_eq!(pmd.mapped_count(&td).unwrap(), 100);
    let l = pmd.lookup(&td, 10).unwrap();
    assert_eq!(l.block, blocks[5]);
    assert!(!l.shared);
    assert_eq!(pmd.lookup(&td, 11).err(), Some(Error::NotFound));
    assert_eq!(pmd.highest_mapped(&td).unwrap(), Some(198));
    pmd.close_thin(td);
    pmd.commit().unwrap();

    pmd.create_snap(2, 1).unwrap();
    assert_eq!(pmd.time(), 1);
    let td = pmd.open_thin(1).unwrap();
    let l = pmd.lookup(&td, 10).unwrap();
    assert!(l.shared, "origin mapping older than the snapshot is shared");
    let nb = pmd.alloc_data_block().unwrap();
    pmd.insert(&td, 10, nb).unwrap();
    let l = pmd.lookup(&td, 10).unwrap();
    assert_eq!(l.block, nb);
    assert!(!l.shared);
    assert_eq!(
        pmd.mapped_count(&td).unwrap(),
        100,
        "overwrite does not count"
    );
    pmd.close_thin(td);
    let sd = pmd.open_thin(2).unwrap();
    assert_eq!(pmd.lookup(&sd, 10).unwrap().block, blocks[5]);
    assert_eq!(pmd.mapped_count(&sd).unwrap(), 100);
    let d = pmd.device_details(&sd).unwrap();
    assert_eq!((d.creation_time, d.snapshotted_time), (1, 1));
    // busy while open
    assert_eq!(pmd.delete_thin(2), Err(Error::Busy));
    pmd.close_thin(sd);
    pmd.commit().unwrap();
    let m = export(&pmd);
    let re = open_image(pmd.bm().durable_image()).unwrap();
    assert_models_eq(&export(&re), &m, "reopened");
    pmd.delete_thin(2).unwrap();
    assert_eq!(pmd.delete_thin(2), Err(Error::NotFound));
    pmd.commit().unwrap();
    assert_eq!(
        pmd.device_ids()
            .unwrap()
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        vec![1]
    );
    // Only device 1's blocks remain allocated: blocks[5] was freed.
    assert_eq!(pmd.free_data_blocks().unwrap(), 1000 - 100);
}

#[test]
fn abort_returns_to_last_commit() {
    let mut pmd = format(1024, 100);
    pmd.create_thin(7).unwrap();
    pmd.commit().unwrap();
    let before = export(&pmd);
    let td = pmd.open_thin(7).unwrap();
    let b = pmd.alloc_data_block().unwrap();
    pmd.insert(&td, 3, b).unwrap();
    assert!(pmd.thin_changed(&td));
    pmd.create_thin(8).unwrap();
    pmd.set_transaction_id(0, 5).unwrap();
    pmd.create_snap(9, 7).unwrap();
    pmd.abort().unwrap();
    assert!(pmd.thin_aborted_changes(&td));
    assert!(!pmd.thin_changed(&td));
    assert_eq!(pmd.mapped_count(&td).unwrap(), 0);
    pmd.close_thin(td);
    assert_models_eq(&export(&pmd), &before, "after abort");
    assert_eq!(pmd.free_data_blocks().unwrap(), 100);
}

#[test]
fn unchanged_open_close_writes_nothing() {
    let mut pmd = format(1024, 100);
    pmd.create_thin(1).unwrap();
    pmd.commit().unwrap();
    let bm = pmd.close().ok().unwrap();
    let img = bm.durable_image();
    let bm = MemBm::from_image(img.clone());
    let mut pmd = PoolMetadata::open(bm, opts(false)).unwrap();
    let td = pmd.open_thin(1).unwrap();
    assert_eq!(pmd.lookup(&td, 0).err(), Some(Error::NotFound));
    pmd.close_thin(td);
    pmd.commit().unwrap();
    let bm = pmd.close().ok().unwrap();
    assert_eq!(bm.stats().writes, 0, "no block written");
    assert_eq!(bm.stats().flushes, 0, "no flush");
    assert!(bm.durable_image().same_contents(&img));
}

#[test]
fn close_with_open_device_is_busy() {
    let mut pmd = format(256, 0);
    pmd.create_thin(1).unwrap();
    let td = pmd.open_thin(1).unwrap();
    let (mut pmd, e) = pmd.close().err().unwrap();
    assert_eq!(e, Error::Busy);
    pmd.close_thin(td);
    assert!(pmd.close().is_ok());
}

#[test]
fn transaction_id_and_metadata_snap_errors() {
    let mut pmd = format(512, 10);
    assert_eq!(pmd.set_transaction_id(1, 2), Err(Error::Invalid));
    pmd.set_transaction_id(0, 2).unwrap();
    assert_eq!(pmd.transaction_id().unwrap(), 2);
    assert_eq!(pmd.release_metadata_snap(), Err(Error::Invalid));
    pmd.reserve_metadata_snap().unwrap();
    let held = pmd.metadata_snap().unwrap();
    assert_ne!(held, 0);
    assert_eq!(pmd.reserve_metadata_snap(), Err(Error::Busy));
    pmd.commit().unwrap();
    let re = open_image(pmd.bm().durable_image()).unwrap();
    assert_eq!(re.metadata_snap().unwrap(), held);
    pmd.release_metadata_snap().unwrap();
    assert_eq!(pmd.metadata_snap().unwrap(), 0);
    pmd.commit().unwrap();
}

#[test]
fn space_accounting_and_resize() {
    let mut pmd = format(20_000, 0);
    assert_eq!(pmd.metadata_reserve(), 2000);
    let free0 = pmd.free_metadata_blocks().unwrap();
    assert!(free0 < 20_000 - 2000);
    assert_eq!(pmd.resize_data_dev(50), Ok(()));
    // Data size reported from the committed state.
    assert_eq!(pmd.data_dev_size().unwrap(), 0);
    pmd.commit().unwrap();
    assert_eq!(pmd.data_dev_size().unwrap(), 50);
    assert_eq!(pmd.free_data_blocks().unwrap(), 50);
    assert_eq!(pmd.resize_data_dev(49), Err(Error::Invalid));
    assert_eq!(pmd.resize_data_dev(50), Ok(()));
    let b = pmd.alloc_data_block().unwrap();
    assert_eq!(pmd.free_data_blocks().unwrap(), 49);
    pmd.dec_data_range(b, b + 1).unwrap();
    // Freed in this transaction: counted as free (upstream data SM).
    assert_eq!(pmd.free_data_blocks().unwrap(), 50);
    assert_eq!(pmd.resize_metadata_dev(19_999), Err(Error::Invalid));
    // Metadata reserve: min(4096, nr/10).
    let big = format(50_000, 0);
    assert_eq!(big.metadata_reserve(), 4096);
    let f = big.free_metadata_blocks().unwrap();
    assert!(f > 40_000 && f <= 50_000 - 4096, "free metadata {f}");
    // The reserve follows a metadata resize.
    let bm = big.close().ok().unwrap();
    let _ = bm;
    let mut small = format(1000, 0);
    assert_eq!(small.metadata_reserve(), 100);
    assert_eq!(small.resize_metadata_dev(1000), Ok(()));
    small.commit().unwrap();
}

#[test]
fn needs_check_flag_persists_and_unknown_flags_kept() {
    let mut pmd = format(256, 0);
    assert!(!pmd.needs_check());
    pmd.set_needs_check().unwrap();
    assert!(pmd.needs_check());
    pmd.commit().unwrap();
    let re = open_image(pmd.bm().durable_image()).unwrap();
    assert!(re.needs_check());
    assert_eq!(re.flags(), 1);
}

#[test]
fn non_blocking_lookup_only_uses_the_cache() {
    let mut pmd = format(2048, 1000);
    pmd.create_thin(1).unwrap();
    let td = pmd.open_thin(1).unwrap();
    for v in 0..600 {
        let b = pmd.alloc_data_block().unwrap();
        pmd.insert(&td, v, b).unwrap();
    }
    pmd.close_thin(td);
    pmd.commit().unwrap();
    let mut re = open_image(pmd.bm().durable_image()).unwrap();
    let td = re.open_thin(1).unwrap();
    re.bm().drop_cache();
    assert_eq!(re.try_lookup(&td, 500).err(), Some(Error::WouldBlock));
    let want = re.lookup(&td, 500).unwrap();
    assert_eq!(re.try_lookup(&td, 500).unwrap(), want);
    // An unmapped block answers NotFound without I/O once cached.
    assert_eq!(re.try_lookup(&td, 5000).err(), Some(Error::NotFound));
    re.close_thin(td);
}

#[test]
fn read_only_open() {
    let mut pmd = format(1024, 100);
    pmd.create_thin(1).unwrap();
    let td = pmd.open_thin(1).unwrap();
    let b = pmd.alloc_data_block().unwrap();
    pmd.insert(&td, 9, b).unwrap();
    pmd.close_thin(td);
    pmd.commit().unwrap();
    let img = pmd.bm().durable_image();
    let want = export(&pmd);
    let mut ro = PoolMetadata::open(
        MemBm::from_image(img.clone()),
        OpenOptions {
            data_block_size: DBS,
            format: false,
            read_only: true,
        },
    )
    .unwrap();
    assert_models_eq(&export(&ro), &want, "read-only");
    let td = ro.open_thin(1).unwrap();
    assert_eq!(ro.lookup(&td, 9).unwrap().block, b);
    assert_eq!(ro.alloc_data_block().err(), Some(Error::ReadOnly));
    ro.close_thin(td);
    assert_eq!(ro.create_thin(2).err(), Some(Error::ReadOnly));
    let bm = ro.close().ok().unwrap();
    assert_eq!(bm.stats().writes, 0);
    assert!(bm.durable_image().same_contents(&img));
}

#[test]
fn remove_range_and_find_mapped_range() {
    let mut pmd = format(2048, 1000);
    pmd.create_thin(1).unwrap();
    let td = pmd.open_thin(1).unwrap();
    // vblocks 0..100 -> consecutive data blocks, then a gap, then 200..210.
    let mut first = None;
    for v in (0..100).chain(200..210) {
        let b = pmd.alloc_data_block().unwrap();
        first.get_or_insert(b);
        pmd.insert(&td, v, b).unwrap();
    }
    let r = pmd.find_mapped_range(&td, 0, 1000).unwrap();
    assert_eq!(
        (r.thin_begin, r.thin_end, r.pool_begin, r.maybe_shared),
        (0, 100, first.unwrap(), false)
    );
    let r = pmd.find_mapped_range(&td, 100, 1000).unwrap();
    assert_eq!((r.thin_begin, r.thin_end), (200, 210));
    assert_eq!(
        pmd.find_mapped_range(&td, 210, 1000).err(),
        Some(Error::NotFound)
    );
    assert_eq!(
        pmd.find_mapped_range(&td, 50, 10).err(),
        Some(Error::NotFound)
    );
    pmd.remove_range(&td, 50, 205).unwrap();
    assert_eq!(pmd.mapped_count(&td).unwrap(), 55);
    let r = pmd.find_mapped_range(&td, 40, 1000).unwrap();
    assert_eq!((r.thin_begin, r.thin_end), (40, 50));
    let r = pmd.find_mapped_range(&td, 50, 1000).unwrap();
    assert_eq!((r.thin_begin, r.thin_end), (205, 210));
    assert_eq!(pmd.highest_mapped(&td).unwrap(), Some(209));
    pmd.remove_range(&td, 0, u64::MAX).unwrap();
    assert_eq!(pmd.highest_mapped(&td).unwrap(), None);
    assert_eq!(pmd.mapped_count(&td).unwrap(), 0);
    pmd.close_thin(td);
    pmd.commit().unwrap();
    assert_eq!(pmd.free_data_blocks().unwrap(), 1000);
}

#[test]
fn shared_flag_follows_snapshot_time() {
    let mut pmd = format(1024, 100);
    pmd.create_thin(1).unwrap();
    let td = pmd.open_thin(1).unwrap();
    let b = pmd.alloc_data_block().unwrap();
    pmd.insert(&td, 0, b).unwrap();
    assert!(!pmd.lookup(&td, 0).unwrap().shared);
    pmd.close_thin(td);
    pmd.create_snap(2, 1).unwrap();
    for id in [1, 2] {
        let td = pmd.open_thin(id).unwrap();
        assert!(pmd.lookup(&td, 0).unwrap().shared, "device {id}");
        assert_eq!(pmd.device_details(&td).unwrap().snapshotted_time, 1);
        pmd.close_thin(td);
    }
    // Snapshot of the snapshot: time 2; device 1 is not involved.
    pmd.create_snap(3, 2).unwrap();
    let td = pmd.open_thin(1).unwrap();
    assert_eq!(pmd.device_details(&td).unwrap().snapshotted_time, 1);
    pmd.close_thin(td);
    let td = pmd.open_thin(2).unwrap();
    assert_eq!(pmd.device_details(&td).unwrap().snapshotted_time, 2);
    let nb = pmd.alloc_data_block().unwrap();
    pmd.insert(&td, 0, nb).unwrap();
    let l = pmd.lookup(&td, 0).unwrap();
    assert_eq!((l.block, l.shared), (nb, false));
    pmd.close_thin(td);
    // Device 2's write copied the leaf it shared with 1 and 3 (b went to
    // 2), then replaced b in the copy (back to 1): b is in one leaf,
    // still shared by devices 1 and 3.
    assert_eq!(pmd.data_block_count(b).unwrap(), 1);
    let td = pmd.open_thin(3).unwrap();
    assert_eq!(pmd.lookup(&td, 0).unwrap().block, b);
    pmd.close_thin(td);
    assert_eq!(pmd.data_block_count(nb).unwrap(), 1);
}

#[test]
fn double_create_in_one_transaction_is_refused() {
    let mut pmd = format(1024, 100);
    pmd.create_thin(5).unwrap();
    assert_eq!(pmd.create_thin(5), Err(Error::Exists));
    assert_eq!(pmd.create_snap(5, 5), Err(Error::Exists));
    pmd.create_snap(6, 5).unwrap();
    // Delete a device created in this transaction.
    pmd.delete_thin(6).unwrap();
    pmd.commit().unwrap();
    let re = open_image(pmd.bm().durable_image()).unwrap();
    assert_eq!(
        re.device_ids().unwrap().iter().copied().collect::<Vec<_>>(),
        vec![5]
    );
}

#[test]
fn metadata_threshold_event_fires_once() {
    let mut pmd = format(400, 100_000);
    let free = pmd.free_metadata_blocks().unwrap() + pmd.metadata_reserve();
    pmd.set_metadata_threshold(free - 5).unwrap();
    assert!(!pmd.take_metadata_threshold_event());
    pmd.create_thin(1).unwrap();
    let td = pmd.open_thin(1).unwrap();
    let mut fired = 0;
    for v in 0..3000u64 {
        let b = pmd.alloc_data_block().unwrap();
        pmd.insert(&td, v * 300, b).unwrap();
        if pmd.take_metadata_threshold_event() {
            fired += 1;
        }
    }
    pmd.close_thin(td);
    assert_eq!(fired, 1, "edge-triggered");
}

#[test]
fn metadata_threshold_registered_again_does_not_refire() {
    // Upstream's `set_threshold` keeps the last observed free count: a
    // table reload registering the threshold again while the free count
    // is already below it sends no second event.
    let mut pmd = format(400, 100_000);
    let free = pmd.free_metadata_blocks().unwrap() + pmd.metadata_reserve();
    pmd.set_metadata_threshold(free - 5).unwrap();
    pmd.create_thin(1).unwrap();
    let td = pmd.open_thin(1).unwrap();
    let mut v = 0u64;
    while !pmd.take_metadata_threshold_event() {
        let b = pmd.alloc_data_block().unwrap();
        pmd.insert(&td, v * 300, b).unwrap();
        v += 1;
        assert!(v < 3000, "the threshold never fired");
    }
    pmd.set_metadata_threshold(free - 5).unwrap();
    for _ in 0..20 {
        let b = pmd.alloc_data_block().unwrap();
        pmd.insert(&td, v * 300, b).unwrap();
        v += 1;
        assert!(!pmd.take_metadata_threshold_event(), "fired again");
    }
    pmd.close_thin(td);
}

#[test]
fn out_of_metadata_space_then_abort() {
    let mut pmd = format(48, 200_000);
    pmd.create_thin(1).unwrap();
    pmd.commit().unwrap();
    let committed = export(&pmd);
    let td = pmd.open_thin(1).unwrap();
    let mut err = None;
    for v in 0..200_000u64 {
        let b = match pmd.alloc_data_block() {
            Ok(b) => b,
            Err(e) => {
                err = Some(e);
                break;
            }
        };
        if let Err(e) = pmd.insert(&td, v * 1000, b) {
            err = Some(e);
            break;
        }
    }
    assert_eq!(err, Some(Error::NoSpace));
    pmd.abort().unwrap();
    pmd.close_thin(td);
    assert_models_eq(&export(&pmd), &committed, "after abort");
    let img = pmd.bm().durable_image();
    let re = open_image(img).unwrap();
    assert_models_eq(&export(&re), &committed, "reopened");
    // Still usable for small changes.
    let mut pmd = pmd;
    pmd.create_thin(2).unwrap();
    pmd.commit().unwrap();
}

#[test]
fn out_of_data_space() {
    let mut pmd = format(512, 20);
    pmd.create_thin(1).unwrap();
    let td = pmd.open_thin(1).unwrap();
    for v in 0..20 {
        let b = pmd.alloc_data_block().unwrap();
        pmd.insert(&td, v, b).unwrap();
    }
    assert_eq!(pmd.alloc_data_block(), Err(Error::NoSpace));
    assert_eq!(pmd.free_data_blocks().unwrap(), 0);
    pmd.commit().unwrap();
    pmd.remove(&td, 3).unwrap();
    // Committed, then freed in this transaction: reported free, but not
    // allocatable before a commit (upstream old_ll rule).
    assert_eq!(pmd.free_data_blocks().unwrap(), 1);
    assert_eq!(pmd.alloc_data_block(), Err(Error::NoSpace));
    pmd.close_thin(td);
    pmd.commit().unwrap();
    assert!(pmd.alloc_data_block().is_ok());
}
