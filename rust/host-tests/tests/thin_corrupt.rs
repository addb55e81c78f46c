//! Corrupt metadata images: every superblock field upstream checks is
//! refused (with the checksum recomputed so the check is reached), the
//! fields upstream ignores stay ignored, and bad checksums, bad node
//! shapes, out-of-range block numbers and cycles in trees give an error,
//! never a panic or a hang.

mod thin_common;

use std::sync::mpsc;
use std::time::Duration;

use host_tests::mem_bm::{Image, MemBm};
use host_tests::oracle::Model;
use pdata::pdata::block_manager::{Block, BLOCK_SIZE};
use pdata::pdata::checksum::{block_checksum, BTREE_CSUM_XOR, SUPERBLOCK_CSUM_XOR};
use pdata::pdata::error::{Corruption, Error};
use pdata::pdata::thin::metadata::{OpenOptions, PoolMetadata};
use pdata::pdata::thin::superblock::*;
use thin_common::*;

const NR_META: u64 = 4096;

fn rd64(b: &Block, off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}
fn wr64(b: &mut Block, off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}
fn rd32(b: &Block, off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}
fn wr32(b: &mut Block, off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// Image with device 1 (600 mappings: a two-level device tree), its
/// snapshot 2 and device 3 (5 mappings), committed; and its model.
fn base() -> (Image, Model) {
    let mut pmd = format(NR_META, 2000);
    pmd.create_thin(1).unwrap();
    let td = pmd.open_thin(1).unwrap();
    for v in 0..600 {
        let b = pmd.alloc_data_block().unwrap();
        pmd.insert(&td, v, b).unwrap();
    }
    pmd.close_thin(td);
    pmd.create_snap(2, 1).unwrap();
    pmd.create_thin(3).unwrap();
    let td = pmd.open_thin(3).unwrap();
    for v in 0..5 {
        let b = pmd.alloc_data_block().unwrap();
        pmd.insert(&td, v * 10, b).unwrap();
    }
    pmd.close_thin(td);
    pmd.commit().unwrap();
    let m = export(&pmd);
    (pmd.bm().durable_image(), m)
}

fn block(img: &Image, b: u64) -> Box<Block> {
    let mut out = Box::new([0u8; BLOCK_SIZE]);
    out.copy_from_slice(img.block(b));
    out
}

/// Changes the superblock with `f`, then recomputes its checksum (the
/// self pointer is left as `f` set it).
fn with_sb(img: &Image, f: impl FnOnce(&mut Block)) -> Image {
    let mut b = block(img, 0);
    f(&mut b);
    let c = block_checksum(&b, SUPERBLOCK_CSUM_XOR);
    wr32(&mut b, 0, c);
    let mut out = img.clone();
    out.set_block(0, &b);
    out
}

/// Changes btree node `loc` with `f`, then recomputes its checksum.
fn with_node(img: &Image, loc: u64, f: impl FnOnce(&mut Block)) -> Image {
    let mut b = block(img, loc);
    f(&mut b);
    let c = block_checksum(&b, BTREE_CSUM_XOR);
    wr32(&mut b, 0, c);
    let mut out = img.clone();
    out.set_block(loc, &b);
    out
}

fn open_ro(img: Image) -> Result<Pmd, Error> {
    PoolMetadata::open(
        MemBm::from_image(img),
        OpenOptions {
            data_block_size: DBS,
            format: false,
            read_only: true,
        },
    )
}

/// Exercises every kind of call on an image inside a thread with a
/// timeout; returns the errors seen (an empty list means all succeeded).
/// A panic or a hang fails the test.
fn exercise(img: Image, what: &str) -> Vec<Error> {
    let (tx, rx) = mpsc::channel();
    let what2 = what.to_string();
    let h = std::thread::spawn(move || {
        let mut errs = Vec::new();
        let mut pmd = match open_image(img) {
            Ok(p) => p,
            Err(e) => {
                errs.push(e);
                tx.send(errs).unwrap();
                return;
            }
        };
        // NotFound is an ordinary answer (unmapped block, missing device).
        let mut note = |r: Result<(), Error>| match r {
            Err(Error::NotFound) | Ok(()) => {}
            Err(e) => errs.push(e),
        };
        note(pmd.device_ids().map(|_| ()));
        for id in [1u64, 2, 3] {
            note(pmd.details_of(id).map(|_| ()));
            let mut from = 0;
            let mut n = 0;
            loop {
                match pmd.next_mapping(id, from) {
                    Ok(Some((k, _, _))) => {
                        from = k + 1;
                        n += 1;
                        assert!(n <= 10_000, "{what2}: endless mapping walk");
                    }
                    Ok(None) => break,
                    Err(e) => {
                        note(Err(e));
                        break;
                    }
                }
            }
            if let Ok(td) = pmd.open_thin(id) {
                note(pmd.lookup(&td, 300).map(|_| ()));
                note(pmd.highest_mapped(&td).map(|_| ()));
                note(pmd.find_mapped_range(&td, 0, 1000).map(|_| ()));
                let b = pmd.alloc_data_block();
                note(b.map(|_| ()));
                if let Ok(b) = b {
                    note(pmd.insert(&td, 1000, b));
                }
                note(pmd.remove(&td, 5));
                note(pmd.remove_range(&td, 100, 400));
                pmd.close_thin(td);
            }
        }
        note(pmd.create_snap(10, 1));
        note(pmd.delete_thin(3));
        if pmd.metadata_snap() != Ok(0) {
            note(pmd.release_metadata_snap());
        }
        note(pmd.reserve_metadata_snap());
        note(pmd.commit());
        note(pmd.abort());
        tx.send(errs).unwrap();
    });
    let r = rx.recv_timeout(Duration::from_secs(20));
    match r {
        Ok(errs) => {
            h.join().unwrap();
            errs
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let e = h.join().err().unwrap();
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{what}: panicked: {msg}");
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: hang (no answer in 20 s)"),
    }
}

//------------------------------------------------------------------------

#[test]
fn base_image_is_fine() {
    let (img, m) = base();
    let pmd = open_image(img.clone()).unwrap();
    assert_models_eq(&export(&pmd), &m, "base");
    assert_eq!(exercise(img, "base"), vec![]);
}

#[test]
fn checked_superblock_fields_are_refused() {
    let (img, _) = base();
    // blocknr first: even with a bad magic and checksum.
    let bad = with_sb(&img, |b| wr64(b, OFF_BLOCKNR, 5));
    assert_eq!(
        open_image(bad).err(),
        Some(Error::Corrupt(Corruption::Location))
    );
    let mut b = block(&img, 0);
    wr64(&mut b, OFF_BLOCKNR, 1);
    b[OFF_MAGIC] ^= 1;
    b[OFF_CSUM] ^= 1;
    let mut bad = img.clone();
    bad.set_block(0, &b);
    assert_eq!(
        open_image(bad).err(),
        Some(Error::Corrupt(Corruption::Location))
    );
    // magic before checksum
    let mut b = block(&img, 0);
    b[OFF_MAGIC] ^= 1;
    let mut bad = img.clone();
    bad.set_block(0, &b);
    assert_eq!(
        open_image(bad).err(),
        Some(Error::Corrupt(Corruption::Magic))
    );
    let bad = with_sb(&img, |b| wr64(b, OFF_MAGIC, 27_022_011));
    assert_eq!(
        open_image(bad).err(),
        Some(Error::Corrupt(Corruption::Magic))
    );
    // checksum
    let mut b = block(&img, 0);
    b[OFF_CSUM] ^= 0x80;
    let mut bad = img.clone();
    bad.set_block(0, &b);
    assert_eq!(
        open_image(bad).err(),
        Some(Error::Corrupt(Corruption::Checksum))
    );
    let mut b = block(&img, 0);
    b[4000] ^= 1; // the checksum covers the whole block
    let mut bad = img.clone();
    bad.set_block(0, &b);
    assert_eq!(
        open_image(bad).err(),
        Some(Error::Corrupt(Corruption::Checksum))
    );
    // data block size: stored or requested differs
    let bad = with_sb(&img, |b| wr32(b, OFF_DATA_BLOCK_SIZE, 256));
    assert_eq!(open_image(bad).err(), Some(Error::Invalid));
    let r = PoolMetadata::open(
        MemBm::from_image(img.clone()),
        OpenOptions {
            data_block_size: 256,
            format: true,
            read_only: false,
        },
    );
    assert_eq!(r.err(), Some(Error::Invalid));
    // incompat flags: refused, also read-only
    for bit in [0u32, 5, 31] {
        let bad = with_sb(&img, |b| wr32(b, OFF_INCOMPAT_FLAGS, 1 << bit));
        assert_eq!(open_image(bad.clone()).err(), Some(Error::Invalid));
        assert_eq!(open_ro(bad).err(), Some(Error::Invalid));
    }
    // compat-ro flags: refused read-write, accepted on a read-only device
    let bad = with_sb(&img, |b| wr32(b, OFF_COMPAT_RO_FLAGS, 2));
    assert_eq!(open_image(bad.clone()).err(), Some(Error::Invalid));
    let ro = open_ro(bad).expect("compat_ro accepted read-only");
    assert_eq!(ro.device_ids().unwrap().len(), 3);
}

#[test]
fn ignored_superblock_fields_stay_ignored() {
    let (img, m) = base();
    let changes: Vec<(&str, Box<dyn Fn(&mut Block)>)> = vec![
        (
            "uuid",
            Box::new(|b: &mut Block| b[OFF_UUID..OFF_UUID + 16].fill(0xa5)),
        ),
        (
            "version",
            Box::new(|b: &mut Block| wr32(b, OFF_VERSION, 77)),
        ),
        (
            "metadata_block_size",
            Box::new(|b: &mut Block| wr32(b, OFF_METADATA_BLOCK_SIZE, 3)),
        ),
        (
            "metadata_nr_blocks",
            Box::new(|b: &mut Block| wr64(b, OFF_METADATA_NR_BLOCKS, 1)),
        ),
        (
            "compat_flags",
            Box::new(|b: &mut Block| wr32(b, OFF_COMPAT_FLAGS, !0)),
        ),
        (
            "sm root slot tails",
            Box::new(|b: &mut Block| {
                b[OFF_DATA_SM_ROOT + 32..OFF_DATA_SM_ROOT + 128].fill(0xee);
                b[OFF_METADATA_SM_ROOT + 32..OFF_METADATA_SM_ROOT + 128].fill(0x77);
            }),
        ),
        (
            "unknown flag bits",
            Box::new(|b: &mut Block| wr32(b, OFF_FLAGS, 0x8000_0100)),
        ),
        (
            "tail bytes",
            Box::new(|b: &mut Block| b[2000..2100].fill(0x3c)),
        ),
    ];
    for (name, f) in changes {
        let changed = with_sb(&img, &*f);
        let mut pmd = open_image(changed.clone()).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let mut want = m.clone();
        if name == "unknown flag bits" {
            want.flags = 0x8000_0100;
        }
        assert_models_eq(&export(&pmd), &want, name);
        // A commit rewrites only the commit fields and zeroes the slot tails.
        pmd.set_transaction_id(0, 9).unwrap();
        pmd.commit().unwrap();
        let after = pmd.bm().durable_image();
        let (old, new) = (block(&changed, 0), block(&after, 0));
        assert_eq!(rd64(&new, OFF_TRANS_ID), 9, "{name}");
        for (off, len) in [
            (OFF_UUID, 16),
            (OFF_VERSION, 4),
            (OFF_METADATA_BLOCK_SIZE, 4),
            (OFF_METADATA_NR_BLOCKS, 8),
            (OFF_COMPAT_FLAGS, 4),
            (SUPERBLOCK_STRUCT_SIZE, BLOCK_SIZE - SUPERBLOCK_STRUCT_SIZE),
            (OFF_FLAGS, 4),
        ] {
            assert_eq!(
                old[off..off + len],
                new[off..off + len],
                "{name}: bytes {off}.. changed by commit"
            );
        }
        assert!(
            new[OFF_DATA_SM_ROOT + 32..OFF_DATA_SM_ROOT + 128]
                .iter()
                .all(|&x| x == 0),
            "{name}"
        );
        assert!(
            new[OFF_METADATA_SM_ROOT + 32..OFF_METADATA_SM_ROOT + 128]
                .iter()
                .all(|&x| x == 0),
            "{name}"
        );
        let re = open_image(after).unwrap();
        want.transaction = 9;
        assert_models_eq(&export(&re), &want, &format!("{name} after commit"));
    }
}

/// Locations of interesting nodes of the base image: top-level root,
/// device 1's root (internal), its first child leaf, details root.
fn nodes(img: &Image) -> (u64, u64, u64, u64) {
    let sb = block(img, 0);
    let top = rd64(&sb, OFF_DATA_MAPPING_ROOT);
    let details = rd64(&sb, OFF_DEVICE_DETAILS_ROOT);
    let t = block(img, top);
    assert_eq!(rd32(&t, 4), 2, "top level is a leaf");
    assert_eq!(rd32(&t, 16), 3, "three devices");
    let max = rd32(&t, 20) as usize;
    let dev1 = rd64(&t, 32 + 8 * max);
    let d = block(img, dev1);
    assert_eq!(rd32(&d, 4), 1, "device 1 root is internal");
    let dmax = rd32(&d, 20) as usize;
    let leaf = rd64(&d, 32 + 8 * dmax);
    (top, dev1, leaf, details)
}

#[test]
fn bad_checksums_are_errors() {
    let (img, _) = base();
    let (top, dev1, leaf, details) = nodes(&img);
    for (name, loc) in [
        ("top", top),
        ("dev1 root", dev1),
        ("leaf", leaf),
        ("details", details),
    ] {
        let mut b = block(&img, loc);
        b[100] ^= 0x40;
        let mut bad = img.clone();
        bad.set_block(loc, &b);
        let errs = exercise(bad, name);
        assert!(!errs.is_empty(), "{name}: no error");
        assert!(
            errs.contains(&Error::Corrupt(Corruption::Checksum)),
            "{name}: {errs:?}"
        );
    }
    // Space-map blocks: the metadata SM index and a bitmap.
    let sb = block(&img, 0);
    let meta_index = rd64(&sb, OFF_METADATA_SM_ROOT + 16);
    let mut b = block(&img, meta_index);
    b[200] ^= 1;
    let mut bad = img.clone();
    bad.set_block(meta_index, &b);
    let errs = exercise(bad, "metadata sm index");
    assert!(
        errs.contains(&Error::Corrupt(Corruption::Checksum)),
        "{errs:?}"
    );
}

#[test]
fn bad_node_shapes_are_errors() {
    let (img, _) = base();
    let (top, dev1, leaf, details) = nodes(&img);
    type F = fn(&mut Block);
    let shapes: [(&str, F); 6] = [
        ("nr_entries > max_entries", |b| {
            let max = rd32(b, 20);
            wr32(b, 16, max + 1)
        }),
        ("max_entries too big", |b| wr32(b, 20, 1000)),
        ("value_size huge", |b| wr32(b, 24, 5000)),
        ("no node type", |b| wr32(b, 4, 0)),
        ("keys out of order", |b| {
            let k = rd64(b, 32);
            wr64(b, 40, k)
        }),
        ("wrong value size", |b| wr32(b, 24, 16)),
    ];
    for (what, loc) in [
        ("top", top),
        ("dev1", dev1),
        ("leaf", leaf),
        ("details", details),
    ] {
        for (name, f) in shapes.iter() {
            let bad = with_node(&img, loc, f);
            let errs = exercise(bad, &format!("{what}: {name}"));
            assert!(!errs.is_empty(), "{what}: {name}: no error");
            assert!(
                errs.iter()
                    .all(|e| matches!(e, Error::Corrupt(_) | Error::Invalid)),
                "{what}: {name}: {errs:?}"
            );
            assert!(
                errs.iter().any(|e| matches!(e, Error::Corrupt(_))),
                "{what}: {name}: {errs:?}"
            );
        }
    }
}

#[test]
fn out_of_range_block_numbers_are_errors() {
    let (img, _) = base();
    let (top, dev1, _leaf, _) = nodes(&img);
    let far = NR_META + 10;
    let cases: Vec<(&str, Image)> = vec![
        (
            "mapping root",
            with_sb(&img, |b| wr64(b, OFF_DATA_MAPPING_ROOT, far)),
        ),
        (
            "details root",
            with_sb(&img, |b| wr64(b, OFF_DEVICE_DETAILS_ROOT, u64::MAX)),
        ),
        ("held root", with_sb(&img, |b| wr64(b, OFF_HELD_ROOT, far))),
        (
            "metadata sm index",
            with_sb(&img, |b| wr64(b, OFF_METADATA_SM_ROOT + 16, far)),
        ),
        (
            "data sm index root",
            with_sb(&img, |b| wr64(b, OFF_DATA_SM_ROOT + 16, far)),
        ),
        (
            "device root in top level",
            with_node(&img, top, |b| {
                let max = rd32(b, 20) as usize;
                wr64(b, 32 + 8 * max, far)
            }),
        ),
        (
            "child of internal node",
            with_node(&img, dev1, |b| {
                let max = rd32(b, 20) as usize;
                wr64(b, 32 + 8 * max + 8, u64::MAX - 1)
            }),
        ),
    ];
    for (name, bad) in cases {
        let errs = exercise(bad, name);
        assert!(!errs.is_empty(), "{name}: no error");
        // Busy: a held root that cannot be released cannot be replaced.
        assert!(
            errs.iter()
                .all(|e| matches!(e, Error::Corrupt(_) | Error::Invalid | Error::Busy)),
            "{name}: {errs:?}"
        );
        assert!(
            errs.contains(&Error::Corrupt(Corruption::OutOfRange)),
            "{name}: {errs:?}"
        );
    }
}

#[test]
fn cycles_are_errors_not_hangs() {
    let (img, _) = base();
    let (top, dev1, leaf, _) = nodes(&img);
    // An internal node whose child is itself.
    let self_loop = with_node(&img, dev1, |b| {
        let max = rd32(b, 20) as usize;
        wr64(b, 32 + 8 * max, dev1)
    });
    // Two internal nodes pointing at each other: turn the leaf into an
    // internal node whose single child is device 1's root.
    let two = with_node(&img, leaf, |b| {
        wr32(b, 4, 1);
        wr32(b, 24, 8);
        wr32(b, 20, 252);
        wr32(b, 16, 1);
        wr64(b, 32, 0);
        wr64(b, 32 + 8 * 252, dev1)
    });
    // The top level pointing at itself as a device tree.
    let top_loop = with_node(&img, top, |b| {
        let max = rd32(b, 20) as usize;
        wr64(b, 32 + 8 * max, top)
    });
    for (name, bad) in [
        ("self loop", self_loop),
        ("two-node loop", two),
        ("top loop", top_loop),
    ] {
        let errs = exercise(bad, name);
        assert!(!errs.is_empty(), "{name}: no error");
        assert!(
            errs.iter().any(|e| matches!(e, Error::Corrupt(_))),
            "{name}: {errs:?}"
        );
    }
}

#[test]
fn time_limits_are_refused_not_wrapped() {
    let (img, _) = base();
    // At the largest storable time, mappings still work but a snapshot
    // (time + 1) is refused.
    let at_max = with_sb(&img, |b| wr32(b, OFF_TIME, (1 << 24) - 1));
    let mut pmd = open_image(at_max).unwrap();
    assert_eq!(pmd.create_snap(50, 1), Err(Error::Invalid));
    let td = pmd.open_thin(3).unwrap();
    let b = pmd.alloc_data_block().unwrap();
    pmd.insert(&td, 77, b).unwrap();
    pmd.close_thin(td);
    pmd.commit().unwrap();
    let re = open_image(pmd.bm().durable_image()).unwrap();
    let m = export(&re);
    assert_eq!(m.devices[&3].mappings[&77], (b, (1 << 24) - 1));
    // Beyond it (not writable by this library): inserts are refused
    // instead of spilling the time into the block number.
    let beyond = with_sb(&img, |b| wr32(b, OFF_TIME, 1 << 24));
    let mut pmd = open_image(beyond).unwrap();
    let td = pmd.open_thin(3).unwrap();
    let b = pmd.alloc_data_block().unwrap();
    assert_eq!(pmd.insert(&td, 78, b), Err(Error::Invalid));
    pmd.close_thin(td);
}
