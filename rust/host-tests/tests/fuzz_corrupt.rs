//! Corruption fuzzing of the persistent-data layer: "no panic on any
//! input".
//!
//! A realistic pool image is built once with `PoolMetadata` (several
//! thins, snapshots of snapshots, thousands of mappings so device trees
//! have internal nodes, a data space map of three bitmaps, a metadata
//! space map of two bitmaps, a held metadata snapshot, and overflow
//! reference counts >= 3 in both space maps).  Every iteration then picks
//! one to three used metadata blocks (superblock, held superblock copy,
//! btree nodes of every tree, bitmaps of both space maps, the metadata
//! index block), mutates them (bit flips, edge values in header fields,
//! keys out of order or out of their parent's range, child pointers at
//! the node itself / its parent / a sibling / another tree / a bitmap /
//! out of range, duplicated children, block copies, bitmap entries
//! cleared or set to 3, index entries redirected, superblock roots and
//! space-map roots redirected...), usually recomputes the checksum with
//! the block type's salt and the self pointer so the deeper checks are
//! reached, pokes the result into the device and runs a full workload:
//! open (sometimes read-only), list devices, walk and look up mappings,
//! ranges, highest mapped, space accounting, then inserts, removes,
//! remove_range, thin and snapshot creation, deletion, commit, metadata
//! snapshot release/reserve, resize, abort, close and reopen.
//!
//! Every call may fail; the test asserts that nothing panics (including
//! arithmetic overflow: tests build with overflow checks), that every
//! iteration finishes within a time limit (no endless loop), that no
//! single allocation is out of proportion (no allocation sized by a
//! corrupt count), and that the fuzzer really reaches the deep code
//! (enough corrupt images still open and get errors from later calls).
//!
//! A quarter of the iterations poke the device only after the pool was
//! opened and read (corruption meeting cached blocks).  Lock requests on
//! a block already locked (corrupt cross-links) are answered with
//! `Error::Busy` by MemBm, as any block manager must;
//! `PDATA_FUZZ_CONFLICT_PANICS=1` makes them panics to list their sites.
//!
//! Each iteration runs in its own thread named `fuzz-seed-<seed>` (a
//! stack overflow names it) with a 1 MiB stack.  Reproduce one seed with
//! `PDATA_FUZZ_SEED=<seed> cargo test -p host-tests --test fuzz_corrupt
//! -- --nocapture` (or `DIAG_SEED=<seed> ... -- --ignored diag_seed`);
//! run more with `PDATA_FUZZ_ITERS=<n>` (per campaign test; the default
//! run does 4000 per campaign within a 25 s budget each) and fresh seeds
//! with `PDATA_FUZZ_SEED_OFFSET=<n>`.
//!
//! The deterministic tests at the end reproduce the bugs the campaigns
//! found (now fixed in the core).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use host_tests::mem_bm::{Image, MemBm};
use host_tests::rng::Rng;
use pdata::pdata::block_manager::{Block, BlockManager, BLOCK_SIZE};
use pdata::pdata::checksum::{
    block_checksum, BITMAP_CSUM_XOR, BTREE_CSUM_XOR, INDEX_CSUM_XOR, SUPERBLOCK_CSUM_XOR,
};
use pdata::pdata::error::Error;
use pdata::pdata::space_map::ENTRIES_PER_BLOCK;
use pdata::pdata::thin::metadata::{OpenOptions, PoolMetadata};
use pdata::pdata::transaction_manager::{Tm, TmState};

//------------------------------------------------------------------------
// Allocation watch: the largest single allocation request per thread.

struct WatchAlloc;

/// Requests above this are refused (after being recorded), so a corrupt
/// count cannot take the host down; the test fails on them anyway.
const ALLOC_REFUSE: usize = 1 << 30;

/// Largest single allocation an iteration may make.
const ALLOC_LIMIT: usize = 16 << 20;

thread_local! {
    static BIGGEST: Cell<usize> = const { Cell::new(0) };
}

fn note_alloc(size: usize) {
    let _ = BIGGEST.try_with(|b| {
        if size > b.get() {
            b.set(size)
        }
    });
}

unsafe impl GlobalAlloc for WatchAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note_alloc(l.size());
        if l.size() > ALLOC_REFUSE {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        note_alloc(l.size());
        if l.size() > ALLOC_REFUSE {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        note_alloc(new_size);
        if new_size > ALLOC_REFUSE {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(p, l, new_size) }
    }
}

#[global_allocator]
static ALLOC: WatchAlloc = WatchAlloc;

//------------------------------------------------------------------------
// Little helpers.

const NR_META: u64 = 17_000; // two metadata bitmaps
const NR_DATA: u64 = 120_000; // eight data bitmaps
const DBS: u32 = 128;
const MAX_TIME: u64 = (1 << 24) - 1;

fn rd64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}
fn wr64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}
fn rd32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}
fn wr32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn boxed(img: &Image, b: u64) -> Box<Block> {
    let mut out: Box<Block> = vec![0u8; BLOCK_SIZE].into_boxed_slice().try_into().unwrap();
    out.copy_from_slice(img.block(b));
    out
}

fn opts(format: bool, read_only: bool) -> OpenOptions {
    OpenOptions {
        data_block_size: DBS,
        format,
        read_only,
    }
}

//------------------------------------------------------------------------
// The base image.

/// Which structure a block belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Tree {
    Top,
    Dev,
    Details,
    MetaRc,
    DataRc,
    DataIndex,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Superblock,
    HeldSuperblock,
    MetaIndex,
    MetaBitmap,
    DataBitmap,
    Node(Tree),
}

#[derive(Clone, Debug)]
struct NodeInfo {
    parent: Option<u64>,
    internal: bool,
}

struct Base {
    image: Image,
    kinds: BTreeMap<Kind, Vec<u64>>,
    nodes: BTreeMap<u64, NodeInfo>,
    roots: Vec<u64>,
    used: Vec<u64>,
    /// The lowest free blocks (the allocator's next picks).
    free_low: Vec<u64>,
    ids: Vec<u64>,
}

const BIG_ID: u64 = (1 << 24) - 1;
const DEEP_MAPPINGS: u64 = 70_000;

fn build_image() -> Image {
    let bm = MemBm::new(NR_META);
    let mut pmd = PoolMetadata::open(bm, opts(true, false)).expect("format");
    pmd.resize_data_dev(NR_DATA).unwrap();
    pmd.commit().unwrap();

    // Device 1: 2500 consecutive mappings, then runs in the second and
    // third data bitmaps (blocks taken with inc_data_range, which gives
    // them the one reference a mapping owns, like an allocation).
    pmd.create_thin(1).unwrap();
    let td = pmd.open_thin(1).unwrap();
    for v in 0..2500 {
        let b = pmd.alloc_data_block().unwrap();
        pmd.insert(&td, v, b).unwrap();
    }
    pmd.inc_data_range(16_200, 16_600).unwrap();
    for (i, b) in (16_200..16_600).enumerate() {
        pmd.insert(&td, 5000 + i as u64, b).unwrap();
    }
    pmd.inc_data_range(33_000, 33_100).unwrap();
    for (i, b) in (33_000..33_100).enumerate() {
        pmd.insert(&td, 1_000_000 + 3 * i as u64, b).unwrap();
    }
    pmd.close_thin(td);
    pmd.commit().unwrap();

    // Snapshots of snapshots; then writes through each so shared leaves
    // get copied and data blocks reach counts of 3 and 4 (overflow tree),
    // and shared metadata nodes reach counts >= 3.
    pmd.create_snap(2, 1).unwrap();
    pmd.create_snap(3, 2).unwrap();
    pmd.create_snap(4, 3).unwrap();
    for id in [1u64, 2, 3] {
        let td = pmd.open_thin(id).unwrap();
        for v in (0..600).step_by(5) {
            let b = pmd.alloc_data_block().unwrap();
            pmd.insert(&td, v + id, b).unwrap();
        }
        pmd.close_thin(td);
    }
    // Device 5: sparse mappings (a different tree shape); device 6 empty;
    // a device with the largest id.
    pmd.create_thin(5).unwrap();
    let td = pmd.open_thin(5).unwrap();
    for i in 0..1500u64 {
        let b = pmd.alloc_data_block().unwrap();
        pmd.insert(&td, i * 7 + 3, b).unwrap();
    }
    pmd.close_thin(td);
    pmd.create_thin(6).unwrap();
    // Device 8: enough mappings for a three-level tree (internal nodes
    // under an internal root), so rebalancing of internal nodes is hit.
    pmd.create_thin(8).unwrap();
    let td = pmd.open_thin(8).unwrap();
    for v in 0..DEEP_MAPPINGS {
        let b = pmd.alloc_data_block().unwrap();
        pmd.insert(&td, v, b).unwrap();
    }
    pmd.close_thin(td);
    pmd.create_thin(BIG_ID).unwrap();
    let td = pmd.open_thin(BIG_ID).unwrap();
    for v in [0u64, 1, 1 << 30, u64::MAX >> 1] {
        let b = pmd.alloc_data_block().unwrap();
        pmd.insert(&td, v, b).unwrap();
    }
    pmd.close_thin(td);
    pmd.commit().unwrap();

    // A held metadata snapshot, then more changes after it.
    pmd.reserve_metadata_snap().unwrap();
    pmd.create_snap(7, 5).unwrap();
    let td = pmd.open_thin(1).unwrap();
    for v in 2000..2300 {
        let b = pmd.alloc_data_block().unwrap();
        pmd.insert(&td, v, b).unwrap();
    }
    pmd.remove_range(&td, 100, 180).unwrap();
    pmd.close_thin(td);
    pmd.delete_thin(4).unwrap();
    pmd.set_transaction_id(0, 42).unwrap();
    pmd.commit().unwrap();
    let bm = pmd.close().map_err(|(_, e)| e).unwrap();
    bm.durable_image()
}

struct Catalog<'a> {
    img: &'a Image,
    kinds: BTreeMap<Kind, BTreeSet<u64>>,
    nodes: BTreeMap<u64, NodeInfo>,
    roots: BTreeSet<u64>,
}

impl Catalog<'_> {
    fn add(&mut self, k: Kind, b: u64) -> bool {
        self.kinds.entry(k).or_default().insert(b)
    }

    /// Walks a btree; `leaf` gets each leaf value (bytes).
    fn walk(&mut self, tree: Tree, root: u64, leaf: &mut dyn FnMut(&mut Self, &[u8])) {
        self.roots.insert(root);
        let mut stack = vec![(root, None::<u64>)];
        while let Some((b, parent)) = stack.pop() {
            if !self.add(Kind::Node(tree), b) {
                continue;
            }
            let n = boxed(self.img, b);
            let flags = rd32(&n[..], 4);
            let nr = rd32(&n[..], 16) as usize;
            let max = rd32(&n[..], 20) as usize;
            let vs = rd32(&n[..], 24) as usize;
            let internal = flags & 1 != 0;
            self.nodes.insert(b, NodeInfo { parent, internal });
            for i in 0..nr {
                let off = 32 + 8 * max + vs * i;
                if internal {
                    stack.push((rd64(&n[..], off), Some(b)));
                } else {
                    leaf(self, &n[off..off + vs]);
                }
            }
        }
    }

    fn superblock(&mut self, sb_loc: u64, held: bool) {
        let sb = boxed(self.img, sb_loc);
        let sbb = &sb[..];
        self.add(
            if held {
                Kind::HeldSuperblock
            } else {
                Kind::Superblock
            },
            sb_loc,
        );
        // Mapping tree: top level, then each device tree.
        let top = rd64(sbb, 320);
        self.walk(Tree::Top, top, &mut |c, v| {
            let dev_root = rd64(v, 0);
            c.walk(Tree::Dev, dev_root, &mut |_, _| {});
        });
        self.walk(Tree::Details, rd64(sbb, 328), &mut |_, _| {});
        if held {
            return;
        }
        // Data space map: index tree -> bitmaps, overflow tree.
        let data = &sbb[64..96];
        self.walk(Tree::DataIndex, rd64(data, 16), &mut |c, v| {
            let bm = rd64(v, 0);
            c.add(Kind::DataBitmap, bm);
        });
        self.walk(Tree::DataRc, rd64(data, 24), &mut |_, _| {});
        // Metadata space map: index block -> bitmaps, overflow tree.
        let meta = &sbb[192..224];
        let nr_blocks = rd64(meta, 0);
        let index = rd64(meta, 16);
        self.add(Kind::MetaIndex, index);
        let ib = boxed(self.img, index);
        for i in 0..nr_blocks.div_ceil(ENTRIES_PER_BLOCK) as usize {
            self.add(Kind::MetaBitmap, rd64(&ib[..], 16 + 16 * i));
        }
        self.walk(Tree::MetaRc, rd64(meta, 24), &mut |_, _| {});
        let held_root = rd64(sbb, 56);
        if held_root != 0 {
            self.superblock(held_root, true);
        }
    }
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let image = build_image();
        let mut c = Catalog {
            img: &image,
            kinds: BTreeMap::new(),
            nodes: BTreeMap::new(),
            roots: BTreeSet::new(),
        };
        c.superblock(0, false);
        let kinds: BTreeMap<Kind, Vec<u64>> = c
            .kinds
            .iter()
            .map(|(k, v)| (*k, v.iter().copied().collect()))
            .collect();
        let used: Vec<u64> = c
            .kinds
            .values()
            .flatten()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let free_low: Vec<u64> = (1..NR_META)
            .filter(|b| used.binary_search(b).is_err())
            .take(64)
            .collect();
        let nodes = c.nodes.clone();
        let roots = c.roots.iter().copied().collect();
        Base {
            image: image.clone(),
            kinds,
            nodes,
            roots,
            used,
            free_low,
            ids: vec![1, 2, 3, 5, 6, 7, 8, BIG_ID],
        }
    })
}

//------------------------------------------------------------------------
// Mutations.

fn salt(k: Kind) -> u32 {
    match k {
        Kind::Superblock | Kind::HeldSuperblock => SUPERBLOCK_CSUM_XOR,
        Kind::MetaIndex => INDEX_CSUM_XOR,
        Kind::MetaBitmap | Kind::DataBitmap => BITMAP_CSUM_XOR,
        Kind::Node(_) => BTREE_CSUM_XOR,
    }
}

fn pick<T: Copy>(rng: &mut Rng, xs: &[T]) -> T {
    xs[rng.below(xs.len() as u64) as usize]
}

/// An interesting u64: edges, block numbers of the image, random.
fn value64(rng: &mut Rng, base: &Base, own: u64, parent: Option<u64>) -> (u64, String) {
    let nb = NR_META;
    let v = match rng.below(16) {
        // Free blocks the allocator hands out next: pointers to blocks
        // this transaction will shadow into (and hold locked).
        14 | 15 => pick(rng, &base.free_low),
        0 => 0,
        1 => 1,
        2 => u64::MAX,
        3 => nb,
        4 => nb - 1,
        5 => own,
        6 => parent.unwrap_or(own),
        7 | 8 => pick(rng, &base.used),
        9 => pick(rng, &base.roots),
        10 => rng.next_u64(),
        11 => 1 << 63,
        12 => u64::MAX - 1,
        _ => rng.below(nb),
    };
    (v, format!("{v:#x}"))
}

fn value32(rng: &mut Rng) -> u32 {
    match rng.below(10) {
        0 => 0,
        1 => 1,
        2 => 2,
        3 => 3,
        4 => u32::MAX,
        5 => u32::MAX - 1,
        6 => ENTRIES_PER_BLOCK as u32,
        7 => ENTRIES_PER_BLOCK as u32 + 1,
        8 => 1 << 31,
        _ => rng.next_u64() as u32,
    }
}

/// Mutates btree node `b`; returns a description.
fn mutate_node(rng: &mut Rng, base: &Base, tree: Tree, b: u64, n: &mut Block) -> String {
    let nr = rd32(n, 16);
    let max = rd32(n, 20);
    let vs = rd32(n, 24) as usize;
    let info = base.nodes.get(&b).cloned().unwrap_or(NodeInfo {
        parent: None,
        internal: false,
    });
    let voff = |i: u32| 32 + 8 * max as usize + vs * i as usize;
    let koff = |i: u32| 32 + 8 * i as usize;
    let any_i = |rng: &mut Rng| {
        if nr == 0 {
            0
        } else {
            rng.below(nr as u64) as u32
        }
    };
    match rng.below(16) {
        0 => {
            let v = pick(
                rng,
                &[
                    0,
                    1,
                    nr.wrapping_sub(1),
                    nr + 1,
                    max,
                    max + 1,
                    u32::MAX,
                    255,
                ],
            );
            wr32(n, 16, v);
            format!("nr_entries {nr} -> {v}")
        }
        1 => {
            let v = pick(
                rng,
                &[
                    0,
                    1,
                    nr,
                    nr.wrapping_sub(1),
                    max + 3,
                    255,
                    1000,
                    u32::MAX,
                    126,
                ],
            );
            wr32(n, 20, v);
            format!("max_entries {max} -> {v}")
        }
        2 => {
            let v = pick(rng, &[0u32, 4, 8, 16, 24, 7, u32::MAX, 4096, 1024]);
            wr32(n, 24, v);
            format!("value_size {vs} -> {v}")
        }
        3 => {
            let v = pick(rng, &[0u32, 1, 2, 3, 4, u32::MAX]);
            wr32(n, 4, v);
            format!("flags -> {v}")
        }
        4 if nr >= 2 => {
            let i = rng.below(nr as u64 - 1) as u32;
            let (a, c) = (rd64(n, koff(i)), rd64(n, koff(i + 1)));
            wr64(n, koff(i), c);
            wr64(n, koff(i + 1), a);
            format!("swap keys {i},{}", i + 1)
        }
        5 => {
            // Keep the node's order valid but leave the child's range:
            // raise key i towards the next key (or far beyond).
            let i = any_i(rng);
            let k = rd64(n, koff(i));
            let next = if i + 1 < nr {
                rd64(n, koff(i + 1))
            } else {
                u64::MAX
            };
            let nk = match rng.below(3) {
                0 => next.saturating_sub(1).max(k),
                1 => k
                    .saturating_add(1 + rng.below(64))
                    .min(next.saturating_sub(1)),
                _ => k.saturating_sub(1 + rng.below(64)),
            };
            wr64(n, koff(i), nk);
            format!("key {i}: {k} -> {nk}")
        }
        6 => {
            let i = any_i(rng);
            let r = rng.next_u64();
            let v = pick(rng, &[0, 1, u64::MAX, u64::MAX - 1, r]);
            wr64(n, koff(i), v);
            format!("key {i} -> {v:#x}")
        }
        7 | 8 | 9 if info.internal || tree == Tree::Top => {
            let i = any_i(rng);
            let (v, d) = value64(rng, base, b, info.parent);
            wr64(n, voff(i), v);
            format!("child {i} -> {d} (self {b}, parent {:?})", info.parent)
        }
        10 if info.internal && nr > 0 => {
            let c = rd64(n, voff(any_i(rng)));
            for i in 0..nr {
                wr64(n, voff(i), c);
            }
            format!("all {nr} children -> {c}")
        }
        11 if !info.internal && nr > 0 => {
            let i = any_i(rng);
            match tree {
                Tree::Dev => {
                    let v = match rng.below(6) {
                        0 => NR_DATA << 24,
                        1 => ((NR_DATA - 1) << 24) | MAX_TIME,
                        2 => u64::MAX,
                        3 => 0,
                        4 => (rng.below(NR_DATA) << 24) | rng.below(1 << 24),
                        _ => rd64(n, voff(any_i(rng))),
                    };
                    wr64(n, voff(i), v);
                    format!("mapping value {i} -> {v:#x}")
                }
                Tree::MetaRc | Tree::DataRc => {
                    let v = value32(rng);
                    wr32(n, voff(i), v);
                    format!("ref count {i} -> {v}")
                }
                Tree::DataIndex => {
                    let f = rng.below(3) as usize;
                    let desc = match f {
                        0 => {
                            let (v, d) = value64(rng, base, b, info.parent);
                            wr64(n, voff(i), v);
                            d
                        }
                        _ => {
                            let v = value32(rng);
                            wr32(n, voff(i) + 4 + 4 * f, v);
                            format!("{v}")
                        }
                    };
                    format!("data index entry {i} field {f} -> {desc}")
                }
                Tree::Details => {
                    let f = rng.below(4) as usize;
                    let off = voff(i) + [0, 8, 16, 20][f];
                    if f < 2 {
                        let r = rng.next_u64();
                        let v = pick(rng, &[0, u64::MAX, r]);
                        wr64(n, off, v);
                    } else {
                        let v = value32(rng);
                        wr32(n, off, v);
                    }
                    format!("details {i} field {f}")
                }
                Tree::Top => {
                    let (v, d) = value64(rng, base, b, info.parent);
                    wr64(n, voff(i), v);
                    format!("device root {i} -> {d}")
                }
            }
        }
        12 => {
            // Copy another node (of any tree) here.
            let src = pick(rng, &base.used);
            n.copy_from_slice(base.image.block(src));
            format!("copy of block {src}")
        }
        13 => {
            let nk = rng.below(nr as u64 + 1) as u32;
            wr32(n, 16, nk);
            format!("nr_entries {nr} -> {nk} (shrink)")
        }
        _ => bit_flips(rng, n, 32),
    }
}

fn bit_flips(rng: &mut Rng, n: &mut Block, from: usize) -> String {
    let count = 1 + rng.below(8);
    let mut offs = Vec::new();
    for _ in 0..count {
        let off = from + rng.below((BLOCK_SIZE - from) as u64) as usize;
        let off = if rng.chance(50) {
            off.min(from + 200)
        } else {
            off
        };
        n[off] ^= 1 << rng.below(8);
        offs.push(off);
    }
    format!("bit flips at {offs:?}")
}

fn mutate_bitmap(rng: &mut Rng, n: &mut Block) -> String {
    match rng.below(6) {
        0 => {
            let fill = pick(rng, &[0u8, 0xff, 0x55, 0xaa]);
            n[16..].fill(fill);
            format!("bitmap filled with {fill:#x}")
        }
        1 | 2 => {
            let mut d = String::from("bitmap entries:");
            for _ in 0..1 + rng.below(20) {
                // Bias towards the start where used blocks are.
                let e = if rng.chance(70) {
                    rng.below(3000)
                } else {
                    rng.below(ENTRIES_PER_BLOCK)
                } as usize;
                let val = rng.below(4);
                let off = 16 + 8 * (e / 32);
                let mut w = rd64(n, off);
                let s = (e % 32) * 2;
                w &= !(3u64 << s);
                w |= (((val >> 1) & 1) << s) | ((val & 1) << (s + 1));
                wr64(n, off, w);
                d += &format!(" {e}={val}");
            }
            d
        }
        3 => {
            let w = 16 + 8 * rng.below(510) as usize;
            let r = rng.next_u64();
            let v = pick(rng, &[0u64, u64::MAX, r]);
            wr64(n, w, v);
            format!("bitmap word at {w} -> {v:#x}")
        }
        _ => bit_flips(rng, n, 16),
    }
}

fn mutate_index(rng: &mut Rng, base: &Base, b: u64, n: &mut Block) -> String {
    let i = if rng.chance(80) {
        rng.below(2)
    } else {
        rng.below(255)
    } as usize;
    let off = 16 + 16 * i;
    match rng.below(4) {
        0 | 1 => {
            let (v, d) = value64(rng, base, b, None);
            wr64(n, off, v);
            format!("index entry {i} blocknr -> {d}")
        }
        2 => {
            let v = value32(rng);
            wr32(n, off + 8, v);
            format!("index entry {i} nr_free -> {v}")
        }
        _ => {
            let v = value32(rng);
            wr32(n, off + 12, v);
            format!("index entry {i} none_free_before -> {v}")
        }
    }
}

fn mutate_superblock(rng: &mut Rng, base: &Base, b: u64, n: &mut Block) -> String {
    // Fields worth hitting: roots, held root, time, the sm roots.
    match rng.below(12) {
        0..=2 => {
            let off = pick(rng, &[56usize, 320, 328]);
            let (v, d) = value64(rng, base, b, None);
            wr64(n, off, v);
            format!("sb field {off} -> {d}")
        }
        3..=7 => {
            let smr = pick(rng, &[64usize, 192]);
            let f = rng.below(4) as usize;
            let r = rng.next_u64();
            let v = match f {
                0 | 1 => pick(
                    rng,
                    &[
                        0,
                        1,
                        ENTRIES_PER_BLOCK,
                        ENTRIES_PER_BLOCK + 1,
                        NR_DATA + 1,
                        NR_META + 1,
                        u64::MAX,
                        r,
                        rd64(n, smr + 8 * f) / 2,
                        rd64(n, smr + 8 * f) + 1,
                    ],
                ),
                _ => value64(rng, base, b, None).0,
            };
            wr64(n, smr + 8 * f, v);
            format!("sm root at {smr} field {f} -> {v:#x}")
        }
        8 => {
            let v = pick(rng, &[MAX_TIME as u32, MAX_TIME as u32 - 1, u32::MAX, 0]);
            wr32(n, 44, v);
            format!("time -> {v}")
        }
        9 => {
            let v = pick(rng, &[0u64, u64::MAX]);
            wr64(n, 48, v);
            format!("trans_id -> {v}")
        }
        10 => {
            let v = pick(rng, &[0u32, 1, u32::MAX]);
            wr32(n, 4, v);
            format!("flags -> {v:#x}")
        }
        _ => bit_flips(rng, n, 16),
    }
}

struct Mutation {
    seed: u64,
    desc: String,
    pokes: Vec<(u64, Box<Block>)>,
    recomputed: bool,
    /// Poke the device only after the pool was opened and read (the
    /// corruption meets cached blocks and an open transaction).
    delayed: bool,
    /// Let MemBm panic on a conflicting lock request instead of refusing
    /// it with Busy (PDATA_FUZZ_CONFLICT_PANICS=1 in the campaigns).
    conflict_panics: bool,
}

fn make_mutation(seed: u64) -> Mutation {
    let base = base();
    let mut rng = Rng::new(seed);
    let kinds: Vec<Kind> = base.kinds.keys().copied().collect();
    let nr_blocks = if rng.chance(20) { 2 + rng.below(2) } else { 1 };
    let recompute = rng.below(100) < 85;
    let mut pokes: Vec<(u64, Box<Block>)> = Vec::new();
    let mut desc = String::new();
    for _ in 0..nr_blocks {
        let k = pick(&mut rng, &kinds);
        let b = pick(&mut rng, &base.kinds[&k]);
        if pokes.iter().any(|(x, _)| *x == b) {
            // The mutators read the clean header: one mutation per block.
            continue;
        }
        let mut n = boxed(&base.image, b);
        let d = match k {
            Kind::Superblock | Kind::HeldSuperblock => mutate_superblock(&mut rng, base, b, &mut n),
            Kind::MetaIndex => mutate_index(&mut rng, base, b, &mut n),
            Kind::MetaBitmap | Kind::DataBitmap => mutate_bitmap(&mut rng, &mut n),
            Kind::Node(t) => mutate_node(&mut rng, base, t, b, &mut n),
        };
        if recompute {
            // Self pointer (unless the mutation is a bit flip there) and
            // the salted checksum, so validation passes.
            if !rng.chance(5) {
                wr64(&mut n[..], 8, b);
            }
            let c = block_checksum(&n, salt(k));
            wr32(&mut n[..], 0, c);
        }
        desc += &format!("[{k:?} block {b}: {d}] ");
        pokes.push((b, n));
    }
    desc += if recompute {
        "(checksums recomputed)"
    } else {
        "(stale checksums)"
    };
    let delayed = rng.chance(25);
    if delayed {
        desc += " (poked after open)";
    }
    Mutation {
        seed,
        desc,
        pokes,
        recomputed: recompute,
        delayed,
        conflict_panics: std::env::var("PDATA_FUZZ_CONFLICT_PANICS").is_ok(),
    }
}

//------------------------------------------------------------------------
// The workload.

/// Outcome counts of one or many iterations.
#[derive(Default, Debug, Clone)]
struct Stats {
    iterations: u64,
    opened: u64,
    recomputed: u64,
    recomputed_opened: u64,
    ok: u64,
    not_found: u64,
    errors: BTreeMap<String, u64>,
    /// Iterations where at least one call after a successful open
    /// reported corruption or I/O trouble.
    deep_errors: u64,
    biggest_alloc: usize,
}

impl Stats {
    fn note<T>(&mut self, r: &Result<T, Error>) {
        match r {
            Ok(_) => self.ok += 1,
            Err(Error::NotFound) => self.not_found += 1,
            Err(e) => *self.errors.entry(format!("{e:?}")).or_default() += 1,
        }
    }

    fn merge(&mut self, o: &Stats) {
        self.iterations += o.iterations;
        self.opened += o.opened;
        self.recomputed += o.recomputed;
        self.recomputed_opened += o.recomputed_opened;
        self.ok += o.ok;
        self.not_found += o.not_found;
        for (k, v) in &o.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        self.deep_errors += o.deep_errors;
        self.biggest_alloc = self.biggest_alloc.max(o.biggest_alloc);
    }

    fn nr_errors(&self) -> u64 {
        self.errors.values().sum()
    }
}

type Pmd = PoolMetadata<MemBm>;

/// Read-only calls over every device.
fn read_pass(pmd: &mut Pmd, rng: &mut Rng, st: &mut Stats, steps: usize) {
    let ids = pmd.device_ids();
    st.note(&ids);
    let mut ids: Vec<u64> = match ids {
        Ok(v) => v.iter().copied().take(12).collect(),
        Err(_) => base().ids.clone(),
    };
    ids.push(4);
    for &id in &ids {
        st.note(&pmd.details_of(id));
        let td = pmd.open_thin(id);
        st.note(&td);
        let Ok(td) = td else { continue };
        st.note(&pmd.mapped_count(&td));
        st.note(&pmd.device_details(&td));
        st.note(&pmd.highest_mapped(&td));
        let mut from = 0u64;
        let mut found = Vec::new();
        for _ in 0..steps {
            match pmd.next_mapping(id, from) {
                Ok(Some((k, _, _))) => {
                    found.push(k);
                    match k.checked_add(1 + rng.below(24)) {
                        Some(n) if n > from => from = n,
                        _ => break,
                    }
                }
                r => {
                    st.note(&r);
                    break;
                }
            }
        }
        for &k in found.iter().take(steps) {
            st.note(&pmd.lookup(&td, k));
        }
        for _ in 0..4 {
            let k = match rng.below(4) {
                0 => rng.next_u64(),
                1 => u64::MAX,
                _ => found
                    .last()
                    .copied()
                    .unwrap_or(0)
                    .wrapping_add(rng.below(8)),
            };
            st.note(&pmd.lookup(&td, k));
            st.note(&pmd.try_lookup(&td, k));
            let end = k.saturating_add(rng.below(300));
            st.note(&pmd.find_mapped_range(&td, k, end));
        }
        st.note(&pmd.find_mapped_range(&td, 0, 400));
        pmd.close_thin(td);
    }
    st.note(&pmd.free_data_blocks());
    st.note(&pmd.data_dev_size());
    st.note(&pmd.free_metadata_blocks());
    st.note(&pmd.metadata_dev_size());
    st.note(&pmd.metadata_snap());
    st.note(&pmd.transaction_id());
    for b in [0, 1, 2499, 16_320, 33_050, NR_DATA - 1, NR_DATA, u64::MAX] {
        let (c, s) = (pmd.data_block_count(b), pmd.block_is_shared(b));
        if b >= NR_DATA && c == Err(Error::Invalid) && s == Err(Error::Invalid) {
            // Out of range of the clean image: the expected answer.
            st.ok += 1;
        } else {
            st.note(&c);
            st.note(&s);
        }
    }
}

/// Prints an operation when PDATA_FUZZ_TRACE is set (with diag_seed).
fn trace(what: std::fmt::Arguments<'_>) {
    if std::env::var("PDATA_FUZZ_TRACE").is_ok() {
        eprintln!("op: {what}");
    }
}

/// After a failed mutating call the caller must abort.
fn mutate_step<T>(pmd: &mut Pmd, st: &mut Stats, r: Result<T, Error>) -> bool {
    st.note(&r);
    if let Err(e) = &r {
        trace(format_args!("  -> {e:?}"));
    }
    match r {
        Ok(_) => true,
        Err(Error::NotFound | Error::Exists | Error::Busy) => true,
        Err(_) => {
            st.note(&pmd.abort());
            false
        }
    }
}

fn write_pass(pmd: &mut Pmd, rng: &mut Rng, st: &mut Stats) {
    let ids = base().ids.clone();
    for _ in 0..3 {
        let id = pick(rng, &ids);
        let td = pmd.open_thin(id);
        st.note(&td);
        let Ok(td) = td else { continue };
        for _ in 0..12 {
            let v = match rng.below(4) {
                0 => rng.below(3000),
                1 => 5000 + rng.below(400),
                2 => rng.below(20_000),
                _ => rng.next_u64() >> 20,
            };
            match rng.below(5) {
                0..=2 => {
                    let b = pmd.alloc_data_block();
                    if !mutate_step(pmd, st, b.clone()) {
                        break;
                    }
                    if let Ok(b) = b {
                        trace(format_args!("insert dev {id} vblock {v} -> {b}"));
                        let r = pmd.insert(&td, v, b);
                        if !mutate_step(pmd, st, r) {
                            break;
                        }
                    }
                }
                3 => {
                    trace(format_args!("remove dev {id} vblock {v}"));
                    let r = pmd.remove(&td, v);
                    if !mutate_step(pmd, st, r) {
                        break;
                    }
                }
                _ => {
                    let e = v + rng.below(500);
                    trace(format_args!("remove_range dev {id} {v}..{e}"));
                    let r = pmd.remove_range(&td, v, e);
                    if !mutate_step(pmd, st, r) {
                        break;
                    }
                }
            }
        }
        pmd.close_thin(td);
    }
    let r = pmd.create_thin(100 + rng.below(5));
    mutate_step(pmd, st, r);
    let r = pmd.create_snap(200 + rng.below(5), pick(rng, &ids));
    mutate_step(pmd, st, r);
    let r = pmd.create_snap(300, 200);
    mutate_step(pmd, st, r);
    let r = pmd.delete_thin(pick(rng, &ids));
    mutate_step(pmd, st, r);
    let t = pmd.transaction_id().unwrap_or(0);
    let r = pmd.set_transaction_id(t, t.wrapping_add(1));
    mutate_step(pmd, st, r);
    let b = rng.below(NR_DATA);
    let r = pmd.inc_data_range(b, b + rng.below(4));
    mutate_step(pmd, st, r);
    let r = pmd.dec_data_range(b, b + 1);
    mutate_step(pmd, st, r);
    let r = pmd.commit();
    mutate_step(pmd, st, r);
    if pmd.metadata_snap().is_ok_and(|h| h != 0) {
        let r = pmd.release_metadata_snap();
        mutate_step(pmd, st, r);
    }
    let r = pmd.reserve_metadata_snap();
    mutate_step(pmd, st, r);
    if rng.chance(30) {
        let r = pmd.resize_data_dev(NR_DATA + 20_000);
        mutate_step(pmd, st, r);
        let r = pmd.resize_metadata_dev(NR_META);
        mutate_step(pmd, st, r);
    }
    let r = pmd.commit();
    mutate_step(pmd, st, r);
    // Uncommitted changes, then abort.
    if let Ok(td) = pmd.open_thin(1) {
        for v in 0..20 {
            if let Ok(b) = pmd.alloc_data_block() {
                st.note(&pmd.insert(&td, v * 3, b));
            }
        }
        pmd.close_thin(td);
    }
    st.note(&pmd.abort());
}

fn workload(m: &Mutation, st: &mut Stats) {
    let mut rng = Rng::new(m.seed ^ 0xabcd_ef01);
    let bm = MemBm::from_image(base().image.clone());
    // Corrupt trees can make pdata ask for a lock on a block it already
    // holds (a child pointing at an ancestor...); the block manager must
    // refuse it (Busy).  PDATA_FUZZ_CONFLICT_PANICS=1 turns those into
    // panics to list where they come from.
    bm.set_panic_on_conflict(m.conflict_panics);
    if !m.delayed {
        for (b, n) in &m.pokes {
            bm.poke_device(*b, n);
        }
        bm.drop_cache();
    }
    st.iterations += 1;
    if m.recomputed {
        st.recomputed += 1;
    }
    let read_only = rng.chance(10);
    let pmd = PoolMetadata::open(bm, opts(false, read_only));
    st.note(&pmd);
    let Ok(mut pmd) = pmd else { return };
    st.opened += 1;
    if m.recomputed {
        st.recomputed_opened += 1;
    }
    let errors_before = st.nr_errors();
    read_pass(&mut pmd, &mut rng, st, 200);
    if m.delayed {
        // Some blocks stay cached (clean) from the read pass; the rest
        // of the workload meets the corrupt ones.
        for (b, n) in &m.pokes {
            pmd.bm().poke_device(*b, n);
        }
        if rng.chance(50) {
            pmd.bm().drop_cache();
        }
        read_pass(&mut pmd, &mut rng, st, 50);
    }
    if !read_only {
        write_pass(&mut pmd, &mut rng, st);
        read_pass(&mut pmd, &mut rng, st, 30);
    }
    let bm = match pmd.close() {
        Ok(bm) => bm,
        Err((_, e)) => {
            st.note::<()>(&Err(e));
            return;
        }
    };
    // Reopen whatever the writes left behind.
    bm.set_read_only(false);
    if let Ok(mut pmd) = PoolMetadata::open(bm, opts(false, false)) {
        read_pass(&mut pmd, &mut rng, st, 30);
        let _ = pmd.close();
    }
    if st.nr_errors() > errors_before {
        st.deep_errors += 1;
    }
}

//------------------------------------------------------------------------
// Driver.

const HANG_LIMIT: Duration = Duration::from_secs(30);

/// Runs one iteration in its own thread; returns its stats or a failure.
fn run_one(seed: u64) -> Result<Stats, String> {
    let m = make_mutation(seed);
    let desc = m.desc.clone();
    let (tx, rx) = mpsc::channel();
    let h = std::thread::Builder::new()
        .name(format!("fuzz-seed-{seed}"))
        .stack_size(
            std::env::var("PDATA_FUZZ_STACK")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(1 << 20),
        )
        .spawn(move || {
            BIGGEST.with(|b| b.set(0));
            let mut st = Stats::default();
            workload(&m, &mut st);
            st.biggest_alloc = BIGGEST.with(|b| b.get());
            let _ = tx.send(st);
        })
        .unwrap();
    match rx.recv_timeout(HANG_LIMIT) {
        Ok(st) => {
            let _ = h.join();
            if st.biggest_alloc > ALLOC_LIMIT {
                return Err(format!(
                    "seed {seed}: allocation of {} bytes: {desc}",
                    st.biggest_alloc
                ));
            }
            Ok(st)
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let e = h.join().err();
            let msg = e
                .as_ref()
                .and_then(|e| {
                    e.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                })
                .unwrap_or_default();
            Err(format!("seed {seed}: PANIC {msg}: {desc}"))
        }
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
            "seed {seed}: HANG (no answer in {HANG_LIMIT:?}): {desc}"
        )),
    }
}

fn iterations(default: u64) -> u64 {
    std::env::var("PDATA_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Runs seeds `first..first + n` (or the single seed of PDATA_FUZZ_SEED),
/// stopping early after `budget` (default runs only); panics with every
/// failure found.
fn campaign(first: u64, default_iters: u64, budget: Duration) -> Stats {
    let only: Option<u64> = std::env::var("PDATA_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok());
    let explicit = std::env::var("PDATA_FUZZ_ITERS").is_ok();
    // PDATA_FUZZ_SEED_OFFSET shifts both campaigns to fresh seeds.
    let first = first
        + std::env::var("PDATA_FUZZ_SEED_OFFSET")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
    let seeds: Vec<u64> = match only {
        Some(s) => vec![s],
        None => (first..first + iterations(default_iters)).collect(),
    };
    let start = Instant::now();
    let mut total = Stats::default();
    let mut failures = Vec::new();
    for &seed in &seeds {
        match run_one(seed) {
            Ok(st) => total.merge(&st),
            Err(f) => {
                eprintln!("{f}");
                let hang = f.contains("HANG");
                failures.push(f);
                if hang || failures.len() >= 20 {
                    break;
                }
            }
        }
        if !explicit && only.is_none() && start.elapsed() > budget {
            break;
        }
    }
    eprintln!(
        "fuzz seeds from {first}: {} iterations in {:?}: {total:?}",
        total.iterations,
        start.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} failing seeds:\n{}",
        failures.len(),
        failures.join("\n")
    );
    total
}

//------------------------------------------------------------------------
// Tests.

/// The base image has what the fuzzer needs, and the workload runs
/// without any error on it (so errors in the campaigns come from the
/// mutations).
#[test]
fn base_image_is_rich_and_clean() {
    let b = base();
    for k in [
        Kind::Superblock,
        Kind::HeldSuperblock,
        Kind::MetaIndex,
        Kind::MetaBitmap,
        Kind::DataBitmap,
        Kind::Node(Tree::Top),
        Kind::Node(Tree::Dev),
        Kind::Node(Tree::Details),
        Kind::Node(Tree::MetaRc),
        Kind::Node(Tree::DataRc),
        Kind::Node(Tree::DataIndex),
    ] {
        assert!(b.kinds.contains_key(&k), "base image lacks {k:?}");
    }
    assert_eq!(b.kinds[&Kind::MetaBitmap].len(), 2);
    assert_eq!(b.kinds[&Kind::DataBitmap].len(), 8);
    // Device 8's tree has three levels.
    let r8 = dev_root(8);
    let n = b.image.block(r8);
    assert_eq!(rd32(n, 4) & 1, 1);
    let max = rd32(n, 20) as usize;
    let child = rd64(n, 32 + 8 * max);
    assert_eq!(
        rd32(b.image.block(child), 4) & 1,
        1,
        "device 8 needs 3 levels"
    );
    assert!(
        b.nodes.values().filter(|n| n.internal).count() >= 4,
        "device trees must have internal nodes"
    );
    // Overflow counts exist in both space maps (leaf entries > 0).
    for t in [Tree::MetaRc, Tree::DataRc] {
        let n: u32 = b.kinds[&Kind::Node(t)]
            .iter()
            .filter(|&&x| !b.nodes[&x].internal)
            .map(|&x| rd32(b.image.block(x), 16))
            .sum();
        assert!(n > 0, "{t:?} has no overflow counts");
    }
    // The clean image runs the whole workload without an error.
    let m = Mutation {
        seed: 1,
        desc: "none".into(),
        pokes: Vec::new(),
        recomputed: true,
        delayed: false,
        conflict_panics: true,
    };
    let mut st = Stats::default();
    workload(&m, &mut st);
    assert_eq!(st.opened, 1);
    assert!(st.errors.is_empty(), "errors on the clean image: {st:?}");
    assert!(st.ok > 1000, "workload too small: {st:?}");
    // thin_check agrees the base image is valid, if the tools are here.
    if host_tests::oracle::tools_available() {
        let out = host_tests::oracle::check_image(&b.image, &[]).expect("thin_check runs");
        assert!(out.success(), "thin_check: {}", out.text());
    }
}

fn check_reach(st: &Stats) {
    if st.iterations < 50 {
        return;
    }
    // Most checksum-recomputed mutations must get past open, and many
    // iterations must meet an error deeper than open.
    assert!(
        st.recomputed_opened * 2 > st.recomputed,
        "too few corrupt images open: {st:?}"
    );
    assert!(
        st.deep_errors * 10 > st.iterations,
        "too few deep errors: {st:?}"
    );
    for e in ["Corrupt(Node)", "Corrupt(Checksum)"] {
        assert!(st.errors.keys().any(|k| k == e), "never saw {e}: {st:?}");
    }
}

#[test]
fn fuzz_campaign_a() {
    let st = campaign(1, 4000, Duration::from_secs(25));
    check_reach(&st);
}

#[test]
fn fuzz_campaign_b() {
    let st = campaign(1_000_000, 4000, Duration::from_secs(25));
    check_reach(&st);
}

//------------------------------------------------------------------------
// Reproducers of bugs the campaigns found (deterministic images).

/// Root of device `id`'s mapping tree in the base image.
fn dev_root(id: u64) -> u64 {
    let img = &base().image;
    let mut b = rd64(img.block(0), 320);
    loop {
        let n = img.block(b);
        let nr = rd32(n, 16) as usize;
        let max = rd32(n, 20) as usize;
        let keys: Vec<u64> = (0..nr).map(|i| rd64(n, 32 + 8 * i)).collect();
        let i = keys.iter().rposition(|&k| k <= id).unwrap();
        let v = rd64(n, 32 + 8 * max + 8 * i);
        if rd32(n, 4) & 1 == 0 {
            assert_eq!(keys[i], id);
            return v;
        }
        b = v;
    }
}

/// The base image with btree node `b` changed by `f` (checksum and self
/// pointer recomputed).
fn with_node(b: u64, f: impl FnOnce(&mut Block)) -> Image {
    let mut n = boxed(&base().image, b);
    f(&mut n);
    wr64(&mut n[..], 8, b);
    let c = block_checksum(&n, BTREE_CSUM_XOR);
    wr32(&mut n[..], 0, c);
    let mut img = base().image.clone();
    img.set_block(b, &n);
    img
}

/// Runs `f` on the opened image in a thread; fails on a panic or if it
/// does not return within 20 s.
fn bounded<R: Send + 'static>(
    img: Image,
    what: &str,
    f: impl FnOnce(&mut Pmd) -> R + Send + 'static,
) -> R {
    let (tx, rx) = mpsc::channel();
    let h = std::thread::spawn(move || {
        let bm = MemBm::from_image(img);
        bm.set_panic_on_conflict(false);
        let mut pmd = PoolMetadata::open(bm, opts(false, false)).expect("open");
        let _ = tx.send(f(&mut pmd));
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(r) => {
            h.join().unwrap();
            r
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: hang"),
        Err(_) => panic!("{what}: panic: {:?}", h.join().err()),
    }
}

/// A separator key raised above the keys of its subtree must not make
/// `lookup_next` answer a key below the one asked for (callers stepping
/// with `k + 1`, like `device_ids` and `next_mapping` walks, would loop
/// forever).  Found by the campaigns; fixed in `btree::lookup_next`.
#[test]
fn lookup_next_never_answers_below_its_key() {
    let root = dev_root(1);
    let n = base().image.block(root);
    assert_eq!(rd32(n, 4) & 1, 1, "device 1's root must be internal");
    let (k1, k2) = (rd64(n, 40), rd64(n, 48));
    assert!(k2 > k1 + 2);
    let img = with_node(root, |n| wr64(&mut n[..], 40, k2 - 1));
    let from = k1 + 1;
    let r = bounded(img, "lookup_next", move |pmd| pmd.next_mapping(1, from));
    match r {
        Ok(Some((k, _, _))) => assert!(k >= from, "next_mapping({from}) answered {k}"),
        Ok(None) => panic!("mappings exist above {from}"),
        Err(e) => assert!(matches!(e, Error::Corrupt(_)), "{e:?}"),
    }
}

/// A device tree whose internal node points every child at one node:
/// `remove_range` must fail or finish, not loop.
#[test]
fn remove_range_over_a_dag_terminates() {
    let root = dev_root(1);
    let nr = rd32(base().image.block(root), 16);
    for c in 0..nr {
        let img = with_node(root, |n| {
            let max = rd32(&n[..], 20) as usize;
            let child = rd64(&n[..], 32 + 8 * max + 8 * c as usize);
            for i in 0..nr as usize {
                wr64(&mut n[..], 32 + 8 * max + 8 * i, child);
            }
        });
        let what = format!("remove_range with all children -> child {c}");
        let _ = bounded(img, &what, |pmd| {
            let td = pmd.open_thin(1).unwrap();
            let r = pmd.remove_range(&td, 0, 3000);
            pmd.close_thin(td);
            r
        });
    }
}

/// The first separator of a device tree's root raised above the lowest
/// mappings (node order still valid): `lookup_next` finds vblock 0
/// (upstream's walk descends into child 0 when the key is below every
/// separator) but the removal walk answers "not found" for it, so
/// `remove_leaves` removed nothing and `PoolMetadata::remove_range`
/// (like upstream `__remove_range`) repeated lookup_next/remove_leaves
/// forever.  Fixed in `btree::remove_leaves` (corruption when
/// `lookup_next` sees the first key but the removal walk does not).
#[test]
fn remove_range_with_raised_first_separator_terminates() {
    let root = dev_root(1);
    let n = base().image.block(root);
    assert_eq!(rd32(n, 4) & 1, 1, "device 1's root must be internal");
    assert_eq!(rd64(n, 32), 0);
    assert!(rd64(n, 40) > 10);
    let img = with_node(root, |n| wr64(&mut n[..], 32, 10));
    let r = bounded(img, "remove_range(0, 5)", |pmd| {
        let td = pmd.open_thin(1).unwrap();
        // The mapping is visible to lookup_next ...
        let first = pmd.next_mapping(1, 0);
        let r = pmd.remove_range(&td, 0, 5);
        pmd.close_thin(td);
        (first, r)
    });
    assert_eq!(r.0.map(|m| m.map(|x| x.0)), Ok(Some(0)));
    assert!(matches!(r.1, Err(Error::Corrupt(_))), "{:?}", r.1);
}

/// A device tree node with both the INTERNAL and LEAF flags: lookups
/// took it for internal, removal for a leaf (deleting child pointers as
/// if they were mappings), and remove_range looped.  Now refused.
#[test]
fn node_with_both_kind_flags_is_refused() {
    let root = dev_root(1);
    let img = with_node(root, |n| wr32(&mut n[..], 4, 3));
    let r = bounded(img, "both flags", |pmd| {
        let td = pmd.open_thin(1).unwrap();
        let l = pmd.lookup(&td, 5);
        let rr = pmd.remove_range(&td, 0, 1000);
        pmd.close_thin(td);
        (l, rr)
    });
    assert!(matches!(r.0, Err(Error::Corrupt(_))), "{:?}", r.0);
    assert!(matches!(r.1, Err(Error::Corrupt(_))), "{:?}", r.1);
}

/// The metadata space map's overflow-tree root moved to a block the
/// bitmaps call free (a copy of the real root, so it validates): the
/// allocator hands that very block out when the tree is shadowed, and
/// the shadow would read-lock and zero-lock one block at once (with
/// dm-bufio: two guards aliasing one buffer; MemBm panics).  `Tm::shadow`
/// now refuses a new block equal to the original.
#[test]
fn shadow_onto_a_free_listed_block_is_refused() {
    let b = base();
    let sb0 = b.image.block(0);
    let rc_root = rd64(&sb0[192..224], 24);
    let bitmap0 = rd64(b.image.block(rd64(&sb0[192..224], 16)), 16);
    let bm0 = b.image.block(bitmap0);
    let nfb = rd32(b.image.block(rd64(&sb0[192..224], 16)), 16 + 12) as usize;
    // The first free block goes to the bitmap's own shadow, the second
    // to the overflow tree's root.
    let f = (nfb..ENTRIES_PER_BLOCK as usize)
        .filter(|&e| (rd64(bm0, 16 + 8 * (e / 32)) >> ((e % 32) * 2)) & 3 == 0)
        .nth(1)
        .unwrap() as u64;
    let rc = b.image.block(rc_root);
    assert_eq!(rd32(rc, 4), 2, "overflow tree root must be a leaf");
    let counted = rd64(rc, 32); // a block with a count >= 3
    let mut n = boxed(&b.image, rc_root);
    wr64(&mut n[..], 8, f);
    let c = block_checksum(&n, BTREE_CSUM_XOR);
    wr32(&mut n[..], 0, c);
    let mut sb = boxed(&b.image, 0);
    wr64(&mut sb[..], 192 + 24, f);
    let c = block_checksum(&sb, SUPERBLOCK_CSUM_XOR);
    wr32(&mut sb[..], 0, c);
    let mut img = b.image.clone();
    img.set_block(f, &n);
    img.set_block(0, &sb);
    let bm = MemBm::from_image(img); // panics on a conflicting lock
    let mut st = TmState::open(&bm, &sb[192..224]).expect("open the metadata space map");
    let mut tm = Tm::new(&bm, &mut st);
    assert_eq!(tm.ref_count(counted).map(|c| c >= 3), Ok(true));
    // The first allocation of the transaction is the overflow tree's
    // shadow, and it would be `f` itself.
    assert_eq!(
        tm.inc(counted),
        Err(Error::Corrupt(pdata::pdata::error::Corruption::SpaceMap))
    );
}
