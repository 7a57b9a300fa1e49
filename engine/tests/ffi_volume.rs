//! Volumes through the C ABI, called from Rust as C would: create, open, write across
//! object boundaries, read back, zeroes, trim, flush, resize, remove; errors for a polled
//! store, bad names and modes, ranges past the end, stale handles; and the store refusing
//! to close while a volume is open.

use std::ffi::c_int;
use std::mem::{size_of, MaybeUninit};
use std::ptr::{null, null_mut};

use keel_engine::ffi::*;
use libc::{EBADF, EBUSY, EEXIST, EINVAL, ENOENT, ENOTSUP};

fn opts(cores: &[u32]) -> keel_opts {
    let mut o = MaybeUninit::<keel_opts>::uninit();
    // SAFETY: `o` is writable and aligned for a keel_opts; keel_opts_init writes all of it.
    let mut o = unsafe {
        keel_opts_init(o.as_mut_ptr(), size_of::<keel_opts>());
        o.assume_init()
    };
    o.dev_kind = KEEL_DEV_SIM;
    o.size_bytes = 64 << 20;
    o.create = true;
    o.mode = KEEL_MODE_METADATA_ONLY;
    o.cores = if cores.is_empty() {
        null()
    } else {
        cores.as_ptr()
    };
    o.ncores = cores.len();
    o.reactor_sleep_us_max = 100;
    o
}

fn open(o: &keel_opts) -> *mut keel_store {
    let mut s = null_mut();
    // SAFETY: `o` is a whole keel_opts whose pointers are valid; `s` is writable.
    let rc = unsafe { keel_store_open(o, &mut s) };
    assert_eq!(rc, 0);
    s
}

fn create(s: *mut keel_store, name: &str, size: u64, object_bytes: u64, mode: u32) -> c_int {
    // SAFETY: name is a live slice of the length passed.
    unsafe {
        keel_volume_create(
            s,
            name.as_ptr().cast(),
            name.len(),
            size,
            object_bytes,
            mode,
        )
    }
}

fn vopen(s: *mut keel_store, name: &str) -> (c_int, *mut keel_volume, u64) {
    let (mut v, mut size) = (null_mut(), 0u64);
    // SAFETY: name is a live slice; v and size are writable.
    let rc = unsafe { keel_volume_open(s, name.as_ptr().cast(), name.len(), &mut v, &mut size) };
    (rc, v, size)
}

fn resize(s: *mut keel_store, name: &str, size: u64) -> c_int {
    // SAFETY: name is a live slice of the length passed.
    unsafe { keel_volume_resize(s, name.as_ptr().cast(), name.len(), size) }
}

fn write(v: *mut keel_volume, off: u64, d: &[u8]) -> c_int {
    // SAFETY: d is a live slice of the length passed.
    unsafe { keel_volume_write(v, off, d.as_ptr().cast(), d.len()) }
}

fn read(v: *mut keel_volume, off: u64, len: usize) -> Result<Vec<u8>, c_int> {
    let mut b = vec![0xffu8; len];
    // SAFETY: b is a live, writable buffer of len bytes.
    match unsafe { keel_volume_read(v, off, b.as_mut_ptr().cast(), len) } {
        0 => Ok(b),
        rc => Err(rc),
    }
}

#[test]
fn volumes_through_the_c_abi() {
    let s = open(&opts(&[0]));
    assert_eq!(
        create(s, "disk", 1 << 20, 16 << 10, KEEL_MODE_METADATA_ONLY),
        0
    );
    assert_eq!(
        create(s, "disk", 1 << 20, 0, KEEL_MODE_METADATA_ONLY),
        -EEXIST
    );
    assert_eq!(create(s, "full", 1 << 20, 0, KEEL_MODE_FULL), 0);
    assert_eq!(create(s, "bad", 1 << 20, 0, 7), -EINVAL);
    assert_eq!(create(s, "bad", 1000, 0, KEEL_MODE_FULL), -EINVAL);
    assert_eq!(create(s, "bad", 1 << 20, 3000, KEEL_MODE_FULL), -EINVAL);
    assert_eq!(create(s, "", 1 << 20, 0, KEEL_MODE_FULL), -EINVAL);
    assert_eq!(vopen(s, "nope").0, -ENOENT);
    let (rc, v, size) = vopen(s, "disk");
    assert_eq!((rc, size), (0, 1 << 20));
    // Across object boundaries (16 KiB objects), then zeroes, trim, flush.
    let d: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(write(v, 10_000, &d), 0);
    assert_eq!(read(v, 10_000, d.len()).unwrap(), d);
    assert_eq!(read(v, 0, 10_000).unwrap(), vec![0; 10_000]);
    assert_eq!(keel_volume_write_zeroes(v, 20_000, 5_000), 0);
    assert_eq!(keel_volume_trim(v, 32 << 10, 16 << 10), 0);
    assert_eq!(keel_volume_flush(v), 0);
    let mut want = d.clone();
    want[10_000..15_000].fill(0);
    want[(32 << 10) - 10_000..(48 << 10) - 10_000].fill(0);
    assert_eq!(read(v, 10_000, d.len()).unwrap(), want);
    // Past the end, NULLs.
    assert_eq!(write(v, (1 << 20) - 1, &[1, 2]), -EINVAL);
    assert_eq!(read(v, 1 << 20, 1), Err(-EINVAL));
    assert_eq!(keel_volume_trim(v, u64::MAX, 2), -EINVAL);
    // SAFETY: a NULL buffer is what is being tested.
    assert_eq!(unsafe { keel_volume_read(v, 0, null_mut(), 1) }, -EINVAL);
    assert_eq!(keel_volume_flush(null_mut()), -EINVAL);
    // The store stays open while a volume is.
    assert_eq!(keel_store_close(s), -EBUSY);
    assert_eq!(keel_volume_close(v), 0);
    assert_eq!(keel_volume_close(v), -EBADF);
    // Resize (shrink then grow: the cut part reads as zeroes), remove.
    assert_eq!(resize(s, "disk", 20_000), -EINVAL);
    assert_eq!(resize(s, "disk", 20_480), 0);
    assert_eq!(resize(s, "disk", 1 << 20), 0);
    let (_, v, _) = vopen(s, "disk");
    let r = read(v, 10_000, d.len()).unwrap();
    assert_eq!(&r[..10_480], &want[..10_480]);
    assert!(r[10_480..].iter().all(|b| *b == 0));
    assert_eq!(keel_volume_close(v), 0);
    let name = "disk";
    // SAFETY: name is a live slice of the length passed.
    let rc = unsafe { keel_volume_remove(s, name.as_ptr().cast(), name.len()) };
    assert_eq!(rc, 0);
    assert_eq!(vopen(s, "disk").0, -ENOENT);
    assert_eq!(keel_store_close(s), 0);
}

#[test]
fn a_polled_store_has_no_volumes() {
    let s = open(&opts(&[]));
    assert_eq!(create(s, "disk", 1 << 20, 0, KEEL_MODE_FULL), -ENOTSUP);
    assert_eq!(vopen(s, "disk").0, -ENOTSUP);
    assert_eq!(keel_store_close(s), 0);
}
