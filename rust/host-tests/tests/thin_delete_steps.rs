//! Stepwise thin delete (`delete_thin_begin` + `delete_step`, beyond
//! upstream's one-piece delete): the result equals a whole delete, also
//! with another device changed between the steps, with a snapshot sharing
//! part of the tree, with a held metadata snapshot, when a commit or a
//! second delete comes before the last step, and an abort in the middle
//! brings the device back.

mod thin_common;

use host_tests::oracle::{thin_check, tools_available};
use pdata::pdata::error::Error;
use thin_common::*;

const MAPPED: u64 = 6000;

/// Thin 1 with `MAPPED` mappings (a two-level tree), snapshot 2 of it
/// with some blocks rewritten (shares most leaves), thin 3 with a few
/// mappings; committed.  Deterministic: every call builds the same bytes.
fn build(hold: bool) -> Pmd {
    let mut pmd = format(2048, 20_000);
    pmd.create_thin(1).unwrap();
    let td = pmd.open_thin(1).unwrap();
    for v in 0..MAPPED {
        let b = pmd.alloc_data_block().unwrap();
        pmd.insert(&td, v, b).unwrap();
    }
    pmd.close_thin(td);
    pmd.commit().unwrap();
    pmd.create_snap(2, 1).unwrap();
    let sd = pmd.open_thin(2).unwrap();
    for v in (0..MAPPED).step_by(97) {
        let b = pmd.alloc_data_block().unwrap();
        pmd.insert(&sd, v, b).unwrap();
    }
    pmd.close_thin(sd);
    pmd.create_thin(3).unwrap();
    let t3 = pmd.open_thin(3).unwrap();
    for v in 0..50 {
        let b = pmd.alloc_data_block().unwrap();
        pmd.insert(&t3, v, b).unwrap();
    }
    pmd.close_thin(t3);
    pmd.commit().unwrap();
    if hold {
        // Held: the snapshot shares every tree; rewriting some of thin 1
        // gives it a root and leaves of its own again.
        pmd.reserve_metadata_snap().unwrap();
        pmd.commit().unwrap();
        let td = pmd.open_thin(1).unwrap();
        for v in (0..MAPPED).step_by(301) {
            let b = pmd.alloc_data_block().unwrap();
            pmd.insert(&td, v, b).unwrap();
        }
        pmd.close_thin(td);
        pmd.commit().unwrap();
    }
    pmd
}

/// Maps vblock `1000 + i` of thin 3 to a new block.
fn write_thin3(pmd: &mut Pmd, i: u64) {
    let t3 = pmd.open_thin(3).unwrap();
    let b = pmd.alloc_data_block().unwrap();
    pmd.insert(&t3, 1000 + i, b).unwrap();
    pmd.close_thin(t3);
}

/// Everything a delete may change: the devices and their mappings, free
/// data and metadata blocks, and the data reference counts against the
/// trees on disk (after a commit); thin_check when the tools exist.
fn check_same(mut got: Pmd, want: &Pmd, what: &str) {
    assert_models_eq(&export(&got), &export(want), what);
    assert_eq!(
        got.free_data_blocks().unwrap(),
        want.free_data_blocks().unwrap(),
        "{what}: free data blocks"
    );
    assert_eq!(
        got.free_metadata_blocks().unwrap(),
        want.free_metadata_blocks().unwrap(),
        "{what}: free metadata blocks"
    );
    let img = got.bm().durable_image();
    assert_data_counts(&mut got, &img, what);
    if tools_available() {
        let dir = std::env::temp_dir().join(format!("thin_delete_steps_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}.img", what.replace(' ', "_")));
        img.save(&path).unwrap();
        let out = thin_check(&path, &[]).unwrap();
        assert!(out.success(), "{what}: thin_check: {}", out.text());
        let _ = std::fs::remove_file(&path);
    }
}

#[test]
fn steps_interleaved_with_writes_equal_a_whole_delete() {
    for hold in [false, true] {
        let mut whole = build(hold);
        whole.delete_thin(1).unwrap();
        for i in 0..40 {
            write_thin3(&mut whole, i);
        }
        whole.commit().unwrap();

        let mut steps = build(hold);
        steps.delete_thin_begin(1).unwrap();
        assert!(steps.delete_pending(), "a 2-level tree takes several steps");
        assert_eq!(
            steps.open_thin(1).err(),
            Some(Error::NotFound),
            "gone at once"
        );
        let mut n = 0;
        let mut i = 0;
        while !steps.delete_step(3).unwrap() {
            n += 1;
            if i < 40 {
                write_thin3(&mut steps, i);
                i += 1;
            }
        }
        assert!(n > 10, "only {n} steps");
        while i < 40 {
            write_thin3(&mut steps, i);
            i += 1;
        }
        assert!(!steps.delete_pending());
        steps.commit().unwrap();
        check_same(
            steps,
            &whole,
            if hold {
                "interleaved held"
            } else {
                "interleaved"
            },
        );
    }
}

#[test]
fn a_commit_or_another_delete_finishes_a_pending_one() {
    let mut whole = build(false);
    whole.delete_thin(1).unwrap();
    whole.commit().unwrap();
    let mut steps = build(false);
    steps.delete_thin_begin(1).unwrap();
    assert!(!steps.delete_step(2).unwrap());
    steps.commit().unwrap();
    assert!(!steps.delete_pending(), "the commit finished it");
    check_same(steps, &whole, "commit finishes");

    let mut whole = build(false);
    whole.delete_thin(2).unwrap();
    whole.delete_thin(1).unwrap();
    whole.commit().unwrap();
    let mut steps = build(false);
    steps.delete_thin_begin(2).unwrap();
    assert!(!steps.delete_step(1).unwrap());
    steps.delete_thin_begin(1).unwrap();
    while !steps.delete_step(5).unwrap() {}
    steps.commit().unwrap();
    check_same(steps, &whole, "second delete");
}

#[test]
fn an_abort_in_the_middle_brings_the_device_back() {
    let want = build(false);
    let mut steps = build(false);
    steps.delete_thin_begin(1).unwrap();
    for _ in 0..5 {
        assert!(!steps.delete_step(2).unwrap());
    }
    steps.abort().unwrap();
    assert!(!steps.delete_pending());
    check_same(steps, &want, "abort");
}
