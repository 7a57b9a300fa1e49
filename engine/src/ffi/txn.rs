//! `struct keel_txn`: a transaction being built, one op per call.
//!
//! Each builder checks its arguments and the op against the engine's static limits before
//! appending it ([`Transaction::validate`] on the one op, plus the running op count and data
//! total), so a bad op is refused where it is added, with the transaction unchanged, and a
//! transaction that is built without error passes the engine's static checks when it is
//! submitted. Errors that need the store's state (a missing object, an existing collection)
//! come back in the transaction's completion.

use std::ffi::{c_int, c_void};
use std::ptr;

use libc::E2BIG;

use super::args;
use super::errors::{errno, ffi_int};
use super::handles::{register, Handle, Kind, Lease};
use super::{KEEL_MAX_TXN_DATA_BYTES, KEEL_MAX_TXN_OPS};
use crate::txn::Transaction;

/// A transaction being built (opaque). Create with `keel_txn_new`, fill with the
/// `keel_txn_*` builders, submit with `keel_submit` or `keel_submit_sync` (which take its
/// content and leave it empty for reuse), free with `keel_txn_free`.
#[derive(Debug)]
pub struct keel_txn {
    magic: u64,
    txn: Transaction,
    /// Data the ops carry (writes, clone ranges), in bytes.
    data_bytes: u64,
}

impl Handle for keel_txn {
    const KIND: Kind = Kind::Txn;
    const MAGIC: u64 = u64::from_be_bytes(*b"keel-txn");

    fn magic(&self) -> u64 {
        self.magic
    }

    fn set_magic(&mut self, magic: u64) {
        self.magic = magic;
    }
}

impl keel_txn {
    /// The content, leaving the handle empty.
    pub(crate) fn take(&mut self) -> Transaction {
        self.data_bytes = 0;
        std::mem::take(&mut self.txn)
    }

    /// Puts back content that `take` took (a submission that was refused).
    pub(crate) fn put(&mut self, t: Transaction) {
        self.data_bytes = t.data_bytes();
        self.txn = t;
    }

    /// The content.
    pub(crate) fn get(&self) -> &Transaction {
        &self.txn
    }

    /// Room for one more op carrying `data_bytes`.
    fn room(&self, data_bytes: u64) -> Result<(), c_int> {
        if self.txn.len() >= KEEL_MAX_TXN_OPS
            || self.data_bytes.saturating_add(data_bytes) > KEEL_MAX_TXN_DATA_BYTES
        {
            return Err(-E2BIG);
        }
        Ok(())
    }

    /// Appends the op of `one` once it passes the engine's static checks.
    fn push(&mut self, one: Transaction) -> Result<(), c_int> {
        one.validate().map_err(errno)?;
        self.data_bytes += one.data_bytes();
        for op in one.into_ops() {
            self.txn.push(op);
        }
        Ok(())
    }
}

/// Leases `txn`, checks there is room for an op carrying `data_bytes`, lets `add` put the
/// op in a one-op transaction (reading the C arguments), then appends it.
fn build(
    txn: *mut keel_txn,
    data_bytes: u64,
    add: impl FnOnce(&mut Transaction) -> Result<(), c_int>,
) -> c_int {
    ffi_int(|| {
        let mut lease = Lease::acquire(txn)?;
        let t = lease.get();
        t.room(data_bytes)?;
        let mut one = Transaction::new();
        add(&mut one)?;
        t.push(one)?;
        Ok(0)
    })
}

/// A new, empty transaction.
///
/// Returns: the handle; NULL only after an internal error (running out of memory aborts
/// the process, as every allocation failure in Rust does).
///
/// Threading: any thread. The handle may be built on one thread and submitted on another,
/// used by one call at a time (a concurrent call gets `-EBUSY`).
#[no_mangle]
pub extern "C" fn keel_txn_new() -> *mut keel_txn {
    std::panic::catch_unwind(|| {
        register(Box::new(keel_txn {
            magic: keel_txn::MAGIC,
            txn: Transaction::new(),
            data_bytes: 0,
        }))
    })
    .unwrap_or(ptr::null_mut())
}

/// Frees a transaction and what it holds. A NULL, already freed, or unknown `txn` is
/// ignored, and so is one another call is using at this moment.
///
/// Threading: any thread.
#[no_mangle]
pub extern "C" fn keel_txn_free(txn: *mut keel_txn) {
    let _ = std::panic::catch_unwind(|| {
        if let Ok((lease, _poisoned)) = Lease::acquire_to_retire(txn) {
            drop(lease.retire());
        }
    });
}

/// Operations in the transaction, written to `*ops_out`.
///
/// Returns: 0; `-EINVAL` (NULL `txn` or `ops_out`), `-EBADF` (`txn` not live), `-EBUSY`
/// (in use by another call), `-EIO` (internal error).
///
/// Threading: any thread, one call per transaction at a time.
///
/// # Safety
///
/// `ops_out` must be NULL or valid for writing a `size_t`.
#[no_mangle]
pub unsafe extern "C" fn keel_txn_len(txn: *const keel_txn, ops_out: *mut usize) -> c_int {
    ffi_int(|| {
        let mut lease = Lease::acquire(txn.cast_mut())?;
        let n = lease.get().txn.len();
        // SAFETY: the caller's contract for ops_out.
        unsafe { args::put(ops_out, n) }?;
        Ok(0)
    })
}

/// Forces (`on` true) or stops forcing the whole transaction through the full journal,
/// whatever the store's journal mode: its overwrites become atomic.
///
/// Returns: 0; `-EINVAL` (NULL `txn`), `-EBADF`, `-EBUSY`, `-EIO`.
///
/// Threading: any thread, one call per transaction at a time.
#[no_mangle]
pub extern "C" fn keel_txn_set_full_journal(txn: *mut keel_txn, on: bool) -> c_int {
    ffi_int(|| {
        Lease::acquire(txn)?.get().txn.set_full_journal(on);
        Ok(0)
    })
}

/// Appends: create collection `coll` (its completion fails with `-EEXIST` if it exists).
///
/// Returns: 0; `-EINVAL` (NULL `txn`), `-EBADF` (`txn` not live), `-EBUSY` (in use by
/// another call), `-E2BIG` (the transaction already holds `KEEL_MAX_TXN_OPS` ops), `-EIO`
/// (internal error). On error the transaction is unchanged.
///
/// Threading: any thread, one call per transaction at a time.
#[no_mangle]
pub extern "C" fn keel_txn_mkcoll(txn: *mut keel_txn, coll: u64) -> c_int {
    build(txn, 0, |t| {
        t.mkcoll(coll);
        Ok(())
    })
}

/// Appends: remove the empty collection `coll` (completion: `-ENOENT` if missing,
/// `-ENOTEMPTY` if it holds objects).
///
/// Returns: as `keel_txn_mkcoll`.
///
/// Threading: any thread, one call per transaction at a time.
#[no_mangle]
pub extern "C" fn keel_txn_rmcoll(txn: *mut keel_txn, coll: u64) -> c_int {
    build(txn, 0, |t| {
        t.rmcoll(coll);
        Ok(())
    })
}

/// Appends: create object `name` in `coll` if it is missing (touch).
///
/// Returns: 0; `-EINVAL` (NULL `txn` or `name`, `name_len` 0), `-ENAMETOOLONG`
/// (`name_len` > `KEEL_MAX_NAME_BYTES`), `-EBADF`, `-EBUSY`, `-E2BIG` (ops limit), `-EIO`.
/// On error the transaction is unchanged.
///
/// Threading: any thread, one call per transaction at a time.
///
/// # Safety
///
/// `name` must point to `name_len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn keel_txn_create(
    txn: *mut keel_txn,
    coll: u64,
    name: *const c_void,
    name_len: usize,
) -> c_int {
    build(txn, 0, |t| {
        // SAFETY: the caller's contract for name.
        let name = unsafe { args::name(name, name_len) }?;
        t.touch(coll, name);
        Ok(())
    })
}

/// Appends: write `len` bytes from `data` at `offset` of the object, creating it if
/// missing. The bytes are copied now; `data` may be reused when this returns. A write of
/// 0 bytes (`data` may then be NULL) only creates the object.
///
/// Returns: 0; `-EINVAL` (NULL `txn` or `name`, `name_len` 0, NULL `data` with `len` > 0),
/// `-ENAMETOOLONG` (name), `-EFBIG` (`offset + len` > `KEEL_MAX_OBJECT_BYTES`), `-E2BIG`
/// (the transaction's data would pass `KEEL_MAX_TXN_DATA_BYTES`, or ops limit), `-EBADF`,
/// `-EBUSY`, `-EIO`. On error the transaction is unchanged.
///
/// Threading: any thread, one call per transaction at a time.
///
/// # Safety
///
/// `name` must point to `name_len` readable bytes, and `data` to `len`.
#[no_mangle]
pub unsafe extern "C" fn keel_txn_write(
    txn: *mut keel_txn,
    coll: u64,
    name: *const c_void,
    name_len: usize,
    offset: u64,
    data: *const c_void,
    len: usize,
) -> c_int {
    build(txn, len as u64, |t| {
        // SAFETY: the caller's contract for name.
        let name = unsafe { args::name(name, name_len) }?;
        args::range(offset, len as u64)?;
        // SAFETY: the caller's contract for data.
        let data = unsafe { args::bytes(data, len) }?;
        t.write(coll, name, offset, data);
        Ok(())
    })
}

/// Appends: zero `len` bytes at `offset` of the object (extending it if they run past its
/// end), creating it if missing. Zeroed pages are freed, not written.
///
/// Returns: 0; `-EINVAL` (NULL `txn` or `name`, `name_len` 0), `-ENAMETOOLONG`, `-EFBIG`
/// (`offset + len` past the object size limit), `-E2BIG` (ops limit), `-EBADF`, `-EBUSY`,
/// `-EIO`. On error the transaction is unchanged.
///
/// Threading: any thread, one call per transaction at a time.
///
/// # Safety
///
/// `name` must point to `name_len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn keel_txn_zero(
    txn: *mut keel_txn,
    coll: u64,
    name: *const c_void,
    name_len: usize,
    offset: u64,
    len: u64,
) -> c_int {
    build(txn, 0, |t| {
        // SAFETY: the caller's contract for name.
        let name = unsafe { args::name(name, name_len) }?;
        args::range(offset, len)?;
        t.zero(coll, name, offset, len);
        Ok(())
    })
}

/// Appends: take the torn pages of `[offset, offset + len)` of the object as they are
/// now. Torn pages are those a power cut left inside an interrupted in-place overwrite
/// (reads of them fail with `-EILSEQ`; `keel_scrub` lists them as `KEEL_BAD_TORN`): they
/// get checksums of their current bytes, which may mix old and new data, and read again.
/// Other pages of the range are left alone: clean pages stay as they are, and corrupt
/// ones (`-EBADMSG`) stay corrupt (rewrite or remove those). Completion: `-ENOENT` if the
/// object is missing. Rewriting a torn range with `keel_txn_write` also clears it.
///
/// Returns: 0; `-EINVAL` (NULL `txn` or `name`, `name_len` 0), `-ENAMETOOLONG`, `-EFBIG`
/// (`offset + len` past the object size limit), `-E2BIG` (ops limit), `-EBADF`, `-EBUSY`,
/// `-EIO`. On error the transaction is unchanged.
///
/// Threading: any thread, one call per transaction at a time.
///
/// # Safety
///
/// `name` must point to `name_len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn keel_txn_acknowledge(
    txn: *mut keel_txn,
    coll: u64,
    name: *const c_void,
    name_len: usize,
    offset: u64,
    len: u64,
) -> c_int {
    build(txn, 0, |t| {
        // SAFETY: the caller's contract for name.
        let name = unsafe { args::name(name, name_len) }?;
        args::range(offset, len)?;
        t.acknowledge(coll, name, offset, len);
        Ok(())
    })
}

/// Appends: set the object's size to `size` bytes (completion: `-ENOENT` if missing).
///
/// Returns: 0; `-EINVAL` (NULL `txn` or `name`, `name_len` 0), `-ENAMETOOLONG`, `-EFBIG`
/// (`size` > `KEEL_MAX_OBJECT_BYTES`), `-E2BIG` (ops limit), `-EBADF`, `-EBUSY`, `-EIO`.
/// On error the transaction is unchanged.
///
/// Threading: any thread, one call per transaction at a time.
///
/// # Safety
///
/// `name` must point to `name_len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn keel_txn_truncate(
    txn: *mut keel_txn,
    coll: u64,
    name: *const c_void,
    name_len: usize,
    size: u64,
) -> c_int {
    build(txn, 0, |t| {
        // SAFETY: the caller's contract for name.
        let name = unsafe { args::name(name, name_len) }?;
        args::range(size, 0)?;
        t.truncate(coll, name, size);
        Ok(())
    })
}

/// Appends: remove the object with its data, attributes and omap (completion: `-ENOENT`
/// if missing).
///
/// Returns: as `keel_txn_create`.
///
/// Threading: any thread, one call per transaction at a time.
///
/// # Safety
///
/// `name` must point to `name_len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn keel_txn_remove(
    txn: *mut keel_txn,
    coll: u64,
    name: *const c_void,
    name_len: usize,
) -> c_int {
    build(txn, 0, |t| {
        // SAFETY: the caller's contract for name.
        let name = unsafe { args::name(name, name_len) }?;
        t.remove(coll, name);
        Ok(())
    })
}

/// Appends: set attribute `key` of the object to `value` (completion: `-ENOENT` if the
/// object is missing). Key and value are copied now. An empty key or value is allowed
/// (its pointer may then be NULL).
///
/// Returns: 0; `-EINVAL` (NULL `txn` or `name`, `name_len` 0, NULL `key` or `value` with
/// a length > 0), `-ENAMETOOLONG` (name, or `key_len` > `KEEL_MAX_KEY_BYTES`), `-E2BIG`
/// (`value_len` > `KEEL_MAX_VALUE_BYTES`, or ops limit), `-EBADF`, `-EBUSY`, `-EIO`. On
/// error the transaction is unchanged.
///
/// Threading: any thread, one call per transaction at a time.
///
/// # Safety
///
/// Each pointer must point to as many readable bytes as its length says.
#[no_mangle]
pub unsafe extern "C" fn keel_txn_setattr(
    txn: *mut keel_txn,
    coll: u64,
    name: *const c_void,
    name_len: usize,
    key: *const c_void,
    key_len: usize,
    value: *const c_void,
    value_len: usize,
) -> c_int {
    build(txn, 0, |t| {
        // SAFETY: the caller's contract for name, key and value.
        let (name, key, value) = unsafe {
            (
                args::name(name, name_len)?,
                args::key(key, key_len)?,
                args::value(value, value_len)?,
            )
        };
        t.setattr(coll, name, key, value);
        Ok(())
    })
}

/// Appends: remove attribute `key` of the object (completion: `-ENOENT` if the object or
/// the attribute is missing).
///
/// Returns: 0; `-EINVAL` (NULL `txn` or `name`, `name_len` 0, NULL `key` with a
/// `key_len` > 0), `-ENAMETOOLONG` (name or key), `-E2BIG` (ops limit), `-EBADF`, `-EBUSY`,
/// `-EIO`. On error the transaction is unchanged.
///
/// Threading: any thread, one call per transaction at a time.
///
/// # Safety
///
/// Each pointer must point to as many readable bytes as its length says.
#[no_mangle]
pub unsafe extern "C" fn keel_txn_rmattr(
    txn: *mut keel_txn,
    coll: u64,
    name: *const c_void,
    name_len: usize,
    key: *const c_void,
    key_len: usize,
) -> c_int {
    build(txn, 0, |t| {
        // SAFETY: the caller's contract for name and key.
        let (name, key) = unsafe { (args::name(name, name_len)?, args::key(key, key_len)?) };
        t.rmattr(coll, name, key);
        Ok(())
    })
}

/// Appends: set omap key `key` of the object to `value` (one pair per call; completion:
/// `-ENOENT` if the object is missing).
///
/// Returns: as `keel_txn_setattr`.
///
/// Threading: any thread, one call per transaction at a time.
///
/// # Safety
///
/// Each pointer must point to as many readable bytes as its length says.
#[no_mangle]
pub unsafe extern "C" fn keel_txn_omap_set(
    txn: *mut keel_txn,
    coll: u64,
    name: *const c_void,
    name_len: usize,
    key: *const c_void,
    key_len: usize,
    value: *const c_void,
    value_len: usize,
) -> c_int {
    build(txn, 0, |t| {
        // SAFETY: the caller's contract for name, key and value.
        let (name, key, value) = unsafe {
            (
                args::name(name, name_len)?,
                args::key(key, key_len)?,
                args::value(value, value_len)?,
            )
        };
        t.omap_set(coll, name, vec![(key.to_vec(), value.to_vec())]);
        Ok(())
    })
}

/// Appends: remove omap key `key` of the object (one key per call; a missing key is not
/// an error; completion: `-ENOENT` if the object is missing).
///
/// Returns: as `keel_txn_rmattr`.
///
/// Threading: any thread, one call per transaction at a time.
///
/// # Safety
///
/// Each pointer must point to as many readable bytes as its length says.
#[no_mangle]
pub unsafe extern "C" fn keel_txn_omap_rm(
    txn: *mut keel_txn,
    coll: u64,
    name: *const c_void,
    name_len: usize,
    key: *const c_void,
    key_len: usize,
) -> c_int {
    build(txn, 0, |t| {
        // SAFETY: the caller's contract for name and key.
        let (name, key) = unsafe { (args::name(name, name_len)?, args::key(key, key_len)?) };
        t.omap_rm(coll, name, vec![key.to_vec()]);
        Ok(())
    })
}

/// Appends: make `dst` a full copy of `src` (data, attributes, omap), both in `coll`,
/// replacing `dst` if it exists (completion: `-ENOENT` if `src` is missing). Goes through
/// the full journal whatever the store's mode.
///
/// Returns: 0; `-EINVAL` (NULL `txn`, `src` or `dst`, an empty name, or `src` and `dst`
/// the same name), `-ENAMETOOLONG`, `-E2BIG` (ops limit), `-EBADF`, `-EBUSY`, `-EIO`. On
/// error the transaction is unchanged.
///
/// Threading: any thread, one call per transaction at a time.
///
/// # Safety
///
/// `src` and `dst` must point to `src_len` and `dst_len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn keel_txn_clone(
    txn: *mut keel_txn,
    coll: u64,
    src: *const c_void,
    src_len: usize,
    dst: *const c_void,
    dst_len: usize,
) -> c_int {
    build(txn, 0, |t| {
        // SAFETY: the caller's contract for src and dst.
        let (src, dst) = unsafe { (args::name(src, src_len)?, args::name(dst, dst_len)?) };
        t.clone_object(coll, src, dst);
        Ok(())
    })
}

/// Appends: copy `len` bytes of `src` at `src_offset` into `dst` at `dst_offset`, both in
/// `coll`, creating `dst` if missing (completion: `-ENOENT` if `src` is missing). `src` and
/// `dst` may be the same object. Counts `len` towards the transaction's data limit; goes
/// through the full journal whatever the store's mode.
///
/// Returns: 0; `-EINVAL` (NULL `txn`, `src` or `dst`, an empty name), `-ENAMETOOLONG`,
/// `-EFBIG` (either range past the object size limit), `-E2BIG` (data or ops limit),
/// `-EBADF`, `-EBUSY`, `-EIO`. On error the transaction is unchanged.
///
/// Threading: any thread, one call per transaction at a time.
///
/// # Safety
///
/// `src` and `dst` must point to `src_len` and `dst_len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn keel_txn_clone_range(
    txn: *mut keel_txn,
    coll: u64,
    src: *const c_void,
    src_len: usize,
    dst: *const c_void,
    dst_len: usize,
    src_offset: u64,
    len: u64,
    dst_offset: u64,
) -> c_int {
    build(txn, len, |t| {
        // SAFETY: the caller's contract for src and dst.
        let (src, dst) = unsafe { (args::name(src, src_len)?, args::name(dst, dst_len)?) };
        args::range(src_offset, len)?;
        args::range(dst_offset, len)?;
        t.clone_range(coll, src, dst, src_offset, len, dst_offset);
        Ok(())
    })
}
