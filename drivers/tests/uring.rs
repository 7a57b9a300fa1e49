//! The io_uring driver on a real O_DIRECT file: data round-trips through registered and
//! plain buffers, FUA, flush and write-zeroes (native and by writing zeroes) do what they
//! say, bad requests come back whole and touch nothing, the queue holds exactly its depth,
//! many commands in flight complete once each under their own tag, SQPOLL works, and the
//! geometry matches the file.
//!
//! Files live in `std::env::temp_dir()` (O_DIRECT needs a file system that supports it:
//! ext4 and xfs do; tmpfs does since Linux 6.6, used on purpose for the write-zeroes
//! fallback, since tmpfs refuses `fallocate(ZERO_RANGE)`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command as Shell;
use std::time::{Duration, Instant};

use keel_drivers::uring::{UringConfig, UringDevice, UringQpair};
use keel_drivers::{
    BlockDevice, Command, Completion, DmaBuf, DmaPool, DmaSource, DriverError, Op, PoolConfig,
    QpairOptions, QueuePair,
};
use tempfile::NamedTempFile;

const BS: usize = 4096;
const MIB: usize = 1 << 20;

fn pool(buf_bytes: usize, count: u32) -> DmaPool {
    let mut cfg = PoolConfig::new(buf_bytes, count);
    cfg.source = DmaSource::Heap;
    DmaPool::new(cfg).unwrap()
}

fn temp_file() -> NamedTempFile {
    tempfile::Builder::new()
        .prefix("keel-uring-")
        .tempfile_in(std::env::temp_dir())
        .unwrap()
}

/// A device on a fresh temp file of `bytes`.
fn device(bytes: u64) -> (NamedTempFile, UringDevice) {
    let file = temp_file();
    let mut cfg = UringConfig::new(file.path());
    cfg.create_bytes = Some(bytes);
    let dev = UringDevice::open(&cfg).unwrap();
    (file, dev)
}

/// Fills each block with (write id, block number) stamps.
fn stamp(buf: &mut DmaBuf, write_id: u32, lba: u64) {
    for (i, block) in buf.as_mut_slice().chunks_mut(BS).enumerate() {
        let tag = [
            write_id.to_le_bytes(),
            ((lba + i as u64) as u32).to_le_bytes(),
        ]
        .concat();
        for chunk in block.chunks_mut(8) {
            chunk.copy_from_slice(&tag);
        }
    }
}

fn stamped(write_id: u32, lba: u64, blocks: usize) -> Vec<u8> {
    let p = pool(blocks * BS, 1);
    let mut b = p.alloc().unwrap();
    stamp(&mut b, write_id, lba);
    b.as_slice().to_vec()
}

/// Polls until `want` completions arrived (10 s at most).
fn wait(qp: &mut impl QueuePair, want: usize) -> Vec<Completion> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while out.len() < want {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for completions"
        );
        qp.poll(64, &mut |c| out.push(c));
    }
    out
}

/// Submits one command and waits for its completion.
fn run(qp: &mut impl QueuePair, cmd: Command) -> Completion {
    qp.submit(7, cmd).expect("submit");
    let mut c = wait(qp, 1);
    assert_eq!(c.len(), 1);
    let c = c.pop().unwrap();
    assert_eq!(c.tag, 7);
    assert_eq!(qp.in_flight(), 0);
    c
}

fn write(qp: &mut impl QueuePair, p: &DmaPool, id: u32, lba: u64, blocks: usize, fua: bool) {
    let mut buf = p.alloc().unwrap();
    buf.set_len(blocks * BS);
    stamp(&mut buf, id, lba);
    let c = run(qp, Command::Write { lba, buf, fua });
    assert_eq!(c.op, Op::Write);
    c.result.unwrap();
    assert_eq!(c.buf.unwrap().len(), blocks * BS);
}

fn read(qp: &mut impl QueuePair, p: &DmaPool, lba: u64, blocks: usize) -> Vec<u8> {
    let mut buf = p.alloc().unwrap();
    buf.set_len(blocks * BS);
    buf.as_mut_slice().fill(0xEE);
    let c = run(qp, Command::Read { lba, buf });
    assert_eq!(c.op, Op::Read);
    c.result.unwrap();
    c.buf.unwrap().as_slice().to_vec()
}

fn qpair(dev: &UringDevice, depth: u32) -> UringQpair {
    dev.open_qpair(&QpairOptions::depth(depth)).unwrap()
}

#[test]
fn geometry_of_a_file() {
    // 8 MiB and a bit: the partial block at the end is not part of the device.
    let (file, dev) = device(8 * MIB as u64 + 100);
    let g = dev.geometry();
    assert_eq!(g.block_size, 4096);
    assert_eq!(g.block_count, (8 * MIB / BS) as u64);
    assert_eq!(g.max_transfer_bytes, MIB as u32);
    assert_eq!(g.atomic_write_blocks, 1);
    assert!(
        g.volatile_write_cache,
        "a file may sit on a volatile disk cache"
    );
    assert!(g.write_zeroes);
    assert_eq!(g.dma_align, 4096);
    assert_eq!(dev.path(), file.path());
    assert_eq!(
        file.as_file().metadata().unwrap().len(),
        8 * MIB as u64 + 100
    );

    // Reopened without create_bytes, capacity comes from the file's length; a smaller
    // block size and max transfer are taken as given.
    let mut cfg = UringConfig::new(file.path());
    cfg.block_size = Some(512);
    cfg.max_transfer_bytes = 128 << 10;
    let g = UringDevice::open(&cfg).unwrap().geometry();
    assert_eq!(g.block_size, 512);
    assert_eq!(g.block_count, (8 * MIB as u64 + 100) / 512);
    assert_eq!(g.max_transfer_bytes, 128 << 10);
    assert_eq!(g.dma_align, 4096);

    // create_bytes extends a file, never shrinks it.
    let mut cfg = UringConfig::new(file.path());
    cfg.create_bytes = Some(4096);
    let g = UringDevice::open(&cfg).unwrap().geometry();
    assert_eq!(g.block_count, (8 * MIB / BS) as u64);
}

#[test]
fn bad_configurations_are_refused() {
    let file = temp_file();
    let path = file.path();

    // Smaller than one block.
    std::fs::write(path, [0u8; 4095]).unwrap();
    let err = UringDevice::open(&UringConfig::new(path)).unwrap_err();
    assert!(
        matches!(&err, DriverError::Config(m) if m.contains(&*path.to_string_lossy())),
        "{err:?}"
    );

    std::fs::write(path, vec![0u8; 64 * BS]).unwrap();
    for bad in [256, 1000, 3000] {
        let mut cfg = UringConfig::new(path);
        cfg.block_size = Some(bad);
        let err = UringDevice::open(&cfg).unwrap_err();
        assert!(matches!(err, DriverError::Config(_)), "{bad}: {err:?}");
    }
    for bad in [0, 2048, 4096 + 512] {
        let mut cfg = UringConfig::new(path);
        cfg.max_transfer_bytes = bad;
        let err = UringDevice::open(&cfg).unwrap_err();
        assert!(matches!(err, DriverError::Config(_)), "{bad}: {err:?}");
    }

    // A missing file without create_bytes: an Open error naming the path.
    let missing = path.with_extension("missing");
    let err = UringDevice::open(&UringConfig::new(&missing)).unwrap_err();
    match &err {
        DriverError::Open { what, source } => {
            assert!(what.contains(&*missing.to_string_lossy()), "{what}");
            assert_eq!(source.raw_os_error(), Some(libc::ENOENT));
        }
        other => panic!("{other:?}"),
    }

    let dev = UringDevice::open(&UringConfig::new(path)).unwrap();
    let err = dev.open_qpair(&QpairOptions::depth(0)).err().unwrap();
    assert!(matches!(err, DriverError::Config(_)), "{err:?}");
}

#[test]
fn write_read_round_trip_at_several_offsets() {
    let (_f, dev) = device(16 * MIB as u64);
    let last = dev.geometry().block_count - 1;
    let mut qp = qpair(&dev, 8);
    let p = pool(MIB, 4);
    let cases: [(u64, usize); 6] = [
        (0, 1),
        (1, 1),
        (7, 3),
        (100, 16),
        (1000, MIB / BS), // exactly the max transfer
        (last - 4, 5),    // ends on the last block
    ];
    for (id, &(lba, blocks)) in cases.iter().enumerate() {
        write(&mut qp, &p, id as u32 + 1, lba, blocks, false);
    }
    for (id, &(lba, blocks)) in cases.iter().enumerate() {
        let got = read(&mut qp, &p, lba, blocks);
        assert!(
            got == stamped(id as u32 + 1, lba, blocks),
            "data at lba {lba} x {blocks} differs"
        );
    }
    // Overwriting one block changes that block only.
    write(&mut qp, &p, 99, last, 1, false);
    let mut want = stamped(6, last - 4, 5);
    want[4 * BS..].copy_from_slice(&stamped(99, last, 1));
    assert!(
        read(&mut qp, &p, last - 4, 5) == want,
        "overwrite of the last block"
    );
    // Blocks never written read as zeroes.
    assert!(read(&mut qp, &p, 50, 4).iter().all(|&b| b == 0));

    let s = qp.stats();
    assert_eq!(s.cmds(Op::Write), cases.len() as u64 + 1);
    let written: usize = cases.iter().map(|&(_, b)| b * BS).sum::<usize>() + BS;
    assert_eq!(s.bytes(Op::Write), written as u64);
    assert_eq!(s.errors, 0);
}

#[test]
fn fua_write_and_flush() {
    let (_f, dev) = device(4 * MIB as u64);
    let mut qp = qpair(&dev, 4);
    let p = pool(64 * BS, 2);
    write(&mut qp, &p, 9, 10, 16, true);
    write(&mut qp, &p, 10, 40, 1, false);
    let c = run(&mut qp, Command::Flush);
    assert_eq!(c.op, Op::Flush);
    assert!(c.buf.is_none());
    c.result.unwrap();
    assert_eq!(read(&mut qp, &p, 10, 16), stamped(9, 10, 16));
    assert_eq!(read(&mut qp, &p, 40, 1), stamped(10, 40, 1));
    let s = qp.stats();
    assert_eq!((s.cmds(Op::Write), s.cmds(Op::Flush), s.errors), (2, 1, 0));
}

/// Writes a pattern over 0..total, zeroes `lba..lba + blocks`, and checks every block.
fn check_write_zeroes(qp: &mut UringQpair, total: usize, lba: u64, blocks: u32) {
    let p = pool(total * BS, 2);
    write(qp, &p, 5, 0, total, false);
    let before = qp.stats();
    let c = run(qp, Command::WriteZeroes { lba, blocks });
    assert_eq!(c.op, Op::WriteZeroes);
    assert!(c.buf.is_none());
    c.result.unwrap();
    let s = qp.stats();
    assert_eq!(s.cmds(Op::WriteZeroes) - before.cmds(Op::WriteZeroes), 1);
    assert_eq!(
        s.bytes(Op::WriteZeroes) - before.bytes(Op::WriteZeroes),
        u64::from(blocks) * BS as u64
    );
    let got = read(qp, &p, 0, total);
    let want = stamped(5, 0, total);
    for (i, (g, w)) in got.chunks(BS).zip(want.chunks(BS)).enumerate() {
        let i = i as u64;
        if (lba..lba + u64::from(blocks)).contains(&i) {
            assert!(g.iter().all(|&b| b == 0), "block {i} not zeroed");
        } else {
            assert!(g == w, "block {i} outside the range changed");
        }
    }
}

#[test]
fn write_zeroes_zeroes_exactly_its_range() {
    let (_f, dev) = device(4 * MIB as u64);
    let mut qp = qpair(&dev, 4);
    check_write_zeroes(&mut qp, 64, 10, 20);
    check_write_zeroes(&mut qp, 64, 0, 1);
    check_write_zeroes(&mut qp, 64, 63, 1);
    assert!(
        !qp.zeroes_by_writes(),
        "ext4 zeroes ranges natively; the fallback should not have been taken"
    );
}

#[test]
fn write_zeroes_falls_back_to_writing_zeroes_where_fallocate_is_refused() {
    // tmpfs refuses fallocate(ZERO_RANGE) with EOPNOTSUPP.
    let dir = Path::new("/dev/shm");
    let Ok(file) = tempfile::Builder::new()
        .prefix("keel-uring-")
        .tempfile_in(dir)
    else {
        eprintln!("skipping: no /dev/shm");
        return;
    };
    let mut cfg = UringConfig::new(file.path());
    cfg.create_bytes = Some(4 * MIB as u64);
    cfg.max_transfer_bytes = 16 * BS as u32; // 64 KiB: 1 MiB of zeroes is 16 writes
    let dev = match UringDevice::open(&cfg) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("skipping: tmpfs without O_DIRECT (Linux < 6.6?): {e}");
            return;
        }
    };
    let mut qp = qpair(&dev, 4);
    let p = pool(16 * BS, 4);
    for lba in (0..512).step_by(16) {
        write(&mut qp, &p, 3, lba, 16, false);
    }
    // 19 writes: more than one command keeps in flight (4), a last round of 3 (so it
    // must wait for all of them before completing), and a last partial chunk.
    let c = run(
        &mut qp,
        Command::WriteZeroes {
            lba: 7,
            blocks: 288 + 5,
        },
    );
    c.result.unwrap();
    assert!(
        qp.zeroes_by_writes(),
        "tmpfs should have refused ZERO_RANGE"
    );
    // Now the fallback is taken from the start: several at once, one completion each.
    for (tag, lba) in [(1u64, 310u64), (2, 360), (3, 420)] {
        qp.submit(tag, Command::WriteZeroes { lba, blocks: 40 })
            .unwrap();
    }
    let mut tags: Vec<u64> = wait(&mut qp, 3)
        .into_iter()
        .map(|c| {
            c.result.unwrap();
            c.tag
        })
        .collect();
    tags.sort();
    assert_eq!(tags, [1, 2, 3]);
    assert_eq!(qp.in_flight(), 0);
    for _ in 0..100 {
        qp.poll(64, &mut |c| panic!("extra completion {:?}", c.tag));
    }
    let zeroed = |l: u64| {
        (7..7 + 293).contains(&l) || [310, 360, 420].iter().any(|&s| (s..s + 40).contains(&l))
    };
    for lba in (0..512u64).step_by(16) {
        let got = read(&mut qp, &p, lba, 16);
        let want = stamped(3, lba, 16);
        for i in 0..16 {
            let l = lba + i as u64;
            let block = &got[i * BS..(i + 1) * BS];
            if zeroed(l) {
                assert!(block.iter().all(|&b| b == 0), "block {l} not zeroed");
            } else {
                assert!(block == &want[i * BS..(i + 1) * BS], "block {l} changed");
            }
        }
    }
    let s = qp.stats();
    assert_eq!(s.cmds(Op::WriteZeroes), 4);
    assert_eq!(s.bytes(Op::WriteZeroes), (293 + 120) * BS as u64);
    assert_eq!(s.errors, 0);
}

#[test]
fn registered_and_plain_buffers_both_round_trip() {
    let (_f, dev) = device(4 * MIB as u64);
    let registered = pool(16 * BS, 4);
    let other = pool(16 * BS, 4);
    let plain = pool(16 * BS, 4);
    // The pool's region is fixed buffer 1, not 0: a wrong index would point the kernel at
    // the wrong memory and fail the I/O.
    let opts = QpairOptions {
        depth: 8,
        regions: vec![other.region().clone(), registered.region().clone()],
    };
    let mut qp = dev.open_qpair(&opts).unwrap();
    // registered -> disk -> plain, and plain -> disk -> registered.
    write(&mut qp, &registered, 1, 0, 16, false);
    write(&mut qp, &registered, 2, 16, 3, true);
    write(&mut qp, &plain, 3, 32, 16, false);
    assert_eq!(read(&mut qp, &plain, 0, 16), stamped(1, 0, 16));
    assert_eq!(read(&mut qp, &plain, 16, 3), stamped(2, 16, 3));
    assert_eq!(read(&mut qp, &registered, 32, 16), stamped(3, 32, 16));
    assert_eq!(read(&mut qp, &registered, 0, 16), stamped(1, 0, 16));
    // A buffer from the registered region at a slot other than the first.
    let held: Vec<DmaBuf> = (0..3).map(|_| registered.alloc().unwrap()).collect();
    assert_eq!(read(&mut qp, &registered, 16, 3), stamped(2, 16, 3));
    drop(held);
    assert_eq!(qp.stats().errors, 0);
}

#[test]
fn bad_requests_come_back_whole_and_touch_nothing() {
    let file = temp_file();
    let mut cfg = UringConfig::new(file.path());
    cfg.create_bytes = Some(64 * BS as u64);
    cfg.max_transfer_bytes = 8 * BS as u32;
    let dev = UringDevice::open(&cfg).unwrap();
    let mut qp = qpair(&dev, 4);
    let p = pool(16 * BS, 4);
    for lba in (0..64).step_by(8) {
        write(&mut qp, &p, 4, lba, 8, false);
    }

    let mut reject = |cmd: Command| -> (DriverError, Option<DmaBuf>) {
        let r = qp.submit(1, cmd).expect_err("should be refused");
        (r.error, r.cmd.into_buf())
    };
    let filled = |len: usize| {
        let mut b = p.alloc().unwrap();
        b.set_len(len);
        b.as_mut_slice().fill(0xAB);
        b
    };

    // Out of range: starting past the end, and running past it.
    for (lba, blocks) in [(64, 1), (60, 8), (u64::MAX, 1)] {
        let (e, buf) = reject(Command::Write {
            lba,
            buf: filled(blocks * BS),
            fua: false,
        });
        assert!(
            matches!(
                e,
                DriverError::OutOfRange {
                    op: Op::Write,
                    block_count: 64,
                    ..
                }
            ),
            "{e:?}"
        );
        let buf = buf.expect("buffer back");
        assert_eq!(buf.len(), blocks * BS);
        assert!(buf.as_slice().iter().all(|&b| b == 0xAB));
    }
    let (e, buf) = reject(Command::Read {
        lba: 64,
        buf: filled(BS),
    });
    assert!(
        matches!(e, DriverError::OutOfRange { op: Op::Read, .. }),
        "{e:?}"
    );
    assert_eq!(buf.expect("buffer back").len(), BS);
    let (e, _) = reject(Command::WriteZeroes { lba: 63, blocks: 2 });
    assert!(
        matches!(
            e,
            DriverError::OutOfRange {
                op: Op::WriteZeroes,
                ..
            }
        ),
        "{e:?}"
    );

    // Zero and non-multiple lengths.
    for len in [0, 1, 4095, BS + 512] {
        let (e, buf) = reject(Command::Write {
            lba: 0,
            buf: filled(len),
            fua: false,
        });
        assert!(
            matches!(e, DriverError::BadLength { op: Op::Write, block_size: 4096, len: l } if l == len as u64),
            "{len}: {e:?}"
        );
        assert_eq!(buf.expect("buffer back").len(), len);
    }
    let (e, _) = reject(Command::WriteZeroes { lba: 0, blocks: 0 });
    assert!(
        matches!(
            e,
            DriverError::BadLength {
                op: Op::WriteZeroes,
                ..
            }
        ),
        "{e:?}"
    );

    // Larger than the max transfer (8 blocks).
    let (e, buf) = reject(Command::Write {
        lba: 0,
        buf: filled(9 * BS),
        fua: false,
    });
    assert!(
        matches!(e, DriverError::TooLarge { op: Op::Write, max, .. } if max == 8 * BS as u32),
        "{e:?}"
    );
    assert_eq!(buf.expect("buffer back").len(), 9 * BS);
    let (e, _) = reject(Command::Read {
        lba: 0,
        buf: filled(16 * BS),
    });
    assert!(
        matches!(e, DriverError::TooLarge { op: Op::Read, .. }),
        "{e:?}"
    );

    assert_eq!(qp.in_flight(), 0);
    let mut extra = 0;
    qp.poll(64, &mut |_| extra += 1);
    assert_eq!(extra, 0, "a refused command completed");
    assert_eq!(p.available(), 4, "every buffer came back");
    for lba in (0..64).step_by(8) {
        assert_eq!(read(&mut qp, &p, lba, 8), stamped(4, lba, 8), "lba {lba}");
    }
    assert_eq!(qp.stats().cmds(Op::Write), 8);
}

#[test]
fn submit_only_queues_and_kick_sends_the_batch() {
    let (file, dev) = device(MIB as u64);
    let mut qp = qpair(&dev, 8);
    let p = pool(BS, 4);
    for tag in 0..3u64 {
        let mut buf = p.alloc().unwrap();
        stamp(&mut buf, 8, tag);
        qp.submit(
            tag,
            Command::Write {
                lba: tag,
                buf,
                fua: false,
            },
        )
        .unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    let on_disk = std::fs::read(file.path()).unwrap();
    assert!(
        on_disk[..3 * BS].iter().all(|&b| b == 0),
        "a write reached the file before any kick"
    );
    qp.kick().unwrap();
    // The kernel has the batch now: it completes without a poll.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read(file.path()).unwrap()[..3 * BS] != stamped(8, 0, 3)[..] {
        assert!(
            Instant::now() < deadline,
            "kicked writes never reached the file"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(qp.in_flight(), 3, "still in flight until polled");
    let mut tags: Vec<u64> = wait(&mut qp, 3).into_iter().map(|c| c.tag).collect();
    tags.sort();
    assert_eq!(tags, [0, 1, 2]);
    // Kicking with nothing queued is fine.
    qp.kick().unwrap();
}

#[test]
fn queue_full_at_depth() {
    let (_f, dev) = device(MIB as u64);
    let mut qp = qpair(&dev, 4);
    assert_eq!(qp.depth(), 4);
    let p = pool(BS, 8);
    for tag in 0..4 {
        qp.submit(
            tag,
            Command::Read {
                lba: tag,
                buf: p.alloc().unwrap(),
            },
        )
        .unwrap();
    }
    assert_eq!(qp.in_flight(), 4);
    let r = qp
        .submit(
            9,
            Command::Read {
                lba: 9,
                buf: p.alloc().unwrap(),
            },
        )
        .unwrap_err();
    assert!(
        matches!(
            r.error,
            DriverError::QueueFull {
                op: Op::Read,
                depth: 4
            }
        ),
        "{:?}",
        r.error
    );
    assert!(r.cmd.into_buf().is_some());
    // Flush has no buffer and still counts against the depth.
    let r = qp.submit(10, Command::Flush).unwrap_err();
    assert!(matches!(
        r.error,
        DriverError::QueueFull { op: Op::Flush, .. }
    ));

    let mut tags: Vec<u64> = wait(&mut qp, 4).into_iter().map(|c| c.tag).collect();
    tags.sort();
    assert_eq!(tags, [0, 1, 2, 3]);
    assert_eq!(qp.in_flight(), 0);
    run(&mut qp, Command::Flush).result.unwrap();
}

#[test]
fn many_in_flight_complete_once_each_by_tag() {
    const QD: u32 = 32;
    const CMDS: u64 = 64;
    let (_f, dev) = device(8 * MIB as u64);
    let p = pool(4 * BS, QD * 2);
    let opts = QpairOptions {
        depth: QD,
        regions: vec![p.region().clone()],
    };
    let mut qp = dev.open_qpair(&opts).unwrap();

    // Tag t writes 1 + t % 4 blocks at lba 8 t, stamped with t.
    let blocks_of = |t: u64| 1 + (t % 4) as usize;
    let mut seen: HashMap<u64, usize> = HashMap::new();
    let mut next = 0u64;
    let mut most_in_flight = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.len() < CMDS as usize {
        assert!(Instant::now() < deadline, "timed out");
        while next < CMDS && qp.in_flight() < QD {
            let mut buf = p.alloc().unwrap();
            buf.set_len(blocks_of(next) * BS);
            stamp(&mut buf, next as u32, next * 8);
            let cmd = Command::Write {
                lba: next * 8,
                buf,
                fua: next % 7 == 0,
            };
            qp.submit(next, cmd).unwrap();
            next += 1;
        }
        most_in_flight = most_in_flight.max(qp.in_flight());
        qp.poll(QD, &mut |c| {
            c.result.unwrap();
            assert_eq!(c.buf.as_ref().unwrap().len(), blocks_of(c.tag) * BS);
            *seen.entry(c.tag).or_default() += 1;
        });
    }
    assert_eq!(most_in_flight, QD);
    assert!(seen.values().all(|&n| n == 1), "a tag completed twice");

    // Read everything back, again QD at a time, matching data to tags.
    let mut left: HashMap<u64, ()> = (0..CMDS).map(|t| (t, ())).collect();
    let mut next = 0u64;
    while !left.is_empty() {
        assert!(Instant::now() < deadline, "timed out");
        while next < CMDS && qp.in_flight() < QD {
            let mut buf = p.alloc().unwrap();
            buf.set_len(blocks_of(next) * BS);
            qp.submit(next + 1000, Command::Read { lba: next * 8, buf })
                .unwrap();
            next += 1;
        }
        qp.poll(QD, &mut |c| {
            c.result.unwrap();
            let t = c.tag - 1000;
            assert!(left.remove(&t).is_some(), "tag {t} twice or unknown");
            let got = c.buf.unwrap();
            assert!(
                got.as_slice() == stamped(t as u32, t * 8, blocks_of(t)),
                "tag {t} read the wrong data"
            );
        });
    }
    let s = qp.stats();
    assert_eq!((s.cmds(Op::Write), s.cmds(Op::Read)), (CMDS, CMDS));
    assert_eq!(s.errors, 0);
}

#[test]
fn sqpoll_round_trip() {
    let file = temp_file();
    let mut cfg = UringConfig::new(file.path());
    cfg.create_bytes = Some(MIB as u64);
    cfg.sqpoll = true;
    cfg.sqpoll_idle_ms = 50;
    let dev = UringDevice::open(&cfg).unwrap();
    let p = pool(4 * BS, 4);
    let opts = QpairOptions {
        depth: 4,
        regions: vec![p.region().clone()],
    };
    let mut qp = match dev.open_qpair(&opts) {
        Ok(qp) => qp,
        Err(DriverError::Open { source, what })
            if matches!(source.raw_os_error(), Some(libc::EPERM | libc::EINVAL)) =>
        {
            eprintln!("skipping: SQPOLL refused here ({what}: {source})");
            return;
        }
        Err(e) => panic!("{e:?}"),
    };
    write(&mut qp, &p, 1, 3, 4, false);
    // Let the SQPOLL thread go idle and sleep, so the next kick must wake it.
    std::thread::sleep(Duration::from_millis(200));
    write(&mut qp, &p, 2, 10, 1, true);
    run(&mut qp, Command::Flush).result.unwrap();
    assert_eq!(read(&mut qp, &p, 3, 4), stamped(1, 3, 4));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(read(&mut qp, &p, 10, 1), stamped(2, 10, 1));
}

#[test]
fn short_read_past_a_shrunken_file_is_an_io_error() {
    let (file, dev) = device(16 * BS as u64);
    let mut qp = qpair(&dev, 4);
    let p = pool(4 * BS, 2);
    write(&mut qp, &p, 1, 6, 4, false);
    // The file shrinks under the device: 8 blocks are left of the 16 it reported.
    file.as_file().set_len(8 * BS as u64).unwrap();
    for (lba, blocks) in [(6u64, 4usize), (12, 1)] {
        let mut buf = p.alloc().unwrap();
        buf.set_len(blocks * BS);
        let c = run(&mut qp, Command::Read { lba, buf });
        match &c.result {
            Err(DriverError::Io {
                op: Op::Read,
                lba: l,
                source,
            }) => {
                assert_eq!(*l, lba);
                assert_eq!(source.raw_os_error(), Some(libc::EIO));
            }
            other => panic!("lba {lba}: {other:?}"),
        }
        assert!(c.buf.is_some(), "buffer back on error too");
    }
    assert_eq!(qp.stats().errors, 2);
    assert_eq!(read(&mut qp, &p, 6, 2), stamped(1, 6, 2));
}

#[test]
fn dropping_a_qpair_with_commands_in_flight_waits_for_them() {
    let (file, dev) = device(8 * MIB as u64);
    let p = pool(MIB, 8);
    let mut qp = qpair(&dev, 8);
    for tag in 0..8u64 {
        let mut buf = p.alloc().unwrap();
        stamp(&mut buf, 77, tag * 256);
        let cmd = Command::Write {
            lba: tag * 256,
            buf,
            fua: true,
        };
        qp.submit(tag, cmd).unwrap();
    }
    qp.kick().unwrap();
    assert_eq!(p.available(), 0);
    drop(qp);
    assert_eq!(p.available(), 8, "every buffer came back");
    // Each write had finished by the time drop returned.
    let data = std::fs::read(file.path()).unwrap();
    for tag in 0..8u64 {
        let at = (tag * 256) as usize * BS;
        assert!(
            data[at..at + MIB] == stamped(77, tag * 256, MIB / BS)[..],
            "write {tag} had not finished when drop returned"
        );
    }
}

/// A loop device over a temp file, detached on drop.
struct LoopDev {
    path: PathBuf,
    _backing: NamedTempFile,
}

impl LoopDev {
    /// `None` (with a message) where loop devices cannot be set up: not root, no losetup.
    fn new(bytes: u64, sector_size: u32) -> Option<Self> {
        let backing = temp_file();
        backing.as_file().set_len(bytes).unwrap();
        let out = Shell::new("losetup")
            .args(["--find", "--show", "--sector-size"])
            .arg(sector_size.to_string())
            .arg(backing.path())
            .output();
        match out {
            Ok(o) if o.status.success() => {
                let path = String::from_utf8(o.stdout).unwrap().trim().into();
                Some(Self {
                    path,
                    _backing: backing,
                })
            }
            Ok(o) => {
                let err = String::from_utf8_lossy(&o.stderr);
                eprintln!("skipping: losetup failed (needs root): {}", err.trim());
                None
            }
            Err(e) => {
                eprintln!("skipping: no losetup: {e}");
                None
            }
        }
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = Shell::new("losetup").arg("-d").arg(&self.path).status();
    }
}

#[test]
fn block_device_geometry_and_round_trip_on_a_loop_device() {
    for sector in [512u32, 4096] {
        let Some(lo) = LoopDev::new(8 * MIB as u64, sector) else {
            return;
        };
        let dev = UringDevice::open(&UringConfig::new(&lo.path)).unwrap();
        let g = dev.geometry();
        assert_eq!(g.block_size, sector, "BLKSSZGET on {}", lo.path.display());
        assert_eq!(g.block_count, 8 * MIB as u64 / u64::from(sector));
        assert_eq!(g.dma_align, 4096);
        let name = lo.path.file_name().unwrap().to_str().unwrap();
        let cache =
            std::fs::read_to_string(format!("/sys/class/block/{name}/queue/write_cache")).unwrap();
        assert_eq!(g.volatile_write_cache, cache.trim() == "write back");

        // A block size above the sector size is fine; below it, or create_bytes, is not.
        let mut cfg = UringConfig::new(&lo.path);
        cfg.block_size = Some(4096);
        let dev4k = UringDevice::open(&cfg).unwrap();
        assert_eq!(dev4k.geometry().block_count, 2048);
        cfg.block_size = Some(sector / 2);
        let err = UringDevice::open(&cfg).unwrap_err();
        assert!(matches!(err, DriverError::Config(_)), "{err:?}");
        let mut cfg = UringConfig::new(&lo.path);
        cfg.create_bytes = Some(MIB as u64);
        let err = UringDevice::open(&cfg).unwrap_err();
        assert!(matches!(err, DriverError::Config(_)), "{err:?}");

        // Data and write-zeroes on the 4 KiB view of the device.
        let mut qp = qpair(&dev4k, 8);
        let p = pool(64 * BS, 2);
        write(&mut qp, &p, 6, 100, 64, true);
        assert_eq!(read(&mut qp, &p, 100, 64), stamped(6, 100, 64));
        check_write_zeroes(&mut qp, 64, 3, 40);
        run(&mut qp, Command::Flush).result.unwrap();
        assert_eq!(qp.stats().errors, 0);
    }
}
