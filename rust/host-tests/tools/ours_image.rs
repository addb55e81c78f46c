//! Writes a thin-pool metadata image with OUR persistent-data code, for the
//! guest test that opens it with upstream's C dm-thin-pool
//! (tests/guest/04-ours-image-upstream.sh).
//!
//! Usage: ours_image <dir>.  Writes `<dir>/ours.meta` (the metadata device,
//! `META_BLOCKS` blocks), `<dir>/ours.xml` (its `thin_dump`) and
//! `<dir>/ours.expect`: lines `key value...` with what upstream must
//! report: `nr_data`, `block_size`, `trans`, `meta_total`, `meta_used`,
//! `data_used`, `held`, and per device `dev <id> <mapped sectors>
//! <highest mapped sector>`.

use std::fmt::Write as _;

use host_tests::mem_bm::MemBm;
use host_tests::oracle;
use host_tests::rng::Rng;
use pdata::pdata::thin::metadata::{OpenOptions, PoolMetadata};

const META_BLOCKS: u64 = 4096;
const NR_DATA: u64 = 17_000;
const BLOCK_SIZE: u32 = 128;

fn main() {
    let dir = std::env::args().nth(1).expect("usage: ours_image <dir>");
    let bm = MemBm::new(META_BLOCKS);
    bm.set_crash_tracking(false);
    let opts = OpenOptions {
        data_block_size: BLOCK_SIZE,
        format: true,
        read_only: false,
    };
    let mut pmd = PoolMetadata::open(bm, opts).expect("format");
    pmd.resize_data_dev(NR_DATA).expect("resize data");
    pmd.commit().expect("commit");

    let mut rng = Rng::new(42);
    let map = |pmd: &mut PoolMetadata<MemBm>, id: u64, vblocks: &mut dyn Iterator<Item = u64>| {
        let td = pmd.open_thin(id).expect("open thin");
        for v in vblocks {
            let b = pmd.alloc_data_block().expect("alloc");
            pmd.insert(&td, v, b).expect("insert");
        }
        pmd.close_thin(td);
    };
    pmd.create_thin(1).expect("create 1");
    map(&mut pmd, 1, &mut (0..6000u64));
    pmd.create_thin(2).expect("create 2");
    map(&mut pmd, 2, &mut (0..400u64).map(|i| i * 37 + 5));
    pmd.commit().expect("commit");
    pmd.create_snap(3, 1).expect("snap 3 of 1");
    pmd.create_snap(4, 3).expect("snap 4 of 3");
    // Break sharing in the origin and the snapshot of the snapshot.
    map(&mut pmd, 1, &mut (0..200u64).map(|i| i * 13));
    map(&mut pmd, 4, &mut (0..50u64).map(|_| rng.below(6000)));
    map(&mut pmd, 3, &mut (10_000..17_000u64));
    {
        let td = pmd.open_thin(2).expect("open 2");
        pmd.remove_range(&td, 100, 3000).expect("remove range");
        pmd.close_thin(td);
    }
    pmd.create_thin(5).expect("create 5");
    pmd.delete_thin(5).expect("delete 5");
    pmd.set_transaction_id(0, 41).expect("set trans id");
    pmd.commit().expect("commit");
    pmd.reserve_metadata_snap().expect("reserve metadata snap");
    pmd.commit().expect("commit");
    map(&mut pmd, 2, &mut (5000..5100u64));
    pmd.commit().expect("commit");

    let mut expect = String::new();
    let meta_total = pmd.metadata_dev_size().unwrap();
    let data_total = pmd.data_dev_size().unwrap();
    writeln!(expect, "nr_data {data_total}").unwrap();
    writeln!(expect, "block_size {BLOCK_SIZE}").unwrap();
    writeln!(expect, "trans {}", pmd.transaction_id().unwrap()).unwrap();
    writeln!(expect, "meta_total {meta_total}").unwrap();
    writeln!(
        expect,
        "meta_used {}",
        meta_total - pmd.free_metadata_blocks().unwrap()
    )
    .unwrap();
    writeln!(
        expect,
        "data_used {}",
        data_total - pmd.free_data_blocks().unwrap()
    )
    .unwrap();
    writeln!(expect, "held {}", pmd.metadata_snap().unwrap()).unwrap();
    for id in pmd.device_ids().unwrap().iter().copied() {
        let td = pmd.open_thin(id).unwrap();
        let mapped = pmd.mapped_count(&td).unwrap() * u64::from(BLOCK_SIZE);
        let highest = match pmd.highest_mapped(&td).unwrap() {
            Some(h) => ((h + 1) * u64::from(BLOCK_SIZE) - 1).to_string(),
            None => "-".to_string(),
        };
        pmd.close_thin(td);
        writeln!(expect, "dev {id} {mapped} {highest}").unwrap();
    }
    let bm = pmd.close().map_err(|(_, e)| e).expect("close");
    let meta = format!("{dir}/ours.meta");
    bm.save_image(&meta).expect("save image");
    let check = oracle::thin_check(std::path::Path::new(&meta), &[]).expect("thin_check");
    assert!(
        check.success(),
        "thin_check of our image failed: {}",
        check.text()
    );
    let xml = oracle::thin_dump_xml(std::path::Path::new(&meta), &[]).expect("thin_dump");
    std::fs::write(format!("{dir}/ours.xml"), xml).expect("write xml");
    std::fs::write(format!("{dir}/ours.expect"), expect).expect("write expect");
    println!("wrote {meta}");
}
