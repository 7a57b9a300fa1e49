//! `keel-bench raw`: a load generator on one queue pair, no engine above it.
//!
//! One thread keeps `qd` commands in flight. Each of the `qd` slots owns one DMA buffer
//! from a pool allocated at start; a slot's index is its command's tag. The loop is
//!
//! ```text
//!   submit every idle slot (next offset from a seeded generator, stamp the time)
//!   poll ──► for each completion: latency = now - stamp, slot idle again
//!   ...until the time or the command budget runs out; then drain what is in flight
//! ```
//!
//! With `--group-flush` a write is not done when it completes: it waits for a flush issued
//! after its completion, and its latency runs to that flush's completion. One flush is in
//! flight at a time and covers every write that completed before it was issued (group
//! commit with nothing above the device): the least a durable acknowledgement costs where
//! the device has a volatile cache and no native FUA, so the ceiling of any store's
//! durable writes on that device.
//!
//! A phase counts the commands submitted in it, and ends when all of them have completed,
//! so `--ops N` measures exactly N commands. An optional warm-up phase runs first and is
//! left out of every figure. Any failed command stops the run with an error.
//!
//! A command's latency runs from the moment the loop was ready to submit it (one clock
//! read per batch of submissions) to the poll that reaped it (one clock read per batch of
//! completions). With a driver that does the I/O inside `submit` (psync), the later
//! commands of a batch therefore include the time of the earlier ones: at QD32, psync's
//! latency is about 32 service times, which is what a caller with 32 requests sees.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use keel_drivers::{
    BlockDevice, Command, Completion, DmaBuf, DmaPool, Geometry, IoStats, Op, PoolConfig,
    QpairOptions, QueuePair,
};

use crate::cli::{RawArgs, Stop, Workload, RAW_DEVICE};
use crate::cpu::CpuTime;
use crate::device::{self, DeviceJob};
use crate::error::BenchError;
use crate::report::{latency_histogram, RawReport};

/// How long the loop waits for a completion, with commands in flight, before it gives up.
pub const STALL_LIMIT: Duration = Duration::from_secs(30);

/// Empty polls between two looks at the clock for a stall.
pub const POLLS_PER_STALL_CHECK: u32 = 1 << 12;

/// Runs `keel-bench raw` as the arguments say.
pub fn run(args: &RawArgs) -> Result<RawReport, BenchError> {
    device::open(
        &args.device,
        &RAW_DEVICE,
        args.seed,
        args.bs,
        RawJob { args },
    )
}

struct RawJob<'a> {
    args: &'a RawArgs,
}

impl DeviceJob for RawJob<'_> {
    type Output = RawReport;

    fn run<D: BlockDevice + 'static>(self, device: D) -> Result<RawReport, BenchError> {
        let args = self.args;
        let spec = LoadSpec {
            workload: args.workload,
            bs: args.bs,
            qd: args.qd,
            span_bytes: args
                .device
                .size(&RAW_DEVICE)
                .expect("raw has a default --size"),
            warmup: Duration::from_secs_f64(args.measure.warmup_seconds),
            stop: args.measure.stop(),
            seed: args.seed,
            fua: args.fua,
            group_flush: args.group_flush,
        };
        let geometry = device.geometry();
        let pool = DmaPool::new(PoolConfig::new(spec.bs as usize, spec.qd)).map_err(|source| {
            BenchError::Dma {
                count: spec.qd,
                bytes: spec.bs,
                source,
            }
        })?;
        let opts = QpairOptions {
            depth: spec.qpair_depth(),
            regions: vec![pool.region().clone()],
        };
        let mut qp = device
            .open_qpair(&opts)
            .map_err(|source| BenchError::Qpair {
                depth: spec.qd,
                source,
            })?;
        let run = run_load(&mut qp, &pool, &spec)?;
        Ok(RawReport::new(
            args.device.driver.as_str(),
            &spec,
            &geometry,
            pool.region().is_hugepages(),
            &run,
        ))
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// What each command does.
    pub workload: Workload,
    /// Bytes per command.
    pub bs: u32,
    /// Commands in flight.
    pub qd: u32,
    /// Bytes at the start of the device the offsets fall in (clipped to its capacity).
    pub span_bytes: u64,
    /// Unmeasured run first; zero for none.
    pub warmup: Duration,
    /// When the measurement stops.
    pub stop: Stop,
    /// Seed of the offsets and of the write data.
    pub seed: u64,
    /// Writes carry FUA: durable when they complete.
    pub fua: bool,
    /// A write is done only when a flush issued after it completed has completed.
    pub group_flush: bool,
}

impl LoadSpec {
    /// Commands the queue pair must hold: the writes, and the flush of `group_flush`.
    pub fn qpair_depth(&self) -> u32 {
        self.qd + u32::from(self.group_flush)
    }
}

/// The tag of `group_flush`'s flush (slots are tagged by index, below `qd`).
const FLUSH_TAG: u64 = u64::MAX;

/// What a measurement saw.
#[derive(Debug)]
pub struct LoadRun {
    /// Commands completed (all submitted in the measured phase).
    pub ops: u64,
    /// From the first submission to the last completion.
    pub elapsed: Duration,
    /// Latency of each command, submission to reaping, in nanoseconds.
    pub latency_ns: Histogram<u64>,
    /// What the queue pair counted during the measurement.
    pub device: IoStats,
    /// CPU time of the process during the measurement.
    pub cpu: CpuTime,
    /// Bytes the offsets actually covered.
    pub span_bytes: u64,
}

/// Runs the load on an open queue pair. The pool must hold at least `spec.qd` buffers of
/// `spec.bs` bytes.
pub fn run_load<Q: QueuePair>(
    qp: &mut Q,
    pool: &DmaPool,
    spec: &LoadSpec,
) -> Result<LoadRun, BenchError> {
    let geometry = *qp.geometry();
    let offsets = Offsets::new(spec, &geometry)?;
    let span_bytes = offsets.slots * u64::from(spec.bs);
    let mut fill = fastrand::Rng::with_seed(spec.seed ^ 0x5bd1_e995);
    let mut slots = Vec::with_capacity(spec.qd as usize);
    for _ in 0..spec.qd {
        let mut buf = pool.alloc().ok_or_else(|| {
            BenchError::Geometry(format!("DMA pool has fewer than {} buffers", spec.qd))
        })?;
        buf.set_len(spec.bs as usize);
        if spec.workload.writes() {
            fill.fill(buf.as_mut_slice());
        }
        slots.push(Slot {
            buf: Some(buf),
            lba: 0,
            submitted_at: Instant::now(),
            in_flight: false,
        });
    }
    let latency_ns = latency_histogram();
    let mut gen = Generator {
        qp,
        workload: spec.workload,
        fua: spec.fua,
        group_flush: spec.group_flush,
        unflushed: Vec::with_capacity(spec.qd as usize),
        flushing: Vec::with_capacity(spec.qd as usize),
        offsets,
        slots,
        idle: (0..spec.qd).rev().collect(),
        done: Vec::with_capacity(spec.qd as usize),
        latency_ns,
    };

    if !spec.warmup.is_zero() {
        gen.phase(Stop::Seconds(spec.warmup.as_secs_f64()), false)?;
        gen.latency_ns.reset();
    }
    let stats_before = gen.qp.stats();
    let cpu_before = CpuTime::now();
    let (ops, elapsed) = gen.phase(spec.stop, true)?;
    let cpu = CpuTime::now() - cpu_before;
    let device = stats_delta(&gen.qp.stats(), &stats_before);
    Ok(LoadRun {
        ops,
        elapsed,
        latency_ns: gen.latency_ns,
        device,
        cpu,
        span_bytes,
    })
}

/// One command slot: its buffer (while idle), and the command in flight.
struct Slot {
    buf: Option<DmaBuf>,
    lba: u64,
    submitted_at: Instant,
    in_flight: bool,
}

/// Where each command goes: `slots` transfer-sized slots at the start of the device.
struct Offsets {
    rng: fastrand::Rng,
    sequential: bool,
    slots: u64,
    blocks_per_io: u64,
    next: u64,
}

impl Offsets {
    fn new(spec: &LoadSpec, geometry: &Geometry) -> Result<Self, BenchError> {
        let bs = u64::from(spec.bs);
        let block = u64::from(geometry.block_size);
        if bs % block != 0 {
            return Err(BenchError::Geometry(format!(
                "--bs {bs} is not a multiple of the device's {block}-byte block"
            )));
        }
        if bs > u64::from(geometry.max_transfer_bytes) {
            return Err(BenchError::Geometry(format!(
                "--bs {bs} is larger than the device's max transfer of {} bytes",
                geometry.max_transfer_bytes
            )));
        }
        let span = spec.span_bytes.min(geometry.capacity_bytes());
        let slots = span / bs;
        if slots == 0 {
            return Err(BenchError::Geometry(format!(
                "--bs {bs} is larger than the {span} bytes the workload may cover"
            )));
        }
        Ok(Offsets {
            rng: fastrand::Rng::with_seed(spec.seed),
            sequential: spec.workload == Workload::Seqwrite,
            slots,
            blocks_per_io: bs / block,
            next: 0,
        })
    }

    fn next_lba(&mut self) -> u64 {
        let slot = if self.sequential {
            let s = self.next;
            self.next = if s + 1 == self.slots { 0 } else { s + 1 };
            s
        } else {
            self.rng.u64(0..self.slots)
        };
        slot * self.blocks_per_io
    }
}

struct Generator<'q, Q> {
    qp: &'q mut Q,
    workload: Workload,
    fua: bool,
    group_flush: bool,
    /// `group_flush`: slots whose write completed after the flush in flight was issued.
    unflushed: Vec<u32>,
    /// `group_flush`: slots whose write the flush in flight covers (empty: none in flight).
    flushing: Vec<u32>,
    offsets: Offsets,
    slots: Vec<Slot>,
    /// Slots with no command in flight.
    idle: Vec<u32>,
    /// Completions of the last poll, handled after it returns.
    done: Vec<Completion>,
    latency_ns: Histogram<u64>,
}

impl<Q: QueuePair> Generator<'_, Q> {
    /// Submits until `stop`, then drains. Returns the commands submitted (and so completed)
    /// and the time from the first submission to the last completion.
    fn phase(&mut self, stop: Stop, record: bool) -> Result<(u64, Duration), BenchError> {
        let start = Instant::now();
        let deadline = match stop {
            Stop::Seconds(s) => Some(start + Duration::from_secs_f64(s)),
            Stop::Ops(_) => None,
        };
        let budget = match stop {
            Stop::Ops(n) => n,
            Stop::Seconds(_) => u64::MAX,
        };
        let mut submitted = 0u64;
        let mut now = start;
        let mut last_progress = start;
        let mut empty_polls = 0u32;
        loop {
            let open = submitted < budget && deadline.is_none_or(|d| now < d);
            if open {
                while submitted < budget {
                    let Some(slot) = self.idle.pop() else { break };
                    self.submit(slot, now)?;
                    submitted += 1;
                }
            }
            if self.qp.in_flight() == 0 {
                break;
            }
            let max = self.qp.depth();
            let done = &mut self.done;
            let n = self.qp.poll(max, &mut |c| done.push(c));
            if n == 0 {
                empty_polls += 1;
                if empty_polls % POLLS_PER_STALL_CHECK == 0 && last_progress.elapsed() > STALL_LIMIT
                {
                    return Err(BenchError::Stalled {
                        seconds: STALL_LIMIT.as_secs(),
                        in_flight: self.qp.in_flight(),
                    });
                }
                continue;
            }
            now = Instant::now();
            last_progress = now;
            self.complete(now, record)?;
        }
        Ok((submitted, now.duration_since(start)))
    }

    fn submit(&mut self, slot: u32, now: Instant) -> Result<(), BenchError> {
        let lba = self.offsets.next_lba();
        let s = &mut self.slots[slot as usize];
        let buf = s.buf.take().expect("an idle slot holds its buffer");
        s.lba = lba;
        s.submitted_at = now;
        s.in_flight = true;
        let cmd = match self.workload {
            Workload::Randread => Command::Read { lba, buf },
            Workload::Randwrite | Workload::Seqwrite => Command::Write {
                lba,
                buf,
                fua: self.fua,
            },
        };
        let op = cmd.op();
        self.qp.submit(u64::from(slot), cmd).map_err(|rejected| {
            s.buf = rejected.cmd.into_buf();
            s.in_flight = false;
            BenchError::Submit {
                op,
                lba,
                source: rejected.error,
            }
        })
    }

    /// Handles the completions of the last poll: records latencies, returns the buffers,
    /// marks the slots idle (with `group_flush`, only when a flush covers them, and starts
    /// the next flush). The first failed command is an error.
    fn complete(&mut self, now: Instant, record: bool) -> Result<(), BenchError> {
        let mut failure = None;
        let mut done = std::mem::take(&mut self.done);
        for c in done.drain(..) {
            if c.tag == FLUSH_TAG {
                if let Err(source) = c.result {
                    failure.get_or_insert(BenchError::Command {
                        op: c.op,
                        lba: 0,
                        source,
                    });
                }
                for i in 0..self.flushing.len() {
                    self.finish(self.flushing[i], now, record);
                }
                self.flushing.clear();
                continue;
            }
            let slot = usize::try_from(c.tag)
                .ok()
                .filter(|&i| i < self.slots.len() && self.slots[i].in_flight)
                .unwrap_or_else(|| panic!("completion with unknown tag {}", c.tag));
            let s = &mut self.slots[slot];
            s.in_flight = false;
            s.buf = Some(
                c.buf
                    .expect("a read or write completion returns its buffer"),
            );
            if let Err(source) = c.result {
                failure.get_or_insert(BenchError::Command {
                    op: c.op,
                    lba: s.lba,
                    source,
                });
            }
            if self.group_flush {
                self.unflushed.push(slot as u32);
            } else {
                self.finish(slot as u32, now, record);
            }
        }
        self.done = done;
        if self.flushing.is_empty() && !self.unflushed.is_empty() && failure.is_none() {
            std::mem::swap(&mut self.flushing, &mut self.unflushed);
            self.qp
                .submit(FLUSH_TAG, Command::Flush)
                .map_err(|rejected| BenchError::Submit {
                    op: Op::Flush,
                    lba: 0,
                    source: rejected.error,
                })?;
        }
        failure.map_or(Ok(()), Err)
    }

    /// A slot's command is done: its latency counts and the slot is idle again.
    fn finish(&mut self, slot: u32, now: Instant, record: bool) {
        self.idle.push(slot);
        if record {
            let ns = now
                .duration_since(self.slots[slot as usize].submitted_at)
                .as_nanos();
            self.latency_ns
                .saturating_record(u64::try_from(ns).unwrap_or(u64::MAX));
        }
    }
}

/// `after - before`, counter by counter.
pub fn stats_delta(after: &IoStats, before: &IoStats) -> IoStats {
    let mut d = IoStats::default();
    for op in Op::ALL {
        let i = op.index();
        d.cmds[i] = after.cmds[i] - before.cmds[i];
        d.bytes[i] = after.bytes[i] - before.bytes[i];
    }
    d.errors = after.errors - before.errors;
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_drivers::null::NullDevice;
    use keel_drivers::sim::{Fault, SimConfig, SimDevice};
    use keel_drivers::{DmaSource, NvmeStatus};

    fn spec(workload: Workload, qd: u32, stop: Stop) -> LoadSpec {
        LoadSpec {
            workload,
            bs: 8192,
            qd,
            span_bytes: 1 << 20,
            warmup: Duration::ZERO,
            stop,
            seed: 7,
            fua: false,
            group_flush: false,
        }
    }

    fn pool(spec: &LoadSpec) -> DmaPool {
        let mut cfg = PoolConfig::new(spec.bs as usize, spec.qd);
        cfg.source = DmaSource::Heap;
        DmaPool::new(cfg).unwrap()
    }

    fn run_on<D: BlockDevice>(dev: &D, spec: &LoadSpec) -> Result<LoadRun, BenchError> {
        let pool = pool(spec);
        let mut qp = dev
            .open_qpair(&QpairOptions::depth(spec.qpair_depth()))
            .unwrap();
        run_load(&mut qp, &pool, spec)
    }

    #[test]
    fn an_ops_budget_is_measured_exactly() {
        let dev = NullDevice::new(4096, 1 << 10).unwrap();
        for (workload, op) in [
            (Workload::Randread, Op::Read),
            (Workload::Randwrite, Op::Write),
            (Workload::Seqwrite, Op::Write),
        ] {
            let s = spec(workload, 8, Stop::Ops(1001));
            let run = run_on(&dev, &s).unwrap();
            assert_eq!(run.ops, 1001, "{workload:?}");
            assert_eq!(run.latency_ns.len(), 1001);
            assert_eq!(run.device.cmds(op), 1001);
            assert_eq!(run.device.bytes(op), 1001 * 8192);
            let total: u64 = run.device.cmds.iter().sum();
            assert_eq!(total, 1001, "only {op} commands");
            assert_eq!(run.span_bytes, 1 << 20);
        }
    }

    #[test]
    fn a_duration_is_respected_and_warmup_is_left_out() {
        let dev = SimDevice::new({
            let mut c = SimConfig::new(4096, 1 << 10);
            c.latency_ns = 20_000;
            c
        })
        .unwrap();
        let mut s = spec(Workload::Randwrite, 4, Stop::Seconds(0.2));
        s.warmup = Duration::from_millis(100);
        let run = run_on(&dev, &s).unwrap();
        let secs = run.elapsed.as_secs_f64();
        assert!((0.2..0.3).contains(&secs), "{secs}");
        // 4 in flight at 20 µs each: at most 200k/s, so at most 40k in 0.2 s.
        assert!(run.ops > 100 && run.ops <= 40_000, "{}", run.ops);
        assert_eq!(run.latency_ns.len(), run.ops);
        assert_eq!(run.device.cmds(Op::Write), run.ops);
        assert!(run.latency_ns.min() >= 20_000, "{}", run.latency_ns.min());
        // The device saw the warm-up too.
        assert!(dev.stats().cmds(Op::Write) > run.ops);
    }

    #[test]
    fn fua_writes_are_durable_when_they_complete() {
        for fua in [false, true] {
            let mut cfg = SimConfig::new(4096, 1 << 10);
            cfg.volatile_write_cache = true;
            let dev = SimDevice::new(cfg).unwrap();
            let mut s = spec(Workload::Seqwrite, 2, Stop::Ops(50));
            s.fua = fua;
            run_on(&dev, &s).unwrap();
            assert_eq!(dev.volatile_writes() == 0, fua, "fua {fua}");
        }
    }

    #[test]
    fn group_flush_acknowledges_a_write_only_once_a_later_flush_completed() {
        let mut cfg = SimConfig::new(4096, 1 << 10);
        cfg.volatile_write_cache = true;
        cfg.latency_ns = 20_000;
        let dev = SimDevice::new(cfg).unwrap();
        let mut s = spec(Workload::Randwrite, 8, Stop::Ops(400));
        s.group_flush = true;
        let run = run_on(&dev, &s).unwrap();
        assert_eq!(run.ops, 400);
        assert_eq!(run.latency_ns.len(), 400);
        assert_eq!(run.device.cmds(Op::Write), 400);
        // Every write waited for its own write and a whole flush after it.
        assert!(run.latency_ns.min() >= 40_000, "{}", run.latency_ns.min());
        // One flush covers every write that completed before it: fewer flushes than writes.
        let flushes = run.device.cmds(Op::Flush);
        assert!((400 / 8..400).contains(&flushes), "{flushes} flushes");
        assert_eq!(dev.volatile_writes(), 0, "the last write was flushed too");
    }

    #[test]
    fn sequential_writes_wrap_around_the_span() {
        let dev = SimDevice::new(SimConfig::new(4096, 1 << 10)).unwrap();
        let s = spec(Workload::Seqwrite, 3, Stop::Ops(128 * 2 + 5));
        run_on(&dev, &s).unwrap();
        // 1 MiB span of 8 KiB writes: 128 slots, every one written twice or more.
        let stats = dev.stats();
        assert_eq!(stats.cmds(Op::Write), 261);
        let mut offsets = Offsets::new(&s, &dev.geometry()).unwrap();
        let lbas: Vec<u64> = (0..130).map(|_| offsets.next_lba()).collect();
        assert_eq!(&lbas[..3], &[0, 2, 4]);
        assert_eq!(lbas[127], 254);
        assert_eq!(&lbas[128..], &[0, 2]);
    }

    #[test]
    fn random_offsets_are_aligned_inside_the_span_and_seeded() {
        let geo = NullDevice::new(512, 1 << 20).unwrap().geometry();
        let s = spec(Workload::Randread, 1, Stop::Ops(1));
        let mut a = Offsets::new(&s, &geo).unwrap();
        let mut b = Offsets::new(&s, &geo).unwrap();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let lba = a.next_lba();
            assert_eq!(lba, b.next_lba());
            assert_eq!(lba % 16, 0, "8 KiB aligned in 512-byte blocks");
            assert!(lba * 512 + 8192 <= 1 << 20);
            seen.insert(lba);
        }
        assert_eq!(seen.len(), 128, "every slot of the span is hit");
    }

    #[test]
    fn transfers_that_do_not_fit_the_device_are_refused() {
        let geo = NullDevice::new(4096, 1 << 10).unwrap().geometry();
        let mut s = spec(Workload::Randread, 1, Stop::Ops(1));
        s.bs = 6144;
        let err = Offsets::new(&s, &geo).err().unwrap().to_string();
        assert!(
            err.contains("not a multiple of the device's 4096-byte block"),
            "{err}"
        );
        s.bs = 2 << 20;
        s.span_bytes = 1 << 30;
        let err = Offsets::new(&s, &geo).err().unwrap().to_string();
        assert!(err.contains("max transfer"), "{err}");
        s.bs = 8192;
        s.span_bytes = 4096;
        assert!(Offsets::new(&s, &geo).is_err());
    }

    #[test]
    fn a_failed_command_stops_the_run_with_its_error() {
        let dev = SimDevice::new(SimConfig::new(4096, 1 << 10)).unwrap();
        dev.inject(Fault::FailNth {
            op: Op::Write,
            nth: 50,
            status: NvmeStatus::WRITE_FAULT,
        });
        let s = spec(Workload::Randwrite, 4, Stop::Ops(1000));
        let err = run_on(&dev, &s).unwrap_err();
        assert!(
            matches!(err, BenchError::Command { op: Op::Write, .. }),
            "{err:?}"
        );
        assert!(crate::error::chain(&err).contains("device status"), "{err}");
    }
}
