//! The userspace NVMe driver on a real controller (QEMU's emulated NVMe in a test guest:
//! see TEST-VM.md). Needs root, 2 MiB hugepages, and a controller with no driver bound or
//! bound to vfio-pci, named by `KEEL_NVME_PCI` (a PCI address or "auto"). Without it every
//! test prints `skipped: KEEL_NVME_PCI not set` and passes.
//!
//! The tests share one controller, so they take a lock and run one at a time. They write
//! the whole namespace freely: never point them at a disk you care about.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use keel_drivers::nvme::{AccessMode, NvmeConfig, NvmeDevice, NvmeError, NvmeFault};
use keel_drivers::{
    BlockDevice, Command, Completion, DmaPool, DmaSource, DriverError, NvmeStatus, Op, PoolConfig,
    QpairOptions, QueuePair,
};

static CONTROLLER: Mutex<()> = Mutex::new(());

/// The lock on the controller and its config, or None (after saying so) when not set.
fn setup() -> Option<(MutexGuard<'static, ()>, NvmeConfig)> {
    let Ok(pci) = std::env::var("KEEL_NVME_PCI") else {
        println!("skipped: KEEL_NVME_PCI not set");
        return None;
    };
    let guard = CONTROLLER.lock().unwrap_or_else(|p| p.into_inner());
    let mut cfg = NvmeConfig::new(pci);
    cfg.io_timeout = Duration::from_secs(20);
    Some((guard, cfg))
}

fn pool(buf_bytes: usize, count: u32) -> DmaPool {
    let mut c = PoolConfig::new(buf_bytes, count);
    c.source = DmaSource::Hugepages;
    DmaPool::new(c).expect("hugepages for DMA buffers")
}

fn qpair(dev: &NvmeDevice, depth: u32, pools: &[&DmaPool]) -> keel_drivers::nvme::NvmeQpair {
    let opts = QpairOptions {
        depth,
        regions: pools.iter().map(|p| p.region().clone()).collect(),
    };
    dev.open_qpair(&opts).expect("open queue pair")
}

/// Polls until `n` completions came back (bounded: a hang is a failure, not a stuck test).
fn wait(qp: &mut impl QueuePair, n: usize) -> Vec<Completion> {
    let mut out = Vec::new();
    let start = Instant::now();
    while out.len() < n {
        qp.poll(64, &mut |c| out.push(c));
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "only {} of {n} completions",
            out.len()
        );
    }
    out
}

fn run(qp: &mut impl QueuePair, cmd: Command) -> Completion {
    qp.submit(7, cmd).expect("submit");
    wait(qp, 1).pop().unwrap()
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn write(qp: &mut impl QueuePair, pool: &DmaPool, lba: u64, data: &[u8], fua: bool) {
    let mut buf = pool.alloc().expect("free buffer");
    buf.set_len(data.len());
    buf.as_mut_slice().copy_from_slice(data);
    let c = run(qp, Command::Write { lba, buf, fua });
    c.result.expect("write");
    assert!(c.buf.is_some(), "the buffer comes back");
}

fn read(qp: &mut impl QueuePair, pool: &DmaPool, lba: u64, len: usize) -> Vec<u8> {
    let mut buf = pool.alloc().expect("free buffer");
    buf.set_len(len);
    buf.as_mut_slice().fill(0xa5);
    let c = run(qp, Command::Read { lba, buf });
    c.result.expect("read");
    c.buf.unwrap().as_slice().to_vec()
}

#[test]
fn brings_up_and_reports_geometry() {
    let Some((_g, cfg)) = setup() else { return };
    let dev = NvmeDevice::open(&cfg).expect("open controller");
    let g = dev.geometry();
    println!(
        "nvme {} ({:?}): {g:?}, {} queue pairs",
        dev.pci(),
        dev.mode(),
        dev.max_qpairs()
    );
    assert!(g.block_size == 512 || g.block_size == 4096);
    assert!(g.block_count > 0);
    assert_eq!(g.max_transfer_bytes, dev.command_max_bytes());
    assert!(g.max_transfer_bytes >= 4096);
    assert!(g.atomic_write_blocks >= 1);
    assert!(dev.max_qpairs() >= 1);
    assert_eq!(dev.namespace().nsze, g.block_count);
    assert!(!dev.identify().model.is_empty());
}

#[test]
fn round_trips_many_blocks_up_to_max_transfer() {
    let Some((_g, cfg)) = setup() else { return };
    let dev = NvmeDevice::open(&cfg).unwrap();
    let g = dev.geometry();
    let max = g.max_transfer_bytes as usize;
    let pool = pool(max, 4);
    let mut qp = qpair(&dev, 16, &[&pool]);
    let bs = g.block_size as usize;
    let cases = [
        (0u64, bs),
        (1, 3 * bs),
        (100, 8192),
        (1000, 12 * 4096),
        (5000, max),
    ];
    // A small MDTS (QEMU's mdts=) leaves out the middle sizes.
    let cases: Vec<_> = cases.into_iter().filter(|&(_, len)| len <= max).collect();
    let n = cases.len() as u64 + 1;
    for (i, (lba, len)) in cases.into_iter().enumerate() {
        let data = pattern(i as u64, len);
        write(&mut qp, &pool, lba, &data, false);
        assert_eq!(read(&mut qp, &pool, lba, len), data, "lba {lba} len {len}");
    }
    // The last block of the namespace.
    let last = g.block_count - 1;
    let data = pattern(99, bs);
    write(&mut qp, &pool, last, &data, false);
    assert_eq!(read(&mut qp, &pool, last, bs), data);
    let st = qp.stats();
    assert_eq!(st.cmds(Op::Write), n);
    assert_eq!(st.cmds(Op::Read), n);
    assert_eq!(st.errors, 0);
}

#[test]
fn many_commands_in_flight_complete_by_tag() {
    let Some((_g, cfg)) = setup() else { return };
    let dev = NvmeDevice::open(&cfg).unwrap();
    let bs = dev.geometry().block_size as usize;
    let pool = pool(8 * bs, 64);
    let mut qp = qpair(&dev, 64, &[&pool]);
    for round in 0..3u64 {
        for i in 0..64u64 {
            let mut buf = pool.alloc().unwrap();
            let len = bs * (1 + (i as usize % 8));
            buf.set_len(len);
            buf.as_mut_slice()
                .copy_from_slice(&pattern(round * 1000 + i, len));
            qp.submit(
                i,
                Command::Write {
                    lba: 20_000 + i * 64,
                    buf,
                    fua: false,
                },
            )
            .unwrap();
        }
        assert_eq!(qp.in_flight(), 64);
        let doorbells = qp.sq_doorbell_writes();
        let done = wait(&mut qp, 64);
        assert!(
            qp.sq_doorbell_writes() - doorbells <= 2,
            "one doorbell per burst"
        );
        assert!(done.iter().all(|c| c.result.is_ok()));
        let mut tags: Vec<u64> = done.iter().map(|c| c.tag).collect();
        tags.sort();
        assert_eq!(tags, (0..64).collect::<Vec<_>>());
        drop(done);
        for i in 0..64u64 {
            let mut buf = pool.alloc().unwrap();
            buf.set_len(bs * (1 + (i as usize % 8)));
            qp.submit(
                i,
                Command::Read {
                    lba: 20_000 + i * 64,
                    buf,
                },
            )
            .unwrap();
        }
        for c in wait(&mut qp, 64) {
            c.result.unwrap();
            let buf = c.buf.unwrap();
            assert_eq!(buf.as_slice(), pattern(round * 1000 + c.tag, buf.len()));
        }
    }
}

#[test]
fn a_transfer_larger_than_mdts_is_split_and_joined() {
    let Some((_g, mut cfg)) = setup() else { return };
    let probe = NvmeDevice::open(&cfg).unwrap();
    let mdts = probe.command_max_bytes();
    drop(probe);
    cfg.max_transfer_bytes = Some(mdts * 4);
    let dev = NvmeDevice::open(&cfg).unwrap();
    assert_eq!(dev.geometry().max_transfer_bytes, mdts * 4);
    let big = mdts as usize * 3 + 4096 * 3;
    let pool = pool(mdts as usize * 4, 2);
    let mut qp = qpair(&dev, 4, &[&pool]);
    let data = pattern(7, big);
    write(&mut qp, &pool, 64, &data, true);
    assert_eq!(read(&mut qp, &pool, 64, big), data);
    // One completion each, counted once with all its bytes.
    assert_eq!(qp.stats().cmds(Op::Write), 1);
    assert_eq!(qp.stats().bytes(Op::Read), big as u64);
    // Exactly the configured max: four NVMe commands, one completion.
    let mut buf = pool.alloc().unwrap();
    buf.set_len(mdts as usize * 4);
    qp.submit(1, Command::Read { lba: 0, buf }).unwrap();
    wait(&mut qp, 1).pop().unwrap().result.unwrap();
}

#[test]
fn fua_flush_and_write_zeroes() {
    let Some((_g, cfg)) = setup() else { return };
    let dev = NvmeDevice::open(&cfg).unwrap();
    let g = dev.geometry();
    let bs = g.block_size as usize;
    let pool = pool(64 << 10, 4);
    let mut qp = qpair(&dev, 8, &[&pool]);
    let data = pattern(3, 16 * bs);
    write(&mut qp, &pool, 300, &data, true);
    assert_eq!(read(&mut qp, &pool, 300, 16 * bs), data);
    run(&mut qp, Command::Flush).result.expect("flush");
    let c = run(
        &mut qp,
        Command::WriteZeroes {
            lba: 304,
            blocks: 4,
        },
    );
    if g.write_zeroes {
        c.result.expect("write zeroes");
        let back = read(&mut qp, &pool, 300, 16 * bs);
        assert_eq!(&back[..4 * bs], &data[..4 * bs]);
        assert!(back[4 * bs..8 * bs].iter().all(|&b| b == 0));
        assert_eq!(&back[8 * bs..], &data[8 * bs..]);
    } else {
        unreachable!("submit refuses it: {:?}", c.result);
    }
}

#[test]
fn write_zeroes_unsupported_is_typed() {
    let Some((_g, cfg)) = setup() else { return };
    let dev = NvmeDevice::open(&cfg).unwrap();
    if dev.geometry().write_zeroes {
        println!("controller supports write zeroes (ONCS bit 3): nothing to refuse");
        return;
    }
    let mut qp = qpair(&dev, 2, &[]);
    let r = qp
        .submit(1, Command::WriteZeroes { lba: 0, blocks: 1 })
        .unwrap_err();
    assert!(matches!(
        r.error,
        DriverError::Unsupported {
            op: Op::WriteZeroes,
            ..
        }
    ));
}

#[test]
fn bad_requests_come_back_whole() {
    let Some((_g, cfg)) = setup() else { return };
    let dev = NvmeDevice::open(&cfg).unwrap();
    let g = dev.geometry();
    let bs = g.block_size as usize;
    let max = g.max_transfer_bytes as usize;
    let pool = pool(max + 4096, 2);
    let mut qp = qpair(&dev, 4, &[&pool]);
    let mut buf = pool.alloc().unwrap();
    buf.set_len(2 * bs);
    let r = qp
        .submit(
            1,
            Command::Write {
                lba: g.block_count - 1,
                buf,
                fua: false,
            },
        )
        .unwrap_err();
    assert!(
        matches!(r.error, DriverError::OutOfRange { .. }),
        "{}",
        r.error
    );
    let mut buf = r.cmd.into_buf().expect("buffer back");
    buf.set_len(bs + 1);
    let r = qp.submit(2, Command::Read { lba: 0, buf }).unwrap_err();
    assert!(
        matches!(r.error, DriverError::BadLength { .. }),
        "{}",
        r.error
    );
    let mut buf = r.cmd.into_buf().unwrap();
    buf.set_len(max + 4096);
    let r = qp.submit(3, Command::Read { lba: 0, buf }).unwrap_err();
    assert!(
        matches!(r.error, DriverError::TooLarge { .. }),
        "{}",
        r.error
    );
    // Heap memory has no physical address we may use: refused, never sent (sysfs mode).
    let mut hc = PoolConfig::new(4096, 1);
    hc.source = DmaSource::Heap;
    let heap = DmaPool::new(hc).unwrap();
    let mut hbuf = heap.alloc().unwrap();
    hbuf.set_len(bs);
    let cmd = Command::Write {
        lba: 0,
        buf: hbuf,
        fua: false,
    };
    if dev.mode() == AccessMode::Vfio {
        // Behind an IOMMU any memory can be mapped: the region is mapped on first use.
        qp.submit(4, cmd)
            .expect("VFIO maps heap memory on first use");
        wait(&mut qp, 1).pop().unwrap().result.unwrap();
        return;
    }
    let r = qp.submit(4, cmd).unwrap_err();
    assert!(
        matches!(
            NvmeError::of(&r.error),
            Some(NvmeError::Untranslated { op: Op::Write, .. })
        ),
        "{}",
        r.error
    );
    assert!(r.cmd.into_buf().is_some());
    assert_eq!(qp.in_flight(), 0);
    assert_eq!(qp.stats().errors, 0);
}

#[test]
fn a_full_queue_hands_the_command_back() {
    let Some((_g, cfg)) = setup() else { return };
    let dev = NvmeDevice::open(&cfg).unwrap();
    let bs = dev.geometry().block_size as usize;
    let pool = pool(4096, 8);
    let mut qp = qpair(&dev, 4, &[&pool]);
    for i in 0..4 {
        let mut buf = pool.alloc().unwrap();
        buf.set_len(bs);
        qp.submit(i, Command::Read { lba: i, buf }).unwrap();
    }
    let mut buf = pool.alloc().unwrap();
    buf.set_len(bs);
    let r = qp.submit(9, Command::Read { lba: 0, buf }).unwrap_err();
    assert!(matches!(r.error, DriverError::QueueFull { depth: 4, .. }));
    assert!(r.cmd.into_buf().is_some());
    assert_eq!(wait(&mut qp, 4).len(), 4);
    assert_eq!(qp.in_flight(), 0);
}

#[test]
fn queue_pairs_up_to_the_limit_then_a_typed_error() {
    let Some((_g, cfg)) = setup() else { return };
    let dev = NvmeDevice::open(&cfg).unwrap();
    let max = dev.max_qpairs();
    let pool = pool(4096, 4);
    let bs = dev.geometry().block_size as usize;
    let mut qps = Vec::new();
    for _ in 0..max {
        qps.push(qpair(&dev, 4, &[&pool]));
    }
    let err = dev.open_qpair(&QpairOptions::depth(4)).unwrap_err();
    assert!(
        matches!(NvmeError::of(&err), Some(NvmeError::QueueLimit { max: m }) if *m == max),
        "{err}"
    );
    // Every one of them works; then one freed makes room for one more.
    for (i, qp) in qps.iter_mut().enumerate() {
        let data = pattern(i as u64, bs);
        write(qp, &pool, 40_000 + i as u64, &data, false);
    }
    let last = qps.pop().unwrap();
    let last_qid = last.qid();
    drop(last);
    let mut again = qpair(&dev, 4, &[&pool]);
    assert_eq!(again.qid(), last_qid);
    assert_eq!(read(&mut again, &pool, 40_000, bs), pattern(0, bs));
    println!("{max} queue pairs");
}

#[test]
fn an_injected_error_is_typed_and_changes_nothing() {
    let Some((_g, cfg)) = setup() else { return };
    let dev = NvmeDevice::open(&cfg).unwrap();
    let bs = dev.geometry().block_size as usize;
    let pool = pool(4096, 4);
    let mut qp = qpair(&dev, 4, &[&pool]);
    let old = pattern(1, bs);
    write(&mut qp, &pool, 77, &old, false);
    dev.inject(NvmeFault {
        op: Op::Write,
        nth: 2,
        status: NvmeStatus::WRITE_FAULT,
    });
    write(&mut qp, &pool, 78, &pattern(2, bs), false); // first write after arming: fine
    let mut buf = pool.alloc().unwrap();
    buf.set_len(bs);
    buf.as_mut_slice().copy_from_slice(&pattern(3, bs));
    let c = run(
        &mut qp,
        Command::Write {
            lba: 77,
            buf,
            fua: false,
        },
    );
    match c.result {
        Err(DriverError::Device {
            op: Op::Write,
            lba: 77,
            status,
            ..
        }) => {
            assert_eq!(status, NvmeStatus::WRITE_FAULT)
        }
        other => panic!("expected the injected write fault, got {other:?}"),
    }
    assert!(c.buf.is_some());
    assert_eq!(
        read(&mut qp, &pool, 77, bs),
        old,
        "the failed write changed nothing"
    );
    assert_eq!(qp.stats().errors, 1);
}

#[test]
fn a_command_past_its_timeout_fails_the_queue_pair_by_name() {
    let Some((_guard, mut cfg)) = setup() else {
        return;
    };
    // Under QEMU a large write takes tens of microseconds at least (it goes through the
    // host's thread pool): with a 1 µs timeout the oldest of a burst is late by the
    // first poll that finds it still in flight.
    cfg.io_timeout = Duration::from_micros(1);
    // A burst that all completes before the first poll proves nothing: try a few times.
    let mut attempts = 0;
    let (dev, p, mut qp, reasons, bs) = loop {
        attempts += 1;
        let dev = NvmeDevice::open(&cfg).expect("open");
        let bs = dev.geometry().block_size as usize;
        let len = (dev.geometry().max_transfer_bytes as usize).min(128 << 10);
        // One buffer more than the burst: timed-out commands keep theirs (the device may
        // still write them), and the refusal below needs one.
        let p = pool(len, 33);
        let mut qp = qpair(&dev, 32, &[&p]);
        let blocks = (len / bs) as u64;
        for i in 0..32u64 {
            let mut buf = p.alloc().expect("free buffer");
            buf.set_len(len);
            qp.submit(
                i,
                Command::Write {
                    lba: i * blocks,
                    buf,
                    fua: true,
                },
            )
            .expect("submit");
        }
        // Every command comes back (none is lost), and the failure names the timed-out
        // command: opcode, queue id, command id.
        let done = wait(&mut qp, 32);
        let reasons: Vec<String> = done
            .iter()
            .filter_map(|c| c.result.as_ref().err())
            .map(|e| match NvmeError::of(e) {
                Some(NvmeError::QpairFailed { reason, .. }) => reason.clone(),
                other => panic!("not a queue-pair failure: {e} ({other:?})"),
            })
            .collect();
        if !reasons.is_empty() || attempts == 5 {
            break (dev, p, qp, reasons, bs);
        }
    };
    assert!(
        !reasons.is_empty(),
        "no command timed out in {attempts} bursts"
    );
    assert!(
        reasons[0].contains("timed out")
            && reasons[0].contains("qid")
            && reasons[0].contains("cid"),
        "{}",
        reasons[0]
    );
    assert!(qp.failure().is_some_and(|f| f.contains("timed out")));
    // A failed queue pair refuses new work with a typed error and the command back.
    let mut buf = p.alloc().expect("free buffer");
    buf.set_len(bs);
    let refused = qp
        .submit(99, Command::Read { lba: 0, buf })
        .expect_err("a failed queue pair takes nothing");
    assert!(matches!(
        NvmeError::of(&refused.error),
        Some(NvmeError::QpairFailed { .. })
    ));
    drop(qp);
    drop(dev);
    // The controller itself is fine: with a sane timeout it serves again.
    cfg.io_timeout = Duration::from_secs(20);
    let dev = NvmeDevice::open(&cfg).expect("reopen");
    let p = pool(bs.max(4096), 4);
    let mut qp = qpair(&dev, 4, &[&p]);
    let data = pattern(5, bs);
    // (lba 3 lies inside the first timed-out write, whatever it left there.)
    write(&mut qp, &p, 3, &data, false);
    assert_eq!(read(&mut qp, &p, 3, bs), data);
}

#[test]
fn shuts_down_cleanly_and_reopens_with_data() {
    let Some((_g, cfg)) = setup() else { return };
    let bs;
    let data;
    {
        let dev = NvmeDevice::open(&cfg).unwrap();
        bs = dev.geometry().block_size as usize;
        data = pattern(42, 8 * bs);
        let pool = pool(64 << 10, 2);
        let mut qp = qpair(&dev, 4, &[&pool]);
        write(&mut qp, &pool, 9000, &data, false);
        run(&mut qp, Command::Flush).result.unwrap();
        // Queue pair, then device dropped: queues deleted, CC.SHN, controller disabled.
    }
    for round in 0..2 {
        let dev = NvmeDevice::open(&cfg).expect("reopen after shutdown");
        let pool = pool(64 << 10, 2);
        let mut qp = qpair(&dev, 4, &[&pool]);
        assert_eq!(read(&mut qp, &pool, 9000, 8 * bs), data, "round {round}");
    }
}
