//! The store's read side through the C ABI: `keel_read`, `keel_stat`, `keel_getattr`,
//! `keel_omap_get` and `keel_store_stats`. Each takes the store's lease and asks the store
//! (or, with a core list, the reactor of the object's shard: `keel_store` does the asking),
//! then copies the answer out to the caller's memory.

use std::ffi::{c_int, c_void};
use std::mem::size_of;

use keel_drivers::Op;
use libc::{EFBIG, EINVAL, ERANGE};

use super::keel_store;
use crate::ffi::args;
use crate::ffi::errors::{errno, ffi_int};
use crate::ffi::handles::Lease;
use crate::ffi::opts::KEEL_STRUCT_MAX_BYTES;
use crate::ffi::KEEL_MAX_OBJECT_BYTES;

/// An object's committed state, summarized (`keel_stat`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct keel_stat {
    /// Size in bytes.
    pub size: u64,
    /// Bytes of data pages allocated to it (holes and zeroed ranges take none).
    pub allocated_bytes: u64,
    /// Number of attributes.
    pub attrs: u64,
    /// Number of omap keys.
    pub omap_keys: u64,
}

/// Counters of a store since it was opened (`keel_store_stats`). Fields are only ever
/// added at the end.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct keel_stats {
    /// Transactions committed (acknowledged with status 0).
    pub txns_committed: u64,
    /// Transactions that failed in the store (completed with a negative status).
    pub txns_failed: u64,
    /// Bytes of client data in committed writes and clone ranges.
    pub client_bytes: u64,
    /// Bytes written to the device (data, journal, checkpoints).
    pub device_write_bytes: u64,
    /// Write commands sent to the device.
    pub device_write_cmds: u64,
    /// Flush commands sent to the device.
    pub device_flush_cmds: u64,
    /// Journal batches written (group commits).
    pub journal_batches: u64,
    /// Transaction entries in those batches.
    pub journal_batch_entries: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
    /// Bytes read from the device.
    pub device_read_bytes: u64,
    /// Read commands sent to the device.
    pub device_read_cmds: u64,
    /// Background scrub (`keel_opts.scrub_pages_per_sec`, reactors): pages checked.
    pub scrub_pages: u64,
    /// Background scrub: pages found torn (overwrites a power cut interrupted).
    pub scrub_torn_pages: u64,
    /// Background scrub: pages found corrupt.
    pub scrub_corrupt_pages: u64,
    /// Background scrub: complete passes, summed over reactors.
    pub scrub_passes: u64,
    /// Background scrub: steps that failed on a device error (the scrub went on).
    pub scrub_errors: u64,
}

/// Reads committed bytes `[offset, offset + len)` of an object into `buf`; the count read
/// (short at the end of the object; holes read as zeroes) goes to `*read_out`. Drives the
/// device until the data is in; callbacks of transactions that finish meanwhile wait for
/// the next `keel_poll`.
///
/// Returns: 0; `-EINVAL` (NULL `store`, `name` or `read_out`, `name_len` 0, NULL `buf`
/// with `len` > 0), `-ENAMETOOLONG`, `-EFBIG` (`offset` past `KEEL_MAX_OBJECT_BYTES`),
/// `-ENOENT` (no such collection or object), `-ERANGE` (`offset` past the object's end;
/// `offset` equal to the size reads 0 bytes), `-EBADMSG` (a page of the range fails its
/// checksum: corruption; nothing is returned, `keel_scrub` names the bad range),
/// `-EILSEQ` (a page of the range holds a torn overwrite a power cut left: acknowledge it
/// with `keel_txn_acknowledge` or rewrite it), `-EBADF`, `-EBUSY`, `-EIO` (device or
/// internal error). On error `buf` and `*read_out` are unchanged.
///
/// Threading: the store's thread rule; may be called from a callback.
///
/// # Safety
///
/// `name` must point to `name_len` readable bytes, `buf` to `len` writable bytes, and
/// `read_out` must be NULL or valid for writing a `size_t`.
#[no_mangle]
pub unsafe extern "C" fn keel_read(
    store: *mut keel_store,
    coll: u64,
    name: *const c_void,
    name_len: usize,
    offset: u64,
    buf: *mut c_void,
    len: usize,
    read_out: *mut usize,
) -> c_int {
    ffi_int(|| {
        let mut lease = Lease::acquire(store)?;
        // SAFETY: the caller's contract for name and buf.
        let (name, buf) = unsafe { (args::name(name, name_len)?, args::bytes_mut(buf, len)?) };
        if read_out.is_null() {
            return Err(-EINVAL);
        }
        if offset > KEEL_MAX_OBJECT_BYTES {
            return Err(-EFBIG);
        }
        let data = lease.get().read(coll, name, offset, len).map_err(errno)?;
        buf[..data.len()].copy_from_slice(&data);
        // SAFETY: the caller's contract for read_out (checked non-NULL above).
        unsafe { args::put(read_out, data.len()) }?;
        Ok(0)
    })
}

/// An object's size and counts, written to `*out`.
///
/// Returns: 0; `-EINVAL` (NULL `store`, `name` or `out`, `name_len` 0), `-ENAMETOOLONG`,
/// `-ENOENT` (no such collection or object), `-EBADF`, `-EBUSY`, `-EIO`. On error `*out`
/// is unchanged.
///
/// Threading: the store's thread rule; may be called from a callback.
///
/// # Safety
///
/// `name` must point to `name_len` readable bytes; `out` must be NULL or valid for
/// writing a `struct keel_stat`.
#[no_mangle]
pub unsafe extern "C" fn keel_stat(
    store: *mut keel_store,
    coll: u64,
    name: *const c_void,
    name_len: usize,
    out: *mut keel_stat,
) -> c_int {
    ffi_int(|| {
        let mut lease = Lease::acquire(store)?;
        // SAFETY: the caller's contract for name.
        let name = unsafe { args::name(name, name_len) }?;
        if out.is_null() {
            return Err(-EINVAL);
        }
        let s = lease.get().stat(coll, name).map_err(errno)?;
        let st = keel_stat {
            size: s.size,
            allocated_bytes: s.allocated_bytes,
            attrs: s.attrs,
            omap_keys: s.omap_keys,
        };
        // SAFETY: the caller's contract for out (checked non-NULL above).
        unsafe { args::put(out, st) }?;
        Ok(0)
    })
}

/// Which map `lookup` reads.
#[derive(Clone, Copy)]
pub(in crate::ffi) enum Map {
    Attrs,
    Omap,
}

/// The body of `keel_getattr` and `keel_omap_get`.
///
/// # Safety
///
/// Their contract.
#[allow(clippy::too_many_arguments)]
unsafe fn lookup(
    map: Map,
    store: *mut keel_store,
    coll: u64,
    name: *const c_void,
    name_len: usize,
    key: *const c_void,
    key_len: usize,
    buf: *mut c_void,
    buf_len: usize,
    value_len: *mut usize,
) -> c_int {
    ffi_int(|| {
        let mut lease = Lease::acquire(store)?;
        // SAFETY: the caller's contract for name, key and buf.
        let (name, key, buf) = unsafe {
            (
                args::name(name, name_len)?,
                args::key(key, key_len)?,
                args::bytes_mut(buf, buf_len)?,
            )
        };
        if value_len.is_null() {
            return Err(-EINVAL);
        }
        let v = lease.get().lookup(map, coll, name, key).map_err(errno)?;
        // SAFETY: the caller's contract for value_len (checked non-NULL above).
        unsafe { args::put(value_len, v.len()) }?;
        if v.len() > buf.len() {
            return Err(-ERANGE);
        }
        buf[..v.len()].copy_from_slice(&v);
        Ok(0)
    })
}

/// Reads attribute `key` of an object into `buf`; its length goes to `*value_len`. Pass
/// `buf_len` 0 (and `buf` NULL) to learn the length.
///
/// Returns: 0; `-ERANGE` (`buf_len` is smaller than the value: `*value_len` is set, `buf`
/// untouched); `-EINVAL` (NULL `store`, `name` or `value_len`, `name_len` 0, NULL `key`
/// with `key_len` > 0, NULL `buf` with `buf_len` > 0), `-ENAMETOOLONG` (name or key),
/// `-ENOENT` (no such collection, object or attribute), `-EBADF`, `-EBUSY`, `-EIO`.
///
/// Threading: the store's thread rule; may be called from a callback.
///
/// # Safety
///
/// `name`, `key` and `buf` must point to `name_len`, `key_len` readable and `buf_len`
/// writable bytes; `value_len` must be NULL or valid for writing a `size_t`.
#[no_mangle]
pub unsafe extern "C" fn keel_getattr(
    store: *mut keel_store,
    coll: u64,
    name: *const c_void,
    name_len: usize,
    key: *const c_void,
    key_len: usize,
    buf: *mut c_void,
    buf_len: usize,
    value_len: *mut usize,
) -> c_int {
    // SAFETY: forwarded: this function's contract is lookup's.
    unsafe {
        lookup(
            Map::Attrs,
            store,
            coll,
            name,
            name_len,
            key,
            key_len,
            buf,
            buf_len,
            value_len,
        )
    }
}

/// Reads omap key `key` of an object into `buf`, as `keel_getattr` does for attributes.
///
/// Returns: as `keel_getattr` (`-ENOENT`: no such collection, object or omap key).
///
/// Threading: the store's thread rule; may be called from a callback.
///
/// # Safety
///
/// As `keel_getattr`.
#[no_mangle]
pub unsafe extern "C" fn keel_omap_get(
    store: *mut keel_store,
    coll: u64,
    name: *const c_void,
    name_len: usize,
    key: *const c_void,
    key_len: usize,
    buf: *mut c_void,
    buf_len: usize,
    value_len: *mut usize,
) -> c_int {
    // SAFETY: forwarded: this function's contract is lookup's.
    unsafe {
        lookup(
            Map::Omap,
            store,
            coll,
            name,
            name_len,
            key,
            key_len,
            buf,
            buf_len,
            value_len,
        )
    }
}

/// The store's counters since it was opened. Writes `out_size` bytes at `out`: the
/// counters this library has, and zeroes past them (a caller built against a newer header
/// sees 0 for counters this library does not keep).
///
/// Returns: 0; `-EINVAL` (NULL `store` or `out`; `out_size` below the size of version 1,
/// 88 bytes, or above `KEEL_STRUCT_MAX_BYTES`), `-EBADF`, `-EBUSY`, `-EIO`.
///
/// Threading: the store's thread rule; may be called from a callback.
///
/// # Safety
///
/// `out` must be NULL or point to `out_size` writable bytes, aligned for
/// `struct keel_stats`.
#[no_mangle]
pub unsafe extern "C" fn keel_store_stats(
    store: *mut keel_store,
    out: *mut keel_stats,
    out_size: usize,
) -> c_int {
    ffi_int(|| {
        let mut lease = Lease::acquire(store)?;
        if out.is_null() || !(STATS_SIZE_V1..=KEEL_STRUCT_MAX_BYTES).contains(&out_size) {
            return Err(-EINVAL);
        }
        let (s, scrub) = lease.get().counters().map_err(errno)?;
        let dev = s.device();
        let stats = keel_stats {
            txns_committed: s.shards.txns_committed,
            txns_failed: s.shards.txns_failed,
            client_bytes: s.shards.client_bytes,
            device_write_bytes: dev.bytes(Op::Write),
            device_write_cmds: dev.cmds(Op::Write),
            device_flush_cmds: dev.cmds(Op::Flush),
            journal_batches: s.shards.batches,
            journal_batch_entries: s.shards.batch_entries,
            checkpoints: s.shards.checkpoints,
            device_read_bytes: dev.bytes(Op::Read),
            device_read_cmds: dev.cmds(Op::Read),
            scrub_pages: scrub.pages,
            scrub_torn_pages: scrub.torn_pages,
            scrub_corrupt_pages: scrub.corrupt_pages,
            scrub_passes: scrub.passes,
            scrub_errors: scrub.errors,
        };
        let known = out_size.min(size_of::<keel_stats>());
        // `out` points to out_size writable bytes (the caller's contract); `known`
        // bytes of `stats` are readable, and the rest of out_size is zeroed; the local and
        // the caller's memory do not overlap.
        // SAFETY: the copy is in bounds and does not overlap.
        unsafe {
            let dst = out.cast::<u8>();
            std::ptr::copy_nonoverlapping(std::ptr::addr_of!(stats).cast::<u8>(), dst, known);
            dst.add(known).write_bytes(0, out_size - known);
        }
        Ok(0)
    })
}

/// Bytes of version 1 of `struct keel_stats` (up to `device_read_cmds`).
const STATS_SIZE_V1: usize = 88;

const _: () = {
    assert!(std::mem::offset_of!(keel_stats, device_read_cmds) + 8 == STATS_SIZE_V1);
    assert!(size_of::<keel_stats>() == 128);
};
