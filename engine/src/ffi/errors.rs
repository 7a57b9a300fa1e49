//! Return codes: every call returns 0 (or a count) or a negative errno, never a panic.
//!
//! Engine errors become errnos through [`StoreError::errno`]; the library's own checks
//! (handles, arguments, options) use the codes in the table below, which is also what
//! [`keel_strerror`] prints. A panic inside the library is caught at the boundary and
//! returned as `-EIO`.

use std::ffi::{c_char, c_int, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use libc::{
    E2BIG, EACCES, EAGAIN, EBADF, EBADMSG, EBUSY, EDEADLK, EEXIST, EFBIG, EILSEQ, EINVAL, EIO,
    EISDIR, EMFILE, ENAMETOOLONG, ENODEV, ENOENT, ENOMEM, ENOSPC, ENOTDIR, ENOTEMPTY, ENOTSUP,
    EPERM, ERANGE, EROFS, ESHUTDOWN, EUCLEAN, EXDEV,
};

use crate::error::StoreError;

/// What each code means when the library returns it.
#[rustfmt::skip] // a table: one code per line
const MESSAGES: &[(c_int, &CStr)] = &[
    (0, c"success"),
    (EINVAL, c"invalid argument (NULL pointer, bad option, malformed transaction)"),
    (EBADF, c"not a live handle (closed, freed, never opened, or of another kind)"),
    (EBUSY, c"handle in use by another call, or close called from its own callback"),
    (ENOENT, c"no such collection, object, attribute, omap key or device path"),
    (EEXIST, c"collection already exists"),
    (ENOTEMPTY, c"collection is not empty"),
    (ENAMETOOLONG, c"object name or key too long"),
    (E2BIG, c"value, transaction data or operation count over its limit"),
    (EFBIG, c"offset and length past the object size limit"),
    (ERANGE, c"buffer too small for the value, or read offset past the end of the object"),
    (ENOSPC, c"no space left in the data area, the journal or the metadata slot"),
    (EAGAIN, c"too many transactions in flight: poll, then retry"),
    (EROFS, c"store stopped after a device error and accepts no more writes"),
    (EUCLEAN, c"not a Keel store, or its metadata is corrupt"),
    (ENOTSUP, c"not supported by the device"),
    (ENODEV, c"device is powered off"),
    (ENOMEM, c"out of memory"),
    (ESHUTDOWN, c"store was closed before the transaction finished"),
    (EACCES, c"permission denied opening the device"),
    (EPERM, c"operation not permitted on the device"),
    (EISDIR, c"device path is a directory"),
    (ENOTDIR, c"a component of the device path is not a directory"),
    (EMFILE, c"too many open files"),
    (EXDEV, c"transaction names collections of two shards"),
    (EDEADLK, c"blocking call from a reactor thread (a callback) would wait for itself"),
    (EBADMSG, c"data fails its checksum: corruption (keel_scrub names the range)"),
    (EILSEQ, c"torn overwrite left by a power cut: acknowledge or rewrite the range"),
    (EIO, c"I/O error, or an internal error (a panic caught inside the library)"),
];

/// A static, NUL-terminated description of a return code of this library (`rc` may be
/// negative, as returned, or positive). Codes it does not return get a generic text.
///
/// Returns: never NULL; the string lives as long as the program.
///
/// Threading: any thread, any time.
#[no_mangle]
pub extern "C" fn keel_strerror(rc: c_int) -> *const c_char {
    let code = rc.unsigned_abs();
    MESSAGES
        .iter()
        .find(|(c, _)| c.unsigned_abs() == code)
        .map_or(c"unknown error code", |(_, m)| *m)
        .as_ptr()
}

/// The negative errno of an engine error.
pub fn errno(e: StoreError) -> c_int {
    e.errno()
}

/// Runs the body of an `int`-returning call: its `Err` is the (negative) return code, and
/// a panic is `-EIO` instead of unwinding into C.
pub fn ffi_int(f: impl FnOnce() -> Result<c_int, c_int>) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v) | Err(v)) => v,
        Err(_) => -EIO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ObjKey;

    /// Every errno an engine error maps to (device errors aside: those are the driver's)
    /// has its own text.
    #[test]
    fn every_engine_errno_has_a_message() {
        let key = || ObjKey::new(1, b"o".to_vec());
        let all = [
            StoreError::NoSuchCollection(1),
            StoreError::CollectionExists(1),
            StoreError::CollectionNotEmpty(1),
            StoreError::NoSuchObject(key()),
            StoreError::TooLong {
                what: "name",
                len: 300,
                max: 255,
            },
            StoreError::OutOfRange {
                what: "write",
                offset: 0,
                len: 0,
                max: 0,
            },
            StoreError::ReadPastEnd {
                key: key(),
                offset: 1,
                size: 0,
            },
            StoreError::InvalidTxn(String::new()),
            StoreError::NoSpace(String::new()),
            StoreError::NotFormatted(String::new()),
            StoreError::Failed(String::new()),
            StoreError::Busy(1),
            StoreError::Closed,
            StoreError::CrossShard {
                first: 1,
                first_shard: 0,
                other: 2,
                other_shard: 1,
            },
            StoreError::DataCorrupt {
                key: key(),
                offset: 0,
                len: 4096,
            },
            StoreError::TornOverwrite {
                key: key(),
                offset: 0,
                len: 4096,
            },
            StoreError::OnReactor("x"),
        ];
        let unknown = keel_strerror(-123_456);
        for e in all {
            let rc = e.errno();
            assert!(rc < 0, "{e}");
            assert_ne!(keel_strerror(rc), unknown, "no message for {rc} ({e})");
        }
        // SAFETY: keel_strerror returns a static NUL-terminated string.
        let m = unsafe { CStr::from_ptr(keel_strerror(-EBADMSG)) };
        assert!(m.to_str().unwrap().contains("checksum"));
    }
}
