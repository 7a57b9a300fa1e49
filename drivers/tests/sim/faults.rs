//! Faults injected on purpose: typed command errors that change nothing, bit flips at
//! rest, misdirected writes.

use crate::common::*;

#[test]
fn injected_errors_are_typed_and_change_nothing() {
    let dev = SimDevice::new(cfg(32)).unwrap();
    let pool = pool(BS, 4);
    let mut qp = dev.open_qpair(&QpairOptions::depth(4)).unwrap();
    write(&mut qp, &pool, 1, 3, 1, false);
    dev.inject(Fault::FailNth {
        op: Op::Write,
        nth: 2,
        status: NvmeStatus::WRITE_FAULT,
    });
    write(&mut qp, &pool, 2, 4, 1, false); // first write after arming: fine
    let mut buf = pool.alloc().unwrap();
    stamp(&mut buf, 3, 3);
    let c = run(
        &mut qp,
        Command::Write {
            lba: 3,
            buf,
            fua: false,
        },
    );
    match c.result {
        Err(DriverError::Device {
            op: Op::Write,
            lba: 3,
            status,
            ..
        }) => {
            assert_eq!(status, NvmeStatus::WRITE_FAULT)
        }
        other => panic!("expected a write fault, got {other:?}"),
    }
    assert!(c.buf.is_some(), "buffer comes back on error");
    assert_eq!(
        stamp_of(&read(&mut qp, &pool, 3, 1)),
        Some((1, 3)),
        "failed write changed nothing"
    );
    write(&mut qp, &pool, 4, 3, 1, false); // the countdown fired once only

    dev.inject(Fault::FailRange {
        op: Op::Read,
        lba: 10,
        blocks: 2,
        status: NvmeStatus::UNRECOVERED_READ_ERROR,
    });
    let mut buf = pool.alloc().unwrap();
    buf.set_len(BS);
    let c = run(&mut qp, Command::Read { lba: 11, buf });
    assert!(matches!(
        c.result,
        Err(DriverError::Device { op: Op::Read, .. })
    ));
    assert!(run(
        &mut qp,
        Command::Read {
            lba: 12,
            buf: c.buf.unwrap()
        }
    )
    .result
    .is_ok());
    assert_eq!(qp.stats().errors, 2);
}

#[test]
fn flip_bits_changes_one_byte_for_reads_and_in_the_durable_image() {
    let dev = SimDevice::new(cfg(16)).unwrap();
    let pool = pool(3 * BS, 2);
    let mut qp = dev.open_qpair(&QpairOptions::depth(2)).unwrap();
    write(&mut qp, &pool, 1, 4, 3, false);
    let before = read(&mut qp, &pool, 0, 3);
    dev.flip_bits(5, 1000, 0x5a).unwrap();
    let back = read(&mut qp, &pool, 4, 3);
    assert_eq!(
        &back[..BS],
        &block_with_flip(1, 4, 0, 0)[..],
        "block before"
    );
    assert_eq!(
        &back[BS..2 * BS],
        &block_with_flip(1, 5, 1000, 0x5a)[..],
        "exactly that byte flips"
    );
    assert_eq!(
        &back[2 * BS..],
        &block_with_flip(1, 6, 0, 0)[..],
        "block after"
    );
    assert_eq!(read(&mut qp, &pool, 0, 3), before, "other blocks untouched");
    assert_eq!(dev.stats().errors, 0, "the device reports nothing");
    dev.flip_bits(0, BS - 1, 0x80).unwrap();
    let (image, _) = dev.power_cut();
    assert_eq!(
        image_block(&image, 5),
        &block_with_flip(1, 5, 1000, 0x5a)[..]
    );
    assert_eq!(
        image_block(&image, 0),
        &block_with_flip(0, 0, BS - 1, 0x80)[..]
    );
    let flipped: Vec<usize> = image
        .data
        .iter()
        .enumerate()
        .filter(|&(i, &b)| {
            let (lba, off) = ((i / BS) as u64, i % BS);
            let want = if (4..7).contains(&lba) {
                block_with_flip(1, lba, 0, 0)[off]
            } else {
                0
            };
            b != want
        })
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        flipped,
        vec![BS - 1, 5 * BS + 1000],
        "no other byte changed"
    );
}

#[test]
fn flip_bits_survives_a_cut_whatever_it_does_to_unflushed_writes() {
    // Block 4: durable data of write 1, then unflushed writes 2 (blocks 3..5) and 3 (block 4
    // only), then a flip. Whichever version of block 4 the cut keeps carries the flip.
    const BYTE: usize = 7; // the high byte of the stamped lba: 0 in every write
    const MASK: u8 = 0xa5;
    let mut seen = [0u32; 3];
    for seed in 0..40 {
        let dev = SimDevice::new(cache_cfg(seed)).unwrap();
        let pool = pool(2 * BS, 2);
        let mut qp = dev.open_qpair(&QpairOptions::depth(2)).unwrap();
        write(&mut qp, &pool, 1, 4, 1, false);
        run(&mut qp, Command::Flush).result.unwrap();
        write(&mut qp, &pool, 2, 3, 2, false);
        write(&mut qp, &pool, 3, 4, 1, false);
        assert_eq!(dev.volatile_writes(), 2, "seed {seed}");
        dev.flip_bits(4, BYTE, MASK).unwrap();
        assert_eq!(
            read(&mut qp, &pool, 4, 1),
            block_with_flip(3, 4, BYTE, MASK),
            "seed {seed}: reads see the newest write, flipped"
        );
        let (image, _) = dev.power_cut();
        let got = image_block(&image, 4);
        let which = (1..=3u32).position(|id| got == &block_with_flip(id, 4, BYTE, MASK)[..]);
        let Some(which) = which else {
            panic!(
                "seed {seed}: block 4 is no write with the flip: starts {:02x?}, byte {BYTE} = {:#04x}",
                &got[..16],
                got[BYTE]
            );
        };
        seen[which] += 1;
        assert_eq!(
            stamp_of(image_block(&image, 3)).map(|s| s.0).unwrap_or(2),
            2,
            "seed {seed}: block 3 (not flipped) holds write 2 or zeroes"
        );
    }
    assert!(
        seen.iter().all(|&n| n > 0),
        "the cut kept the durable data, the older and the newer unflushed write: {seen:?}"
    );
}

#[test]
fn flip_bits_refuses_what_is_not_on_the_device() {
    let dev = SimDevice::new(cfg(16)).unwrap();
    let pool = pool(16 * BS, 1);
    let mut qp = dev.open_qpair(&QpairOptions::depth(1)).unwrap();
    write(&mut qp, &pool, 1, 0, 16, false);
    let before = read(&mut qp, &pool, 0, 16);
    for (lba, byte) in [(16, 0), (u64::MAX, 0), (15, BS), (0, usize::MAX)] {
        let r = dev.flip_bits(lba, byte, 0xff);
        assert!(
            matches!(r, Err(DriverError::Config(_))),
            "lba {lba} byte {byte}: {r:?}"
        );
    }
    assert_eq!(
        read(&mut qp, &pool, 0, 16),
        before,
        "a refused flip changes nothing"
    );
    dev.flip_bits(15, BS - 1, 0xff).unwrap();
    let _ = dev.power_cut();
    assert!(matches!(
        dev.flip_bits(0, 0, 1),
        Err(DriverError::PoweredOff { op: Op::Write })
    ));
}

#[test]
fn misdirected_write_lands_elsewhere_and_completes_ok() {
    let dev = SimDevice::new(cfg(64)).unwrap();
    let pool = pool(2 * BS, 2);
    let mut qp = dev.open_qpair(&QpairOptions::depth(2)).unwrap();
    write(&mut qp, &pool, 1, 10, 2, false);
    write(&mut qp, &pool, 2, 20, 2, false);
    dev.inject(Fault::Misdirect {
        nth: 2,
        offset_blocks: 10,
    });
    write(&mut qp, &pool, 3, 30, 1, false); // first write after arming: where it was sent
    run(&mut qp, Command::WriteZeroes { lba: 40, blocks: 1 })
        .result
        .unwrap(); // not a Write: does not count
    run(&mut qp, Command::Flush).result.unwrap();
    write(&mut qp, &pool, 4, 10, 2, true); // the second: lands at 20, completes Ok
    write(&mut qp, &pool, 5, 50, 1, false); // fired once only
    let expect: [(u64, Option<(u32, u64)>); 7] = [
        (10, Some((1, 10))), // kept its old contents
        (11, Some((1, 11))),
        (20, Some((4, 10))), // write 4's data, meant for 10
        (21, Some((4, 11))),
        (30, Some((3, 30))),
        (40, None),
        (50, Some((5, 50))),
    ];
    for (lba, want) in expect {
        assert_eq!(stamp_of(&read(&mut qp, &pool, lba, 1)), want, "lba {lba}");
    }
    assert_eq!(dev.stats().errors, 0, "a silent fault");
    let (image, _) = dev.power_cut();
    for (lba, want) in expect {
        assert_eq!(stamp_of(image_block(&image, lba)), want, "image, lba {lba}");
    }
}

#[test]
fn misdirected_write_is_logged_where_it_landed_for_a_cut() {
    // Unflushed, the misdirected write may be kept or lost at a cut, but only where it
    // landed: the blocks it was meant for keep their durable data either way.
    let (mut kept, mut lost) = (0, 0);
    for seed in 0..20 {
        let dev = SimDevice::new(cache_cfg(seed)).unwrap();
        let pool = pool(2 * BS, 2);
        let mut qp = dev.open_qpair(&QpairOptions::depth(2)).unwrap();
        write(&mut qp, &pool, 1, 10, 2, false);
        write(&mut qp, &pool, 2, 20, 2, false);
        run(&mut qp, Command::Flush).result.unwrap();
        dev.inject(Fault::Misdirect {
            nth: 1,
            offset_blocks: -10,
        });
        write(&mut qp, &pool, 3, 20, 2, false); // lands at 10
        let (image, _) = dev.power_cut();
        for i in 0..2 {
            assert_eq!(
                stamp_of(image_block(&image, 20 + i)),
                Some((2, 20 + i)),
                "seed {seed}: the intended block keeps its data"
            );
            match stamp_of(image_block(&image, 10 + i)) {
                Some((3, at)) if at == 20 + i => kept += 1,
                Some((1, at)) if at == 10 + i => lost += 1,
                other => panic!("seed {seed}: block {} holds {other:?}", 10 + i),
            }
        }
    }
    assert!(kept > 0 && lost > 0, "kept {kept}, lost {lost}");
}

#[test]
fn misdirected_write_off_the_device_is_lost_silently() {
    let dev = SimDevice::new(cfg(64)).unwrap();
    let pool = pool(64 * BS, 1);
    let mut qp = dev.open_qpair(&QpairOptions::depth(1)).unwrap();
    write(&mut qp, &pool, 1, 0, 64, false);
    let before = read(&mut qp, &pool, 0, 64);
    // Past the end, straddling the end, before the start.
    for (id, lba, blocks, offset_blocks) in [(2, 10, 2, 60), (3, 62, 2, 1), (4, 2, 1, -5)] {
        dev.inject(Fault::Misdirect {
            nth: 1,
            offset_blocks,
        });
        write(&mut qp, &pool, id, lba, blocks, false); // completes Ok
        assert_eq!(
            read(&mut qp, &pool, 0, 64),
            before,
            "write {id} at {lba} shifted by {offset_blocks}: nothing changed"
        );
    }
    assert_eq!(dev.stats().errors, 0, "a silent fault");
    write(&mut qp, &pool, 5, 62, 2, false); // disarmed: lands where it was sent
    let back = read(&mut qp, &pool, 62, 2);
    assert_eq!(stamp_of(&back[..BS]), Some((5, 62)));
    assert_eq!(stamp_of(&back[BS..]), Some((5, 63)));
}
