//! The C ABI called from Rust, as C would call it: NULLs, stale, foreign and wrong-kind
//! handles are negative errnos; `opts_size` from an older or a newer header is accepted or
//! refused as documented; a handle used by two calls at once is `-EBUSY`, and a panic inside
//! the library is `-EIO` and poisons only its handle; transactions round-trip through
//! submit, poll and callbacks; and the checked-in header declares every exported function.
//! (The C side, under valgrind, is `engine/tests/c/test_keel.c`.)

use std::ffi::{c_int, c_void, CStr};
use std::mem::{size_of, MaybeUninit};
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicUsize, Ordering};

use keel_engine::ffi::errors::ffi_int;
use keel_engine::ffi::handles::{is_live, Lease};
use keel_engine::ffi::opts::{KEEL_JOURNAL_MAX_BYTES, OPTS_SIZE_V1};
use keel_engine::ffi::*;
use libc::{E2BIG, EBADF, EBUSY, EEXIST, EINVAL, EIO, ENAMETOOLONG, ENOENT};

const SIM_BYTES: u64 = 64 << 20;

/// `struct keel_opts` as `keel_opts_init` leaves it.
fn opts() -> keel_opts {
    let mut o = MaybeUninit::<keel_opts>::uninit();
    // `o` is writable and aligned for a keel_opts; keel_opts_init writes all
    // size_of::<keel_opts>() bytes (zeroes, valid for every field) and the size.
    // SAFETY: keel_opts_init writes a whole keel_opts into `o`.
    unsafe {
        keel_opts_init(o.as_mut_ptr(), size_of::<keel_opts>());
        o.assume_init()
    }
}

fn sim_opts() -> keel_opts {
    let mut o = opts();
    o.dev_kind = KEEL_DEV_SIM;
    o.size_bytes = SIM_BYTES;
    o.create = true;
    o
}

/// `keel_store_open`'s return code and handle.
fn open(o: &keel_opts) -> (c_int, *mut keel_store) {
    let mut s = null_mut();
    // `o` is a whole keel_opts with opts_size bytes readable (or a smaller size);
    // its pointers are NULL or valid; `s` is a writable pointer.
    // SAFETY: the arguments meet keel_store_open's contract.
    let rc = unsafe { keel_store_open(o, &mut s) };
    (rc, s)
}

fn open_sim() -> *mut keel_store {
    let (rc, s) = open(&sim_opts());
    assert_eq!(rc, 0, "{}", strerror(rc));
    s
}

fn close(s: *mut keel_store) -> c_int {
    keel_store_close(s)
}

fn strerror(rc: c_int) -> String {
    // SAFETY: keel_strerror returns a static NUL-terminated string.
    unsafe { CStr::from_ptr(keel_strerror(rc)) }
        .to_string_lossy()
        .into_owned()
}

fn write(t: *mut keel_txn, coll: u64, name: &[u8], offset: u64, data: &[u8]) -> c_int {
    // SAFETY: name and data are live slices of the lengths passed.
    unsafe {
        keel_txn_write(
            t,
            coll,
            name.as_ptr().cast(),
            name.len(),
            offset,
            data.as_ptr().cast(),
            data.len(),
        )
    }
}

fn txn_len(t: *mut keel_txn) -> Result<usize, c_int> {
    let mut n = 0;
    // SAFETY: n is a writable usize.
    match unsafe { keel_txn_len(t, &mut n) } {
        0 => Ok(n),
        e => Err(e),
    }
}

fn read(s: *mut keel_store, coll: u64, name: &[u8], len: usize) -> Result<Vec<u8>, c_int> {
    let mut buf = vec![0u8; len];
    let mut n = 0;
    // SAFETY: name and buf are live slices of the lengths passed; n is writable.
    let rc = unsafe {
        keel_read(
            s,
            coll,
            name.as_ptr().cast(),
            name.len(),
            0,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut n,
        )
    };
    if rc != 0 {
        return Err(rc);
    }
    buf.truncate(n);
    Ok(buf)
}

#[test]
fn strerror_covers_codes_and_survives_any_value() {
    assert_eq!(strerror(0), "success");
    assert_eq!(strerror(-EBADF), strerror(EBADF));
    assert!(strerror(-EBADF).contains("handle"));
    for rc in [c_int::MIN, c_int::MAX, -4242, 4242] {
        assert_eq!(strerror(rc), "unknown error code");
    }
}

#[test]
fn opts_init_writes_only_what_it_is_given() {
    // SAFETY: NULL is allowed and ignored.
    unsafe { keel_opts_init(null_mut(), size_of::<keel_opts>()) };

    // Too small: untouched.
    let mut bytes = [0xabu8; 128];
    // SAFETY: `bytes` has 128 writable bytes; the call writes none of them for this size.
    unsafe { keel_opts_init(bytes.as_mut_ptr().cast(), OPTS_SIZE_V1 - 1) };
    assert!(bytes.iter().all(|&b| b == 0xab));

    // A newer, larger struct: all of it zeroed but the size.
    #[repr(C, align(8))]
    struct Newer([u8; 160]);
    let mut newer = Newer([0xcd; 160]);
    // SAFETY: 160 writable bytes, aligned to 8 like keel_opts.
    unsafe { keel_opts_init(newer.0.as_mut_ptr().cast(), 160) };
    assert_eq!(usize::from_ne_bytes(newer.0[..8].try_into().unwrap()), 160);
    assert!(newer.0[8..].iter().all(|&b| b == 0));

    let o = opts();
    assert_eq!(o.opts_size, size_of::<keel_opts>());
    assert_eq!(
        (o.dev_kind, o.mode, o.create),
        (KEEL_DEV_SIM, KEEL_MODE_FULL, false)
    );
}

#[test]
fn open_refuses_nulls_sizes_and_unknown_values() {
    let mut s: *mut keel_store = 0x10 as *mut keel_store;
    // SAFETY: NULLs are allowed and refused.
    unsafe {
        assert_eq!(keel_store_open(null(), &mut s), -EINVAL);
        assert_eq!(keel_store_open(&sim_opts(), null_mut()), -EINVAL);
    }
    assert_eq!(s, 0x10 as *mut keel_store, "out untouched");

    // Too small for version 1, or too large to be a struct (refused before reading past it).
    for size in [
        0,
        1,
        OPTS_SIZE_V1 - 1,
        KEEL_STRUCT_MAX_BYTES + 1,
        usize::MAX,
    ] {
        let mut o = sim_opts();
        o.opts_size = size;
        assert_eq!(open(&o), (-EINVAL, null_mut()), "opts_size {size}");
    }
    type Case = (&'static str, fn(&mut keel_opts), c_int);
    let cases: [Case; 9] = [
        ("kind", |o| o.dev_kind = 99, -EINVAL),
        ("mode", |o| o.mode = 2, -EINVAL),
        (
            "nvme without an address",
            |o| {
                o.dev_kind = KEEL_DEV_NVME;
                o.size_bytes = 0;
            },
            -EINVAL,
        ),
        (
            "nvme with a size",
            |o| {
                o.dev_kind = KEEL_DEV_NVME;
                o.path = c"auto".as_ptr();
            },
            -EINVAL,
        ),
        (
            "nvme at an address with no controller",
            |o| {
                o.dev_kind = KEEL_DEV_NVME;
                o.size_bytes = 0;
                o.path = c"0000:ff:1f.7".as_ptr();
            },
            -ENOENT,
        ),
        ("sim without create", |o| o.create = false, -EINVAL),
        (
            "sim too big",
            |o| o.size_bytes = KEEL_SIM_MAX_BYTES + 1,
            -EINVAL,
        ),
        (
            "psync without path",
            |o| o.dev_kind = KEEL_DEV_PSYNC,
            -EINVAL,
        ),
        (
            "journal",
            |o| o.journal_bytes = KEEL_JOURNAL_MAX_BYTES + 1,
            -EINVAL,
        ),
    ];
    for (what, change, want) in cases {
        let mut o = sim_opts();
        change(&mut o);
        assert_eq!(open(&o), (want, null_mut()), "{what}");
    }
}

#[test]
fn opts_size_from_older_and_newer_headers() {
    // Older: version 1 only; the fields after it are not read (garbage there is fine).
    let mut o = sim_opts();
    o.opts_size = OPTS_SIZE_V1;
    o.journal_bytes = u64::MAX;
    o.max_inflight_txns = 1;
    let (rc, s) = open(&o);
    assert_eq!(rc, 0);
    // max_inflight_txns was not read: the default (4096) applies, so a second submit works.
    let t = keel_txn_new();
    for coll in [1, 2] {
        assert_eq!(keel_txn_mkcoll(t, coll), 0);
        // SAFETY: live handles, NULL callback.
        assert_eq!(unsafe { keel_submit(s, t, None, null_mut()) }, 0);
    }
    assert_eq!(close(s), 0);

    // Newer: a larger struct whose extra bytes are zero is fine; a nonzero one is refused.
    #[repr(C)]
    struct Newer {
        opts: keel_opts,
        more: [u8; 40],
    }
    let mut n = Newer {
        opts: sim_opts(),
        more: [0; 40],
    };
    n.opts.opts_size = size_of::<Newer>();
    let (rc, s) = open(&n.opts);
    assert_eq!(rc, 0);
    assert_eq!(close(s), 0);
    n.more[39] = 1;
    assert_eq!(open(&n.opts), (-EINVAL, null_mut()));
    keel_txn_free(t);
}

#[test]
fn stale_foreign_and_wrong_kind_handles_are_ebadf() {
    let s = open_sim();
    let t = keel_txn_new();
    assert!(is_live(s) && is_live(t));
    assert_eq!(keel_poll(null_mut()), -EINVAL);
    assert_eq!(keel_txn_mkcoll(null_mut(), 1), -EINVAL);

    let mut junk = [0u64; 8];
    assert_eq!(keel_poll(junk.as_mut_ptr().cast()), -EBADF);
    assert_eq!(keel_txn_mkcoll(junk.as_mut_ptr().cast(), 1), -EBADF);
    assert_eq!(keel_poll(t.cast()), -EBADF);
    assert_eq!(keel_txn_mkcoll(s.cast(), 1), -EBADF);
    assert_eq!(close(t.cast()), -EBADF);
    keel_txn_free(s.cast()); // not a txn: ignored
    assert!(is_live(s));

    keel_txn_free(t);
    keel_txn_free(t); // a no-op
    assert!(!is_live(t));
    assert_eq!(keel_txn_mkcoll(t, 1), -EBADF);
    assert_eq!(close(s), 0);
    assert!(!is_live(s));
    assert_eq!(close(s), -EBADF);
    assert_eq!(keel_poll(s), -EBADF);
    assert_eq!(keel_submit_sync(s, keel_txn_new()), -EBADF);
}

#[test]
fn builders_refuse_bad_ops_and_keep_the_txn() {
    let t = keel_txn_new();
    assert_eq!(write(t, 1, b"a", 0, b"x"), 0);
    assert_eq!(write(t, 1, b"", 0, b"x"), -EINVAL);
    assert_eq!(write(t, 1, &[b'n'; 256], 0, b"x"), -ENAMETOOLONG);
    assert_eq!(write(t, 1, b"a", KEEL_MAX_OBJECT_BYTES, b"x"), -libc::EFBIG);
    // SAFETY: NULL data with a length is refused before it is read.
    let rc = unsafe { keel_txn_write(t, 1, b"a".as_ptr().cast(), 1, 0, null(), 10) };
    assert_eq!(rc, -EINVAL);
    let value = vec![0u8; KEEL_MAX_VALUE_BYTES + 1];
    // SAFETY: every pointer is a live slice of the length passed.
    let rc = unsafe {
        keel_txn_setattr(
            t,
            1,
            b"a".as_ptr().cast(),
            1,
            b"k".as_ptr().cast(),
            1,
            value.as_ptr().cast(),
            value.len(),
        )
    };
    assert_eq!(rc, -E2BIG);
    assert_eq!(txn_len(t), Ok(1));
    keel_txn_free(t);
}

#[test]
fn a_handle_in_use_is_ebusy() {
    let s = open_sim();
    let t = keel_txn_new();
    {
        let _held = Lease::acquire(s).unwrap();
        assert_eq!(keel_poll(s), -EBUSY);
        assert_eq!(close(s), -EBUSY);
        assert_eq!(keel_txn_mkcoll(t, 1), 0);
        // SAFETY: live handles, NULL callback.
        assert_eq!(unsafe { keel_submit(s, t, None, null_mut()) }, -EBUSY);
        assert_eq!(txn_len(t), Ok(1), "refused: not taken");
    }
    {
        let _held = Lease::acquire(t).unwrap();
        assert_eq!(keel_txn_mkcoll(t, 2), -EBUSY);
        assert_eq!(keel_submit_sync(s, t), -EBUSY);
        keel_txn_free(t); // busy: ignored
        assert!(is_live(t));
    }
    assert_eq!(keel_submit_sync(s, t), 0);
    keel_txn_free(t);
    assert_eq!(close(s), 0);
}

#[test]
fn two_threads_on_one_store_get_ebusy_not_a_race() {
    let s = open_sim() as usize;
    let t = keel_txn_new();
    assert_eq!(keel_txn_mkcoll(t, 1), 0);
    assert_eq!(keel_submit_sync(s as *mut keel_store, t), 0);
    let busy = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for i in 0..4u8 {
            let busy = &busy;
            scope.spawn(move || {
                let s = s as *mut keel_store;
                let t = keel_txn_new();
                for j in 0..50u8 {
                    assert_eq!(write(t, 1, &[b'a' + i], u64::from(j), &[j]), 0);
                    loop {
                        match keel_submit_sync(s, t) {
                            0 => break,
                            e if e == -EBUSY => {
                                busy.fetch_add(1, Ordering::Relaxed);
                                std::thread::yield_now();
                            }
                            e => panic!("submit_sync: {}", strerror(e)),
                        }
                    }
                    let rc = keel_poll(s);
                    assert!(rc >= 0 || rc == -EBUSY, "{rc}");
                }
                keel_txn_free(t);
            });
        }
    });
    for i in 0..4u8 {
        let want: Vec<u8> = (0..50).collect();
        assert_eq!(read(s as *mut keel_store, 1, &[b'a' + i], 64), Ok(want));
    }
    keel_txn_free(t);
    assert_eq!(close(s as *mut keel_store), 0);
}

#[test]
fn a_panic_is_eio_and_poisons_only_its_handle() {
    assert_eq!(ffi_int(|| panic!("inside the library")), -EIO);

    let s = open_sim();
    let other = open_sim();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _lease = Lease::acquire(s).unwrap();
        panic!("while the store is leased");
    }));
    assert!(r.is_err());
    assert_eq!(keel_poll(s), -EIO);
    assert_eq!(keel_poll(other), 0);
    assert_eq!(close(s), -EIO, "freed, reporting the poison");
    assert_eq!(close(s), -EBADF);
    assert_eq!(close(other), 0);
}

static CALLS: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn count(arg: *mut c_void, status: c_int) {
    // Every submit in this test passes a pointer to a live Vec<c_int>, used by this
    // thread only.
    // SAFETY: `arg` is a live Vec<c_int> this thread alone uses.
    let statuses = unsafe { &mut *arg.cast::<Vec<c_int>>() };
    statuses.push(status);
    CALLS.fetch_add(1, Ordering::Relaxed);
}

#[test]
fn submit_poll_and_callbacks() {
    let s = open_sim();
    let t = keel_txn_new();
    let mut statuses: Vec<c_int> = Vec::new();
    let arg: *mut c_void = (&mut statuses as *mut Vec<c_int>).cast();
    assert_eq!(keel_txn_mkcoll(t, 4), 0);
    // SAFETY: live handles; `count` takes `arg`, which outlives the store.
    assert_eq!(unsafe { keel_submit(s, t, Some(count), arg) }, 0);
    assert_eq!(txn_len(t), Ok(0));
    assert_eq!(keel_txn_mkcoll(t, 4), 0);
    // SAFETY: as above.
    assert_eq!(unsafe { keel_submit(s, t, Some(count), arg) }, 0);
    let mut delivered = 0;
    for _ in 0..1_000_000 {
        let rc = keel_poll(s);
        assert!(rc >= 0);
        delivered += rc;
        if delivered == 2 {
            break;
        }
    }
    assert_eq!(delivered, 2);
    assert_eq!(statuses, [0, -EEXIST]);
    assert_eq!(write(t, 4, b"obj", 0, b"data"), 0);
    assert_eq!(keel_submit_sync(s, t), 0);
    assert_eq!(read(s, 4, b"obj", 10), Ok(b"data".to_vec()));
    let mut stats = keel_stats::default();
    // SAFETY: `stats` is a writable keel_stats of the size passed.
    let rc = unsafe { keel_store_stats(s, &mut stats, size_of::<keel_stats>()) };
    assert_eq!(rc, 0);
    assert_eq!((stats.txns_committed, stats.txns_failed), (2, 1));
    assert_eq!(stats.client_bytes, 4);
    keel_txn_free(t);
    assert_eq!(close(s), 0);
}

/// Every function exported from `engine/src/ffi/` is declared in the checked-in header
/// (the full comparison is `vendor-scripts/gen-header.sh --check`, which needs cbindgen).
#[test]
fn header_declares_every_export() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let header = std::fs::read_to_string(root.join("include/keel.h")).unwrap();
    let mut exports = 0;
    // Every .rs file under src/ffi, subfolders included.
    let mut files = Vec::new();
    let mut dirs = vec![root.join("src/ffi")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    for path in files {
        let src = std::fs::read_to_string(path).unwrap();
        let mut rest = src.as_str();
        while let Some(at) = rest.find("extern \"C\" fn ") {
            rest = &rest[at + "extern \"C\" fn ".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            assert!(
                name.starts_with("keel_"),
                "{name}: exports start with keel_"
            );
            assert!(
                header.contains(&format!(" {name}(")) || header.contains(&format!("*{name}(")),
                "{name} is missing from engine/include/keel.h: run vendor-scripts/gen-header.sh"
            );
            exports += 1;
        }
    }
    assert!(exports >= 29, "found only {exports} exports");
}

/// Counts results from any thread (reactor callbacks).
struct Tally {
    ok: AtomicUsize,
    failed: AtomicUsize,
    reactor_thread: AtomicUsize,
}

unsafe extern "C" fn tally(arg: *mut c_void, status: c_int) {
    // SAFETY: every submit in the test passes a pointer to a Tally that outlives the store.
    let t = unsafe { &*arg.cast::<Tally>() };
    if status == 0 {
        t.ok.fetch_add(1, Ordering::Relaxed);
    } else {
        t.failed.fetch_add(1, Ordering::Relaxed);
    }
    let name = std::thread::current().name().unwrap_or("").to_string();
    if name.starts_with("keel-reactor") {
        t.reactor_thread.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn a_core_list_runs_reactor_threads() {
    let cores = [0u32, 1];
    let mut o = sim_opts();
    o.cores = cores.as_ptr();
    o.ncores = 2;
    o.reactor_sleep_us_max = 100;
    let (rc, s) = open(&o);
    if rc == -EINVAL && std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        return; // a one-CPU machine cannot name core 1
    }
    assert_eq!(rc, 0, "{}", strerror(rc));
    let counts = Tally {
        ok: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        reactor_thread: AtomicUsize::new(0),
    };
    let arg = (&counts as *const Tally).cast_mut().cast::<c_void>();
    let t = keel_txn_new();
    // Collections 1 and 2: on two shards or one, each transaction names one.
    for c in 1..=2u64 {
        assert_eq!(keel_txn_mkcoll(t, c), 0);
        assert_eq!(keel_submit_sync(s, t), 0);
    }
    // keel_poll has nothing to do: the reactors run themselves.
    assert_eq!(keel_poll(s), 0);
    for i in 0..64u8 {
        assert_eq!(write(t, 1 + u64::from(i % 2), &[i], 0, &[i; 100]), 0);
        // SAFETY: live handles; `tally` takes a Tally that outlives the store.
        assert_eq!(unsafe { keel_submit(s, t, Some(tally), arg) }, 0);
    }
    // Reads see committed state, answered by the owning reactor: wait for the commit.
    let mut got = Err(0);
    for _ in 0..10_000 {
        got = read(s, 2, &[1], 200);
        if got.is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_micros(100));
    }
    assert_eq!(got, Ok(vec![1; 100]));
    // A transaction across the two shards (when they differ) is -EXDEV, and kept.
    assert_eq!(keel_txn_mkcoll(t, 10), 0);
    assert_eq!(keel_txn_mkcoll(t, 11), 0);
    let rc = keel_submit_sync(s, t);
    if rc == -libc::EXDEV {
        assert_eq!(txn_len(t), Ok(2), "the refused transaction is unchanged");
    } else {
        assert_eq!(rc, 0);
    }
    assert_eq!(close(s), 0);
    // Every callback ran before close returned, on a reactor thread.
    assert_eq!(counts.ok.load(Ordering::Relaxed), 64);
    assert_eq!(counts.failed.load(Ordering::Relaxed), 0);
    assert_eq!(counts.reactor_thread.load(Ordering::Relaxed), 64);
    keel_txn_free(t);
}
