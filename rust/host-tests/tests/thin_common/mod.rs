//! Shared helpers of the thin metadata tests: open/format on a `MemBm`,
//! export the metadata into an oracle `Model`, and a driver that applies
//! random operations to both the library and a plain model.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use host_tests::mem_bm::{Image, MemBm};
use host_tests::oracle::{Device, Model};
use host_tests::rng::Rng;
use pdata::pdata::error::Error;
use pdata::pdata::thin::metadata::{OpenOptions, PoolMetadata};

/// Data block size used by the tests (sectors).
pub const DBS: u32 = 128;

pub type Pmd = PoolMetadata<MemBm>;

pub fn opts(format: bool) -> OpenOptions {
    OpenOptions {
        data_block_size: DBS,
        format,
        read_only: false,
    }
}

/// Formats a fresh device of `nr_blocks` metadata blocks and grows the
/// data space map to `nr_data` blocks (committed).
pub fn format(nr_blocks: u64, nr_data: u64) -> Pmd {
    let bm = MemBm::new(nr_blocks);
    let mut pmd = PoolMetadata::open(bm, opts(true)).expect("format");
    if nr_data > 0 {
        pmd.resize_data_dev(nr_data).expect("resize data");
        pmd.commit().expect("commit");
    }
    pmd
}

/// Opens an image (read-write, no format).
pub fn open_image(image: Image) -> Result<Pmd, Error> {
    PoolMetadata::open(MemBm::from_image(image), opts(false))
}

/// Reads everything the library exposes into a `Model`.
pub fn export(pmd: &Pmd) -> Model {
    try_export(pmd).expect("export")
}

/// Like [`export`], but returns the first error.
pub fn try_export(pmd: &Pmd) -> Result<Model, Error> {
    let mut m = Model::new(pmd.data_block_size(), pmd.data_dev_size()?);
    m.time = pmd.time();
    m.transaction = pmd.transaction_id()?;
    m.flags = pmd.flags();
    for id in pmd.device_ids()?.iter().copied() {
        let d = pmd.details_of(id)?;
        let mut dev = Device::new(d.transaction_id, d.creation_time, d.snapshotted_time);
        let mut from = 0;
        while let Some((k, b, t)) = pmd.next_mapping(id, from)? {
            dev.mappings.insert(k, (b, t));
            from = k + 1;
        }
        dev.mapped_blocks = d.mapped_blocks;
        m.devices.insert(id, dev);
    }
    Ok(m)
}

/// Data blocks referenced by a model.
pub fn data_blocks(m: &Model) -> BTreeSet<u64> {
    m.devices
        .values()
        .flat_map(|d| d.mappings.values().map(|&(b, _)| b))
        .collect()
}

pub fn assert_models_eq(got: &Model, want: &Model, what: &str) {
    let diff = got.diff(want, 20);
    assert!(
        diff.is_empty(),
        "{what}: library != model:\n{}",
        diff.join("\n")
    );
}

//------------------------------------------------------------------------

/// One random operation.
#[derive(Clone, Debug)]
pub enum Op {
    CreateThin(u64),
    CreateSnap(u64, u64),
    Delete(u64),
    Insert(u64, u64),
    InsertRun(u64, u64, u64),
    Remove(u64, u64),
    RemoveRange(u64, u64, u64),
    SetTransactionId(bool, u64),
    Commit,
    Abort,
    Reserve,
    Release,
}

/// Applies operations to the library and to a model, checking every
/// result against the model's expectation.
pub struct Driver {
    pub pmd: Pmd,
    pub model: Model,
    pub committed: Model,
    pub held: Option<Model>,
    pub committed_held: Option<Model>,
    pub nr_data: u64,
    pub ops_done: u64,
    /// Successful operations by kind (for sanity checks of the tests).
    pub counts: BTreeMap<&'static str, u64>,
    /// Largest number of mappings the model held at once.
    pub max_mappings: u64,
    /// State (model, held model) of a commit in progress.
    pub pending: Option<(Model, Option<Model>)>,
}

impl Driver {
    pub fn new(nr_blocks: u64, nr_data: u64) -> Driver {
        let pmd = format(nr_blocks, nr_data);
        let model = export(&pmd);
        assert_eq!(model.devices.len(), 0);
        Driver {
            pmd,
            committed: model.clone(),
            model,
            held: None,
            committed_held: None,
            nr_data,
            ops_done: 0,
            counts: BTreeMap::new(),
            max_mappings: 0,
            pending: None,
        }
    }

    /// A driver over an already open pool whose committed state is `model`.
    pub fn from_open(pmd: Pmd, model: Model, nr_data: u64) -> Driver {
        Driver {
            pmd,
            committed: model.clone(),
            model,
            held: None,
            committed_held: None,
            nr_data,
            ops_done: 0,
            counts: BTreeMap::new(),
            max_mappings: 0,
            pending: None,
        }
    }

    /// A random operation biased towards existing devices.  `wide`
    /// favours long insert runs and few deletes/aborts so trees grow to
    /// several levels.
    pub fn random_op(&self, rng: &mut Rng, max_id: u64, max_vblock: u64, wide: bool) -> Op {
        let ids: Vec<u64> = self.model.devices.keys().copied().collect();
        let pick_existing = |rng: &mut Rng| -> u64 {
            if ids.is_empty() || rng.chance(5) {
                rng.below(max_id)
            } else {
                ids[rng.below(ids.len() as u64) as usize]
            }
        };
        // A mapped key of device `id` near a random point (or a random key).
        let pick_key = |rng: &mut Rng, id: u64| -> u64 {
            let r = rng.below(max_vblock);
            match self.model.devices.get(&id) {
                Some(d) if rng.chance(80) => d
                    .mappings
                    .range(r..)
                    .next()
                    .or_else(|| d.mappings.iter().next())
                    .map(|(k, _)| *k)
                    .unwrap_or(r),
                _ => r,
            }
        };
        let (delete, abort, run) = if wide { (3, 4, 40) } else { (20, 15, 4) };
        let r = rng.below(1000);
        let mut edges = [40u64, 40, delete, 500, 80, 30, 10, 50, abort, 15, 15]
            .into_iter()
            .scan(0, |acc, w| {
                *acc += w;
                Some(*acc)
            });
        let mut next = || edges.next().unwrap();
        if r < next() {
            return Op::CreateThin(rng.below(max_id));
        }
        if r < next() {
            return Op::CreateSnap(rng.below(max_id), pick_existing(rng));
        }
        if r < next() {
            return Op::Delete(pick_existing(rng));
        }
        if r < next() {
            let id = pick_existing(rng);
            let len = 1 + rng.below(run);
            return Op::InsertRun(id, rng.below(max_vblock), len);
        }
        if r < next() {
            let id = pick_existing(rng);
            return Op::Remove(id, pick_key(rng, id));
        }
        if r < next() {
            let id = pick_existing(rng);
            let b = pick_key(rng, id);
            let len = if rng.chance(20) {
                rng.below(max_vblock)
            } else {
                rng.below(300)
            };
            return Op::RemoveRange(id, b, b + len);
        }
        if r < next() {
            return Op::SetTransactionId(rng.chance(85), rng.below(1000));
        }
        if r < next() {
            return Op::Commit;
        }
        if r < next() {
            return Op::Abort;
        }
        if r < next() {
            return Op::Reserve;
        }
        if r < next() {
            return Op::Release;
        }
        let id = pick_existing(rng);
        Op::InsertRun(id, rng.below(max_vblock), 1)
    }

    fn expect(&mut self, op: &Op, r: Result<(), Error>, want: Result<(), Error>) {
        assert_eq!(r, want, "op {} {:?}", self.ops_done, op);
        let name = match op {
            Op::CreateThin(..) => "create_thin",
            Op::CreateSnap(..) => "create_snap",
            Op::Delete(..) => "delete",
            Op::Insert(..) | Op::InsertRun(..) => "insert",
            Op::Remove(..) => "remove",
            Op::RemoveRange(..) => "remove_range",
            Op::SetTransactionId(..) => "set_transaction_id",
            Op::Commit => "commit",
            Op::Abort => "abort",
            Op::Reserve => "reserve",
            Op::Release => "release",
        };
        let key = if want.is_ok() { name } else { "refused" };
        *self.counts.entry(key).or_insert(0) += 1;
    }

    /// Applies `op`; returns an error only for I/O failures (crash tests).
    pub fn apply(&mut self, op: &Op) -> Result<(), Error> {
        self.ops_done += 1;
        let r = self.apply_inner(op);
        self.max_mappings = self.max_mappings.max(self.model.nr_mappings());
        match r {
            Err(Error::Io) => Err(Error::Io),
            Err(e) => panic!("op {} {:?}: unexpected error {:?}", self.ops_done, op, e),
            Ok(()) => Ok(()),
        }
    }

    fn io<T>(r: Result<T, Error>) -> Result<Result<T, Error>, Error> {
        match r {
            Err(Error::Io) => Err(Error::Io),
            other => Ok(other),
        }
    }

    fn apply_inner(&mut self, op: &Op) -> Result<(), Error> {
        match *op {
            Op::CreateThin(id) => {
                let r = Self::io(self.pmd.create_thin(id))?;
                if self.model.devices.contains_key(&id) {
                    self.expect(op, r, Err(Error::Exists));
                } else {
                    self.expect(op, r, Ok(()));
                    let t = self.model.time;
                    self.model
                        .devices
                        .insert(id, Device::new(self.model.transaction, t, t));
                }
            }
            Op::CreateSnap(id, origin) => {
                let r = Self::io(self.pmd.create_snap(id, origin))?;
                if self.model.devices.contains_key(&id) {
                    self.expect(op, r, Err(Error::Exists));
                } else if !self.model.devices.contains_key(&origin) {
                    self.expect(op, r, Err(Error::NotFound));
                } else {
                    self.expect(op, r, Ok(()));
                    self.model.time += 1;
                    let t = self.model.time;
                    let o = self.model.devices.get_mut(&origin).unwrap();
                    o.snap_time = t;
                    let mut s = o.clone();
                    s.transaction = self.model.transaction;
                    s.creation_time = t;
                    s.snap_time = t;
                    self.model.devices.insert(id, s);
                }
            }
            Op::Delete(id) => {
                let r = Self::io(self.pmd.delete_thin(id))?;
                if self.model.devices.remove(&id).is_some() {
                    self.expect(op, r, Ok(()));
                } else {
                    self.expect(op, r, Err(Error::NotFound));
                }
            }
            Op::Insert(id, vblock) => {
                if !self.model.devices.contains_key(&id) {
                    let r = Self::io(self.pmd.open_thin(id).map(|_| ()))?;
                    self.expect(op, r, Err(Error::NotFound));
                    return Ok(());
                }
                let b = match Self::io(self.pmd.alloc_data_block())? {
                    Ok(b) => b,
                    Err(Error::NoSpace) => {
                        // Blocks freed in this transaction become usable
                        // after a commit (upstream alloc_data_block).
                        self.commit()?;
                        match Self::io(self.pmd.alloc_data_block())? {
                            Ok(b) => b,
                            Err(Error::NoSpace) => return Ok(()),
                            Err(e) => panic!("alloc: {e:?}"),
                        }
                    }
                    Err(e) => panic!("alloc: {e:?}"),
                };
                assert!(
                    b < self.nr_data,
                    "allocated block {b} beyond {}",
                    self.nr_data
                );
                let td = Self::io(self.pmd.open_thin(id))?.expect("open");
                let r = Self::io(self.pmd.insert(&td, vblock, b));
                self.pmd.close_thin(td);
                self.expect(op, r?, Ok(()));
                let t = self.model.time;
                let d = self.model.devices.get_mut(&id).unwrap();
                d.map(vblock, b, t);
            }
            Op::InsertRun(id, vblock, len) => {
                for v in vblock..vblock + len {
                    self.apply_inner(&Op::Insert(id, v))?;
                }
            }
            Op::Remove(id, vblock) => {
                if !self.model.devices.contains_key(&id) {
                    return Ok(());
                }
                let td = Self::io(self.pmd.open_thin(id))?.expect("open");
                let r = Self::io(self.pmd.remove(&td, vblock));
                self.pmd.close_thin(td);
                let r = r?;
                let d = self.model.devices.get_mut(&id).unwrap();
                if d.mappings.remove(&vblock).is_some() {
                    d.mapped_blocks = d.mappings.len() as u64;
                    self.expect(op, r, Ok(()));
                } else {
                    self.expect(op, r, Err(Error::NotFound));
                }
            }
            Op::RemoveRange(id, b, e) => {
                if !self.model.devices.contains_key(&id) {
                    return Ok(());
                }
                let td = Self::io(self.pmd.open_thin(id))?.expect("open");
                let r = Self::io(self.pmd.remove_range(&td, b, e));
                self.pmd.close_thin(td);
                self.expect(op, r?, Ok(()));
                let d = self.model.devices.get_mut(&id).unwrap();
                let keys: Vec<u64> = d.mappings.range(b..e.max(b)).map(|(k, _)| *k).collect();
                for k in keys {
                    d.mappings.remove(&k);
                }
                d.mapped_blocks = d.mappings.len() as u64;
            }
            Op::SetTransactionId(right, new) => {
                let cur = if right {
                    self.model.transaction
                } else {
                    self.model.transaction + 1
                };
                let r = Self::io(self.pmd.set_transaction_id(cur, new))?;
                if right {
                    self.expect(op, r, Ok(()));
                    self.model.transaction = new;
                } else {
                    self.expect(op, r, Err(Error::Invalid));
                }
            }
            Op::Commit => self.commit()?,
            Op::Abort => {
                let r = Self::io(self.pmd.abort())?;
                self.expect(op, r, Ok(()));
                self.model = self.committed.clone();
                self.held = self.committed_held.clone();
                // Crash tests: reads may evict dirty blocks, which may hit
                // the power cut.
                let live = Self::io(try_export(&self.pmd))?.expect("export");
                assert_models_eq(&live, &self.model, "after abort");
            }
            Op::Reserve => {
                if self.held.is_none() {
                    // reserve commits the current state first.
                    self.pending = Some((self.model.clone(), None));
                }
                let r = Self::io(self.pmd.reserve_metadata_snap())?;
                self.pending = None;
                if self.held.is_some() {
                    self.expect(op, r, Err(Error::Busy));
                } else {
                    self.expect(op, r, Ok(()));
                    self.committed = self.model.clone();
                    self.committed_held = None;
                    self.held = Some(self.model.clone());
                }
            }
            Op::Release => {
                let r = Self::io(self.pmd.release_metadata_snap())?;
                if self.held.take().is_some() {
                    self.expect(op, r, Ok(()));
                } else {
                    self.expect(op, r, Err(Error::Invalid));
                }
            }
        }
        Ok(())
    }

    pub fn commit(&mut self) -> Result<(), Error> {
        self.pending = Some((self.model.clone(), self.held.clone()));
        match self.pmd.commit() {
            Ok(()) => {}
            Err(Error::Io) => return Err(Error::Io),
            Err(e) => panic!("commit: {e:?}"),
        }
        self.pending = None;
        self.committed = self.model.clone();
        self.committed_held = self.held.clone();
        Ok(())
    }

    /// The library's current (uncommitted) view equals the model.
    pub fn check_live(&self, what: &str) {
        assert_models_eq(&export(&self.pmd), &self.model, what);
    }

    /// Expected free data blocks after a commit.
    pub fn expected_free_data(&self) -> u64 {
        free_data_of(self.nr_data, &self.committed, self.committed_held.as_ref())
    }

    /// Reopens the durable image and compares it with the committed model.
    pub fn check_durable(&self, what: &str) -> Pmd {
        let img = self.pmd.bm().durable_image();
        let mut pmd = open_image(img.clone()).expect("reopen durable image");
        assert_data_counts(&mut pmd, &img, what);
        assert_models_eq(&export(&pmd), &self.committed, what);
        assert_eq!(
            pmd.free_data_blocks().unwrap(),
            self.expected_free_data(),
            "{what}: free data blocks"
        );
        assert_eq!(
            pmd.metadata_snap().unwrap() != 0,
            self.committed_held.is_some(),
            "{what}: held root"
        );
        pmd
    }
}

/// Mapping count per device, for messages.
pub fn summary(m: &Model) -> BTreeMap<u64, usize> {
    m.devices
        .iter()
        .map(|(k, d)| (*k, d.mappings.len()))
        .collect()
}

/// Free data blocks of a committed state whose live model is `m` and
/// whose metadata snapshot (if any) is `held`.
pub fn free_data_of(nr_data: u64, m: &Model, held: Option<&Model>) -> u64 {
    let mut used = data_blocks(m);
    if let Some(h) = held {
        used.extend(data_blocks(h));
    }
    nr_data - used.len() as u64
}

//------------------------------------------------------------------------
// Expected data reference counts, computed from the image itself.
//
// thin_check 0.9.0 does not compare data space-map counts with the
// mapping trees, so the tests do: the count of a data block must be the
// number of distinct bottom-level leaves (of the live trees and of the
// held metadata snapshot) that contain it.

fn rd64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

fn rd32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

/// Visits every node of the tree at `root` once (skipping nodes in
/// `seen`); calls `leaf(values)` for each new leaf.
fn walk_tree(
    img: &Image,
    root: u64,
    seen: &mut std::collections::HashSet<u64>,
    leaf: &mut dyn FnMut(&[u64]),
) {
    let mut stack = vec![root];
    while let Some(b) = stack.pop() {
        if !seen.insert(b) {
            continue;
        }
        let n = img.block(b);
        let flags = rd32(n, 4);
        let nr = rd32(n, 16) as usize;
        let max = rd32(n, 20) as usize;
        let vals: Vec<u64> = (0..nr).map(|i| rd64(n, 32 + 8 * max + 8 * i)).collect();
        if flags & 1 != 0 {
            stack.extend(vals);
        } else {
            leaf(&vals);
        }
    }
}

/// Data block -> expected reference count.
pub fn expected_data_counts(img: &Image) -> BTreeMap<u64, u32> {
    let sb = img.block(0);
    let mut tops = vec![rd64(sb, 320)];
    let held = rd64(sb, 56);
    if held != 0 {
        tops.push(rd64(img.block(held), 320));
    }
    let mut seen_top = std::collections::HashSet::new();
    let mut dev_roots = Vec::new();
    for t in tops {
        walk_tree(img, t, &mut seen_top, &mut |vals| {
            dev_roots.extend_from_slice(vals)
        });
    }
    let mut seen = std::collections::HashSet::new();
    let mut counts = BTreeMap::new();
    for r in dev_roots {
        walk_tree(img, r, &mut seen, &mut |vals| {
            for v in vals {
                *counts.entry(v >> 24).or_insert(0u32) += 1;
            }
        });
    }
    counts
}

/// Data blocks whose count in the library differs from the trees:
/// `(block, library count, expected count)`.
pub fn data_count_mismatches(pmd: &mut Pmd, img: &Image) -> Vec<(u64, u32, u32)> {
    let want = expected_data_counts(img);
    let nr = pmd.data_dev_size().unwrap();
    let mut out = Vec::new();
    for b in 0..nr {
        let got = pmd.data_block_count(b).unwrap();
        let w = want.get(&b).copied().unwrap_or(0);
        if got != w {
            out.push((b, got, w));
        }
    }
    assert!(
        want.keys().all(|&b| b < nr),
        "mapping to a block beyond the data device"
    );
    out
}

pub fn assert_data_counts(pmd: &mut Pmd, img: &Image, what: &str) {
    let bad = data_count_mismatches(pmd, img);
    assert!(
        bad.is_empty(),
        "{what}: data ref counts (block, got, want): {:?}",
        &bad[..bad.len().min(10)]
    );
}
