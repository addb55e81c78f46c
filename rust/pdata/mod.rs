//! Persistent data for dm-thin: the block manager interface, transaction
//! manager, space maps, btree and the thin metadata, in upstream's on-disk
//! format.
//!
//! This tree is shared: the kernel module mounts it with
//! `#[path = "pdata/mod.rs"] pub mod pdata;` and the host crate
//! `rust/pdata-host` mounts it the same way, so `crate::pdata::…` and
//! `crate::env::…` resolve identically in both.  Files here use `core` only
//! (no `std::`, no `alloc::`, no `kernel::`); whatever depends on the
//! platform (growable vectors with fallible allocation, boxes, crc32c)
//! comes from the crate root's `env` module, and block I/O comes through
//! the [`block_manager::BlockManager`] trait.

pub mod block_manager;
pub mod btree;
pub mod checksum;
pub mod error;
pub mod space_map;
pub mod thin;
pub mod transaction_manager;
pub mod validators;
