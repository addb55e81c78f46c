//! Metadata written by upstream's C dm-thin-pool (the 6.12 kernel in our
//! guest, `scripts/make-fixtures.sh`) read and modified by our
//! persistent-data code.  The fixture holds several thins, snapshots of
//! snapshots, a deleted thin, discarded ranges, data blocks past the first
//! bitmap, data blocks shared by 3+ leaves and a held metadata snapshot;
//! its `thin_dump` (live and `-m`) and the pool's `dmsetup status` at
//! teardown were saved with it.

mod thin_common;

use std::path::PathBuf;
use std::process::Command;

use host_tests::mem_bm::Image;
use host_tests::oracle::{self, Model};
use host_tests::rng::Rng;
use thin_common::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

fn upstream_image() -> Image {
    let out = Command::new("xz")
        .arg("-dc")
        .arg(fixture("upstream.meta.xz"))
        .output()
        .expect("run xz");
    assert!(out.status.success(), "xz -dc failed");
    Image::from_bytes(&out.stdout)
}

fn upstream_model(name: &str) -> Model {
    let xml = std::fs::read_to_string(fixture(name)).expect("read fixture xml");
    oracle::parse_xml(&xml).expect("parse fixture xml")
}

/// `<trans> <used>/<total> <used>/<total> <held>` from the saved status.
fn upstream_status() -> (u64, u64, u64, u64, u64, u64) {
    let s = std::fs::read_to_string(fixture("upstream-pool-status.txt")).unwrap();
    let f: Vec<&str> = s.split_whitespace().collect();
    let pair = |x: &str| {
        let (a, b) = x.split_once('/').unwrap();
        (a.parse::<u64>().unwrap(), b.parse::<u64>().unwrap())
    };
    let (mu, mt) = pair(f[4]);
    let (du, dt) = pair(f[5]);
    (f[3].parse().unwrap(), mu, mt, du, dt, f[6].parse().unwrap())
}

#[test]
fn upstream_kernel_image_reads_back_exactly() {
    let img = upstream_image();
    let mut pmd = open_image(img.clone()).expect("open upstream image");
    let want = upstream_model("upstream.xml");
    assert!(want.devices.len() >= 5 && want.nr_mappings() > 20_000);
    assert_models_eq(&export(&pmd), &want, "upstream image");

    // The numbers upstream's pool reported at teardown.
    let (trans, meta_used, meta_total, data_used, data_total, held) = upstream_status();
    assert_eq!(pmd.transaction_id().unwrap(), trans);
    assert_eq!(pmd.metadata_dev_size().unwrap(), meta_total);
    assert_eq!(pmd.free_metadata_blocks().unwrap(), meta_total - meta_used);
    assert_eq!(pmd.data_dev_size().unwrap(), data_total);
    assert_eq!(pmd.free_data_blocks().unwrap(), data_total - data_used);
    assert_eq!(pmd.metadata_snap().unwrap(), held);
    // More than one data bitmap is in use.
    assert!(oracle::Model::data_ref_counts(&want)
        .keys()
        .any(|&b| b >= 16320));
    // The data space map's counts equal the counts implied by the trees
    // (including counts of 3 and more).
    assert_data_counts(&mut pmd, &img, "upstream image");
}

#[test]
fn upstream_kernel_image_modified_stays_valid() {
    let img = upstream_image();
    let pmd = open_image(img).expect("open upstream image");
    let live = upstream_model("upstream.xml");
    let snap = upstream_model("upstream-snap.xml");
    let nr_data = live.nr_data_blocks;
    let mut d = Driver::from_open(pmd, live, nr_data);
    d.held = Some(snap.clone());
    d.committed_held = Some(snap);
    d.check_durable("as opened");

    // Release upstream's held snapshot, then random operations.
    d.apply(&Op::Release)
        .expect("release upstream's metadata snapshot");
    let mut rng = Rng::new(20261122);
    for step in 0..600 {
        let op = d.random_op(&mut rng, 12, 20_000, false);
        let _ = d.apply(&op);
        if step % 100 == 99 {
            d.apply(&Op::Commit).expect("commit");
            d.check_durable(&format!("step {step}"));
        }
    }
    d.apply(&Op::Commit).expect("commit");
    let img = d.pmd.bm().durable_image();
    let check = oracle::check_image(&img, &[]).expect("thin_check");
    assert!(check.success(), "thin_check failed: {}", check.text());
    let dumped = oracle::dump_image(&img).expect("thin_dump");
    assert_models_eq(&dumped, &d.committed, "thin_dump after changes");
    assert!(
        d.ops_done > 300,
        "too few operations succeeded: {}",
        d.ops_done
    );
}
