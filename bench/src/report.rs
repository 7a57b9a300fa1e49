//! Turning a measurement into figures: a table for people, one JSON object for scripts.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use keel_drivers::{Geometry, Op};
use keel_engine::ShardConfig;
use serde::Serialize;

use crate::engine::{EngineRun, EngineSpec};
use crate::raw::{LoadRun, LoadSpec};

/// Largest latency a histogram holds exactly, in nanoseconds (longer ones count as this).
const LATENCY_NS_MAX: u64 = 3_600_000_000_000;

/// An empty histogram of latencies in nanoseconds, 3 significant digits, up to an hour.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3).expect("histogram bounds are valid constants")
}

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LatencyUs {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl LatencyUs {
    /// Summarises a histogram of nanoseconds (zeros when it is empty).
    pub fn from_ns(h: &Histogram<u64>) -> Self {
        let us = |ns: u64| ns as f64 / 1000.0;
        LatencyUs {
            p50: us(h.value_at_quantile(0.50)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

/// The result of one `keel-bench raw` run. Serialised as is for `--json`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RawReport {
    /// Which benchmark: "raw".
    pub bench: &'static str,
    /// Driver name.
    pub driver: String,
    /// Workload name.
    pub workload: String,
    /// Writes carried FUA (durable on completion).
    pub fua: bool,
    /// A write counted as done only once a flush issued after it completed had completed.
    pub group_flush: bool,
    /// Bytes per command.
    pub bs: u32,
    /// Commands in flight.
    pub qd: u32,
    /// The device's logical block size.
    pub block_size: u32,
    /// Bytes the offsets covered.
    pub span_bytes: u64,
    /// Measured seconds, first submission to last completion.
    pub seconds: f64,
    /// Commands measured.
    pub ops: u64,
    /// Commands per second.
    pub iops: f64,
    /// Data moved per second, in MiB.
    pub mib_s: f64,
    /// Submission-to-reaping latency.
    pub lat_us: LatencyUs,
    /// Read commands the queue pair completed during the measurement.
    pub device_read_cmds: u64,
    /// Bytes those reads moved.
    pub device_bytes_read: u64,
    /// Write commands the queue pair completed during the measurement.
    pub device_write_cmds: u64,
    /// Bytes those writes moved.
    pub device_bytes_written: u64,
    /// Flush commands the queue pair completed during the measurement.
    pub device_flush_cmds: u64,
    /// Commands that completed with an error.
    pub device_errors: u64,
    /// Process CPU seconds, user plus system, during the measurement.
    pub cpu_seconds: f64,
    /// Of which user mode.
    pub cpu_user_seconds: f64,
    /// Of which kernel.
    pub cpu_sys_seconds: f64,
    /// CPU microseconds per command.
    pub cpu_us_per_op: f64,
    /// DMA buffers came from hugepages.
    pub dma_hugepages: bool,
    /// Seed of the offsets.
    pub seed: u64,
}

impl RawReport {
    /// Assembles the report of one measurement.
    pub fn new(
        driver: &str,
        spec: &LoadSpec,
        geometry: &Geometry,
        dma_hugepages: bool,
        run: &LoadRun,
    ) -> Self {
        let seconds = run.elapsed.as_secs_f64();
        let per_second = |x: f64| if seconds > 0.0 { x / seconds } else { 0.0 };
        let bytes = run.ops as f64 * f64::from(spec.bs);
        let cpu_seconds = run.cpu.total_s();
        RawReport {
            bench: "raw",
            driver: driver.to_owned(),
            workload: spec.workload.as_str().to_owned(),
            fua: spec.fua,
            group_flush: spec.group_flush,
            bs: spec.bs,
            qd: spec.qd,
            block_size: geometry.block_size,
            span_bytes: run.span_bytes,
            seconds,
            ops: run.ops,
            iops: per_second(run.ops as f64),
            mib_s: per_second(bytes / f64::from(1 << 20)),
            lat_us: LatencyUs::from_ns(&run.latency_ns),
            device_read_cmds: run.device.cmds(Op::Read),
            device_bytes_read: run.device.bytes(Op::Read),
            device_write_cmds: run.device.cmds(Op::Write),
            device_bytes_written: run.device.bytes(Op::Write),
            device_flush_cmds: run.device.cmds(Op::Flush),
            device_errors: run.device.errors,
            cpu_seconds,
            cpu_user_seconds: run.cpu.user_s,
            cpu_sys_seconds: run.cpu.sys_s,
            cpu_us_per_op: if run.ops > 0 {
                cpu_seconds * 1e6 / run.ops as f64
            } else {
                0.0
            },
            dma_hugepages,
            seed: spec.seed,
        }
    }

    /// The report as one line of JSON.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}

/// A table's columns: header and width. The first `left` are left-aligned, the rest right.
struct Columns {
    names: &'static [(&'static str, usize)],
    left: usize,
}

const RAW_COLUMNS: Columns = Columns {
    names: &RAW_COLUMN_NAMES,
    left: 2,
};

const RAW_COLUMN_NAMES: [(&str, usize); 12] = [
    ("driver", 7),
    ("workload", 10),
    ("bs", 6),
    ("qd", 5),
    ("iops", 12),
    ("MiB/s", 10),
    ("p50 µs", 10),
    ("p99 µs", 10),
    ("p99.9 µs", 10),
    ("max µs", 10),
    ("cpu s", 8),
    ("cpu µs/op", 10),
];

/// A table with a header line and one line per report, columns right-aligned but the first
/// two.
pub fn table(reports: &[RawReport]) -> String {
    let mut out = String::new();
    push_header(&mut out, &RAW_COLUMNS);
    for r in reports {
        let cells = [
            r.driver.clone(),
            r.workload.clone(),
            human_bytes(u64::from(r.bs)),
            r.qd.to_string(),
            format!("{:.0}", r.iops),
            format!("{:.1}", r.mib_s),
            format!("{:.1}", r.lat_us.p50),
            format!("{:.1}", r.lat_us.p99),
            format!("{:.1}", r.lat_us.p999),
            format!("{:.1}", r.lat_us.max),
            format!("{:.2}", r.cpu_seconds),
            format!("{:.2}", r.cpu_us_per_op),
        ];
        push_row(&mut out, &RAW_COLUMNS, &cells);
    }
    out
}

fn push_header(out: &mut String, columns: &Columns) {
    let header: Vec<String> = columns.names.iter().map(|(n, _)| (*n).to_owned()).collect();
    push_row(out, columns, &header);
}

fn push_row(out: &mut String, columns: &Columns, cells: &[String]) {
    for (i, (cell, (_, width))) in cells.iter().zip(columns.names).enumerate() {
        let sep = if i == 0 { "" } else { " " };
        // Pad by characters, not bytes: "µ" is two bytes.
        let pad = width.saturating_sub(cell.chars().count());
        if i < columns.left {
            let _ = write!(out, "{sep}{cell}{:pad$}", "");
        } else {
            let _ = write!(out, "{sep}{:pad$}{cell}", "");
        }
    }
    out.push('\n');
}

/// The result of one `keel-bench engine` run. Serialised as is for `--json`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EngineReport {
    /// Which benchmark: "engine".
    pub bench: &'static str,
    /// Driver name.
    pub driver: String,
    /// Journal mode.
    pub mode: String,
    /// Workload name.
    pub workload: String,
    /// Bytes per write.
    pub bs: u32,
    /// Transactions in flight.
    pub qd: u32,
    /// Objects of each kind.
    pub objects: u64,
    /// Bytes per object.
    pub object_size: u64,
    /// The device's logical block size.
    pub block_size: u32,
    /// Measured seconds, first queue to last completion.
    pub seconds: f64,
    /// Transactions measured.
    pub ops: u64,
    /// Transactions per second.
    pub iops: f64,
    /// Queue-to-completion latency.
    pub lat_us: LatencyUs,
    /// Bytes of client data in the committed transactions.
    pub client_bytes_written: u64,
    /// Bytes the device wrote, data and journal queue pairs together.
    pub device_bytes_written: u64,
    /// Of which the journal queue pair (batches and checkpoints).
    pub journal_bytes_written: u64,
    /// Write commands the device completed.
    pub device_write_cmds: u64,
    /// Read commands (read-modify-write of partial pages).
    pub device_read_cmds: u64,
    /// Flush commands.
    pub flushes: u64,
    /// Device bytes written per client byte (0 when no client data).
    pub write_amplification: f64,
    /// Device write commands per committed transaction.
    pub device_writes_per_client_write: f64,
    /// Journal batches written.
    pub batches: u64,
    /// Entries per batch, on average.
    pub avg_batch_entries: f64,
    /// Batches sealed while an earlier one was still in flight (a slow device).
    pub overlapped_batches: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
    /// Data pages written into fresh extents.
    pub fresh_pages: u64,
    /// Data pages rewritten in place.
    pub overwrite_pages: u64,
    /// The store ran with parallel commit (`--parallel-commit`).
    pub parallel_commit: bool,
    /// The store ran with overwrite intents (`--intents`).
    pub overwrite_intents: bool,
    /// Transactions committed by parallel commit (journal record and data at once).
    pub parallel_txns: u64,
    /// Of the committed transactions, the share that committed in parallel.
    pub parallel_per_txn: f64,
    /// Overwrite intents recorded (one per transaction that rewrote pages in place).
    pub intents: u64,
    /// Intents per committed transaction.
    pub intents_per_txn: f64,
    /// Process CPU seconds, user plus system, during the measurement (final drain included).
    pub cpu_seconds: f64,
    /// Of which user mode.
    pub cpu_user_seconds: f64,
    /// Of which kernel.
    pub cpu_sys_seconds: f64,
    /// CPU microseconds per transaction.
    pub cpu_us_per_op: f64,
    /// Seed of the workload.
    pub seed: u64,
    /// Reactor threads (`--reactors`; 0: the store polled by the bench thread). With
    /// reactors, `qd` is per reactor.
    pub reactors: u32,
    /// Per reactor, what the measured phase did (empty without `--reactors`).
    pub per_reactor: Vec<ReactorLine>,
}

/// One reactor's share of an engine run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReactorLine {
    /// Reactor (= shard) index.
    pub reactor: usize,
    /// The core it was pinned to.
    pub core: Option<usize>,
    /// Loop turns.
    pub iterations: u64,
    /// Share of turns in which some poller was busy.
    pub busy_share: f64,
    /// Share of the reactor's time spent in busy turns.
    pub busy_time_share: f64,
    /// Transactions it committed per second.
    pub iops: f64,
    /// Transactions it committed.
    pub txns_committed: u64,
    /// Journal batches it wrote.
    pub batches: u64,
    /// Entries per batch, on average.
    pub avg_batch_entries: f64,
    /// Mean occupancy of its message ring at a ring poll.
    pub ring_len_mean: f64,
    /// Highest occupancy of its ring since it started.
    pub ring_len_max: u64,
    /// Sleeps of the idle back-off.
    pub idle_sleeps: u64,
}

/// The median of `v` (sorting it); 0 when empty.
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// `n / d`, or 0 when `d` is 0.
pub fn ratio(n: f64, d: f64) -> f64 {
    if d > 0.0 {
        n / d
    } else {
        0.0
    }
}

impl EngineReport {
    /// Assembles the report of one measurement of a store configured as `cfg`.
    pub fn new(
        driver: &str,
        spec: &EngineSpec,
        cfg: &ShardConfig,
        block_size: u32,
        run: &EngineRun,
    ) -> Self {
        let seconds = run.elapsed.as_secs_f64();
        let s = &run.shards;
        let cpu_seconds = run.cpu.total_s();
        EngineReport {
            bench: "engine",
            driver: driver.to_owned(),
            mode: spec.mode.as_str().to_owned(),
            workload: spec.workload().as_str().to_owned(),
            bs: spec.shape.bs as u32,
            qd: spec.qd,
            objects: spec.shape.objects,
            object_size: spec.shape.object_size,
            block_size,
            seconds,
            ops: run.ops,
            iops: ratio(run.ops as f64, seconds),
            lat_us: LatencyUs::from_ns(&run.latency_ns),
            client_bytes_written: s.client_bytes,
            device_bytes_written: run.device.bytes(Op::Write),
            journal_bytes_written: run.journal.bytes(Op::Write),
            device_write_cmds: run.device.cmds(Op::Write),
            device_read_cmds: run.device.cmds(Op::Read),
            flushes: run.device.cmds(Op::Flush),
            write_amplification: ratio(run.device.bytes(Op::Write) as f64, s.client_bytes as f64),
            device_writes_per_client_write: ratio(
                run.device.cmds(Op::Write) as f64,
                s.txns_committed as f64,
            ),
            batches: s.batches,
            avg_batch_entries: ratio(s.batch_entries as f64, s.batches as f64),
            overlapped_batches: s.overlapped_batches,
            checkpoints: s.checkpoints,
            fresh_pages: s.fresh_pages,
            overwrite_pages: s.overwrite_pages,
            parallel_commit: cfg.parallel_commit,
            overwrite_intents: cfg.overwrite_intents,
            parallel_txns: s.parallel_txns,
            parallel_per_txn: ratio(s.parallel_txns as f64, s.txns_committed as f64),
            intents: s.intents,
            intents_per_txn: ratio(s.intents as f64, s.txns_committed as f64),
            cpu_seconds,
            cpu_user_seconds: run.cpu.user_s,
            cpu_sys_seconds: run.cpu.sys_s,
            cpu_us_per_op: ratio(cpu_seconds * 1e6, run.ops as f64),
            seed: spec.seed,
            reactors: run.reactors.len() as u32,
            per_reactor: run.reactors.clone(),
        }
    }

    /// The report as one line of JSON.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}

const ENGINE_COLUMNS: Columns = Columns {
    names: &[
        ("driver", 6),
        ("mode", 13),
        ("workload", 9),
        ("bs", 5),
        ("qd", 4),
        ("iops", 10),
        ("p50 µs", 9),
        ("p99 µs", 9),
        ("p99.9 µs", 9),
        ("max µs", 9),
        ("WA", 6),
        ("wr/txn", 6),
        ("flush/txn", 9),
        ("batch", 6),
        ("ckpt", 4),
        ("par/txn", 7),
        ("int/txn", 7),
        ("cpu µs/op", 9),
    ],
    left: 3,
};

/// A table of engine runs, like [`table`]: WA is write amplification, wr/txn and
/// flush/txn device commands per transaction, batch the entries per journal batch, ckpt
/// the checkpoints written, par/txn the share of transactions that committed in parallel
/// (record and data at once), int/txn overwrite intents per transaction.
pub fn engine_table(reports: &[EngineReport]) -> String {
    let mut out = String::new();
    push_header(&mut out, &ENGINE_COLUMNS);
    for r in reports {
        let cells = [
            r.driver.clone(),
            r.mode.clone(),
            r.workload.clone(),
            human_bytes(u64::from(r.bs)),
            r.qd.to_string(),
            format!("{:.0}", r.iops),
            format!("{:.1}", r.lat_us.p50),
            format!("{:.1}", r.lat_us.p99),
            format!("{:.1}", r.lat_us.p999),
            format!("{:.1}", r.lat_us.max),
            format!("{:.3}", r.write_amplification),
            format!("{:.3}", r.device_writes_per_client_write),
            format!("{:.3}", ratio(r.flushes as f64, r.ops as f64)),
            format!("{:.1}", r.avg_batch_entries),
            r.checkpoints.to_string(),
            format!("{:.3}", r.parallel_per_txn),
            format!("{:.3}", r.intents_per_txn),
            format!("{:.2}", r.cpu_us_per_op),
        ];
        push_row(&mut out, &ENGINE_COLUMNS, &cells);
    }
    for r in reports.iter().filter(|r| !r.per_reactor.is_empty()) {
        out.push_str(&format!("{} reactors, qd {} each:\n", r.reactors, r.qd));
        push_header(&mut out, &REACTOR_COLUMNS);
        for l in &r.per_reactor {
            let cells = [
                l.reactor.to_string(),
                l.core.map_or("-".into(), |c| c.to_string()),
                format!("{:.0}", l.iops),
                format!("{:.2}", l.busy_share),
                format!("{:.2}", l.busy_time_share),
                l.iterations.to_string(),
                format!("{:.1}", l.avg_batch_entries),
                format!("{:.1}", l.ring_len_mean),
                l.ring_len_max.to_string(),
                l.idle_sleeps.to_string(),
            ];
            push_row(&mut out, &REACTOR_COLUMNS, &cells);
        }
    }
    out
}

const REACTOR_COLUMNS: Columns = Columns {
    names: &[
        ("reactor", 7),
        ("core", 4),
        ("iops", 10),
        ("busy", 5),
        ("busy t", 6),
        ("turns", 10),
        ("batch", 6),
        ("ring", 6),
        ("ring max", 8),
        ("sleeps", 8),
    ],
    left: 0,
};

/// `4096` as `4k`, `1048576` as `1m`; bytes when not a whole number of KiB.
pub fn human_bytes(n: u64) -> String {
    for (shift, suffix) in [(40, "t"), (30, "g"), (20, "m"), (10, "k")] {
        if n >= 1 << shift && n % (1 << shift) == 0 {
            return format!("{}{suffix}", n >> shift);
        }
    }
    n.to_string()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use keel_drivers::IoStats;

    use super::*;
    use crate::cli::{Stop, Workload};
    use crate::cpu::CpuTime;

    fn measured() -> (LoadSpec, Geometry, LoadRun) {
        let spec = LoadSpec {
            workload: Workload::Randwrite,
            bs: 4096,
            qd: 32,
            span_bytes: 1 << 30,
            warmup: Duration::ZERO,
            stop: Stop::Ops(1000),
            seed: 3,
            fua: false,
            group_flush: false,
        };
        let geometry = Geometry {
            block_size: 512,
            block_count: 1 << 21,
            max_transfer_bytes: 1 << 20,
            atomic_write_blocks: 1,
            fua_native: true,
            volatile_write_cache: false,
            write_zeroes: true,
            dma_align: 512,
        };
        // 1000 commands: 10 µs, 20 µs, ..., 10 ms.
        let mut latency_ns = Histogram::new_with_bounds(1, 3_600_000_000_000, 3).unwrap();
        for i in 1..=1000u64 {
            latency_ns.record(i * 10_000).unwrap();
        }
        let mut device = IoStats::default();
        for _ in 0..1000 {
            device.count(Op::Write, 4096, true);
        }
        let run = LoadRun {
            ops: 1000,
            elapsed: Duration::from_millis(500),
            latency_ns,
            device,
            cpu: CpuTime {
                user_s: 0.25,
                sys_s: 0.05,
            },
            span_bytes: 1 << 30,
        };
        (spec, geometry, run)
    }

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance * b.abs()
    }

    #[test]
    fn figures_come_from_the_measurement() {
        let (spec, geometry, run) = measured();
        let r = RawReport::new("sim", &spec, &geometry, false, &run);
        assert_eq!(
            (r.driver.as_str(), r.workload.as_str()),
            ("sim", "randwrite")
        );
        assert_eq!((r.bs, r.qd, r.block_size, r.ops), (4096, 32, 512, 1000));
        assert!(close(r.seconds, 0.5, 1e-9));
        assert!(close(r.iops, 2000.0, 1e-9), "{}", r.iops);
        assert!(
            close(r.mib_s, 2000.0 * 4096.0 / 1048576.0, 1e-9),
            "{}",
            r.mib_s
        );
        // 3 significant digits: within 0.1%.
        assert!(close(r.lat_us.p50, 5000.0, 1e-3), "{:?}", r.lat_us);
        assert!(close(r.lat_us.p99, 9900.0, 1e-3), "{:?}", r.lat_us);
        assert!(close(r.lat_us.p999, 9990.0, 1e-3), "{:?}", r.lat_us);
        assert!(close(r.lat_us.max, 10000.0, 1e-3), "{:?}", r.lat_us);
        assert!(close(r.lat_us.mean, 5005.0, 1e-3), "{:?}", r.lat_us);
        assert_eq!((r.device_write_cmds, r.device_read_cmds), (1000, 0));
        assert_eq!(r.device_bytes_written, 4096 * 1000);
        assert!(close(r.cpu_seconds, 0.3, 1e-9));
        assert!(close(r.cpu_us_per_op, 300.0, 1e-9), "{}", r.cpu_us_per_op);
    }

    #[test]
    fn json_has_every_field_scripts_read() {
        let (spec, geometry, run) = measured();
        let text = RawReport::new("null", &spec, &geometry, false, &run)
            .to_json()
            .unwrap();
        assert!(!text.contains('\n'), "one line");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        for key in [
            "driver",
            "workload",
            "bs",
            "qd",
            "seconds",
            "ops",
            "iops",
            "mib_s",
            "device_write_cmds",
            "device_bytes_written",
            "device_read_cmds",
            "cpu_seconds",
            "cpu_us_per_op",
        ] {
            assert!(v.get(key).is_some(), "missing {key} in {text}");
        }
        for key in ["p50", "p99", "p999", "max", "mean"] {
            assert!(v["lat_us"][key].is_f64(), "missing lat_us.{key} in {text}");
        }
        assert_eq!(v["ops"], 1000);
        assert_eq!(v["driver"], "null");
    }

    #[test]
    fn an_empty_histogram_gives_zeros() {
        let h = Histogram::<u64>::new(3).unwrap();
        let l = LatencyUs::from_ns(&h);
        assert_eq!((l.p50, l.p99, l.max, l.mean), (0.0, 0.0, 0.0, 0.0));
    }

    #[test]
    fn the_table_lines_up() {
        let (spec, geometry, run) = measured();
        let r = RawReport::new("null", &spec, &geometry, false, &run);
        let text = table(&[r.clone(), r]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("driver  workload"), "{text}");
        assert!(lines[1].starts_with("null    randwrite"), "{text}");
        let widths: Vec<usize> = lines.iter().map(|l| l.chars().count()).collect();
        assert!(widths.iter().all(|&w| w == widths[0]), "{text}");
        let cells: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(&cells[2..6], &["4k", "32", "2000", "7.8"], "{text}");
        assert_eq!(cells[11], "300.00", "{text}");
    }

    #[test]
    fn median_of_even_and_odd_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&mut []), 0.0);
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(4096), "4k");
        assert_eq!(human_bytes(1 << 20), "1m");
        assert_eq!(human_bytes(3 << 30), "3g");
        assert_eq!(human_bytes(1536), "1536");
        assert_eq!(human_bytes(512), "512");
    }
}
