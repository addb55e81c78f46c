//! Host-side test support for the persistent-data layer (std allowed here).
//!
//! - [`mem_bm`]: an in-memory block manager with a separate cache and
//!   device, fault injection and power-cut / torn-write simulation;
//! - [`oracle`]: thin-provisioning-tools (`thin_check`, `thin_dump`,
//!   `thin_restore`) as an oracle, with a plain metadata model and its XML;
//! - [`rng`]: a seeded PRNG for reproducible randomized tests;
//! - [`sync_bm`]: a thread-safe in-memory block manager (per-block
//!   reader/writer locks, droppable cache) for concurrency tests.

#![deny(missing_docs)]

pub mod mem_bm;
pub mod oracle;
pub mod rng;
pub mod sync_bm;
