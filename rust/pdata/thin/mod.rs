//! Thin-provisioning metadata in upstream's on-disk format
//! (`drivers/md/dm-thin-metadata.c`): the superblock, device details,
//! packed block/time mapping values, and the pool metadata object that
//! creates, snapshots and deletes thin devices, maps virtual blocks and
//! commits or aborts transactions.

pub mod block_time;
pub mod device_details;
pub mod metadata;
pub mod superblock;
