//! C arguments into Rust values: pointer and length pairs into slices, with the engine's
//! limits checked first, so that a bad argument is a negative errno and nothing is copied.
//!
//! | argument | NULL | empty | too long |
//! |---|---|---|---|
//! | object name | `-EINVAL` | `-EINVAL` | `-ENAMETOOLONG` (> 255 B) |
//! | attribute / omap key | `-EINVAL` unless empty | allowed | `-ENAMETOOLONG` (> 1 KiB) |
//! | attribute / omap value | `-EINVAL` unless empty | allowed | `-E2BIG` (> 64 KiB) |
//! | data, buffers | `-EINVAL` unless empty | allowed | `-EINVAL` (> `isize::MAX`) |
//! | offset + length | | | `-EFBIG` (> 1 TiB or overflow) |

use std::ffi::{c_int, c_void};

use libc::{E2BIG, EFBIG, EINVAL, ENAMETOOLONG};

use super::{KEEL_MAX_KEY_BYTES, KEEL_MAX_NAME_BYTES, KEEL_MAX_OBJECT_BYTES, KEEL_MAX_VALUE_BYTES};

/// `len` bytes at `p`, borrowed for the call; NULL is allowed when `len` is 0.
///
/// # Safety
///
/// Unless `p` is NULL or `len` is 0, `p` must point to `len` readable bytes that nothing
/// writes during the call (the header's contract for every pointer and length pair).
pub unsafe fn bytes<'a>(p: *const c_void, len: usize) -> Result<&'a [u8], c_int> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() || len > isize::MAX as usize {
        return Err(-EINVAL);
    }
    // `p` is non-NULL and, by this function's contract, points to len readable bytes
    // that stay unchanged during the call; len fits in isize; u8 needs no alignment.
    // SAFETY: the slice is in bounds and unchanged during the call.
    Ok(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) })
}

/// `len` writable bytes at `p`, borrowed for the call; NULL is allowed when `len` is 0.
///
/// # Safety
///
/// Unless `p` is NULL or `len` is 0, `p` must point to `len` writable bytes that nothing
/// else reads or writes during the call.
pub unsafe fn bytes_mut<'a>(p: *mut c_void, len: usize) -> Result<&'a mut [u8], c_int> {
    if len == 0 {
        return Ok(&mut []);
    }
    if p.is_null() || len > isize::MAX as usize {
        return Err(-EINVAL);
    }
    // `p` is non-NULL and, by this function's contract, points to len writable bytes
    // that nothing else touches during the call; len fits in isize; u8 needs no alignment.
    // SAFETY: the slice is in bounds and unaliased during the call.
    Ok(unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), len) })
}

/// An object name: non-NULL, non-empty, at most 255 bytes.
///
/// # Safety
///
/// As [`bytes`].
pub unsafe fn name<'a>(p: *const c_void, len: usize) -> Result<&'a [u8], c_int> {
    if p.is_null() || len == 0 {
        return Err(-EINVAL);
    }
    if len > KEEL_MAX_NAME_BYTES {
        return Err(-ENAMETOOLONG);
    }
    // SAFETY: forwarded from this function's contract.
    unsafe { bytes(p, len) }
}

/// An attribute or omap key: at most 1 KiB; empty is allowed (and then `p` may be NULL).
///
/// # Safety
///
/// As [`bytes`].
pub unsafe fn key<'a>(p: *const c_void, len: usize) -> Result<&'a [u8], c_int> {
    if len > KEEL_MAX_KEY_BYTES {
        return Err(if p.is_null() { -EINVAL } else { -ENAMETOOLONG });
    }
    // SAFETY: forwarded from this function's contract.
    unsafe { bytes(p, len) }
}

/// An attribute or omap value: at most 64 KiB; empty is allowed.
///
/// # Safety
///
/// As [`bytes`].
pub unsafe fn value<'a>(p: *const c_void, len: usize) -> Result<&'a [u8], c_int> {
    if len > KEEL_MAX_VALUE_BYTES {
        return Err(if p.is_null() { -EINVAL } else { -E2BIG });
    }
    // SAFETY: forwarded from this function's contract.
    unsafe { bytes(p, len) }
}

/// `offset + len` stays within the object size limit.
pub fn range(offset: u64, len: u64) -> Result<(), c_int> {
    match offset.checked_add(len) {
        Some(end) if end <= KEEL_MAX_OBJECT_BYTES => Ok(()),
        _ => Err(-EFBIG),
    }
}

/// Writes `v` to the out-parameter `p`.
///
/// # Safety
///
/// Unless `p` is NULL, it must be valid for a write of a `T` and aligned for it.
pub unsafe fn put<T>(p: *mut T, v: T) -> Result<(), c_int> {
    if p.is_null() {
        return Err(-EINVAL);
    }
    // Non-NULL, and valid and aligned for a T by this function's contract; write
    // does not read or drop the old contents (which may be uninitialized).
    // SAFETY: the write goes to a valid, aligned T.
    unsafe { p.write(v) };
    Ok(())
}
