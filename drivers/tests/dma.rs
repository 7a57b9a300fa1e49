//! DMA pools: buffers from hugepages when reserved (with device addresses when root), else
//! from aligned heap memory; a fixed number of them, returned on drop.

use keel_drivers::dma::{hugepages_free, HUGE_PAGE_BYTES};
use keel_drivers::{DmaPool, DmaSource, DriverError, PoolConfig};

fn heap_pool(buf_bytes: usize, count: u32) -> DmaPool {
    let mut cfg = PoolConfig::new(buf_bytes, count);
    cfg.source = DmaSource::Heap;
    DmaPool::new(cfg).unwrap()
}

#[test]
fn heap_pool_hands_out_aligned_disjoint_buffers_and_takes_them_back() {
    let pool = heap_pool(6000, 4);
    assert!(!pool.region().is_hugepages());
    assert!(!pool.region().has_device_addrs());
    let mut bufs: Vec<_> = (0..4).map(|_| pool.alloc().unwrap()).collect();
    assert!(pool.alloc().is_none(), "a pool never grows");
    assert_eq!(pool.available(), 0);
    for (i, b) in bufs.iter_mut().enumerate() {
        assert_eq!(b.as_ptr() as usize % 4096, 0, "4 KiB aligned");
        assert_eq!(b.len(), 6000);
        b.as_mut_slice().fill(i as u8 + 1);
    }
    for (i, b) in bufs.iter().enumerate() {
        assert!(
            b.as_slice().iter().all(|&x| x == i as u8 + 1),
            "buffers overlap"
        );
    }
    drop(bufs.pop());
    assert_eq!(pool.available(), 1);
    let again = pool.alloc().unwrap();
    assert_eq!(again.capacity(), 6000);
}

#[test]
fn the_buffer_freed_last_is_handed_out_first() {
    // The one a command just gave back is still in the CPU's cache.
    let pool = heap_pool(4096, 8);
    let a = pool.alloc().unwrap();
    let b = pool.alloc().unwrap();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    drop(a);
    drop(b);
    let first = pool.alloc().unwrap();
    assert_eq!(first.as_ptr(), pb);
    let again = pool.alloc().unwrap();
    assert_eq!(again.as_ptr(), pa, "then the one freed before it");
    drop(first);
    // A buffer dropped on another thread comes back to the same pool.
    std::thread::spawn(move || drop(again)).join().unwrap();
    assert_eq!(pool.available(), 8);
    assert_eq!(pool.alloc().unwrap().as_ptr(), pa);
}

#[test]
fn threads_taking_and_freeing_at_once_never_share_a_buffer() {
    let pool = heap_pool(4096, 4);
    let threads: Vec<_> = (1..=4u8)
        .map(|id| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                for _ in 0..20_000 {
                    let Some(mut b) = pool.alloc() else { continue };
                    b.as_mut_slice()[..64].fill(id);
                    std::thread::yield_now();
                    assert!(b.as_slice()[..64].iter().all(|&x| x == id), "shared buffer");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(pool.available(), 4);
    let all: Vec<_> = (0..4).map(|_| pool.alloc().unwrap()).collect();
    let mut addrs: Vec<_> = all.iter().map(|b| b.as_ptr()).collect();
    addrs.sort_unstable();
    addrs.dedup();
    assert_eq!(addrs.len(), 4, "every buffer once");
    assert!(pool.alloc().is_none());
}

#[test]
#[should_panic(expected = "past capacity")]
fn set_len_past_capacity_is_a_programmer_error() {
    let pool = heap_pool(4096, 1);
    pool.alloc().unwrap().set_len(4097);
}

#[test]
fn bad_pool_configs_are_refused() {
    assert!(matches!(
        DmaPool::new(PoolConfig::new(4096, 0)),
        Err(DriverError::Config(_))
    ));
    let mut cfg = PoolConfig::new(4096, 1);
    cfg.align = 3000;
    assert!(matches!(DmaPool::new(cfg), Err(DriverError::Config(_))));
}

#[test]
fn buffers_outlive_the_pool_handle() {
    let pool = heap_pool(4096, 2);
    let mut buf = pool.alloc().unwrap();
    drop(pool);
    buf.as_mut_slice().fill(7);
    assert_eq!(buf.as_slice()[4095], 7);
}

/// Reserves hugepages for the test's life and gives the old reservation back after.
struct Reserve {
    old: String,
}

const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";

impl Reserve {
    fn pages(n: u64) -> Option<Reserve> {
        let old = std::fs::read_to_string(NR_HUGEPAGES).ok()?;
        let want = old.trim().parse::<u64>().ok()? + n;
        std::fs::write(NR_HUGEPAGES, want.to_string()).ok()?;
        let r = Reserve { old };
        (hugepages_free() >= n).then_some(r)
    }
}

impl Drop for Reserve {
    fn drop(&mut self) {
        let _ = std::fs::write(NR_HUGEPAGES, self.old.trim());
    }
}

#[test]
fn hugepage_pool_when_pages_are_reserved() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("SKIP hugepage_pool_when_pages_are_reserved: needs root to reserve hugepages");
        return;
    }
    let Some(_reserve) = Reserve::pages(4) else {
        eprintln!(
            "SKIP hugepage_pool_when_pages_are_reserved: the kernel would not reserve 4 hugepages"
        );
        return;
    };
    let mut cfg = PoolConfig::new(128 << 10, 24); // 3 MiB: two hugepages
    cfg.source = DmaSource::Hugepages;
    let pool = DmaPool::new(cfg).expect("hugepage pool");
    assert!(pool.region().is_hugepages());
    assert_eq!(pool.region().len(), 2 * HUGE_PAGE_BYTES);
    assert!(
        pool.region().has_device_addrs(),
        "root reads physical addresses from pagemap"
    );
    let mut bufs: Vec<_> = (0..24).map(|_| pool.alloc().unwrap()).collect();
    for b in &mut bufs {
        b.as_mut_slice().fill(0xa5);
        let base = b.device_addr(0).expect("device address");
        assert_eq!(base % 4096, 0);
        // Within a hugepage, device addresses run with virtual ones.
        let in_page = HUGE_PAGE_BYTES - b.region_offset() % HUGE_PAGE_BYTES;
        if in_page > 4096 {
            assert_eq!(b.device_addr(4096), Some(base + 4096));
        }
    }
    // Two distinct physical pages behind the two hugepages.
    let first = pool.region().device_addr(0).unwrap();
    let second = pool.region().device_addr(HUGE_PAGE_BYTES).unwrap();
    assert_ne!(first, second);
    assert_eq!(first % HUGE_PAGE_BYTES as u64, 0);
    drop(bufs);
    drop(pool);
}

#[test]
fn forced_hugepages_without_reservation_is_a_clear_error() {
    if hugepages_free() > 1000 {
        eprintln!("SKIP: this host has many hugepages free");
        return;
    }
    let mut cfg = PoolConfig::new(HUGE_PAGE_BYTES, 1024); // 2 GiB
    cfg.source = DmaSource::Hugepages;
    match DmaPool::new(cfg) {
        Err(DriverError::Config(msg)) => assert!(msg.contains("hugepages"), "{msg}"),
        other => panic!("expected a config error, got {other:?}"),
    }
}
