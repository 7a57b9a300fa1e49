//! `AnyDevice` is its driver, unchanged: data round-trips through each of sim, psync and
//! uring behind the one type, geometry and counters are the driver's own, and a bad request
//! comes back whole with the driver's error.

use keel_drivers::any::{AnyDevice, AnyQpair};
use keel_drivers::psync::{PsyncConfig, PsyncDevice};
use keel_drivers::sim::{SimConfig, SimDevice};
use keel_drivers::uring::{UringConfig, UringDevice};
use keel_drivers::{
    BlockDevice, Command, Completion, DmaPool, DmaSource, DriverError, Op, PoolConfig,
    QpairOptions, QueuePair,
};
use tempfile::NamedTempFile;

const BS: usize = 4096;
const BLOCKS: u64 = 256;

fn pool() -> DmaPool {
    let mut cfg = PoolConfig::new(4 * BS, 4);
    cfg.source = DmaSource::Heap;
    DmaPool::new(cfg).unwrap()
}

fn temp_file() -> NamedTempFile {
    tempfile::Builder::new()
        .prefix("keel-any-")
        .tempfile_in(std::env::temp_dir())
        .unwrap()
}

/// Submits one command and polls until it completes.
fn run(qp: &mut AnyQpair, cmd: Command) -> Completion {
    qp.submit(9, cmd).expect("submit");
    let mut out = None;
    for _ in 0..10_000_000 {
        qp.poll(1, &mut |c| out = Some(c));
        if out.is_some() {
            break;
        }
    }
    let c = out.expect("a completion");
    assert_eq!(c.tag, 9);
    c
}

/// Writes two blocks, flushes, reads them back; checks geometry, counters and a refusal.
fn round_trip(dev: &AnyDevice) {
    let geo = dev.geometry();
    assert_eq!(geo.block_size as usize, BS);
    assert_eq!(geo.block_count, BLOCKS);
    let mut qp = dev.open_qpair(&QpairOptions::depth(4)).unwrap();
    assert_eq!(qp.depth(), 4);
    assert_eq!(*qp.geometry(), geo);
    let pool = pool();

    let mut buf = pool.alloc().unwrap();
    buf.set_len(2 * BS);
    for (i, b) in buf.as_mut_slice().iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    let want = buf.as_slice().to_vec();
    run(
        &mut qp,
        Command::Write {
            lba: 10,
            buf,
            fua: false,
        },
    )
    .result
    .unwrap();
    run(&mut qp, Command::Flush).result.unwrap();
    let mut buf = pool.alloc().unwrap();
    buf.set_len(2 * BS);
    let c = run(&mut qp, Command::Read { lba: 10, buf });
    c.result.unwrap();
    assert_eq!(c.buf.unwrap().as_slice(), &want[..], "{}", dev.driver());
    assert_eq!(qp.in_flight(), 0);
    qp.kick().unwrap();

    let s = qp.stats();
    assert_eq!(s.cmds(Op::Write), 1);
    assert_eq!(s.bytes(Op::Write), 2 * BS as u64);
    assert_eq!(s.cmds(Op::Read), 1);
    assert_eq!(s.cmds(Op::Flush), 1);

    // Past the end: refused before the device, the buffer comes back.
    let mut buf = pool.alloc().unwrap();
    buf.set_len(BS);
    let rejected = qp
        .submit(1, Command::Read { lba: BLOCKS, buf })
        .unwrap_err();
    assert!(matches!(rejected.error, DriverError::OutOfRange { .. }));
    assert!(rejected.cmd.into_buf().is_some());
}

#[test]
fn sim_behind_any() {
    let dev = AnyDevice::from(SimDevice::new(SimConfig::new(BS as u32, BLOCKS)).unwrap());
    assert_eq!(dev.driver(), "sim");
    round_trip(&dev);
}

#[test]
fn psync_behind_any() {
    let file = temp_file();
    let mut cfg = PsyncConfig::new(file.path());
    cfg.create_bytes = Some(BLOCKS * BS as u64);
    let dev = AnyDevice::from(PsyncDevice::open(&cfg).unwrap());
    assert_eq!(dev.driver(), "psync");
    round_trip(&dev);
}

#[test]
fn uring_behind_any() {
    let file = temp_file();
    let mut cfg = UringConfig::new(file.path());
    cfg.create_bytes = Some(BLOCKS * BS as u64);
    let dev = AnyDevice::from(UringDevice::open(&cfg).unwrap());
    assert_eq!(dev.driver(), "uring");
    round_trip(&dev);
}
