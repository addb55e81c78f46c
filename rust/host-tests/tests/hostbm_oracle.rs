//! The thin-provisioning-tools oracle: XML model reader/writer and round
//! trips through `thin_restore` / `thin_dump` / `thin_check` 0.9.0.

use host_tests::mem_bm::{Image, MemBm};
use host_tests::oracle::{self, parse_xml, Device, Model, TempFile};
use host_tests::rng::Rng;

/// Output of `thin_dump` 0.9.0 captured from a restored image.
const DUMPED: &str = r#"<superblock uuid="" time="3" transaction="5" flags="0" version="2" data_block_size="128" nr_data_blocks="1000">
  <device dev_id="1" mapped_blocks="4" transaction="2" creation_time="0" snap_time="1">
    <single_mapping origin_block="0" data_block="10" time="0"/>
    <range_mapping origin_begin="1" data_begin="11" length="2" time="1"/>
    <single_mapping origin_block="3" data_block="14" time="1"/>
  </device>
  <device dev_id="5" mapped_blocks="0" transaction="3" creation_time="1" snap_time="1">
  </device>
</superblock>
"#;

#[test]
fn parse_dump_output() {
    let m = parse_xml(DUMPED).unwrap();
    assert_eq!(m.uuid, "");
    assert_eq!((m.time, m.transaction, m.flags, m.version), (3, 5, 0, 2));
    assert_eq!((m.data_block_size, m.nr_data_blocks), (128, 1000));
    assert_eq!(m.devices.len(), 2);
    let d1 = &m.devices[&1];
    assert_eq!(
        (
            d1.mapped_blocks,
            d1.transaction,
            d1.creation_time,
            d1.snap_time
        ),
        (4, 2, 0, 1)
    );
    let maps: Vec<_> = d1.mappings.iter().map(|(&o, &v)| (o, v)).collect();
    assert_eq!(
        maps,
        vec![(0, (10, 0)), (1, (11, 1)), (2, (12, 1)), (3, (14, 1))]
    );
    let d5 = &m.devices[&5];
    assert!(d5.mappings.is_empty());
    assert_eq!(d5.transaction, 3);
    assert!(m.problems().is_empty());
    // Writing it back gives the same text thin_dump printed.
    assert_eq!(m.to_xml(), DUMPED);
}

#[test]
fn parse_variants_and_errors() {
    // Self-closing device, comments, declaration, single quotes, entities.
    let m = parse_xml(
        "<?xml version='1.0'?><!-- c --><superblock uuid='a&amp;b&#65;' time='0' transaction='0' \
         data_block_size='64' nr_data_blocks='9'><device dev_id='7' mapped_blocks='0' \
         transaction='0' creation_time='0' snap_time='0'/></superblock>",
    )
    .unwrap();
    assert_eq!(m.uuid, "a&bA");
    assert!(m.devices.contains_key(&7));
    let bad = [
        "",
        "<device/>",
        "<superblock uuid=\"\" time=\"0\" transaction=\"0\" data_block_size=\"1\" nr_data_blocks=\"1\">",
        "<superblock time=\"0\" transaction=\"0\" data_block_size=\"1\" nr_data_blocks=\"1\"/>",
        "<superblock uuid=\"\" time=\"x\" transaction=\"0\" data_block_size=\"1\" nr_data_blocks=\"1\"/>",
        "<superblock uuid=\"\" time=\"0\" transaction=\"0\" data_block_size=\"1\" nr_data_blocks=\"1\"><def name=\"1\"/></superblock>",
        "<superblock uuid=\"\" time=\"0\" transaction=\"0\" data_block_size=\"1\" nr_data_blocks=\"1\"><single_mapping origin_block=\"0\" data_block=\"0\" time=\"0\"/></superblock>",
        "<superblock uuid=\"\" time=\"0\" transaction=\"0\" data_block_size=\"1\" nr_data_blocks=\"9\"><device dev_id=\"1\" mapped_blocks=\"0\" transaction=\"0\" creation_time=\"0\" snap_time=\"0\"><single_mapping origin_block=\"2\" data_block=\"0\" time=\"0\"/><range_mapping origin_begin=\"1\" data_begin=\"3\" length=\"2\" time=\"0\"/></device></superblock>",
        "<superblock uuid=\"\" time=\"0\" transaction=\"0\" data_block_size=\"1\" nr_data_blocks=\"1\"/>junk",
    ];
    for b in bad {
        assert!(parse_xml(b).is_err(), "accepted {b:?}");
    }
}

/// A model with several devices, shared data blocks (snapshots), runs and
/// scattered blocks, different times, and an empty device.
fn sample_model() -> Model {
    let mut m = Model::new(128, 10_000);
    m.time = 4;
    m.transaction = 17;
    let mut origin = Device::new(3, 0, 2);
    for i in 0..300u64 {
        origin.map(i, 1000 + i, 0); // one long run
    }
    for i in 0..50u64 {
        origin.map(5000 + 7 * i, 20 + 3 * i, 1); // scattered
    }
    // Snapshot of the origin at time 2: shares all blocks, then diverges.
    let mut snap = origin.clone();
    snap.transaction = 9;
    snap.creation_time = 2;
    snap.snap_time = 2;
    for i in 0..10u64 {
        snap.map(i, 2000 + i, 3);
    }
    snap.map(1_000_000, 9999, 4);
    m.devices.insert(1, origin);
    m.devices.insert(2, snap);
    m.devices.insert(7, Device::new(17, 4, 4));
    let mut big_id = Device::new(12, 3, 3);
    big_id.map(0, 0, 3);
    m.devices.insert(0xff_ffff, big_id);
    assert!(m.problems().is_empty());
    m
}

#[test]
fn xml_round_trip_without_tools() {
    let m = sample_model();
    assert_eq!(parse_xml(&m.to_xml()).unwrap(), m);
    assert_eq!(parse_xml(&m.to_xml_singles()).unwrap(), m);
    assert!(m.to_xml().len() < m.to_xml_singles().len());
    let rc = m.data_ref_counts();
    assert_eq!(rc[&1000], 1); // overwritten in the snapshot (i < 10)
    assert_eq!(rc[&1010], 2); // shared
    assert_eq!(rc[&2000], 1);
    assert_eq!(m.nr_mappings(), 350 + 351 + 1);
}

#[test]
fn restore_dump_round_trip() {
    let m = sample_model();
    let f = TempFile::new("meta");
    oracle::thin_restore(&m, f.path(), 8 << 20).unwrap();
    assert_eq!(std::fs::metadata(f.path()).unwrap().len(), 8 << 20);
    let chk = oracle::thin_check(f.path(), &[]).unwrap();
    assert!(chk.success(), "{}", chk.text());
    assert_eq!(chk.value("TRANSACTION_ID"), Some("17"), "{}", chk.text());
    let back = oracle::thin_dump(f.path()).unwrap();
    assert_eq!(back, m);
    // Raw XML is what our writer produces, too (same range merging).
    assert_eq!(oracle::thin_dump_xml(f.path(), &[]).unwrap(), m.to_xml());
    // No metadata snapshot in a restored image.
    assert!(oracle::thin_dump_snap(f.path(), None).is_err());
}

#[test]
fn restore_drops_uuid() {
    let mut m = Model::new(64, 100);
    m.uuid = "abc-def".into();
    let back = oracle::dump_image(&oracle::restore_image(&m, 256).unwrap()).unwrap();
    assert_eq!(back.uuid, "");
    m.uuid.clear();
    assert_eq!(back, m);
}

#[test]
fn hundred_thousand_mappings_round_trip() {
    let mut m = Model::new(128, 1 << 24);
    m.time = 1;
    m.transaction = 2;
    let mut rng = Rng::new(42);
    let mut d = Device::new(2, 0, 0);
    let mut next = 0u64;
    let mut o = 0u64;
    while d.mappings.len() < 100_000 {
        // Runs of random length with random gaps, some random data blocks.
        o += rng.below(4);
        let run = 1 + rng.below(8);
        let data = if rng.chance(30) {
            rng.below(1 << 24)
        } else {
            next
        };
        for i in 0..run {
            if data + i < (1 << 24) {
                d.map(o + i, data + i, rng.below(2) as u32);
            }
        }
        next = data + run;
        o += run;
    }
    let mut d2 = Device::new(1, 0, 0);
    d2.map(5, 7, 0);
    m.devices.insert(1, d);
    m.devices.insert(2, d2);
    let img = oracle::restore_image(&m, 4096).unwrap();
    let chk = oracle::check_image(&img, &[]).unwrap();
    assert!(chk.success(), "{}", chk.text());
    let back = oracle::dump_image(&img).unwrap();
    assert_eq!(
        back.devices[&1].mappings.len(),
        m.devices[&1].mappings.len()
    );
    let diff = back.diff(&m, 10);
    assert!(diff.is_empty(), "{diff:#?}");
    assert!(back == m);
}

#[test]
fn check_detects_corruption() {
    let m = sample_model();
    let img = oracle::restore_image(&m, 1024).unwrap();
    assert!(oracle::check_image(&img, &[]).unwrap().success());
    // Flip a byte in each used non-superblock block in turn: thin_check
    // must fail for every one (each is checksummed).
    let used: Vec<u64> = (1..img.nr_blocks())
        .filter(|&b| img.block(b).iter().any(|&x| x != 0))
        .collect();
    assert!(used.len() >= 3, "{used:?}");
    for &b in used.iter().take(6) {
        let mut bad = img.clone();
        let mut blk = img.block(b).to_vec();
        blk[100] ^= 0x5a;
        bad.set_block(b, blk.as_slice().try_into().unwrap());
        let out = oracle::check_image(&bad, &[]).unwrap();
        assert!(!out.success(), "corrupt block {b} passed: {}", out.text());
    }
    // A zeroed superblock fails too, and thin_dump refuses it.
    let mut bad = img.clone();
    bad.set_block(0, &[0u8; 4096]);
    assert!(!oracle::check_image(&bad, &[]).unwrap().success());
    assert!(oracle::dump_image(&bad).is_err());
}

#[test]
fn membm_loads_and_saves_tool_images() {
    let m = sample_model();
    let img = oracle::restore_image(&m, 512).unwrap();
    let f = TempFile::new("meta");
    img.save(f.path()).unwrap();
    let bm = MemBm::load_image(f.path()).unwrap();
    let g = TempFile::new("meta2");
    bm.save_image(g.path()).unwrap();
    assert_eq!(
        std::fs::read(f.path()).unwrap(),
        std::fs::read(g.path()).unwrap()
    );
    assert_eq!(oracle::thin_dump(g.path()).unwrap(), m);
    assert!(Image::load(g.path()).unwrap().same_contents(&img));
}

#[test]
fn restore_recomputes_mapped_blocks() {
    let mut m = sample_model();
    m.devices.get_mut(&1).unwrap().mapped_blocks = 99_999;
    assert_eq!(m.problems().len(), 1);
    let back = oracle::dump_image(&oracle::restore_image(&m, 1024).unwrap()).unwrap();
    assert_eq!(back.devices[&1].mapped_blocks, 350);
    let d = back.diff(&m, 10);
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(d[0].contains("device 1"), "{d:?}");
}

#[test]
fn model_diff_reports_and_limits() {
    let a = sample_model();
    assert!(a.diff(&a.clone(), 5).is_empty());
    let mut b = a.clone();
    b.time += 1;
    b.devices.remove(&7);
    for i in 0..20u64 {
        b.devices.get_mut(&2).unwrap().map(i, 50_000 + i, 9);
    }
    let d = a.diff(&b, 5);
    assert_eq!(d.len(), 6, "{d:#?}");
    assert!(d[0].starts_with("superblock"));
    assert!(d[5].contains("more differences"));
    assert_eq!(a.diff(&b, 100).len(), 1 + 20 + 1);
}
