//! What the sim tests share: device and pool set-ups, and stamped blocks that name the
//! write they came from and the place it was meant for.

pub use keel_drivers::sim::{Fault, SimClock, SimConfig, SimDevice, SimImage, SimQpair};
pub use keel_drivers::{
    BlockDevice, Command, Completion, DmaBuf, DmaPool, DmaSource, DriverError, NvmeStatus, Op,
    PoolConfig, QpairOptions, QueuePair,
};

pub use crate::stamp::stamp_bytes;

pub const BS: usize = crate::stamp::STAMP_BLOCK;

pub fn pool(buf_bytes: usize, count: u32) -> DmaPool {
    let mut cfg = PoolConfig::new(buf_bytes, count);
    cfg.source = DmaSource::Heap;
    DmaPool::new(cfg).unwrap()
}

pub fn cfg(blocks: u64) -> SimConfig {
    SimConfig::new(BS as u32, blocks)
}

/// Fills each block with a stamp: (write id, block number), so any block read back names
/// the write it came from and the place it was meant for.
pub fn stamp(buf: &mut DmaBuf, write_id: u32, lba: u64) {
    stamp_bytes(buf.as_mut_slice(), write_id, lba);
}

pub fn stamp_of(block: &[u8]) -> Option<(u32, u64)> {
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
pub fn run(qp: &mut impl QueuePair, cmd: Command) -> Completion {
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

pub fn write(qp: &mut impl QueuePair, pool: &DmaPool, id: u32, lba: u64, blocks: usize, fua: bool) {
    let mut buf = pool.alloc().unwrap();
    buf.set_len(blocks * BS);
    stamp(&mut buf, id, lba);
    run(qp, Command::Write { lba, buf, fua }).result.unwrap();
}

pub fn read(qp: &mut impl QueuePair, pool: &DmaPool, lba: u64, blocks: usize) -> Vec<u8> {
    let mut buf = pool.alloc().unwrap();
    buf.set_len(blocks * BS);
    let c = run(qp, Command::Read { lba, buf });
    c.result.unwrap();
    c.buf.unwrap().as_slice().to_vec()
}

pub fn libc_eagain() -> i32 {
    11
}

/// A queue pair of `depth` on a 16-block device whose commands take `latency_ns` on
/// `parallelism` channels, timed by a virtual clock the test moves.
pub fn timed_qpair(latency_ns: u64, parallelism: u32, depth: u32) -> (SimClock, SimQpair) {
    let mut c = cfg(16);
    let clock = SimClock::virtual_clock();
    c.clock = clock.clone();
    c.latency_ns = latency_ns;
    c.parallelism = parallelism;
    let dev = SimDevice::new(c).unwrap();
    let qp = dev.open_qpair(&QpairOptions::depth(depth)).unwrap();
    (clock, qp)
}

pub fn cache_cfg(seed: u64) -> SimConfig {
    let mut c = cfg(64);
    c.volatile_write_cache = true;
    c.seed = seed;
    c
}

/// One block as a write of `write_id` meant for `lba` leaves it (`write_id` 0: zeroes),
/// with `mask` XORed into byte `byte`.
pub fn block_with_flip(write_id: u32, lba: u64, byte: usize, mask: u8) -> Vec<u8> {
    let mut b = vec![0u8; BS];
    if write_id != 0 {
        stamp_bytes(&mut b, write_id, lba);
    }
    b[byte] ^= mask;
    b
}

pub fn image_block(image: &SimImage, lba: u64) -> &[u8] {
    &image.data[lba as usize * BS..(lba as usize + 1) * BS]
}
