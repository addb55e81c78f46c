//! On-disk compatibility of the core structures with the real
//! thin-provisioning-tools: builds thin metadata (a hand-written
//! superblock over this crate's btrees and space maps: details tree,
//! two-level mapping tree, shared snapshot subtrees, data space map with
//! overflow counts), writes the image to a file and runs `thin_check`
//! (and `thin_dump`) 0.9.0 on it.  Skipped if the tools are missing.

mod core_common;

use std::collections::BTreeMap;
use std::process::Command;

use core_common::*;
use host_tests::mem_bm::MemBm;
use pdata::pdata::block_manager::{Block, BlockManager, Validator};
use pdata::pdata::btree::{self, Plain, ValueType};
use pdata::pdata::checksum::{block_checksum, SUPERBLOCK_CSUM_XOR};
use pdata::pdata::error::Result;
use pdata::pdata::space_map::disk::DiskSm;
use pdata::pdata::transaction_manager::{Tm, TmState};

fn sb_check(_b: &Block, _loc: u64) -> Result<()> {
    Ok(())
}
fn sb_prepare(b: &mut Block, loc: u64) {
    b[8..16].copy_from_slice(&loc.to_le_bytes());
    let c = block_checksum(b, SUPERBLOCK_CSUM_XOR);
    b[0..4].copy_from_slice(&c.to_le_bytes());
}
static SB: Validator = Validator {
    name: "superblock",
    check: sb_check,
    prepare: sb_prepare,
    csum_salt: None,
};

/// Mapping values: (data block << 24) | time; counted per leaf.
struct Mappings<'s> {
    dsm: &'s mut DiskSm,
}
impl<B: BlockManager> ValueType<B> for Mappings<'_> {
    const SIZE: usize = 8;
    fn inc(&mut self, tm: &mut Tm<'_, B>, values: &[u8]) -> Result<()> {
        let it = values
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()) >> 24);
        btree::for_each_run_of(it, &mut |b, e| self.dsm.inc_blocks(tm, b, e))
    }
    fn dec(&mut self, tm: &mut Tm<'_, B>, values: &[u8]) -> Result<()> {
        let it = values
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()) >> 24);
        btree::for_each_run_of(it, &mut |b, e| self.dsm.dec_blocks(tm, b, e))
    }
    fn equal(&self, a: &[u8], b: &[u8]) -> bool {
        u64::from_le_bytes(a.try_into().unwrap()) >> 24
            == u64::from_le_bytes(b.try_into().unwrap()) >> 24
    }
}

/// Top-level values: device tree roots.
struct Devices<'s> {
    dsm: &'s mut DiskSm,
}
impl<B: BlockManager> ValueType<B> for Devices<'_> {
    const SIZE: usize = 8;
    fn inc(&mut self, tm: &mut Tm<'_, B>, values: &[u8]) -> Result<()> {
        for c in values.chunks_exact(8) {
            tm.inc(u64::from_le_bytes(c.try_into().unwrap()))?;
        }
        Ok(())
    }
    fn dec(&mut self, tm: &mut Tm<'_, B>, values: &[u8]) -> Result<()> {
        for c in values.chunks_exact(8) {
            btree::del(
                tm,
                &mut Mappings { dsm: self.dsm },
                u64::from_le_bytes(c.try_into().unwrap()),
                1,
            )?;
        }
        Ok(())
    }
}

struct Pool<'a> {
    tm: Tm<'a, MemBm>,
    dsm: DiskSm,
    top: u64,
    details: u64,
    time: u32,
    mapped: BTreeMap<u64, (u64, u32, u32)>, // dev -> (mapped, ctime, snaptime)
}

impl Pool<'_> {
    fn commit(&mut self, nr_blocks: u64) {
        // Details are written at commit, like upstream.
        for (&dev, &(mapped, ctime, stime)) in &self.mapped {
            let mut v = [0u8; 24];
            v[0..8].copy_from_slice(&mapped.to_le_bytes());
            v[16..20].copy_from_slice(&ctime.to_le_bytes());
            v[20..24].copy_from_slice(&stime.to_le_bytes());
            self.details =
                btree::insert(&mut self.tm, &mut Plain::<24>, self.details, &[dev], &v).unwrap();
        }
        self.dsm.commit(&mut self.tm).unwrap();
        self.tm.pre_commit().unwrap();
        let mut sb = self.tm.write_lock_zero(0, &SB).unwrap();
        sb[32..40].copy_from_slice(&27_022_010u64.to_le_bytes());
        sb[40..44].copy_from_slice(&2u32.to_le_bytes());
        sb[44..48].copy_from_slice(&self.time.to_le_bytes());
        self.dsm.copy_root(&mut sb[64..96]).unwrap();
        self.tm.copy_sm_root(&mut sb[192..224]).unwrap();
        sb[320..328].copy_from_slice(&self.top.to_le_bytes());
        sb[328..336].copy_from_slice(&self.details.to_le_bytes());
        sb[336..340].copy_from_slice(&128u32.to_le_bytes());
        sb[340..344].copy_from_slice(&8u32.to_le_bytes());
        sb[344..352].copy_from_slice(&nr_blocks.to_le_bytes());
        self.tm.commit(sb).unwrap();
    }

    fn map(&mut self, dev: u64, vblock: u64) {
        let d = self.dsm.new_block(&mut self.tm).unwrap();
        let v = (d << 24) | self.time as u64;
        let (top, inserted) = btree::insert_notify(
            &mut self.tm,
            &mut Mappings { dsm: &mut self.dsm },
            self.top,
            &[dev, vblock],
            &v.to_le_bytes(),
        )
        .unwrap();
        self.top = top;
        if inserted {
            self.mapped.get_mut(&dev).unwrap().0 += 1;
        }
    }

    fn unmap(&mut self, dev: u64, vblock: u64) {
        if let Ok(top) = btree::remove(
            &mut self.tm,
            &mut Mappings { dsm: &mut self.dsm },
            self.top,
            &[dev, vblock],
        ) {
            self.top = top;
            self.mapped.get_mut(&dev).unwrap().0 -= 1;
        }
    }

    fn create_thin(&mut self, dev: u64) {
        let root = btree::empty(&mut self.tm, 8).unwrap();
        self.top = btree::insert(
            &mut self.tm,
            &mut Devices { dsm: &mut self.dsm },
            self.top,
            &[dev],
            &root.to_le_bytes(),
        )
        .unwrap();
        self.mapped.insert(dev, (0, self.time, self.time));
    }

    fn create_snap(&mut self, dev: u64, origin: u64) {
        let mut v = [0u8; 8];
        btree::lookup(&self.tm.reader(), self.top, &[origin], &mut v).unwrap();
        let root = u64::from_le_bytes(v);
        self.tm.inc(root).unwrap();
        self.top = btree::insert(
            &mut self.tm,
            &mut Devices { dsm: &mut self.dsm },
            self.top,
            &[dev],
            &root.to_le_bytes(),
        )
        .unwrap();
        self.time += 1;
        let m = self.mapped[&origin].0;
        self.mapped.insert(dev, (m, self.time, self.time));
        self.mapped.get_mut(&origin).unwrap().2 = self.time;
    }

    fn delete(&mut self, dev: u64) {
        self.top = btree::remove(
            &mut self.tm,
            &mut Devices { dsm: &mut self.dsm },
            self.top,
            &[dev],
        )
        .unwrap();
        self.details = btree::remove(&mut self.tm, &mut Plain::<24>, self.details, &[dev]).unwrap();
        self.mapped.remove(&dev);
    }
}

fn tools_present() -> bool {
    Command::new("thin_check").arg("-V").output().is_ok()
}

fn run_thin_check(bm: &MemBm, name: &str) -> String {
    run_thin_check_expect(bm, name, true)
}

/// Runs thin_check (expecting success or failure) and returns thin_dump's
/// output when it succeeded.
fn run_thin_check_expect(bm: &MemBm, name: &str, ok: bool) -> String {
    let dir = std::env::temp_dir().join(format!("core_compat_{}_{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("meta.img");
    bm.save_image(&path).unwrap();
    let out = Command::new("thin_check").arg(&path).output().unwrap();
    if std::env::var("CORE_VERBOSE").is_ok() {
        eprintln!(
            "thin_check {name}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if !ok {
        assert!(
            !out.status.success(),
            "thin_check accepted corrupt metadata ({name})"
        );
        let _ = std::fs::remove_dir_all(&dir);
        return String::new();
    }
    assert!(
        out.status.success(),
        "thin_check failed on {name}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let dump = Command::new("thin_dump").arg(&path).output().unwrap();
    assert!(
        dump.status.success(),
        "thin_dump failed: {}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
    String::from_utf8_lossy(&dump.stdout).into_owned()
}

fn attr(line: &str, name: &str) -> Option<u64> {
    let k = format!("{name}=\"");
    let i = line.find(&k)? + k.len();
    line[i..].split('"').next()?.parse().ok()
}

/// Checks thin_dump's view against the model: per device, mapped_blocks
/// and the number of mappings listed.
fn check_dump(dump: &str, pool: &Pool<'_>) {
    let mut seen: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    let mut cur = None;
    for line in dump.lines() {
        let l = line.trim();
        if l.starts_with("<device ") {
            let dev = attr(l, "dev_id").unwrap();
            seen.insert(dev, (attr(l, "mapped_blocks").unwrap(), 0));
            cur = Some(dev);
        } else if l.starts_with("<single_mapping") {
            seen.get_mut(&cur.unwrap()).unwrap().1 += 1;
        } else if l.starts_with("<range_mapping") {
            seen.get_mut(&cur.unwrap()).unwrap().1 += attr(l, "length").unwrap();
        }
    }
    assert_eq!(seen.len(), pool.mapped.len(), "devices in dump");
    for (dev, &(mapped, _, _)) in &pool.mapped {
        assert_eq!(
            seen[dev],
            (mapped, mapped),
            "device {dev}: (mapped_blocks, listed)"
        );
    }
}

#[test]
fn thin_check_accepts_core_structures() {
    if !tools_present() {
        eprintln!("thin_check not installed; skipping");
        return;
    }
    let nr_meta = 16_384u64;
    let bm = MemBm::new(nr_meta);
    let mut st = TmState::create(&bm, 0).unwrap();
    let mut tm = Tm::new(&bm, &mut st);
    let dsm = DiskSm::create(&mut tm, 0).unwrap();
    let top = btree::empty(&mut tm, 8).unwrap();
    let details = btree::empty(&mut tm, 24).unwrap();
    let mut pool = Pool {
        tm,
        dsm,
        top,
        details,
        time: 0,
        mapped: BTreeMap::new(),
    };
    pool.commit(nr_meta);
    // Grow the data device (as the first resume does), then commit.
    pool.dsm.extend(&mut pool.tm, 50_000).unwrap();
    pool.commit(nr_meta);
    run_thin_check(&bm, "empty");

    let mut rng = Xs(11);
    for dev in 0..4 {
        pool.create_thin(dev);
    }
    for _ in 0..6000 {
        let dev = rng.below(4);
        pool.map(dev, rng.below(3000));
    }
    pool.commit(nr_meta);
    run_thin_check(&bm, "mapped");
    // Snapshots share trees; writes to both break sharing lazily.
    pool.create_snap(10, 1);
    pool.create_snap(11, 10);
    pool.commit(nr_meta);
    for _ in 0..2000 {
        let dev = [1u64, 10, 11][rng.below(3) as usize];
        if rng.below(4) == 0 {
            pool.unmap(dev, rng.below(3000));
        } else {
            pool.map(dev, rng.below(3000));
        }
    }
    pool.commit(nr_meta);
    let dump = run_thin_check(&bm, "snapshots");
    check_dump(&dump, &pool);

    // Discard-like range removal on a snapshot, delete devices.
    for v in 100..900 {
        pool.unmap(11, v);
    }
    pool.delete(1);
    pool.delete(2);
    pool.commit(nr_meta);
    run_thin_check(&bm, "deleted");

    // Metadata grows bitmaps beyond the first? Use most of the device.
    pool.create_thin(20);
    for v in 0..30_000 {
        pool.map(20, v * 2);
        if v % 5000 == 0 {
            pool.commit(nr_meta);
        }
    }
    pool.commit(nr_meta);
    let dump = run_thin_check(&bm, "big");
    check_dump(&dump, &pool);

    // The checker is not vacuous: a leaked reference on a tree root is
    // reported.
    let t = pool.top;
    pool.tm.inc(t).unwrap();
    pool.commit(nr_meta);
    run_thin_check_expect(&bm, "leak", false);
}

/// Reads metadata written by `thin_restore`, modifies it with this crate
/// (new mappings, overwrites, removals, a snapshot, a deletion), commits
/// and checks the result with `thin_check` and `thin_dump`.
#[test]
fn modify_metadata_made_by_thin_restore() {
    if !tools_present() {
        eprintln!("thin tools not installed; skipping");
        return;
    }
    let dir = std::env::temp_dir().join(format!("core_compat_restore_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let xml = dir.join("in.xml");
    let img = dir.join("meta.img");
    let mut x = String::from(
        "<superblock uuid=\"\" time=\"1\" transaction=\"5\" flags=\"0\" version=\"2\" data_block_size=\"128\" nr_data_blocks=\"100000\">\n",
    );
    let mut mapped = BTreeMap::new();
    let mut next_data = 0u64;
    for dev in 0..3u64 {
        let n = 4000 + dev * 1000;
        x += &format!(
            "<device dev_id=\"{dev}\" mapped_blocks=\"{n}\" transaction=\"0\" creation_time=\"0\" snap_time=\"1\">\n"
        );
        x += &format!("<range_mapping origin_begin=\"0\" data_begin=\"{next_data}\" length=\"{}\" time=\"0\"/>\n", n - 1);
        next_data += n - 1;
        x += &format!(
            "<single_mapping origin_block=\"{}\" data_block=\"{next_data}\" time=\"1\"/>\n",
            50_000
        );
        next_data += 1;
        x += "</device>\n";
        mapped.insert(dev, (n, 0u32, 1u32));
    }
    x += "</superblock>\n";
    std::fs::write(&xml, x).unwrap();
    std::fs::write(&img, vec![0u8; 16_384 * 4096]).unwrap();
    let out = Command::new("thin_restore")
        .arg("-i")
        .arg(&xml)
        .arg("-o")
        .arg(&img)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "thin_restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bm = MemBm::load_image(&img).unwrap();
    let (sm_root, dsm_root, top, details, time) = {
        let sb = bm.read_lock(0, &SB).unwrap();
        assert_eq!(
            u64::from_le_bytes(sb[32..40].try_into().unwrap()),
            27_022_010
        );
        (
            sb[192..224].to_vec(),
            sb[64..96].to_vec(),
            u64::from_le_bytes(sb[320..328].try_into().unwrap()),
            u64::from_le_bytes(sb[328..336].try_into().unwrap()),
            u32::from_le_bytes(sb[44..48].try_into().unwrap()),
        )
    };
    let mut st = TmState::open(&bm, &sm_root).unwrap();
    let mut tm = Tm::new(&bm, &mut st);
    let dsm = DiskSm::open(&mut tm, &dsm_root).unwrap();
    assert_eq!(dsm.nr_blocks(), 100_000);
    assert_eq!(dsm.nr_free(), 100_000 - next_data);
    // Tool-made trees read back.
    let mut v = [0u8; 8];
    btree::lookup(&tm.reader(), top, &[1, 50_000], &mut v).unwrap();
    assert_eq!(u64::from_le_bytes(v) >> 24, 2 * 4000 + 1000 - 1);
    let mut pool = Pool {
        tm,
        dsm,
        top,
        details,
        time,
        mapped,
    };
    let mut rng = Xs(23);
    for _ in 0..3000 {
        let dev = rng.below(3);
        if rng.below(3) == 0 {
            pool.unmap(dev, rng.below(7000));
        } else {
            pool.map(dev, rng.below(7000));
        }
    }
    pool.create_snap(7, 2);
    for _ in 0..500 {
        pool.map(7, rng.below(7000));
    }
    pool.delete(0);
    pool.commit(16_384);
    let dump = run_thin_check(&bm, "restored");
    check_dump(&dump, &pool);
    let _ = std::fs::remove_dir_all(&dir);
}
