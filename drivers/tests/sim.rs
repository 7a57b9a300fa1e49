//! The simulated device keeps its promises: data round-trips, flushed data survives a power
//! cut, unflushed data is kept, lost or torn but never invented, same seed same image,
//! latency holds on a virtual clock, injected faults surface as typed errors, and the
//! silent ones (bit flips at rest, misdirected writes) corrupt exactly what they say.

use keel_drivers::sim::{Fault, SimClock, SimConfig, SimDevice, SimImage, SimQpair};
use keel_drivers::{
    BlockDevice, Command, Completion, DmaBuf, DmaPool, DmaSource, DriverError, NvmeStatus, Op,
    PoolConfig, QpairOptions, QueuePair,
};

const BS: usize = 4096;

fn pool(buf_bytes: usize, count: u32) -> DmaPool {
    let mut cfg = PoolConfig::new(buf_bytes, count);
    cfg.source = DmaSource::Heap;
    DmaPool::new(cfg).unwrap()
}

fn cfg(blocks: u64) -> SimConfig {
    SimConfig::new(BS as u32, blocks)
}

/// Fills each block with a stamp: (write id, block number), so any block read back names
/// the write it came from and the place it was meant for.
fn stamp(buf: &mut DmaBuf, write_id: u32, lba: u64) {
    stamp_bytes(buf.as_mut_slice(), write_id, lba);
}

/// [`stamp`] on plain bytes: what a write of `write_id` at `lba` puts on the media.
fn stamp_bytes(bytes: &mut [u8], write_id: u32, lba: u64) {
    for (i, block) in bytes.chunks_mut(BS).enumerate() {
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

fn stamp_of(block: &[u8]) -> Option<(u32, u64)> {
    if block.iter().all(|&b| b == 0) {
        return None;
    }
    let id = u32::from_le_bytes(block[0..4].try_into().unwrap());
    let lba = u32::from_le_bytes(block[4..8].try_into().unwrap()) as u64;
    assert!(
        block.chunks(8).all(|c| c == &block[0..8]),
        "block holds bytes that no write wrote"
    );
    Some((id, lba))
}

/// Submits and waits for one command (real clock, no latency: completes at once).
fn run(qp: &mut impl QueuePair, cmd: Command) -> Completion {
    qp.submit(7, cmd).expect("submit");
    let mut out = None;
    for _ in 0..1_000_000 {
        qp.poll(1, &mut |c| out = Some(c));
        if out.is_some() {
            break;
        }
    }
    let c = out.expect("completion");
    assert_eq!(c.tag, 7);
    c
}

fn write(qp: &mut impl QueuePair, pool: &DmaPool, id: u32, lba: u64, blocks: usize, fua: bool) {
    let mut buf = pool.alloc().unwrap();
    buf.set_len(blocks * BS);
    stamp(&mut buf, id, lba);
    run(qp, Command::Write { lba, buf, fua }).result.unwrap();
}

fn read(qp: &mut impl QueuePair, pool: &DmaPool, lba: u64, blocks: usize) -> Vec<u8> {
    let mut buf = pool.alloc().unwrap();
    buf.set_len(blocks * BS);
    let c = run(qp, Command::Read { lba, buf });
    c.result.unwrap();
    c.buf.unwrap().as_slice().to_vec()
}

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

fn libc_eagain() -> i32 {
    11
}

/// A queue pair of `depth` on a 16-block device whose commands take `latency_ns` on
/// `parallelism` channels, timed by a virtual clock the test moves.
fn timed_qpair(latency_ns: u64, parallelism: u32, depth: u32) -> (SimClock, SimQpair) {
    let mut c = cfg(16);
    let clock = SimClock::virtual_clock();
    c.clock = clock.clone();
    c.latency_ns = latency_ns;
    c.parallelism = parallelism;
    let dev = SimDevice::new(c).unwrap();
    let qp = dev.open_qpair(&QpairOptions::depth(depth)).unwrap();
    (clock, qp)
}

#[test]
fn latency_is_respected_on_a_virtual_clock() {
    let (clock, mut qp) = timed_qpair(10_000, 1, 4);
    for tag in 0..3 {
        qp.submit(tag, Command::Flush).unwrap();
    }
    let mut done = Vec::new();
    assert_eq!(
        qp.poll(8, &mut |c| done.push(c.tag)),
        0,
        "nothing before its time"
    );
    clock.advance(9_999);
    assert_eq!(qp.poll(8, &mut |c| done.push(c.tag)), 0);
    clock.advance(1);
    assert_eq!(
        qp.poll(8, &mut |c| done.push(c.tag)),
        1,
        "one channel: one at 10us"
    );
    clock.advance(10_000);
    assert_eq!(qp.poll(8, &mut |c| done.push(c.tag)), 1);
    assert_eq!(qp.next_completion_ns(), Some(30_000));
    clock.advance(10_000);
    qp.poll(8, &mut |c| done.push(c.tag));
    done.sort();
    assert_eq!(done, vec![0, 1, 2]);
}

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

/// A seeded workload of stamped writes with flushes; returns what must survive and what
/// each block may hold.
struct Workload {
    /// For each block: the stamp it must hold after the cut (durable), if known.
    durable: Vec<Option<u32>>,
    /// For each block: every write id that touched it after it was last made durable.
    maybe: Vec<Vec<u32>>,
}

fn workload(dev: &SimDevice, seed: u64, blocks: u64) -> Workload {
    let pool = pool(8 * BS, 2);
    let mut qp = dev.open_qpair(&QpairOptions::depth(2)).unwrap();
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut w = Workload {
        durable: vec![None; blocks as usize],
        maybe: vec![Vec::new(); blocks as usize],
    };
    for id in 1..=200u32 {
        if rng.u8(0..10) == 0 {
            run(&mut qp, Command::Flush).result.unwrap();
            for b in 0..blocks as usize {
                if let Some(&last) = w.maybe[b].last() {
                    w.durable[b] = Some(last);
                }
                w.maybe[b].clear();
            }
            continue;
        }
        let n = rng.usize(1..=8);
        let lba = rng.u64(0..=blocks - n as u64);
        let fua = rng.u8(0..8) == 0;
        write(&mut qp, &pool, id, lba, n, fua);
        for b in lba..lba + n as u64 {
            if fua {
                w.durable[b as usize] = Some(id);
                w.maybe[b as usize].clear();
            } else {
                w.maybe[b as usize].push(id);
            }
        }
    }
    w
}

fn cache_cfg(seed: u64) -> SimConfig {
    let mut c = cfg(64);
    c.volatile_write_cache = true;
    c.seed = seed;
    c
}

#[test]
fn power_cut_keeps_flushed_data_and_never_invents_bytes() {
    let (mut kept, mut lost, mut torn) = (0, 0, 0);
    for seed in 0..40 {
        let dev = SimDevice::new(cache_cfg(seed)).unwrap();
        let w = workload(&dev, seed, 64);
        let (image, report) = dev.power_cut();
        kept += report.kept;
        lost += report.lost;
        torn += report.torn;
        for (b, block) in image.data.chunks(BS).enumerate() {
            let got = stamp_of(block);
            if let Some((_, at)) = got {
                assert_eq!(
                    at, b as u64,
                    "seed {seed}: block {b} holds data meant for {at}"
                );
            }
            let got = got.map(|(id, _)| id);
            let allowed = got == w.durable[b] || got.is_some_and(|id| w.maybe[b].contains(&id));
            assert!(
                allowed,
                "seed {seed} block {b}: holds {got:?}, durable {:?}, unflushed {:?}",
                w.durable[b], w.maybe[b]
            );
        }
    }
    assert!(
        kept > 0 && lost > 0 && torn > 0,
        "every outcome happens: {kept} {lost} {torn}"
    );
}

#[test]
fn fully_flushed_device_loses_nothing() {
    let dev = SimDevice::new(cache_cfg(5)).unwrap();
    let pool = pool(BS, 2);
    let mut qp = dev.open_qpair(&QpairOptions::depth(2)).unwrap();
    for lba in 0..64 {
        write(&mut qp, &pool, lba as u32 + 1, lba, 1, false);
    }
    run(&mut qp, Command::Flush).result.unwrap();
    assert_eq!(dev.volatile_writes(), 0);
    let (image, report) = dev.power_cut();
    assert_eq!((report.kept, report.lost, report.torn), (0, 0, 0));
    for (b, block) in image.data.chunks(BS).enumerate() {
        assert_eq!(stamp_of(block), Some((b as u32 + 1, b as u64)));
    }
}

#[test]
fn same_seed_same_image() {
    let images: Vec<SimImage> = (0..2)
        .map(|_| {
            let dev = SimDevice::new(cache_cfg(77)).unwrap();
            workload(&dev, 77, 64);
            dev.power_cut().0
        })
        .collect();
    assert_eq!(images[0], images[1]);
    let dev = SimDevice::new(cache_cfg(78)).unwrap();
    workload(&dev, 77, 64);
    assert_ne!(
        dev.power_cut().0,
        images[0],
        "another cut seed gives another image"
    );
}

/// Commands complete by their own due time, whatever their slot or the order around
/// them: a poll takes due ones out of the middle of those in flight, honours `max`, and
/// reuses freed slots while the rest stay in flight.
#[test]
fn polls_complete_due_commands_out_of_the_middle_and_honour_max() {
    let (clock, mut qp) = timed_qpair(10_000, 8, 4);
    let mut done = Vec::new();
    // Tag 0 is due at 10 us, tag 1 at 15 us, tag 3 at 17 us.
    qp.submit(0, Command::Flush).unwrap();
    clock.advance(5_000);
    qp.submit(1, Command::Flush).unwrap();
    clock.advance(2_000); // 7 us
    qp.submit(3, Command::Flush).unwrap();
    assert_eq!(qp.next_completion_ns(), Some(10_000));
    clock.advance(3_000); // 10 us
    assert_eq!(qp.poll(8, &mut |c| done.push(c.tag)), 1);
    assert_eq!(done, vec![0]);
    // The freed slot is reused while 1 and 3 are in flight.
    qp.submit(4, Command::Flush).unwrap(); // due at 20 us
    qp.submit(5, Command::Flush).unwrap(); // due at 20 us
    assert_eq!(qp.in_flight(), 4);
    clock.advance(7_000); // 17 us: 1 (15) and 3 (17) are due, 4 and 5 are not
    assert_eq!(qp.poll(1, &mut |c| done.push(c.tag)), 1, "max is honoured");
    assert_eq!(qp.poll(8, &mut |c| done.push(c.tag)), 1);
    assert_eq!(done, vec![0, 1, 3], "due ones in submission order");
    assert_eq!(qp.next_completion_ns(), Some(20_000));
    clock.advance(3_000);
    assert_eq!(qp.poll(8, &mut |c| done.push(c.tag)), 2);
    assert_eq!(done, vec![0, 1, 3, 4, 5]);
    assert_eq!(qp.in_flight(), 0);
    assert_eq!(qp.poll(8, &mut |c| done.push(c.tag)), 0);
}

#[test]
fn flush_covers_only_writes_completed_before_it() {
    // A write still in flight when a flush is submitted is not made durable by it.
    let mut lost = 0;
    for seed in 0..20 {
        let mut c = cache_cfg(seed);
        let clock = SimClock::virtual_clock();
        c.clock = clock.clone();
        c.latency_ns = 1000;
        let dev = SimDevice::new(c).unwrap();
        let pool = pool(BS, 1);
        let mut qp = dev.open_qpair(&QpairOptions::depth(2)).unwrap();
        let mut buf = pool.alloc().unwrap();
        stamp(&mut buf, 1, 0);
        qp.submit(
            1,
            Command::Write {
                lba: 0,
                buf,
                fua: false,
            },
        )
        .unwrap();
        qp.submit(2, Command::Flush).unwrap();
        clock.advance(5000);
        assert_eq!(qp.poll(4, &mut |c| assert!(c.result.is_ok())), 2);
        let (image, _) = dev.power_cut();
        if stamp_of(&image.data[..BS]).is_none() {
            lost += 1;
        }
    }
    assert!(
        lost > 0,
        "an overlapping flush must not be taken as covering the write"
    );
}

#[test]
fn fua_is_durable_without_flush_and_restart_reads_the_image() {
    for seed in 0..10 {
        let dev = SimDevice::new(cache_cfg(seed)).unwrap();
        let pool = pool(4 * BS, 1);
        let mut qp = dev.open_qpair(&QpairOptions::depth(1)).unwrap();
        write(&mut qp, &pool, 1, 8, 4, true);
        let (image, _) = dev.power_cut();
        let again = SimDevice::from_image(cache_cfg(seed), image).unwrap();
        let mut qp = again.open_qpair(&QpairOptions::depth(1)).unwrap();
        let back = read(&mut qp, &pool, 8, 4);
        for (i, block) in back.chunks(BS).enumerate() {
            assert_eq!(stamp_of(block), Some((1, 8 + i as u64)), "seed {seed}");
        }
    }
}

#[test]
fn atomic_write_unit_is_honoured_when_asked() {
    let torn_with = |honour: bool| -> u64 {
        (0..30)
            .map(|seed| {
                let mut c = cache_cfg(seed);
                c.atomic_write_blocks = 8;
                c.honour_atomic = honour;
                let dev = SimDevice::new(c).unwrap();
                let pool = pool(8 * BS, 1);
                let mut qp = dev.open_qpair(&QpairOptions::depth(1)).unwrap();
                for (i, lba) in [0u64, 8, 16, 24].into_iter().enumerate() {
                    write(&mut qp, &pool, i as u32 + 1, lba, 8, false);
                }
                let (image, report) = dev.power_cut();
                for unit in image.data.chunks(8 * BS) {
                    let ids: Vec<_> = unit.chunks(BS).map(|b| stamp_of(b).map(|s| s.0)).collect();
                    if honour {
                        assert!(
                            ids.windows(2).all(|w| w[0] == w[1]),
                            "torn atomic unit: {ids:?}"
                        );
                    }
                }
                report.torn
            })
            .sum()
    };
    assert_eq!(torn_with(true), 0);
    assert!(torn_with(false) > 0);
}

#[test]
fn powered_off_device_refuses_and_fails_in_flight() {
    let mut c = cfg(16);
    c.clock = SimClock::virtual_clock();
    c.latency_ns = 100;
    let dev = SimDevice::new(c).unwrap();
    let mut qp = dev.open_qpair(&QpairOptions::depth(2)).unwrap();
    qp.submit(1, Command::Flush).unwrap();
    let _ = dev.power_cut();
    let mut res = None;
    qp.poll(1, &mut |c| res = Some(c.result));
    assert!(matches!(res, Some(Err(DriverError::PoweredOff { .. }))));
    let r = qp.submit(2, Command::Flush).unwrap_err();
    assert!(matches!(r.error, DriverError::PoweredOff { op: Op::Flush }));
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
fn discrete_clock_jumps_to_the_next_completion() {
    let mut c = cfg(16);
    let clock = SimClock::discrete();
    c.clock = clock.clone();
    c.latency_ns = 7_000;
    c.parallelism = 1;
    let dev = SimDevice::new(c).unwrap();
    let mut qp = dev.open_qpair(&QpairOptions::depth(4)).unwrap();
    qp.submit(1, Command::Flush).unwrap();
    qp.submit(2, Command::Flush).unwrap();
    let mut done = Vec::new();
    assert_eq!(qp.poll(1, &mut |c| done.push(c.tag)), 1);
    assert_eq!(
        clock.now_ns(),
        7_000,
        "jumped to the first completion, no further"
    );
    assert_eq!(qp.poll(4, &mut |c| done.push(c.tag)), 1);
    assert_eq!(clock.now_ns(), 14_000);
    assert_eq!(
        qp.poll(4, &mut |_| {}),
        0,
        "nothing in flight: time stands still"
    );
    assert_eq!(clock.now_ns(), 14_000);
    assert_eq!(done, vec![1, 2]);
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

/// One block as a write of `write_id` meant for `lba` leaves it (`write_id` 0: zeroes),
/// with `mask` XORed into byte `byte`.
fn block_with_flip(write_id: u32, lba: u64, byte: usize, mask: u8) -> Vec<u8> {
    let mut b = vec![0u8; BS];
    if write_id != 0 {
        stamp_bytes(&mut b, write_id, lba);
    }
    b[byte] ^= mask;
    b
}

fn image_block(image: &SimImage, lba: u64) -> &[u8] {
    &image.data[lba as usize * BS..(lba as usize + 1) * BS]
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
