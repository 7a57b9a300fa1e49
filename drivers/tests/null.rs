//! The null device completes every valid command with its tag and buffer back, moves no
//! data, counts what it completed, and refuses bad requests the way every driver does.

use keel_drivers::null::{NullDevice, NullQpair};
use keel_drivers::{
    BlockDevice, Command, Completion, DmaBuf, DmaPool, DmaSource, DriverError, Op, PoolConfig,
    QpairOptions, QueuePair, Rejected,
};

const BS: usize = 4096;

fn pool(buf_bytes: usize, count: u32) -> DmaPool {
    let mut cfg = PoolConfig::new(buf_bytes, count);
    cfg.source = DmaSource::Heap;
    DmaPool::new(cfg).unwrap()
}

fn qpair(blocks: u64, depth: u32) -> NullQpair {
    let dev = NullDevice::new(BS as u32, blocks).unwrap();
    dev.open_qpair(&QpairOptions::depth(depth)).unwrap()
}

fn filled(pool: &DmaPool, len: usize, byte: u8) -> DmaBuf {
    let mut b = pool.alloc().expect("free buffer");
    b.set_len(len);
    b.as_mut_slice().fill(byte);
    b
}

fn drain(qp: &mut NullQpair) -> Vec<Completion> {
    let mut out = Vec::new();
    qp.poll(u32::MAX, &mut |c| out.push(c));
    out
}

#[test]
fn every_op_completes_with_its_tag_and_buffer() {
    let mut qp = qpair(1024, 8);
    let pool = pool(4 * BS, 4);
    qp.submit(
        100,
        Command::Read {
            lba: 0,
            buf: filled(&pool, BS, 1),
        },
    )
    .unwrap();
    qp.submit(
        101,
        Command::Write {
            lba: 1,
            buf: filled(&pool, 2 * BS, 2),
            fua: false,
        },
    )
    .unwrap();
    qp.submit(
        102,
        Command::Write {
            lba: 1023,
            buf: filled(&pool, BS, 3),
            fua: true,
        },
    )
    .unwrap();
    qp.submit(103, Command::Flush).unwrap();
    qp.submit(104, Command::WriteZeroes { lba: 10, blocks: 7 })
        .unwrap();
    assert_eq!(qp.in_flight(), 5);
    qp.kick().unwrap();

    let done = drain(&mut qp);
    assert_eq!(qp.in_flight(), 0);
    let got: Vec<_> = done
        .iter()
        .map(|c| (c.tag, c.op, c.buf.as_ref().map(|b| b.len())))
        .collect();
    assert_eq!(
        got,
        [
            (100, Op::Read, Some(BS)),
            (101, Op::Write, Some(2 * BS)),
            (102, Op::Write, Some(BS)),
            (103, Op::Flush, None),
            (104, Op::WriteZeroes, None),
        ]
    );
    assert!(done.iter().all(|c| c.result.is_ok()));
}

#[test]
fn moves_no_data() {
    let mut qp = qpair(64, 4);
    let pool = pool(BS, 2);
    qp.submit(
        1,
        Command::Write {
            lba: 5,
            buf: filled(&pool, BS, 0x11),
            fua: true,
        },
    )
    .unwrap();
    qp.submit(
        2,
        Command::Read {
            lba: 5,
            buf: filled(&pool, BS, 0xab),
        },
    )
    .unwrap();
    let done = drain(&mut qp);
    let write = done[0].buf.as_ref().unwrap();
    let read = done[1].buf.as_ref().unwrap();
    assert!(
        write.as_slice().iter().all(|&b| b == 0x11),
        "write buffer changed"
    );
    assert!(
        read.as_slice().iter().all(|&b| b == 0xab),
        "read buffer got data"
    );
}

#[test]
fn counts_what_it_completes() {
    let mut qp = qpair(1024, 16);
    let pool = pool(8 * BS, 4);
    for (i, blocks) in [1, 3, 8].into_iter().enumerate() {
        let buf = filled(&pool, blocks * BS, 0);
        qp.submit(i as u64, Command::Read { lba: 0, buf }).unwrap();
    }
    qp.submit(
        10,
        Command::Write {
            lba: 0,
            buf: filled(&pool, 2 * BS, 0),
            fua: false,
        },
    )
    .unwrap();
    qp.submit(11, Command::Flush).unwrap();
    qp.submit(12, Command::Flush).unwrap();
    qp.submit(
        13,
        Command::WriteZeroes {
            lba: 0,
            blocks: 100,
        },
    )
    .unwrap();
    drain(&mut qp);

    let s = qp.stats();
    assert_eq!((s.cmds(Op::Read), s.bytes(Op::Read)), (3, 12 * BS as u64));
    assert_eq!((s.cmds(Op::Write), s.bytes(Op::Write)), (1, 2 * BS as u64));
    assert_eq!((s.cmds(Op::Flush), s.bytes(Op::Flush)), (2, 0));
    assert_eq!(
        (s.cmds(Op::WriteZeroes), s.bytes(Op::WriteZeroes)),
        (1, 100 * BS as u64)
    );
    assert_eq!(s.errors, 0);
}

#[test]
fn poll_hands_back_at_most_max_in_order() {
    let mut qp = qpair(16, 8);
    for tag in 0..5 {
        qp.submit(tag, Command::Flush).unwrap();
    }
    let mut tags = Vec::new();
    assert_eq!(qp.poll(0, &mut |c| tags.push(c.tag)), 0);
    assert_eq!(qp.poll(2, &mut |c| tags.push(c.tag)), 2);
    assert_eq!(qp.in_flight(), 3);
    assert_eq!(qp.poll(10, &mut |c| tags.push(c.tag)), 3);
    assert_eq!(tags, [0, 1, 2, 3, 4]);
    assert_eq!(qp.poll(10, &mut |_| panic!("nothing left")), 0);
}

/// Submits a command that must be refused: nothing queued, nothing counted.
fn refused(qp: &mut NullQpair, cmd: Command) -> Rejected {
    let (before, in_flight) = (qp.stats(), qp.in_flight());
    let rej = qp.submit(9, cmd).expect_err("must be refused");
    assert_eq!(qp.in_flight(), in_flight);
    assert_eq!(qp.stats(), before);
    rej
}

fn buf_back(rej: Rejected, len: usize, byte: u8) {
    let buf = rej.cmd.into_buf().expect("buffer comes back");
    assert_eq!(buf.len(), len);
    assert!(buf.as_slice().iter().all(|&b| b == byte));
}

#[test]
fn refuses_bad_requests_with_the_buffer_back() {
    let mut qp = qpair(64, 4);
    let pool = pool((1 << 20) + BS, 1);

    for (lba, len) in [(64, BS), (63, 2 * BS), (u64::MAX, BS)] {
        let rej = refused(
            &mut qp,
            Command::Read {
                lba,
                buf: filled(&pool, len, 7),
            },
        );
        assert!(
            matches!(
                rej.error,
                DriverError::OutOfRange {
                    op: Op::Read,
                    block_count: 64,
                    ..
                }
            ),
            "{:?}",
            rej.error
        );
        buf_back(rej, len, 7);
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
    assert!(rej.cmd.into_buf().is_none());

    for len in [0, 1, BS - 1, BS + 512] {
        let rej = refused(
            &mut qp,
            Command::Write {
                lba: 0,
                buf: filled(&pool, len, 8),
                fua: false,
            },
        );
        assert!(
            matches!(rej.error, DriverError::BadLength { op: Op::Write, block_size: 4096, len: l } if l == len as u64),
            "{:?}",
            rej.error
        );
        buf_back(rej, len, 8);
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

    let len = (1 << 20) + BS;
    let rej = refused(
        &mut qp,
        Command::Write {
            lba: 0,
            buf: filled(&pool, len, 9),
            fua: true,
        },
    );
    assert!(matches!(
        rej.error,
        DriverError::TooLarge {
            op: Op::Write,
            max: 1048576,
            ..
        }
    ));
    assert_eq!(rej.error.errno(), -libc::E2BIG);
    buf_back(rej, len, 9);
}

#[test]
fn refuses_when_full_until_polled() {
    let mut qp = qpair(64, 2);
    let pool = pool(BS, 1);
    qp.submit(1, Command::Flush).unwrap();
    qp.submit(2, Command::WriteZeroes { lba: 0, blocks: 1 })
        .unwrap();

    let rej = refused(
        &mut qp,
        Command::Read {
            lba: 0,
            buf: filled(&pool, BS, 5),
        },
    );
    assert!(matches!(
        rej.error,
        DriverError::QueueFull {
            op: Op::Read,
            depth: 2
        }
    ));
    assert_eq!(rej.error.errno(), -libc::EAGAIN);
    let buf = rej.cmd.into_buf().expect("buffer comes back");

    assert_eq!(qp.poll(1, &mut |c| assert_eq!(c.tag, 1)), 1);
    qp.submit(3, Command::Read { lba: 0, buf }).unwrap();
    let tags: Vec<_> = drain(&mut qp).iter().map(|c| c.tag).collect();
    assert_eq!(tags, [2, 3]);
}

#[test]
fn bad_configurations_are_config_errors() {
    for (bs, blocks) in [(0, 8), (1000, 8), (256, 8), (4096, 0)] {
        let err = NullDevice::new(bs, blocks).unwrap_err();
        assert!(
            matches!(err, DriverError::Config(_)),
            "{bs} x {blocks}: {err:?}"
        );
    }
    let dev = NullDevice::new(512, 8).unwrap();
    let g = dev.geometry();
    assert_eq!((g.block_size, g.block_count), (512, 8));
    assert!(matches!(
        dev.open_qpair(&QpairOptions::depth(0)),
        Err(DriverError::Config(_))
    ));
}
