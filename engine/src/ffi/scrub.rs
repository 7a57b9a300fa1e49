//! `keel_scrub`: a full scrub pass from C, and what it found.
//!
//! ```text
//!  keel_scrub(store, &report, ranges, cap)
//!    polled:   Store::scrub (every page of the shard, on this thread)
//!    reactors: Engine::scrub (each reactor a pass of its shard, at once; the store handle
//!              is let go while they run)
//!    ─► counts into *report (report_size bytes), the bad ranges in key order into
//!       ranges[0..cap]: collection, name copied in, kind, offset, length
//! ```
//!
//! A bad range is *torn* (`KEEL_BAD_TORN`: a power cut interrupted an in-place overwrite;
//! reads fail with `-EILSEQ`; the caller takes the bytes with `keel_txn_acknowledge` or
//! rewrites them) or *corrupt* (`KEEL_BAD_CORRUPT`: the device returned other bytes than
//! were written; reads fail with `-EBADMSG`; rewrite or remove the data).

use std::ffi::c_int;
use std::mem::{offset_of, size_of};
use std::sync::Arc;

use libc::{EDEADLK, EINVAL};

use super::errors::{errno, ffi_int};
use super::handles::Lease;
use super::opts::{Backend, KEEL_STRUCT_MAX_BYTES};
use super::store::keel_store;
use super::KEEL_MAX_NAME_BYTES;
use crate::reactor::reactor::on_reactor;
use crate::shard::{BadRange, ScrubReport};

/// `struct keel_bad_range.kind`: a torn overwrite (reads fail with `-EILSEQ`).
pub const KEEL_BAD_TORN: u32 = 1;
/// `struct keel_bad_range.kind`: corruption (reads fail with `-EBADMSG`).
pub const KEEL_BAD_CORRUPT: u32 = 2;
/// Bytes of `struct keel_bad_range.name`: the longest name and a NUL.
pub const KEEL_BAD_RANGE_NAME_BYTES: usize = 256;

/// What `keel_scrub` found, counted. Set `report_size` before the call; fields are only
/// ever added at the end.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct keel_scrub_report {
    /// Bytes of this struct the caller knows: set it to `sizeof(struct keel_scrub_report)`
    /// (at least 64, the size of version 1, at most `KEEL_STRUCT_MAX_BYTES`). The call
    /// fills that many bytes, with zeroes past the fields this library has; it leaves
    /// this field as it was.
    pub report_size: usize,
    /// Pages read and checked.
    pub pages: u64,
    /// Pages that match their checksums.
    pub clean: u64,
    /// Pages not checked because a write to them was in flight, or their object went
    /// away during the pass (the next pass checks them).
    pub skipped: u64,
    /// Pages in torn ranges.
    pub torn_pages: u64,
    /// Pages in corrupt ranges.
    pub corrupt_pages: u64,
    /// Torn ranges (runs of adjacent torn pages of one object).
    pub torn_ranges: u64,
    /// Corrupt ranges.
    pub corrupt_ranges: u64,
}

/// A bad range `keel_scrub` found: whole pages of one object. Its layout is fixed (a
/// different one would be a new struct).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct keel_bad_range {
    /// The object's collection.
    pub coll: u64,
    /// First byte of the range in the object (a multiple of 4096).
    pub offset: u64,
    /// Bytes in the range (a multiple of 4096).
    pub len: u64,
    /// `KEEL_BAD_TORN` or `KEEL_BAD_CORRUPT`.
    pub kind: u32,
    /// Bytes of the object's name in `name` (1 to `KEEL_MAX_NAME_BYTES`).
    pub name_len: u32,
    /// The object's name, copied, zero-padded: `name[name_len]` is 0, so a name without
    /// NUL bytes is also a C string. Pass `name` and `name_len` to `keel_read` or
    /// `keel_txn_acknowledge` as they are.
    pub name: [u8; KEEL_BAD_RANGE_NAME_BYTES],
}

const _: () = {
    assert!(KEEL_BAD_RANGE_NAME_BYTES == KEEL_MAX_NAME_BYTES + 1);
    assert!(size_of::<keel_bad_range>() == 288);
    assert!(offset_of!(keel_bad_range, name) == 32);
    assert!(size_of::<keel_scrub_report>() == REPORT_SIZE_V1);
};

/// Bytes of version 1 of `struct keel_scrub_report`.
const REPORT_SIZE_V1: usize = 64;

impl keel_bad_range {
    fn of(kind: u32, r: &BadRange) -> Self {
        let mut name = [0u8; KEEL_BAD_RANGE_NAME_BYTES];
        let n = r.key.name.len().min(KEEL_MAX_NAME_BYTES);
        name[..n].copy_from_slice(&r.key.name[..n]);
        keel_bad_range {
            coll: r.key.coll,
            offset: r.offset,
            len: r.len,
            kind,
            name_len: n as u32,
            name,
        }
    }
}

/// Every bad range of `r`, in (collection, name, offset) order.
fn ranges_of(r: &ScrubReport) -> Vec<keel_bad_range> {
    let mut all: Vec<(u32, &BadRange)> = (r.torn.iter().map(|b| (KEEL_BAD_TORN, b)))
        .chain(r.corrupt.iter().map(|b| (KEEL_BAD_CORRUPT, b)))
        .collect();
    all.sort_by(|(ka, a), (kb, b)| (&a.key, a.offset, ka).cmp(&(&b.key, b.offset, kb)));
    all.into_iter()
        .map(|(k, b)| keel_bad_range::of(k, b))
        .collect()
}

/// Runs a full scrub pass: reads every mapped page of the store and checks it against its
/// checksum. Counts go to `*report`; the bad ranges, in (collection, name, offset) order,
/// to `ranges[0..cap]` (at most `cap` of them: `torn_ranges + corrupt_ranges` says how
/// many there are; `ranges` may be NULL when `cap` is 0, to count only). Every bad page
/// is read once more through the checked read path before it is reported, so a page
/// rewritten during the pass is not taken for corruption.
///
/// Without a core list the pass runs on this thread, to completion (transactions already
/// submitted move on meanwhile; their callbacks wait for the next `keel_poll`). With
/// reactors every reactor scrubs its shard at once and takes no new work until its pass is
/// done; this call lets go of the store handle while it waits, so other threads may use
/// the store (but `keel_store_close` is `-EBUSY` until the pass ends). Either way it
/// takes as long as reading every mapped page. The background scrub of
/// `keel_opts.scrub_pages_per_sec` is not affected.
///
/// Returns: 0; `-EINVAL` (NULL `store` or `report`; `report->report_size` below 64 or
/// above `KEEL_STRUCT_MAX_BYTES`; NULL `ranges` with `cap` > 0), `-EBADF`, `-EBUSY`,
/// `-EDEADLK` (called from a callback on a reactor thread), `-ESHUTDOWN` (a reactor is
/// gone), `-EIO` or another device errno (a device read failed; the pass is lost), `-EIO`
/// (internal error). On error `*report` and `ranges` are unchanged.
///
/// Threading: the store's thread rule; may be called from a callback without reactors.
///
/// # Safety
///
/// `report` must be NULL or point to `report->report_size` writable bytes, aligned for
/// `struct keel_scrub_report`; `ranges` must be NULL or point to `cap` writable entries.
#[no_mangle]
pub unsafe extern "C" fn keel_scrub(
    store: *mut keel_store,
    report: *mut keel_scrub_report,
    ranges: *mut keel_bad_range,
    cap: usize,
) -> c_int {
    ffi_int(|| {
        let mut lease = Lease::acquire(store)?;
        if report.is_null() || (ranges.is_null() && cap > 0) {
            return Err(-EINVAL);
        }
        // Non-NULL and aligned (the caller's contract); every version has
        // report_size first.
        // SAFETY: report_size is readable.
        let size = unsafe { std::ptr::addr_of!((*report).report_size).read() };
        if !(REPORT_SIZE_V1..=KEEL_STRUCT_MAX_BYTES).contains(&size)
            || cap > isize::MAX as usize / size_of::<keel_bad_range>()
        {
            return Err(-EINVAL);
        }
        let found = match lease.get().backend_mut() {
            Backend::Polled(s) => s.scrub().map_err(errno)?,
            Backend::Reactors(e) => {
                if on_reactor() {
                    return Err(-EDEADLK);
                }
                let engine = Arc::clone(e);
                drop(lease);
                engine.scrub().map_err(errno)?
            }
        };
        let bad = ranges_of(&found);
        let counts = keel_scrub_report {
            report_size: size,
            pages: found.pages,
            clean: found.clean,
            skipped: found.skipped,
            torn_pages: found.torn_pages(),
            corrupt_pages: found.corrupt_pages(),
            torn_ranges: found.torn.len() as u64,
            corrupt_ranges: found.corrupt.len() as u64,
        };
        let known = size.min(size_of::<keel_scrub_report>());
        let n = bad.len().min(cap);
        // `report` points to `size` writable bytes (the caller's contract), of which
        // `known` come from the local and the rest are zeroed; ranges points to `cap`
        // writable entries and n <= cap; the locals and the caller's memory do not
        // overlap.
        // SAFETY: the copies are in bounds and do not overlap.
        unsafe {
            let dst = report.cast::<u8>();
            std::ptr::copy_nonoverlapping(std::ptr::addr_of!(counts).cast::<u8>(), dst, known);
            dst.add(known).write_bytes(0, size - known);
            if n > 0 {
                std::ptr::copy_nonoverlapping(bad.as_ptr(), ranges, n);
            }
        }
        Ok(0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{ObjKey, PAGE};

    #[test]
    fn ranges_come_in_key_order_with_their_names_copied() {
        let r = |coll, name: &[u8], page: u64| BadRange {
            key: ObjKey::new(coll, name.to_vec()),
            offset: page * PAGE,
            len: PAGE,
        };
        let long = vec![b'x'; KEEL_MAX_NAME_BYTES];
        let rep = ScrubReport {
            torn: vec![r(2, b"b", 3), r(1, &long, 0)],
            corrupt: vec![r(2, b"b", 1), r(1, b"a", 9)],
            ..ScrubReport::default()
        };
        let out = ranges_of(&rep);
        let got: Vec<(u64, &[u8], u64, u32)> = out
            .iter()
            .map(|b| (b.coll, &b.name[..b.name_len as usize], b.offset, b.kind))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, &b"a"[..], 9 * PAGE, KEEL_BAD_CORRUPT),
                (1, &long[..], 0, KEEL_BAD_TORN),
                (2, &b"b"[..], PAGE, KEEL_BAD_CORRUPT),
                (2, &b"b"[..], 3 * PAGE, KEEL_BAD_TORN),
            ]
        );
        assert!(out.iter().all(|b| b.name[b.name_len as usize] == 0));
    }
}
