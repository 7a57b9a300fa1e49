//! What reads, writes, FUA, flush and write-zeroes do to the file, through registered and
//! plain buffers.

use crate::common::*;

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
