//! Host build of the shared persistent-data tree (`rust/pdata`), for unit,
//! property and crash tests with cargo.  The crate is `no_std` like the
//! kernel module, so a `std::` or `alloc::` path inside `rust/pdata` fails
//! to compile here just as it would in the kernel; only this file's `env`
//! module uses `alloc`.

#![no_std]
#![deny(
    missing_docs,
    unreachable_pub,
    rust_2018_idioms,
    unsafe_op_in_unsafe_fn
)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod env;

#[path = "../pdata/mod.rs"]
pub mod pdata;

/// Table-line parsing of the two targets (pure, shared with the module).
#[path = "../thin/table.rs"]
pub mod table;

/// `thin-pool` message parsing (pure, shared with the module).
#[path = "../thin/message.rs"]
pub mod message;

/// The pool mode state machine (pure, shared with the module).
#[path = "../thin/mode.rs"]
pub mod mode;

/// The pool's lock-free mapping cache (pure, shared with the module).
#[path = "../thin/map_cache.rs"]
pub mod map_cache;
