//! Lookups on the committed roots while one writer modifies the metadata:
//! `SyncBm` basics, `PoolMetadata::committed_roots`, the `RootsCell`
//! publication hook, the space-map rule that keeps the last committed tree
//! intact during a transaction (and its limit: the tree after the next
//! commit is fair game), and a multi-threaded run of one writer against
//! several readers checked against a model per commit generation.
//!
//! `PDATA_BIG=1` runs the multi-threaded test longer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use host_tests::mem_bm::MemBm;
use host_tests::rng::Rng;
use host_tests::sync_bm::SyncBm;
use pdata::pdata::block_manager::BlockManager;
use pdata::pdata::error::Error;
use pdata::pdata::thin::committed::{lookup_committed_details, Published};
use pdata::pdata::thin::metadata::{OpenOptions, PoolMetadata};
use pdata::pdata::thin::{lookup_committed, Roots, RootsCell};
use pdata::pdata::validators::BTREE_NODE;

const DBS: u32 = 128;

fn opts() -> OpenOptions {
    OpenOptions {
        data_block_size: DBS,
        format: true,
        read_only: false,
    }
}

fn assert_send_sync<T: Send + Sync>() {}
fn assert_send<T: Send>() {}

//------------------------------------------------------------------------
// SyncBm.

#[test]
fn sync_bm_is_send_sync_and_guards_cross_threads() {
    assert_send_sync::<SyncBm>();
    assert_send::<host_tests::sync_bm::SyncReadGuard<'static>>();
    assert_send::<host_tests::sync_bm::SyncWriteGuard<'static>>();

    let bm = SyncBm::new(16);
    // Blocks 1..4 carry a valid btree node through a real pool format.
    let pmd = PoolMetadata::open(&bm, opts()).unwrap();
    let root = pmd.committed_roots().mapping_root;
    drop(pmd);
    // A read guard taken here and dropped on another thread.
    let g = bm.read_lock(root, &BTREE_NODE).unwrap();
    assert_eq!(bm.locked_count(), 1);
    std::thread::scope(|s| {
        s.spawn(move || drop(g));
    });
    assert_eq!(bm.locked_count(), 0);
}

#[test]
fn sync_bm_readers_share_writer_excludes() {
    let bm = SyncBm::new(16);
    let pmd = PoolMetadata::open(&bm, opts()).unwrap();
    let root = pmd.committed_roots().mapping_root;
    drop(pmd);
    let r1 = bm.read_lock(root, &BTREE_NODE).unwrap();
    let r2 = bm.read_try_lock(root, &BTREE_NODE).unwrap();
    assert_eq!(r1[..], r2[..]);
    let released = AtomicBool::new(false);
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            // Waits for both readers.
            let mut w = bm.write_lock(root, &BTREE_NODE).unwrap();
            assert!(
                released.load(Ordering::SeqCst),
                "writer got in while read-locked"
            );
            w[100] ^= 1;
        });
        std::thread::sleep(Duration::from_millis(50));
        released.store(true, Ordering::SeqCst);
        drop(r1);
        drop(r2);
        h.join().unwrap();
    });
    assert!(bm.stats().waits >= 1);
    // While a writer holds it, try-lock answers WouldBlock.
    let w = bm.write_lock(root, &BTREE_NODE).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            assert_eq!(
                bm.read_try_lock(root, &BTREE_NODE).err(),
                Some(Error::WouldBlock)
            );
        });
    });
    drop(w);
    assert!(bm.stats().locked_would_block >= 1);
}

#[test]
fn sync_bm_cache_miss_would_block_prefetch_and_flush() {
    let bm = SyncBm::new(64);
    let mut pmd = PoolMetadata::open(&bm, opts()).unwrap();
    pmd.resize_data_dev(100).unwrap();
    pmd.create_thin(1).unwrap();
    let td = pmd.open_thin(1).unwrap();
    let b = pmd.alloc_data_block().unwrap();
    pmd.insert(&td, 7, b).unwrap();
    pmd.close_thin(td);
    // Dirty blocks cannot be dropped.
    assert!(bm.dirty_count() > 0);
    pmd.commit().unwrap();
    assert_eq!(bm.dirty_count(), 0);
    let roots = pmd.committed_roots();
    assert!(bm.drop_clean() > 0);
    assert_eq!(bm.cached_count(), 0);
    // Non-blocking: a miss answers WouldBlock, never a wrong answer.
    assert_eq!(
        lookup_committed(&bm, &roots, 1, 7, false).err(),
        Some(Error::WouldBlock)
    );
    // Prefetching the path makes it succeed without I/O.
    let mut tries = 0;
    let got = loop {
        match lookup_committed(&bm, &roots, 1, 7, false) {
            Ok(x) => break x,
            Err(Error::WouldBlock) => {
                // Blocking lookup loads the path (the worker's job).
                lookup_committed(&bm, &roots, 1, 7, true).unwrap();
                tries += 1;
                assert!(tries < 3);
            }
            Err(e) => panic!("{e:?}"),
        }
    };
    assert_eq!(got, Some((b, 0)));
    let reads = bm.stats().reads;
    assert_eq!(
        lookup_committed(&bm, &roots, 1, 7, false).unwrap(),
        Some((b, 0))
    );
    assert_eq!(bm.stats().reads, reads, "non-blocking lookup did I/O");
    bm.drop_clean();
    bm.prefetch(roots.mapping_root);
    assert!(bm.is_cached(roots.mapping_root));
    // The flushed device reopens to the same state.
    drop(pmd);
    let bm2 = SyncBm::from_image(bm.image());
    let pmd2 = PoolMetadata::open(
        &bm2,
        OpenOptions {
            format: false,
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(pmd2.committed_roots(), roots);
    assert_eq!(
        lookup_committed(&bm2, &roots, 1, 7, true).unwrap(),
        Some((b, 0))
    );
}

//------------------------------------------------------------------------
// Committed roots and the publication hook.

#[test]
fn committed_roots_are_those_of_the_last_commit() {
    let bm = MemBm::new(256);
    let cell = RootsCell::new();
    let mut pmd = PoolMetadata::open_with_hook(&bm, opts(), &cell).unwrap();
    let p0 = cell.load().unwrap();
    assert_eq!(p0.generation, 1);
    assert_eq!(p0.roots, pmd.committed_roots());
    pmd.resize_data_dev(1000).unwrap();
    pmd.create_thin(1).unwrap();
    let td = pmd.open_thin(1).unwrap();
    let b = pmd.alloc_data_block().unwrap();
    pmd.insert(&td, 5, b).unwrap();
    // The transaction sees the mapping; the committed roots do not.
    assert_eq!(pmd.lookup(&td, 5).unwrap().block, b);
    assert_eq!(pmd.committed_roots(), p0.roots);
    assert_eq!(lookup_committed(&bm, &p0.roots, 1, 5, true).unwrap(), None);
    assert_eq!(
        lookup_committed_details(&bm, &p0.roots, 1, true).unwrap(),
        None
    );
    assert_eq!(cell.generation(), 1);
    pmd.commit().unwrap();
    let p1 = cell.load().unwrap();
    assert_eq!(p1.generation, 2);
    assert_eq!(p1.roots, pmd.committed_roots());
    assert_ne!(p1.roots, p0.roots);
    assert!(!cell.is_current(&p0));
    assert!(cell.is_current(&p1));
    assert_eq!(
        lookup_committed(&bm, &p1.roots, 1, 5, true).unwrap(),
        Some((b, 0))
    );
    assert_eq!(
        lookup_committed_details(&bm, &p1.roots, 1, true)
            .unwrap()
            .unwrap()
            .mapped_blocks,
        1
    );
    assert_eq!(cell.lookup(&bm, 1, 5, true).unwrap(), (2, Some((b, 0))));
    assert_eq!(cell.lookup(&bm, 1, 6, true).unwrap(), (2, None));
    assert_eq!(cell.lookup(&bm, 9, 5, true).unwrap(), (2, None));

    // A commit that writes nothing (pool not in service since open)
    // publishes nothing.
    pmd.close_thin(td);
    drop(pmd);
    let cell2 = RootsCell::new();
    let mut re = PoolMetadata::open_with_hook(
        &bm,
        OpenOptions {
            format: false,
            ..opts()
        },
        &cell2,
    )
    .unwrap();
    assert_eq!(cell2.load().unwrap().roots, p1.roots);
    re.commit().unwrap();
    assert_eq!(cell2.generation(), 1, "a no-op commit published");

    // An internal commit (metadata snapshot) publishes too.
    re.reserve_metadata_snap().unwrap();
    assert_eq!(cell2.generation(), 2);
    assert_eq!(cell2.load().unwrap().roots, re.committed_roots());
}

#[test]
fn failed_commit_withdraws_roots_until_abort() {
    let bm = MemBm::new(256);
    let cell = RootsCell::new();
    let mut pmd = PoolMetadata::open_with_hook(&bm, opts(), &cell).unwrap();
    pmd.resize_data_dev(1000).unwrap();
    pmd.create_thin(1).unwrap();
    pmd.commit().unwrap();
    let good = cell.load().unwrap();
    let td = pmd.open_thin(1).unwrap();
    let b = pmd.alloc_data_block().unwrap();
    pmd.insert(&td, 1, b).unwrap();
    bm.fail_nth_flush(1);
    assert!(pmd.commit().is_err());
    assert_eq!(cell.load().err(), Some(Error::WouldBlock));
    assert_eq!(cell.lookup(&bm, 1, 1, true).err(), Some(Error::WouldBlock));
    assert!(!cell.is_current(&good));
    bm.clear_faults();
    pmd.abort().unwrap();
    let after = cell.load().unwrap();
    assert_eq!(after.generation, good.generation + 2);
    assert_eq!(after.roots, pmd.committed_roots());
    // The first flush failed before the superblock was written: the
    // committed state is the old one.
    assert_eq!(after.roots, good.roots);
    assert_eq!(cell.lookup(&bm, 1, 1, true).unwrap().1, None);
    pmd.close_thin(td);
}

//------------------------------------------------------------------------
// The space-map rule, single-threaded and deterministic.

/// Maps `n` virtual blocks of `dev` starting at `from`, returning the
/// model entries.
fn fill(
    pmd: &mut PoolMetadata<&MemBm>,
    dev: u64,
    from: u64,
    n: u64,
) -> Result<Vec<(u64, u64, u32)>, Error> {
    let td = pmd.open_thin(dev)?;
    let mut out = Vec::new();
    let mut r = Ok(());
    for v in from..from + n {
        let b = match pmd.alloc_data_block() {
            Ok(b) => b,
            Err(e) => {
                r = Err(e);
                break;
            }
        };
        if let Err(e) = pmd.insert(&td, v * 3, b) {
            r = Err(e);
            break;
        }
        out.push((v * 3, b, pmd.time()));
    }
    pmd.close_thin(td);
    r.map(|()| out)
}

/// Blocks of the two-level mapping tree under `root` (top level and
/// every device tree).
fn tree_blocks(bm: &MemBm, root: u64) -> std::collections::BTreeSet<u64> {
    use pdata::pdata::btree::node;
    let mut out = std::collections::BTreeSet::new();
    let mut stack = vec![(root, 0u32)];
    while let Some((b, level)) = stack.pop() {
        if !out.insert(b) {
            continue;
        }
        let g = bm.read_lock(b, &BTREE_NODE).unwrap();
        for i in 0..node::nr_entries(&g) {
            if node::is_internal(&g) {
                stack.push((node::value64(&g, i), level));
            } else if level == 0 {
                stack.push((node::value64(&g, i), 1));
            }
        }
    }
    out
}

/// Number of lookups on `roots` that do not give the model's answer
/// (wrong mapping or error).
fn wrong_answers(bm: &MemBm, roots: &Roots, dev: u64, model: &[(u64, u64, u32)]) -> usize {
    model
        .iter()
        .filter(|&&(v, b, t)| lookup_committed(bm, roots, dev, v, true) != Ok(Some((b, t))))
        .count()
}

/// Transaction 2 frees the whole tree of commit 1 and then allocates
/// metadata until the space map is exhausted (so the allocator wraps
/// around and visits every block): the tree of commit 1 must stay intact,
/// because its blocks, free now, were allocated at the last commit.
/// After commit 2, transaction 3 may and does reuse those blocks: roots
/// must not be held across two commits (the negative control that shows
/// the first check can fail).
#[test]
fn last_committed_tree_survives_a_transaction_but_not_two() {
    let bm = MemBm::new(192);
    let mut pmd = PoolMetadata::open(&bm, opts()).unwrap();
    pmd.resize_data_dev(1 << 17).unwrap();
    pmd.create_thin(1).unwrap();
    let model1 = fill(&mut pmd, 1, 0, 3000).unwrap();
    pmd.commit().unwrap();
    let r1 = pmd.committed_roots();
    assert_eq!(wrong_answers(&bm, &r1, 1, &model1), 0);
    let r1_blocks = tree_blocks(&bm, r1.mapping_root);
    assert!(r1_blocks.len() > 10);

    // Transaction 2a: delete device 1, allocate until no metadata space.
    pmd.delete_thin(1).unwrap();
    pmd.create_thin(2).unwrap();
    let mut n = 0u64;
    let err = loop {
        match fill(&mut pmd, 2, n, 100) {
            Ok(_) => n += 100,
            Err(e) => break e,
        }
        assert_eq!(
            wrong_answers(&bm, &r1, 1, &model1),
            0,
            "transaction 2 overwrote a block of the committed tree after {n} inserts"
        );
    };
    assert_eq!(err, Error::NoSpace);
    assert!(n > 20_000, "test setup: only {n} inserts before NoSpace");
    bm.drop_cache();
    assert_eq!(wrong_answers(&bm, &r1, 1, &model1), 0);
    pmd.abort().unwrap();
    assert_eq!(pmd.committed_roots(), r1);

    // Transaction 2b: the same, stopping short of full, and commit.
    pmd.delete_thin(1).unwrap();
    pmd.create_thin(2).unwrap();
    let mut n2 = 0u64;
    while pmd.free_metadata_blocks().unwrap() > 3 {
        fill(&mut pmd, 2, n2, 100).unwrap();
        n2 += 100;
    }
    pmd.commit().unwrap();
    // Commit 2 itself reuses nothing of R1.
    assert_eq!(wrong_answers(&bm, &r1, 1, &model1), 0);
    let r2 = pmd.committed_roots();
    assert!(tree_blocks(&bm, r2.mapping_root).is_disjoint(&r1_blocks));

    // Transaction 3: the blocks of R1 are free in the committed state now
    // and get reused, so R1 goes stale.
    pmd.delete_thin(2).unwrap();
    pmd.create_thin(3).unwrap();
    let mut n3 = 0;
    let mut stale = 0;
    while stale == 0 {
        match fill(&mut pmd, 3, n3, 100) {
            Ok(_) => n3 += 100,
            Err(e) => {
                assert_eq!(e, Error::NoSpace);
                stale = wrong_answers(&bm, &r1, 1, &model1);
                break;
            }
        }
        stale = wrong_answers(&bm, &r1, 1, &model1);
    }
    assert!(
        stale > 0,
        "expected R1 to be overwritten in the second transaction after it ({n3} inserts)"
    );
}

//------------------------------------------------------------------------
// One writer, many readers.

/// The committed state of one generation: mappings and mapped counts.
#[derive(Clone, Default)]
struct GenModel {
    maps: HashMap<(u64, u64), (u64, u32)>,
    devs: HashMap<u64, u64>,
}

struct Shared {
    models: Mutex<HashMap<u64, Arc<GenModel>>>,
    stop: AtomicBool,
    checked: AtomicU64,
    mapped_hits: AtomicU64,
    would_block: AtomicU64,
    stale: AtomicU64,
    details_checked: AtomicU64,
}

impl Shared {
    fn model(&self, generation: u64) -> Arc<GenModel> {
        self.models
            .lock()
            .unwrap()
            .get(&generation)
            .cloned()
            .unwrap_or_else(|| panic!("no model for generation {generation}"))
    }
}

const VBLOCKS: u64 = 1000;
const MAX_DEV: u64 = 8;

fn check_answer(
    sh: &Shared,
    generation: u64,
    dev: u64,
    vblock: u64,
    got: Option<(u64, u32)>,
    how: &str,
) {
    let m = sh.model(generation);
    let want = m.maps.get(&(dev, vblock)).copied();
    assert_eq!(
        got, want,
        "{how} lookup of dev {dev} vblock {vblock} at generation {generation}"
    );
    sh.checked.fetch_add(1, Ordering::Relaxed);
    if got.is_some() {
        sh.mapped_hits.fetch_add(1, Ordering::Relaxed);
    }
}

fn reader(bm: &SyncBm, cell: &RootsCell, sh: &Shared, seed: u64) {
    let mut rng = Rng::new(seed);
    let pick = |rng: &mut Rng| -> (u64, u64) {
        // Mostly hit mapped ranges.
        (rng.below(MAX_DEV), rng.below(VBLOCKS))
    };
    while !sh.stop.load(Ordering::Relaxed) {
        match rng.below(3) {
            0 => {
                // Convenience API: retries on races.
                let (dev, v) = pick(&mut rng);
                let blocking = rng.chance(50);
                match cell.lookup(bm, dev, v, blocking) {
                    Ok((g, got)) => check_answer(sh, g, dev, v, got, "cell"),
                    Err(Error::WouldBlock) => {
                        sh.would_block.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => panic!("cell lookup ({blocking}) of {dev}/{v}: {e:?}"),
                }
            }
            1 => {
                // Hold one set of roots for a batch of lookups (a slow
                // reader): every answer is checked only while the roots
                // are current.
                let p: Published = match cell.load() {
                    Ok(p) => p,
                    Err(_) => continue,
                };
                for _ in 0..rng.below(200) + 1 {
                    let (dev, v) = pick(&mut rng);
                    let blocking = rng.chance(30);
                    let r = lookup_committed(bm, &p.roots, dev, v, blocking);
                    if !cell.is_current(&p) {
                        sh.stale.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    match r {
                        Ok(got) => check_answer(sh, p.generation, dev, v, got, "held-roots"),
                        Err(Error::WouldBlock) if !blocking => {
                            sh.would_block.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!(
                            "lookup ({blocking}) of {dev}/{v} on current roots \
                             (generation {}): {e:?}",
                            p.generation
                        ),
                    }
                }
            }
            _ => {
                // Device details.
                let p = match cell.load() {
                    Ok(p) => p,
                    Err(_) => continue,
                };
                let dev = rng.below(MAX_DEV);
                let r = lookup_committed_details(bm, &p.roots, dev, true);
                if !cell.is_current(&p) {
                    sh.stale.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let got = r.unwrap_or_else(|e| panic!("details of {dev}: {e:?}"));
                let want = sh.model(p.generation).devs.get(&dev).copied();
                assert_eq!(
                    got.map(|d| d.mapped_blocks),
                    want,
                    "details of dev {dev} at generation {}",
                    p.generation
                );
                sh.details_checked.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The writer: random transactions of inserts, overwrites, removes,
/// snapshots, device creation and deletion, commits, aborts and metadata
/// snapshots.  Registers the model of every generation before the commit
/// that publishes it.
fn writer(bm: &SyncBm, cell: &RootsCell, sh: &Shared, seed: u64, deadline: Instant) -> u64 {
    let mut rng = Rng::new(seed);
    let mut pmd = PoolMetadata::open_with_hook(bm, opts(), cell).unwrap();
    pmd.resize_data_dev(1 << 17).unwrap();
    let mut cur = GenModel::default();
    let mut committed = cur.clone();
    let register = |g: u64, m: &GenModel| {
        sh.models.lock().unwrap().insert(g, Arc::new(m.clone()));
    };
    // Generation 1 was published at open (empty pool); so was the resize
    // commit below.
    register(cell.generation(), &committed);
    register(cell.generation() + 1, &committed);
    pmd.commit().unwrap();
    let mut commits = 0u64;
    while Instant::now() < deadline {
        let ops = 1 + rng.below(120);
        for _ in 0..ops {
            let dev = rng.below(MAX_DEV);
            let exists = cur.devs.contains_key(&dev);
            match rng.below(100) {
                0..=2 if !exists => {
                    pmd.create_thin(dev).unwrap();
                    cur.devs.insert(dev, 0);
                }
                3 if exists => {
                    let snap = rng.below(MAX_DEV);
                    if cur.devs.contains_key(&snap) {
                        continue;
                    }
                    pmd.create_snap(snap, dev).unwrap();
                    let copied: Vec<_> = cur
                        .maps
                        .iter()
                        .filter(|((d, _), _)| *d == dev)
                        .map(|((_, v), x)| (*v, *x))
                        .collect();
                    for (v, x) in copied {
                        cur.maps.insert((snap, v), x);
                    }
                    let n = cur.devs[&dev];
                    cur.devs.insert(snap, n);
                }
                4 if exists && cur.devs.len() > 3 && rng.chance(5) => {
                    pmd.delete_thin(dev).unwrap();
                    cur.maps.retain(|(d, _), _| *d != dev);
                    cur.devs.remove(&dev);
                }
                5..=69 if exists => {
                    let v = rng.below(VBLOCKS);
                    let td = pmd.open_thin(dev).unwrap();
                    let b = pmd.alloc_data_block().unwrap();
                    pmd.insert(&td, v, b).unwrap();
                    pmd.close_thin(td);
                    if cur.maps.insert((dev, v), (b, pmd.time())).is_none() {
                        *cur.devs.get_mut(&dev).unwrap() += 1;
                    }
                }
                70..=99 if exists => {
                    let v = rng.below(VBLOCKS);
                    let td = pmd.open_thin(dev).unwrap();
                    let r = pmd.remove(&td, v);
                    pmd.close_thin(td);
                    match cur.maps.remove(&(dev, v)) {
                        Some(_) => {
                            r.unwrap();
                            *cur.devs.get_mut(&dev).unwrap() -= 1;
                        }
                        None => assert_eq!(r, Err(Error::NotFound)),
                    }
                }
                _ => {}
            }
        }
        match rng.below(20) {
            0 => {
                // Abort: back to the last commit, republished.
                register(cell.generation() + 1, &committed);
                pmd.abort().unwrap();
                cur = committed.clone();
            }
            1 => {
                // Metadata snapshot: commits internally.
                register(cell.generation() + 1, &cur);
                committed = cur.clone();
                if pmd.metadata_snap().unwrap() != 0 {
                    pmd.release_metadata_snap().unwrap();
                }
                pmd.reserve_metadata_snap().unwrap();
                commits += 1;
            }
            _ => {
                register(cell.generation() + 1, &cur);
                committed = cur.clone();
                pmd.commit().unwrap();
                commits += 1;
            }
        }
        if rng.chance(10) {
            // Cache pressure: later non-blocking lookups miss.
            bm.drop_clean();
        }
    }
    sh.stop.store(true, Ordering::Relaxed);
    commits
}

#[test]
fn one_writer_many_readers_on_committed_roots() {
    let big = std::env::var("PDATA_BIG").is_ok();
    let run = Duration::from_millis(if big { 20_000 } else { 3_000 });
    let bm = SyncBm::new(1024);
    let cell = RootsCell::new();
    let sh = Shared {
        models: Mutex::new(HashMap::new()),
        stop: AtomicBool::new(false),
        checked: AtomicU64::new(0),
        mapped_hits: AtomicU64::new(0),
        would_block: AtomicU64::new(0),
        stale: AtomicU64::new(0),
        details_checked: AtomicU64::new(0),
    };
    let deadline = Instant::now() + run;
    let commits = std::thread::scope(|s| {
        let w = s.spawn(|| {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                writer(&bm, &cell, &sh, 0xC0FFEE, deadline)
            }));
            sh.stop.store(true, Ordering::Relaxed);
            r.unwrap_or_else(|e| std::panic::resume_unwind(e))
        });
        // Wait for the first publication before starting readers.
        while cell.generation() < 2 {
            std::thread::yield_now();
        }
        let readers: Vec<_> = (0..4u64)
            .map(|i| {
                let (bm, cell, sh) = (&bm, &cell, &sh);
                s.spawn(move || {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        reader(bm, cell, sh, 1000 + i)
                    }));
                    if r.is_err() {
                        sh.stop.store(true, Ordering::Relaxed);
                    }
                    r.unwrap_or_else(|e| std::panic::resume_unwind(e))
                })
            })
            .collect();
        for r in readers {
            r.join().unwrap();
        }
        w.join().unwrap()
    });
    let st = bm.stats();
    let checked = sh.checked.load(Ordering::Relaxed);
    let hits = sh.mapped_hits.load(Ordering::Relaxed);
    let wb = sh.would_block.load(Ordering::Relaxed);
    let stale = sh.stale.load(Ordering::Relaxed);
    let details = sh.details_checked.load(Ordering::Relaxed);
    eprintln!(
        "commits {commits}, generations {}, lookups checked {checked} (mapped {hits}), \
         details checked {details}, would-block {wb}, stale discarded {stale}, bm {st:?}",
        cell.generation()
    );
    // The run must have exercised what it claims to.
    assert!(commits >= 20, "only {commits} commits");
    assert!(checked >= 10_000, "only {checked} lookups checked");
    assert!(hits >= 1_000, "only {hits} lookups found a mapping");
    assert!(details >= 100);
    assert!(wb > 0, "no non-blocking lookup ever missed the cache");
    assert!(stale > 0, "no reader ever held roots across a commit");
}
