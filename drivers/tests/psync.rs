//! The psync driver on real files (and, as root, a loop block device): data lands at the
//! right offsets and reads back, FUA/flush/write-zeroes do their job, bad requests come back
//! whole with the file untouched, and opening fails with typed errors.

use std::path::{Path, PathBuf};

use keel_drivers::psync::{PsyncConfig, PsyncDevice, PsyncQpair};
use keel_drivers::{
    BlockDevice, Command, Completion, DmaBuf, DmaPool, DmaSource, DriverError, Op, PoolConfig,
    QpairOptions, QueuePair, Rejected,
};

#[path = "support/stamp.rs"]
mod stamp;

use stamp::stamped_bytes;

const BS: usize = stamp::STAMP_BLOCK;
const MIB: usize = 1 << 20;

fn pool(buf_bytes: usize, count: u32) -> DmaPool {
    let mut cfg = PoolConfig::new(buf_bytes, count);
    cfg.source = DmaSource::Heap;
    DmaPool::new(cfg).unwrap()
}

/// A temp dir (removed on drop) and the path of a device file inside it.
fn temp_path() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let path = dir.path().join("keel.dev");
    (dir, path)
}

/// Creates a device file of `blocks` 4 KiB blocks and opens it.
fn create(path: &Path, blocks: u64) -> PsyncDevice {
    let mut cfg = PsyncConfig::new(path);
    cfg.create_bytes = Some(blocks * BS as u64);
    PsyncDevice::open(&cfg).unwrap()
}

/// Submits one command and takes its completion (psync completes inside submit).
fn run(qp: &mut PsyncQpair, tag: u64, cmd: Command) -> Completion {
    qp.submit(tag, cmd).expect("submit");
    let mut out = None;
    assert_eq!(qp.poll(1, &mut |c| out = Some(c)), 1);
    let c = out.expect("a completion");
    assert_eq!(c.tag, tag);
    c
}

fn write(qp: &mut PsyncQpair, pool: &DmaPool, lba: u64, data: &[u8], fua: bool) {
    let mut buf = pool.alloc().expect("free buffer");
    buf.set_len(data.len());
    buf.as_mut_slice().copy_from_slice(data);
    let c = run(qp, 1, Command::Write { lba, buf, fua });
    assert_eq!(c.op, Op::Write);
    c.result.expect("write");
    assert_eq!(c.buf.expect("buffer back").len(), data.len());
}

fn read(qp: &mut PsyncQpair, pool: &DmaPool, lba: u64, len: usize) -> DmaBuf {
    let mut buf = pool.alloc().expect("free buffer");
    buf.set_len(len);
    buf.as_mut_slice().fill(0xee);
    let c = run(qp, 2, Command::Read { lba, buf });
    assert_eq!(c.op, Op::Read);
    c.result.expect("read");
    c.buf.expect("buffer back")
}

/// The bytes of the file at `lba`, read without the driver.
fn file_bytes(path: &Path, lba: u64, len: usize) -> Vec<u8> {
    let all = std::fs::read(path).unwrap();
    let start = lba as usize * BS;
    all[start..start + len].to_vec()
}

#[test]
fn write_then_read_back_at_several_offsets() {
    let (_dir, path) = temp_path();
    let dev = create(&path, 1024);
    let mut qp = dev.open_qpair(&QpairOptions::depth(8)).unwrap();
    let pool = pool(BS, 4);
    let lbas = [0, 1, 7, 100, 511, 1023];
    for (id, &lba) in lbas.iter().enumerate() {
        write(
            &mut qp,
            &pool,
            lba,
            &stamped_bytes(BS, id as u32 + 1, lba),
            false,
        );
    }
    for (id, &lba) in lbas.iter().enumerate() {
        let want = stamped_bytes(BS, id as u32 + 1, lba);
        assert_eq!(
            read(&mut qp, &pool, lba, BS).as_slice(),
            &want[..],
            "lba {lba}"
        );
        // The bytes are where they belong in the file, not just readable by the driver.
        assert_eq!(file_bytes(&path, lba, BS), want, "file at lba {lba}");
    }
    // Blocks never written read back as zeros.
    assert!(read(&mut qp, &pool, 2, BS)
        .as_slice()
        .iter()
        .all(|&b| b == 0));

    let s = qp.stats();
    assert_eq!(s.cmds(Op::Write), lbas.len() as u64);
    assert_eq!(s.bytes(Op::Write), (lbas.len() * BS) as u64);
    assert_eq!(s.cmds(Op::Read), lbas.len() as u64 + 1);
    assert_eq!(s.bytes(Op::Read), ((lbas.len() + 1) * BS) as u64);
    assert_eq!(s.errors, 0);
}

#[test]
fn multi_block_and_exactly_max_transfer() {
    let (_dir, path) = temp_path();
    let dev = create(&path, 1024);
    assert_eq!(dev.geometry().max_transfer_bytes as usize, MIB);
    let mut qp = dev.open_qpair(&QpairOptions::depth(4)).unwrap();
    let pool = pool(MIB, 2);

    let three = stamped_bytes(3 * BS, 1, 5);
    write(&mut qp, &pool, 5, &three, false);
    let max = stamped_bytes(MIB, 2, 300);
    write(&mut qp, &pool, 300, &max, false);
    // The last max transfer of the device ends exactly at its end.
    let tail = stamped_bytes(MIB, 3, 1024 - 256);
    write(&mut qp, &pool, 1024 - 256, &tail, false);

    assert_eq!(read(&mut qp, &pool, 5, 3 * BS).as_slice(), &three[..]);
    assert_eq!(read(&mut qp, &pool, 300, MIB).as_slice(), &max[..]);
    assert_eq!(read(&mut qp, &pool, 1024 - 256, MIB).as_slice(), &tail[..]);
    assert_eq!(file_bytes(&path, 5, 3 * BS), three);
    assert_eq!(file_bytes(&path, 300, MIB), max);
    // A read spanning two writes and the gap between sees each block's own write.
    let span = read(&mut qp, &pool, 4, 5 * BS);
    assert!(span.as_slice()[..BS].iter().all(|&b| b == 0));
    assert_eq!(&span.as_slice()[BS..4 * BS], &three[..]);
    assert!(span.as_slice()[4 * BS..].iter().all(|&b| b == 0));
}

#[test]
fn fua_write_and_flush() {
    let (_dir, path) = temp_path();
    let dev = create(&path, 64);
    let mut qp = dev.open_qpair(&QpairOptions::depth(4)).unwrap();
    let pool = pool(4 * BS, 2);

    let data = stamped_bytes(4 * BS, 9, 10);
    write(&mut qp, &pool, 10, &data, true);
    assert_eq!(file_bytes(&path, 10, 4 * BS), data);
    assert_eq!(read(&mut qp, &pool, 10, 4 * BS).as_slice(), &data[..]);

    let c = run(&mut qp, 77, Command::Flush);
    assert_eq!(c.op, Op::Flush);
    c.result.expect("flush");
    assert!(c.buf.is_none());

    let s = qp.stats();
    assert_eq!(s.cmds(Op::Write), 1);
    assert_eq!(s.cmds(Op::Flush), 1);
    assert_eq!(s.bytes(Op::Flush), 0);
}

#[test]
fn write_zeroes_zeroes_only_its_range() {
    let (_dir, path) = temp_path();
    let dev = create(&path, 64);
    let mut qp = dev.open_qpair(&QpairOptions::depth(4)).unwrap();
    let pool = pool(64 * BS, 1);
    let pattern = stamped_bytes(64 * BS, 4, 0);
    write(&mut qp, &pool, 0, &pattern, false);

    let c = run(
        &mut qp,
        5,
        Command::WriteZeroes {
            lba: 10,
            blocks: 10,
        },
    );
    assert_eq!(c.op, Op::WriteZeroes);
    c.result.expect("write-zeroes");
    assert!(c.buf.is_none());
    // ext4 zeroes ranges itself.
    assert!(!qp.zeroes_by_write());

    let back = read(&mut qp, &pool, 0, 64 * BS);
    for (i, (got, want)) in back
        .as_slice()
        .chunks(BS)
        .zip(pattern.chunks(BS))
        .enumerate()
    {
        if (10..20).contains(&i) {
            assert!(got.iter().all(|&b| b == 0), "block {i} not zeroed");
        } else {
            assert_eq!(got, want, "block {i} changed");
        }
    }
    assert_eq!(std::fs::read(&path).unwrap(), back.as_slice());
    assert_eq!(qp.stats().cmds(Op::WriteZeroes), 1);
    assert_eq!(qp.stats().bytes(Op::WriteZeroes), 10 * BS as u64);
}

/// Submits a command that must be refused; checks the variant maker, that nothing was
/// queued or counted, and returns the refusal.
fn refused(qp: &mut PsyncQpair, cmd: Command) -> Rejected {
    let before = qp.stats();
    let rej = qp.submit(3, cmd).expect_err("must be refused");
    assert_eq!(qp.in_flight(), 0);
    assert_eq!(qp.stats(), before);
    rej
}

#[test]
fn bad_requests_come_back_whole_and_leave_the_file_alone() {
    let (_dir, path) = temp_path();
    let dev = create(&path, 64);
    let mut qp = dev.open_qpair(&QpairOptions::depth(4)).unwrap();
    let big = pool(MIB + BS, 1);
    let small = pool(4 * BS, 1);
    write(&mut qp, &small, 0, &stamped_bytes(4 * BS, 1, 0), false);
    let image = std::fs::read(&path).unwrap();
    let before = qp.stats();

    let filled = |pool: &DmaPool, len: usize| {
        let mut b = pool.alloc().unwrap();
        b.set_len(len);
        b.as_mut_slice().fill(0xab);
        b
    };
    let check_buf = |rej: Rejected, len: usize| {
        let buf = rej.cmd.into_buf().expect("buffer comes back");
        assert_eq!(buf.len(), len);
        assert!(buf.as_slice().iter().all(|&b| b == 0xab));
    };

    // Out of range: starting past the end, and running over it.
    for (lba, len) in [(64, BS), (62, 4 * BS), (u64::MAX, BS)] {
        let rej = refused(
            &mut qp,
            Command::Write {
                lba,
                buf: filled(&small, len),
                fua: false,
            },
        );
        assert!(
            matches!(
                rej.error,
                DriverError::OutOfRange {
                    op: Op::Write,
                    block_count: 64,
                    ..
                }
            ),
            "{:?}",
            rej.error
        );
        check_buf(rej, len);
        let rej = refused(
            &mut qp,
            Command::Read {
                lba,
                buf: filled(&small, len),
            },
        );
        assert!(matches!(
            rej.error,
            DriverError::OutOfRange { op: Op::Read, .. }
        ));
        check_buf(rej, len);
    }
    let rej = refused(&mut qp, Command::WriteZeroes { lba: 60, blocks: 5 });
    assert!(matches!(
        rej.error,
        DriverError::OutOfRange {
            op: Op::WriteZeroes,
            lba: 60,
            blocks: 5,
            block_count: 64
        }
    ));

    // Zero and non-multiple lengths.
    for len in [0, 100, BS + 512] {
        let rej = refused(
            &mut qp,
            Command::Write {
                lba: 0,
                buf: filled(&small, len),
                fua: true,
            },
        );
        assert!(
            matches!(rej.error, DriverError::BadLength { op: Op::Write, block_size: 4096, len: l } if l == len as u64),
            "{:?}",
            rej.error
        );
        check_buf(rej, len);
    }
    let rej = refused(&mut qp, Command::WriteZeroes { lba: 0, blocks: 0 });
    assert!(matches!(
        rej.error,
        DriverError::BadLength {
            op: Op::WriteZeroes,
            len: 0,
            ..
        }
    ));

    // One block more than the max transfer.
    let rej = refused(
        &mut qp,
        Command::Write {
            lba: 0,
            buf: filled(&big, MIB + BS),
            fua: false,
        },
    );
    assert!(matches!(
        rej.error,
        DriverError::TooLarge { op: Op::Write, max: 1048576, len } if len == (MIB + BS) as u64
    ));
    check_buf(rej, MIB + BS);
    let rej = refused(
        &mut qp,
        Command::Read {
            lba: 0,
            buf: filled(&big, MIB + BS),
        },
    );
    assert!(matches!(
        rej.error,
        DriverError::TooLarge { op: Op::Read, .. }
    ));
    check_buf(rej, MIB + BS);

    assert_eq!(
        std::fs::read(&path).unwrap(),
        image,
        "a refused command touched the file"
    );
    assert_eq!(qp.stats(), before);
}

/// A misaligned buffer needs a device alignment above the pool's: with 8 KiB blocks the
/// device wants 8 KiB alignment, and a pool of 12 KiB buffers at 4 KiB alignment has
/// every other buffer on an odd 4 KiB boundary.
#[test]
fn misaligned_buffer_is_refused() {
    let (_dir, path) = temp_path();
    let mut cfg = PsyncConfig::new(&path);
    cfg.create_bytes = Some(64 * 8192);
    cfg.block_size = Some(8192);
    let dev = PsyncDevice::open(&cfg).unwrap();
    assert_eq!(dev.geometry().dma_align, 8192);
    let mut qp = dev.open_qpair(&QpairOptions::depth(4)).unwrap();
    let image = std::fs::read(&path).unwrap();

    let mut cfg = PoolConfig::new(3 * BS, 2);
    cfg.source = DmaSource::Heap;
    let pool = DmaPool::new(cfg).unwrap();
    let (a, b) = (pool.alloc().unwrap(), pool.alloc().unwrap());
    let aligned = |buf: &DmaBuf| buf.as_ptr() as usize % 8192 == 0;
    assert_ne!(
        aligned(&a),
        aligned(&b),
        "buffers 12 KiB apart alternate 8 KiB alignment"
    );
    let mut buf = if aligned(&a) { b } else { a };
    buf.set_len(8192);
    buf.as_mut_slice().fill(0xab);
    let addr = buf.as_ptr() as u64;

    let rej = qp
        .submit(
            1,
            Command::Write {
                lba: 3,
                buf,
                fua: false,
            },
        )
        .unwrap_err();
    assert!(
        matches!(rej.error, DriverError::Misaligned { op: Op::Write, align: 8192, addr: a } if a == addr),
        "{:?}",
        rej.error
    );
    let buf = rej.cmd.into_buf().expect("buffer comes back");
    assert!(buf.as_slice().iter().all(|&b| b == 0xab));
    assert_eq!(qp.in_flight(), 0);
    assert_eq!(std::fs::read(&path).unwrap(), image);
}

#[test]
fn queue_full_until_polled() {
    let (_dir, path) = temp_path();
    let dev = create(&path, 16);
    let mut qp = dev.open_qpair(&QpairOptions::depth(2)).unwrap();
    assert_eq!(qp.depth(), 2);
    let pool = pool(BS, 4);
    let image = std::fs::read(&path).unwrap();

    qp.submit(10, Command::Flush).unwrap();
    qp.submit(
        11,
        Command::Read {
            lba: 0,
            buf: pool.alloc().unwrap(),
        },
    )
    .unwrap();
    assert_eq!(qp.in_flight(), 2);

    let mut buf = pool.alloc().unwrap();
    buf.as_mut_slice().fill(0xcd);
    let rej = qp
        .submit(
            12,
            Command::Write {
                lba: 1,
                buf,
                fua: false,
            },
        )
        .unwrap_err();
    assert!(matches!(
        rej.error,
        DriverError::QueueFull {
            op: Op::Write,
            depth: 2
        }
    ));
    let buf = rej.cmd.into_buf().expect("buffer comes back");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        image,
        "refused write reached the file"
    );
    assert_eq!(rej.error.errno(), -libc::EAGAIN);

    // kick changes nothing; polling one frees one slot, in submission order.
    qp.kick().unwrap();
    let mut tags = Vec::new();
    assert_eq!(qp.poll(1, &mut |c| tags.push(c.tag)), 1);
    assert_eq!(tags, [10]);
    qp.submit(
        12,
        Command::Write {
            lba: 1,
            buf,
            fua: false,
        },
    )
    .unwrap();
    assert_eq!(qp.poll(8, &mut |c| tags.push(c.tag)), 2);
    assert_eq!(tags, [10, 11, 12]);
    assert_eq!(qp.in_flight(), 0);
    assert_eq!(qp.poll(8, &mut |_| panic!("nothing left")), 0);
}

#[test]
fn geometry_of_a_created_file() {
    let (_dir, path) = temp_path();
    let mut cfg = PsyncConfig::new(&path);
    cfg.create_bytes = Some(MIB as u64 + 100);
    let dev = PsyncDevice::open(&cfg).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), MIB as u64 + 100);
    let g = dev.geometry();
    assert_eq!(g.block_size, 4096);
    assert_eq!(g.block_count, 256, "the partial tail block is not usable");
    assert_eq!(g.max_transfer_bytes as usize, MIB);
    assert_eq!(g.atomic_write_blocks, 1);
    assert!(g.volatile_write_cache);
    assert!(g.write_zeroes);
    assert_eq!(g.dma_align, 4096);
    assert!(!dev.is_block_device());
    assert_eq!(dev.path(), path);
    let qp = dev.open_qpair(&QpairOptions::depth(3)).unwrap();
    assert_eq!(*qp.geometry(), g);
    drop(qp);
    drop(dev);

    // Reopening with a smaller create size never shrinks the file.
    cfg.create_bytes = Some(4096);
    cfg.block_size = Some(512);
    cfg.max_transfer_bytes = 128 << 10;
    let dev = PsyncDevice::open(&cfg).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), MIB as u64 + 100);
    let g = dev.geometry();
    assert_eq!((g.block_size, g.block_count), (512, 2048));
    assert_eq!(g.max_transfer_bytes, 128 << 10);
    assert_eq!(g.dma_align, 4096);
}

#[test]
fn opening_a_missing_path_names_it() {
    let (_dir, path) = temp_path();
    let err = PsyncDevice::open(&PsyncConfig::new(&path)).unwrap_err();
    match &err {
        DriverError::Open { what, source } => {
            assert!(what.contains(&*path.to_string_lossy()), "{what}");
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected Open, got {other:?}"),
    }
    assert_eq!(err.errno(), -libc::ENOENT);
    assert!(
        !path.exists(),
        "opening without create_bytes created the file"
    );
}

#[test]
fn bad_configurations_are_config_errors() {
    let (_dir, path) = temp_path();
    std::fs::write(&path, vec![0u8; 4095]).unwrap();
    let err = PsyncDevice::open(&PsyncConfig::new(&path)).unwrap_err();
    assert!(
        matches!(&err, DriverError::Config(m) if m.contains("smaller than one 4096-byte block")),
        "{err:?}"
    );

    std::fs::write(&path, vec![0u8; 64 * BS]).unwrap();
    for bs in [0, 256, 1000, 4097, 128 << 10] {
        let mut cfg = PsyncConfig::new(&path);
        cfg.block_size = Some(bs);
        let err = PsyncDevice::open(&cfg).unwrap_err();
        assert!(
            matches!(&err, DriverError::Config(m) if m.contains("block size")),
            "{bs}: {err:?}"
        );
    }
    for max in [0, 2048, 4096 + 512] {
        let mut cfg = PsyncConfig::new(&path);
        cfg.max_transfer_bytes = max;
        let err = PsyncDevice::open(&cfg).unwrap_err();
        assert!(
            matches!(&err, DriverError::Config(m) if m.contains("max transfer")),
            "{max}: {err:?}"
        );
    }
    let err = PsyncDevice::open(&PsyncConfig::new(std::env::temp_dir())).unwrap_err();
    assert!(
        matches!(err, DriverError::Open { .. } | DriverError::Config(_)),
        "{err:?}"
    );

    let dev = PsyncDevice::open(&PsyncConfig::new(&path)).unwrap();
    let err = dev.open_qpair(&QpairOptions::depth(0)).unwrap_err();
    assert!(matches!(err, DriverError::Config(_)));
}

/// A file that shrinks under the device: a read past its new end hits end of file, which is
/// EIO (never a short read passed off as success), and the buffer still comes back.
#[test]
fn read_past_a_shrunk_file_is_eio() {
    let (_dir, path) = temp_path();
    let dev = create(&path, 8);
    let mut qp = dev.open_qpair(&QpairOptions::depth(2)).unwrap();
    let pool = pool(2 * BS, 1);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(5 * BS as u64)
        .unwrap();

    let c = run(
        &mut qp,
        9,
        Command::Read {
            lba: 4,
            buf: pool.alloc().unwrap(),
        },
    );
    let err = c.result.expect_err("read past end of file");
    assert!(
        matches!(&err, DriverError::Io { op: Op::Read, lba: 4, source } if source.raw_os_error() == Some(libc::EIO)),
        "{err:?}"
    );
    assert_eq!(err.errno(), -libc::EIO);
    assert_eq!(c.buf.expect("buffer back").len(), 2 * BS);
    let s = qp.stats();
    assert_eq!((s.cmds(Op::Read), s.errors), (1, 1));
}

/// Queue pairs share the descriptor: what one thread writes, another reads.
#[test]
fn queue_pairs_on_two_threads_share_the_device() {
    let (_dir, path) = temp_path();
    let dev = create(&path, 256);
    let pool = pool(BS, 8);
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let (dev, pool) = (&dev, &pool);
            s.spawn(move || {
                let mut qp = dev.open_qpair(&QpairOptions::depth(4)).unwrap();
                for i in 0..32 {
                    let lba = t * 128 + i;
                    write(
                        &mut qp,
                        pool,
                        lba,
                        &stamped_bytes(BS, t as u32, lba),
                        i % 2 == 0,
                    );
                }
            });
        }
    });
    let mut qp = dev.open_qpair(&QpairOptions::depth(1)).unwrap();
    for t in 0..2u64 {
        for i in 0..32 {
            let lba = t * 128 + i;
            let want = stamped_bytes(BS, t as u32, lba);
            assert_eq!(read(&mut qp, &pool, lba, BS).as_slice(), &want[..]);
        }
    }
}

/// tmpfs takes O_DIRECT (Linux 6.6+) but cannot zero a range in place: write-zeroes falls
/// back to writing zeros, once detected, and still zeroes exactly its range. Skips where
/// /dev/shm is missing or refuses O_DIRECT.
#[test]
fn write_zeroes_falls_back_where_the_file_system_cannot_zero() {
    let Ok(dir) = tempfile::tempdir_in("/dev/shm") else {
        eprintln!("skipped: no /dev/shm");
        return;
    };
    let path = dir.path().join("keel.dev");
    let mut cfg = PsyncConfig::new(&path);
    cfg.create_bytes = Some(64 * BS as u64);
    cfg.max_transfer_bytes = 4 * BS as u32;
    let dev = match PsyncDevice::open(&cfg) {
        Ok(d) => d,
        Err(DriverError::Open { source, .. }) if source.raw_os_error() == Some(libc::EINVAL) => {
            eprintln!("skipped: tmpfs here refuses O_DIRECT");
            return;
        }
        Err(e) => panic!("{e:?}"),
    };
    let mut qp = dev.open_qpair(&QpairOptions::depth(2)).unwrap();
    std::fs::write(&path, vec![0x77; 64 * BS]).unwrap();
    for (lba, blocks) in [(3, 10), (40, 1)] {
        let c = run(&mut qp, 1, Command::WriteZeroes { lba, blocks });
        c.result.expect("write-zeroes");
        assert!(qp.zeroes_by_write(), "tmpfs should have refused ZERO_RANGE");
    }
    let data = std::fs::read(&path).unwrap();
    for (i, block) in data.chunks(BS).enumerate() {
        let want = if (3..13).contains(&i) || i == 40 {
            0
        } else {
            0x77
        };
        assert!(block.iter().all(|&b| b == want), "block {i}");
    }
    assert_eq!(qp.stats().bytes(Op::WriteZeroes), 11 * BS as u64);
}

/// A loop block device, as root: capacity from BLKGETSIZE64, block size from BLKSSZGET,
/// write-zeroes by BLKZEROOUT. Skips cleanly without root or losetup.
#[test]
fn loop_block_device_as_root() {
    struct Loop(String);
    impl Drop for Loop {
        fn drop(&mut self) {
            let _ = std::process::Command::new("losetup")
                .args(["-d", &self.0])
                .status();
        }
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root for losetup");
        return;
    }
    let (_dir, backing) = temp_path();
    std::fs::write(&backing, vec![0x31; 4 * MIB]).unwrap();
    let out = std::process::Command::new("losetup")
        .args(["-f", "--show"])
        .arg(&backing)
        .output();
    let Some(out) = out.ok().filter(|o| o.status.success()) else {
        eprintln!("skipped: losetup failed");
        return;
    };
    let lo = Loop(String::from_utf8(out.stdout).unwrap().trim().to_owned());

    let mut cfg = PsyncConfig::new(&lo.0);
    cfg.create_bytes = Some(MIB as u64);
    assert!(matches!(
        PsyncDevice::open(&cfg),
        Err(DriverError::Config(_))
    ));

    let dev = PsyncDevice::open(&PsyncConfig::new(&lo.0)).unwrap();
    assert!(dev.is_block_device());
    let g = dev.geometry();
    assert_eq!(
        g.block_size, 512,
        "loop devices default to 512-byte sectors"
    );
    assert_eq!(g.capacity_bytes(), 4 * MIB as u64);
    assert_eq!(g.dma_align, 4096);

    let mut cfg = PsyncConfig::new(&lo.0);
    cfg.block_size = Some(4096);
    let dev = PsyncDevice::open(&cfg).unwrap();
    assert_eq!(dev.geometry().block_count, 1024);
    let mut qp = dev.open_qpair(&QpairOptions::depth(2)).unwrap();
    let pool = pool(8 * BS, 2);
    let data = stamped_bytes(8 * BS, 6, 100);
    write(&mut qp, &pool, 100, &data, true);
    assert_eq!(read(&mut qp, &pool, 100, 8 * BS).as_slice(), &data[..]);
    run(
        &mut qp,
        1,
        Command::WriteZeroes {
            lba: 102,
            blocks: 4,
        },
    )
    .result
    .unwrap();
    run(&mut qp, 2, Command::Flush).result.unwrap();
    let back = read(&mut qp, &pool, 100, 8 * BS);
    for (i, (got, want)) in back.as_slice().chunks(BS).zip(data.chunks(BS)).enumerate() {
        if (2..6).contains(&i) {
            assert!(got.iter().all(|&b| b == 0), "block {} not zeroed", 100 + i);
        } else {
            assert_eq!(got, want);
        }
    }
    assert!(read(&mut qp, &pool, 0, BS)
        .as_slice()
        .iter()
        .all(|&b| b == 0x31));
}
