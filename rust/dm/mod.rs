// SPDX-License-Identifier: GPL-2.0

//! The safe device-mapper layer: everything the targets need from dm core
//! and the block layer, wrapped so that the targets contain no `unsafe`.
//!
//! - [`target`]: target registration (`dm_register_target` inside pin-init,
//!   unregistration on drop), the [`target::Target`] trait and the C
//!   trampolines;
//! - [`args`]: the `argc/argv` of constructors and messages;
//! - [`status`]: a `fmt::Write` sink over dm's status buffer with DMEMIT
//!   semantics (truncates, always NUL-terminated, never past `maxlen`);
//! - [`dev`]: `dm_dev` get/put as an owned handle;
//! - [`bufio`]: the persistent-data block manager over dm-bufio;
//! - [`bio`]: the bio handed to `map`, which can only leave `map` by being
//!   remapped, killed or requeued;
//! - [`log`]: kernel log lines in upstream's `device-mapper: thin: ` form;
//! - [`bdev`]: block devices the module holds open itself (the pool's);
//! - [`sync`]: a reader/writer semaphore with try-read, and the pool table
//!   lock; [`worker`]: an ordered workqueue with a periodic waker;
//!   [`kcopyd`]: block zeroing and copying through dm-kcopyd; [`dset`]:
//!   in-flight I/O counted by generation; [`params`]: module parameters; all over `glue.c`, the C
//!   object linked into the module for what has no Rust binding.

#[macro_use]
pub(crate) mod log;
pub(crate) mod args;
pub(crate) mod bdev;
pub(crate) mod bio;
pub(crate) mod bufio;
pub(crate) mod dev;
pub(crate) mod dset;
mod glue;
pub(crate) mod kcopyd;
pub(crate) mod params;
pub(crate) mod status;
pub(crate) mod sync;
pub(crate) mod target;
pub(crate) mod worker;
