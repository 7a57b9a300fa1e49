//! What a power cut leaves: flushed and FUA data kept, unflushed data kept, lost or torn
//! but never invented, the same image for the same seed, the atomic write unit honoured.

use crate::common::*;

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
