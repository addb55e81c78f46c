// SPDX-License-Identifier: GPL-2.0

//! Declarations of the C glue linked into the module (`rust/dm/glue.c`):
//! objects allocated and initialised in C (workqueue worker, IRQ-safe bio
//! queue, rwsem, the pool table mutex, the deferred set), handed to Rust
//! as opaque pointers.  Only the safe wrappers in this directory call
//! these.  Bios cross as `void *` (`struct bio` embeds a type Rust deems
//! not FFI-safe), as do block devices.

use kernel::bindings;
use kernel::ffi::{c_char, c_int, c_uint, c_void};

/// `struct dmthin_worker` (opaque).
#[repr(C)]
pub(crate) struct DmthinWorker {
    _opaque: [u8; 0],
}

/// `struct dmthin_dset` (opaque).
#[repr(C)]
pub(crate) struct DmthinDset {
    _opaque: [u8; 0],
}

/// `struct dmthin_bioq` (opaque).
#[repr(C)]
pub(crate) struct DmthinBioq {
    _opaque: [u8; 0],
}

extern "C" {
    pub(crate) fn dmthin_worker_create(
        name: *const c_char,
        period_ms: c_uint,
        run: unsafe extern "C" fn(*mut c_void),
        tick: unsafe extern "C" fn(*mut c_void),
    ) -> *mut DmthinWorker;
    pub(crate) fn dmthin_worker_set_data(w: *mut DmthinWorker, data: *mut c_void);
    pub(crate) fn dmthin_worker_kick(w: *mut DmthinWorker);
    pub(crate) fn dmthin_worker_start_waker(w: *mut DmthinWorker);
    pub(crate) fn dmthin_worker_stop_waker(w: *mut DmthinWorker);
    pub(crate) fn dmthin_worker_drain(w: *mut DmthinWorker);
    pub(crate) fn dmthin_worker_destroy(w: *mut DmthinWorker);

    pub(crate) fn dmthin_bioq_create() -> *mut DmthinBioq;
    pub(crate) fn dmthin_bioq_destroy(q: *mut DmthinBioq);
    pub(crate) fn dmthin_bioq_push(q: *mut DmthinBioq, bio: *mut c_void);
    pub(crate) fn dmthin_bioq_take(q: *mut DmthinBioq) -> *mut c_void;

    pub(crate) fn dmthin_rwsem_create(class: c_uint) -> *mut bindings::rw_semaphore;
    pub(crate) fn dmthin_rwsem_destroy(s: *mut bindings::rw_semaphore);
    pub(crate) fn dmthin_down_read(s: *mut bindings::rw_semaphore);
    pub(crate) fn dmthin_down_read_trylock(s: *mut bindings::rw_semaphore) -> c_int;
    pub(crate) fn dmthin_up_read(s: *mut bindings::rw_semaphore);
    pub(crate) fn dmthin_down_write(s: *mut bindings::rw_semaphore);
    pub(crate) fn dmthin_up_write(s: *mut bindings::rw_semaphore);

    pub(crate) fn dmthin_pool_table_lock();
    pub(crate) fn dmthin_pool_table_unlock();

    pub(crate) fn dmthin_no_space_timeout() -> c_uint;

    pub(crate) fn dmthin_issue_discards(
        bdev: *mut c_void,
        ranges: *const u64,
        n: c_uint,
        done: unsafe extern "C" fn(*mut c_void, c_int),
        ctx: *mut c_void,
    ) -> c_int;

    pub(crate) fn dmthin_issue_zeroes(
        bdev: *mut c_void,
        sector: u64,
        nr_sects: u64,
        done: unsafe extern "C" fn(*mut c_void, c_int),
        ctx: *mut c_void,
    ) -> c_int;

    pub(crate) fn dmthin_bdev_write_zeroes(bdev: *mut c_void) -> bool;

    pub(crate) fn dmthin_issue_zero_ranges(
        bdev: *mut c_void,
        ranges: *const u64,
        n: c_uint,
        write_zeroes: bool,
        done: unsafe extern "C" fn(*mut c_void, c_int),
        ctx: *mut c_void,
    ) -> c_int;

    pub(crate) fn dmthin_issue_padded_write(
        bdev: *mut c_void,
        sector: u64,
        nr_sects: u64,
        src: *mut c_void,
        offset: u64,
        done: unsafe extern "C" fn(*mut c_void, c_int),
        ctx: *mut c_void,
    ) -> c_int;

    pub(crate) fn dmthin_dset_create() -> *mut DmthinDset;
    pub(crate) fn dmthin_dset_destroy(d: *mut DmthinDset);
    pub(crate) fn dmthin_dset_inc(d: *mut DmthinDset) -> u64;
    pub(crate) fn dmthin_dset_dec(d: *mut DmthinDset, gen: u64) -> bool;
    pub(crate) fn dmthin_dset_barrier(d: *mut DmthinDset, gen: *mut u64) -> bool;
    pub(crate) fn dmthin_dset_passed(d: *mut DmthinDset, gen: u64) -> bool;
}
