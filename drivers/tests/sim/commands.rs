//! What a command does and what it refuses: data round-trips, bad requests refused whole,
//! a full queue, a read against a write still in flight, a configuration checked.

use crate::common::*;

#[test]
fn round_trips_data_zeroes_and_max_transfer() {
    let dev = SimDevice::new(cfg(1024)).unwrap();
    let max = dev.geometry().max_transfer_bytes as usize;
    let pool = pool(max, 4);
    let mut qp = dev.open_qpair(&QpairOptions::depth(4)).unwrap();
    for (id, lba, blocks) in [(1, 0, 1), (2, 5, 3), (3, 1023, 1), (4, 100, max / BS)] {
        write(&mut qp, &pool, id, lba, blocks, id % 2 == 0);
        let back = read(&mut qp, &pool, lba, blocks);
        for (i, block) in back.chunks(BS).enumerate() {
            assert_eq!(stamp_of(block), Some((id, lba + i as u64)));
        }
    }
    run(&mut qp, Command::Flush).result.unwrap();
    run(&mut qp, Command::WriteZeroes { lba: 6, blocks: 1 })
        .result
        .unwrap();
    let back = read(&mut qp, &pool, 5, 3);
    assert_eq!(stamp_of(&back[..BS]), Some((2, 5)));
    assert_eq!(stamp_of(&back[BS..2 * BS]), None);
    assert_eq!(stamp_of(&back[2 * BS..]), Some((2, 7)));
    let st = qp.stats();
    assert_eq!(st.cmds(Op::Write), 4);
    assert_eq!(st.cmds(Op::Flush), 1);
    assert_eq!(st.bytes(Op::WriteZeroes), BS as u64);
}

#[test]
fn bad_requests_are_refused_whole_and_touch_nothing() {
    let dev = SimDevice::new(cfg(64)).unwrap();
    let pool = pool(2 << 20, 2);
    let mut qp = dev.open_qpair(&QpairOptions::depth(2)).unwrap();
    write(&mut qp, &pool, 9, 63, 1, false);

    let mut buf = pool.alloc().unwrap();
    buf.set_len(2 * BS);
    stamp(&mut buf, 10, 63);
    let r = qp
        .submit(
            1,
            Command::Write {
                lba: 63,
                buf,
                fua: false,
            },
        )
        .unwrap_err();
    assert!(
        matches!(
            r.error,
            DriverError::OutOfRange {
                op: Op::Write,
                lba: 63,
                blocks: 2,
                block_count: 64
            }
        ),
        "{r}"
    );
    let buf = r.cmd.into_buf().expect("buffer comes back");

    let mut buf = {
        let mut b = buf;
        b.set_len(100);
        b
    };
    let r = qp
        .submit(
            1,
            Command::Write {
                lba: 0,
                buf,
                fua: false,
            },
        )
        .unwrap_err();
    assert!(
        matches!(r.error, DriverError::BadLength { len: 100, .. }),
        "{r}"
    );
    buf = r.cmd.into_buf().unwrap();
    buf.set_len(2 << 20);
    let r = qp.submit(1, Command::Read { lba: 0, buf }).unwrap_err();
    assert!(
        matches!(r.error, DriverError::TooLarge { op: Op::Read, .. }),
        "{r}"
    );
    let r = qp
        .submit(1, Command::WriteZeroes { lba: 60, blocks: 5 })
        .unwrap_err();
    assert!(matches!(
        r.error,
        DriverError::OutOfRange {
            op: Op::WriteZeroes,
            ..
        }
    ));
    let r = qp
        .submit(
            1,
            Command::WriteZeroes {
                lba: u64::MAX,
                blocks: 2,
            },
        )
        .unwrap_err();
    assert!(
        matches!(r.error, DriverError::OutOfRange { .. }),
        "lba overflow is out of range"
    );
    assert_eq!(qp.in_flight(), 0);
    assert_eq!(
        stamp_of(&read(&mut qp, &pool, 63, 1)),
        Some((9, 63)),
        "untouched"
    );
    assert_eq!(
        dev.stats().cmds(Op::Write),
        1,
        "refused commands never reach the device"
    );
}

#[test]
fn queue_full_hands_the_command_back() {
    let mut c = cfg(16);
    c.clock = SimClock::virtual_clock();
    c.latency_ns = 1000;
    let dev = SimDevice::new(c).unwrap();
    let mut qp = dev.open_qpair(&QpairOptions::depth(2)).unwrap();
    qp.submit(1, Command::Flush).unwrap();
    qp.submit(2, Command::Flush).unwrap();
    let r = qp.submit(3, Command::Flush).unwrap_err();
    assert!(matches!(r.error, DriverError::QueueFull { depth: 2, .. }));
    assert_eq!(r.error.errno(), -libc_eagain());
}

#[test]
fn config_is_checked() {
    let mut c = cfg(16);
    c.block_size = 1000;
    assert!(matches!(SimDevice::new(c), Err(DriverError::Config(_))));
    assert!(matches!(
        SimDevice::new(cfg(0)),
        Err(DriverError::Config(_))
    ));
    let mut c = cfg(16);
    c.atomic_write_blocks = 0;
    assert!(matches!(SimDevice::new(c), Err(DriverError::Config(_))));
}

#[test]
fn a_read_does_not_see_a_write_still_in_flight() {
    let mut c = cfg(16);
    let clock = SimClock::virtual_clock();
    c.clock = clock.clone();
    c.latency_ns = 1000;
    let dev = SimDevice::new(c).unwrap();
    let pool = pool(BS, 2);
    let mut qp = dev.open_qpair(&QpairOptions::depth(4)).unwrap();
    let mut buf = pool.alloc().unwrap();
    stamp(&mut buf, 5, 3);
    qp.submit(
        1,
        Command::Write {
            lba: 3,
            buf,
            fua: false,
        },
    )
    .unwrap();
    let buf = pool.alloc().unwrap();
    qp.submit(2, Command::Read { lba: 3, buf }).unwrap();
    clock.advance(1000);
    let mut got = Vec::new();
    qp.poll(4, &mut |c| got.push(c));
    let read = got.iter().find(|c| c.tag == 2).unwrap();
    assert_eq!(
        stamp_of(read.buf.as_ref().unwrap().as_slice()),
        None,
        "old data while in flight"
    );
    drop(got);
    let buf = pool.alloc().unwrap();
    qp.submit(3, Command::Read { lba: 3, buf }).unwrap();
    clock.advance(1000);
    let mut after = None;
    qp.poll(4, &mut |c| after = Some(c));
    assert_eq!(
        stamp_of(after.unwrap().buf.unwrap().as_slice()),
        Some((5, 3)),
        "new data once done"
    );
}
