//! `struct keel_volume`: volumes (virtual disks striped over objects, [`crate::volume`])
//! through the C ABI.
//!
//! ```text
//!  keel_store_open (with a core list: reactors) ─► keel_volume_create / _resize / _remove
//!  keel_volume_open(store, name) ─► struct keel_volume (shares the store's reactors)
//!  keel_volume_read / _write / _write_zeroes / _trim / _flush: synchronous, durable on
//!  return; from any thread, one call at a time per volume handle (open one per thread)
//!  keel_volume_close; then keel_store_close (-EBUSY while a volume is open)
//! ```
//!
//! Volumes need the store's reactors (a store opened with a core list): on a polled store
//! every volume call is `-ENOTSUP`. Errors: the store's errnos, plus `-ENOENT` (no such
//! volume), `-EEXIST` (it exists), `-EINVAL` (bad name, size, object size, or a range
//! past the end of the volume), `-EUCLEAN` (corrupt volume metadata).

use std::ffi::{c_int, c_void};
use std::sync::Arc;

use keel_drivers::any::AnyDevice;
use libc::{EINVAL, ENOTSUP};

use super::args;
use super::errors::ffi_int;
use super::handles::{register, Handle, Kind, Lease};
use super::opts::{Backend, KEEL_MODE_FULL, KEEL_MODE_METADATA_ONLY};
use super::store::keel_store;
use crate::reactor::Engine;
use crate::types::JournalMode;
use crate::volume::{Volume, VolumeError, VolumeOptions, Volumes};

/// Default object size of a volume (4 MiB): what `object_bytes` 0 means.
pub const KEEL_VOLUME_DEFAULT_OBJECT_BYTES: u64 = 4 << 20;
const _: () = assert!(KEEL_VOLUME_DEFAULT_OBJECT_BYTES == crate::volume::DEFAULT_OBJECT_BYTES);

/// An open volume (opaque). Open with `keel_volume_open`, close with `keel_volume_close`.
pub struct keel_volume {
    magic: u64,
    vol: Volume<AnyDevice>,
}

impl Handle for keel_volume {
    const KIND: Kind = Kind::Volume;
    const MAGIC: u64 = u64::from_be_bytes(*b"keel-vol");

    fn magic(&self) -> u64 {
        self.magic
    }

    fn set_magic(&mut self, magic: u64) {
        self.magic = magic;
    }
}

fn vol_errno(e: VolumeError) -> c_int {
    e.errno()
}

/// The volumes of a leased store; `-ENOTSUP` on a polled store.
fn volumes(store: &mut keel_store) -> Result<Volumes<AnyDevice>, c_int> {
    let engine: &Arc<Engine<AnyDevice>> = match store.backend() {
        Backend::Reactors(e) => e,
        Backend::Polled(_) => return Err(-ENOTSUP),
    };
    Volumes::new(Arc::clone(engine)).map_err(vol_errno)
}

/// The volume name of a C string and length (1..=255 bytes, UTF-8).
///
/// # Safety
///
/// `name` must point to `len` readable bytes.
unsafe fn vol_name<'a>(name: *const c_void, len: usize) -> Result<&'a str, c_int> {
    // SAFETY: the caller's contract.
    let b = unsafe { args::name(name, len) }?;
    std::str::from_utf8(b).map_err(|_| -EINVAL)
}

/// Creates a volume of `size_bytes` (a multiple of 512) striped over objects of
/// `object_bytes` (a power of two from 4 KiB to 1 GiB; 0: 4 MiB), whose data writes use
/// journal mode `mode` (`KEEL_MODE_METADATA_ONLY`: in place, one device write, an
/// interrupted overwrite may be torn; `KEEL_MODE_FULL`: atomic, two device writes). Every
/// byte reads as zero.
///
/// Returns: 0; `-EINVAL` (NULL or bad argument), `-EEXIST`, `-ENOTSUP` (a store without
/// reactors), `-EBADF`, `-EBUSY`, `-EIO`, or a store error.
///
/// Threading: the store's rule (one call at a time on it).
///
/// # Safety
///
/// `name` must point to `name_len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn keel_volume_create(
    store: *mut keel_store,
    name: *const c_void,
    name_len: usize,
    size_bytes: u64,
    object_bytes: u64,
    mode: u32,
) -> c_int {
    ffi_int(|| {
        let mut lease = Lease::acquire(store)?;
        // SAFETY: the caller's contract for name.
        let name = unsafe { vol_name(name, name_len) }?;
        let mode = match mode {
            KEEL_MODE_FULL => JournalMode::Full,
            KEEL_MODE_METADATA_ONLY => JournalMode::MetadataOnly,
            _ => return Err(-EINVAL),
        };
        let o = VolumeOptions {
            size_bytes,
            object_bytes: if object_bytes == 0 {
                KEEL_VOLUME_DEFAULT_OBJECT_BYTES
            } else {
                object_bytes
            },
            mode,
        };
        volumes(lease.get())?.create(name, &o).map_err(vol_errno)?;
        Ok(0)
    })
}

/// Changes a volume's size (a multiple of 512): shrinking discards the data past the new
/// end; growing adds zeroes. Open handles keep their old size: reopen them.
///
/// Returns: 0; `-EINVAL`, `-ENOENT`, `-ENOTSUP`, `-EBADF`, `-EBUSY`, `-EIO`, or a store
/// error.
///
/// Threading: the store's rule.
///
/// # Safety
///
/// `name` must point to `name_len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn keel_volume_resize(
    store: *mut keel_store,
    name: *const c_void,
    name_len: usize,
    size_bytes: u64,
) -> c_int {
    ffi_int(|| {
        let mut lease = Lease::acquire(store)?;
        // SAFETY: the caller's contract for name.
        let name = unsafe { vol_name(name, name_len) }?;
        volumes(lease.get())?
            .resize(name, size_bytes)
            .map_err(vol_errno)?;
        Ok(0)
    })
}

/// Removes a volume and its data. Handles open on it must be closed first (reads and
/// writes through them after the removal fail or see zeroes).
///
/// Returns: 0; `-EINVAL`, `-ENOENT`, `-ENOTSUP`, `-EBADF`, `-EBUSY`, `-EIO`, or a store
/// error.
///
/// Threading: the store's rule.
///
/// # Safety
///
/// `name` must point to `name_len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn keel_volume_remove(
    store: *mut keel_store,
    name: *const c_void,
    name_len: usize,
) -> c_int {
    ffi_int(|| {
        let mut lease = Lease::acquire(store)?;
        // SAFETY: the caller's contract for name.
        let name = unsafe { vol_name(name, name_len) }?;
        volumes(lease.get())?.remove(name).map_err(vol_errno)?;
        Ok(0)
    })
}

/// Opens a volume for I/O; `*out` gets the handle and `*size_out` (if not NULL) its size
/// in bytes.
///
/// Returns: 0; `-EINVAL`, `-ENOENT`, `-ENOTSUP`, `-EBADF`, `-EBUSY`, `-EIO`, `-EUCLEAN`.
///
/// Threading: the store's rule. The volume handle may then be used from any thread, one
/// call at a time; open a handle per thread for parallel I/O.
///
/// # Safety
///
/// `name` must point to `name_len` readable bytes; `out` must be NULL or valid for writing
/// a pointer; `size_out` NULL or valid for writing a `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn keel_volume_open(
    store: *mut keel_store,
    name: *const c_void,
    name_len: usize,
    out: *mut *mut keel_volume,
    size_out: *mut u64,
) -> c_int {
    ffi_int(|| {
        let mut lease = Lease::acquire(store)?;
        if out.is_null() {
            return Err(-EINVAL);
        }
        // SAFETY: the caller's contract for name.
        let name = unsafe { vol_name(name, name_len) }?;
        let vol = volumes(lease.get())?.open(name).map_err(vol_errno)?;
        let size = vol.size_bytes();
        let h = register(Box::new(keel_volume {
            magic: keel_volume::MAGIC,
            vol,
        }));
        // SAFETY: out is non-NULL and valid for a pointer write (the caller's contract).
        unsafe { out.write(h) };
        if !size_out.is_null() {
            // SAFETY: the caller's contract for size_out (checked non-NULL).
            unsafe { size_out.write(size) };
        }
        Ok(0)
    })
}

/// Closes a volume handle (its data is already durable).
///
/// Returns: 0; `-EINVAL` (NULL), `-EBADF`, `-EBUSY` (a call is using it).
///
/// Threading: any thread, not concurrently with other calls on this volume.
#[no_mangle]
pub extern "C" fn keel_volume_close(vol: *mut keel_volume) -> c_int {
    ffi_int(|| {
        let (lease, _) = Lease::acquire_to_retire(vol)?;
        drop(lease.retire());
        Ok(0)
    })
}

/// Reads `len` bytes at `offset` into `buf`; what was never written reads as zeroes.
///
/// Returns: 0; `-EINVAL` (NULL, or past the end of the volume), `-EBADF`, `-EBUSY`,
/// `-EIO`, or a store error.
///
/// Threading: any thread, one call at a time per volume handle.
///
/// # Safety
///
/// `buf` must point to `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn keel_volume_read(
    vol: *mut keel_volume,
    offset: u64,
    buf: *mut c_void,
    len: usize,
) -> c_int {
    ffi_int(|| {
        let mut lease = Lease::acquire(vol)?;
        // SAFETY: the caller's contract for buf.
        let buf = unsafe { args::bytes_mut(buf, len) }?;
        let d = lease.get().vol.read(offset, len).map_err(vol_errno)?;
        buf.copy_from_slice(&d);
        Ok(0)
    })
}

/// Writes `len` bytes of `buf` at `offset`; returns once they are durable (so no flush
/// is needed, and FUA is implied).
///
/// Returns: 0; `-EINVAL` (NULL, or past the end of the volume), `-ENOSPC`, `-EBADF`,
/// `-EBUSY`, `-EIO`, or a store error.
///
/// Threading: any thread, one call at a time per volume handle.
///
/// # Safety
///
/// `buf` must point to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn keel_volume_write(
    vol: *mut keel_volume,
    offset: u64,
    buf: *const c_void,
    len: usize,
) -> c_int {
    ffi_int(|| {
        let mut lease = Lease::acquire(vol)?;
        // SAFETY: the caller's contract for buf.
        let buf = unsafe { args::bytes(buf, len) }?;
        lease.get().vol.write(offset, buf).map_err(vol_errno)?;
        Ok(0)
    })
}

/// Makes `len` bytes at `offset` read as zeroes (whole pages are freed); durable on
/// return.
///
/// Returns: as `keel_volume_write`.
///
/// Threading: any thread, one call at a time per volume handle.
#[no_mangle]
pub extern "C" fn keel_volume_write_zeroes(vol: *mut keel_volume, offset: u64, len: u64) -> c_int {
    ffi_int(|| {
        let mut lease = Lease::acquire(vol)?;
        lease
            .get()
            .vol
            .write_zeroes(offset, len)
            .map_err(vol_errno)?;
        Ok(0)
    })
}

/// Discards `len` bytes at `offset`: they read as zeroes afterwards (the same as
/// `keel_volume_write_zeroes`); durable on return.
///
/// Returns: as `keel_volume_write`.
///
/// Threading: any thread, one call at a time per volume handle.
#[no_mangle]
pub extern "C" fn keel_volume_trim(vol: *mut keel_volume, offset: u64, len: u64) -> c_int {
    ffi_int(|| {
        let mut lease = Lease::acquire(vol)?;
        lease.get().vol.trim(offset, len).map_err(vol_errno)?;
        Ok(0)
    })
}

/// Makes every completed write durable. Each already is when its call returns, so this
/// only checks the handle.
///
/// Returns: 0; `-EINVAL` (NULL), `-EBADF`, `-EBUSY`.
///
/// Threading: any thread, one call at a time per volume handle.
#[no_mangle]
pub extern "C" fn keel_volume_flush(vol: *mut keel_volume) -> c_int {
    ffi_int(|| {
        let mut lease = Lease::acquire(vol)?;
        lease.get().vol.flush().map_err(vol_errno)?;
        Ok(0)
    })
}
