//! Thin-provisioning metadata in upstream's on-disk format
//! (`drivers/md/dm-thin-metadata.c`): the superblock, device details,
//! packed block/time mapping values, the pool metadata object that
//! creates, snapshots and deletes thin devices, maps virtual blocks and
//! commits or aborts transactions, and lookups on the committed roots
//! that run concurrently with the writer ([`committed`]).

pub mod block_time;
pub mod committed;
pub mod device_details;
pub mod metadata;
pub mod superblock;

pub use committed::{lookup_committed, CommitHook, Roots, RootsCell};
