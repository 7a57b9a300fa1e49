//! What the io_uring tests share: temporary O_DIRECT files, pools, stamped buffers, and
//! running a command to completion.

pub use keel_drivers::uring::{UringConfig, UringDevice, UringQpair};
pub use keel_drivers::{
    BlockDevice, Command, Completion, DmaBuf, DmaPool, DmaSource, DriverError, Op, PoolConfig,
    QpairOptions, QueuePair,
};
pub use std::collections::HashMap;
pub use std::path::{Path, PathBuf};
pub use std::process::Command as Shell;
pub use std::time::{Duration, Instant};
pub use tempfile::NamedTempFile;

pub use crate::stamp::{stamp_bytes, stamped_bytes};

pub const BS: usize = crate::stamp::STAMP_BLOCK;

pub const MIB: usize = 1 << 20;

pub fn pool(buf_bytes: usize, count: u32) -> DmaPool {
    let mut cfg = PoolConfig::new(buf_bytes, count);
    cfg.source = DmaSource::Heap;
    DmaPool::new(cfg).unwrap()
}

pub fn temp_file() -> NamedTempFile {
    tempfile::Builder::new()
        .prefix("keel-uring-")
        .tempfile_in(std::env::temp_dir())
        .unwrap()
}

/// A device on a fresh temp file of `bytes`.
pub fn device(bytes: u64) -> (NamedTempFile, UringDevice) {
    let file = temp_file();
    let mut cfg = UringConfig::new(file.path());
    cfg.create_bytes = Some(bytes);
    let dev = UringDevice::open(&cfg).unwrap();
    (file, dev)
}

/// Fills each block with (write id, block number) stamps.
pub fn stamp(buf: &mut DmaBuf, write_id: u32, lba: u64) {
    stamp_bytes(buf.as_mut_slice(), write_id, lba);
}

/// `blocks` blocks stamped as a write of `write_id` at `lba`.
pub fn stamped(write_id: u32, lba: u64, blocks: usize) -> Vec<u8> {
    stamped_bytes(blocks * BS, write_id, lba)
}

/// Polls until `want` completions arrived (10 s at most).
pub fn wait(qp: &mut impl QueuePair, want: usize) -> Vec<Completion> {
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
pub fn run(qp: &mut impl QueuePair, cmd: Command) -> Completion {
    qp.submit(7, cmd).expect("submit");
    let mut c = wait(qp, 1);
    assert_eq!(c.len(), 1);
    let c = c.pop().unwrap();
    assert_eq!(c.tag, 7);
    assert_eq!(qp.in_flight(), 0);
    c
}

pub fn write(qp: &mut impl QueuePair, p: &DmaPool, id: u32, lba: u64, blocks: usize, fua: bool) {
    let mut buf = p.alloc().unwrap();
    buf.set_len(blocks * BS);
    stamp(&mut buf, id, lba);
    let c = run(qp, Command::Write { lba, buf, fua });
    assert_eq!(c.op, Op::Write);
    c.result.unwrap();
    assert_eq!(c.buf.unwrap().len(), blocks * BS);
}

pub fn read(qp: &mut impl QueuePair, p: &DmaPool, lba: u64, blocks: usize) -> Vec<u8> {
    let mut buf = p.alloc().unwrap();
    buf.set_len(blocks * BS);
    buf.as_mut_slice().fill(0xEE);
    let c = run(qp, Command::Read { lba, buf });
    assert_eq!(c.op, Op::Read);
    c.result.unwrap();
    c.buf.unwrap().as_slice().to_vec()
}

pub fn qpair(dev: &UringDevice, depth: u32) -> UringQpair {
    dev.open_qpair(&QpairOptions::depth(depth)).unwrap()
}

/// Writes a pattern over 0..total, zeroes `lba..lba + blocks`, and checks every block.
pub fn check_write_zeroes(qp: &mut UringQpair, total: usize, lba: u64, blocks: u32) {
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
