//! `keel-bench compare`: Keel against fio on one file, in one run.
//!
//! For each kernel path (io_uring, psync) the contenders are: Keel raw (the driver alone),
//! Keel engine MetadataOnly, Keel engine Full (whole stores: mkfs, workload, fsck), and
//! fio's engine for the same path. Every round runs every contender once, in the same
//! order, one after the other, so that drift on a shared machine hits all alike; each
//! figure is the median over rounds, with the spread (min..max) of IOPS beside it, and each
//! Keel contender is reported as a ratio to fio's IOPS on the same path.
//!
//! For random writes fio also runs with an fdatasync after every --qd writes: plain fio
//! leaves its writes in the device's volatile cache, while an engine acknowledges only
//! durable transactions. fio does not wait for its fdatasync, though, so that baseline
//! still counts writes that are not durable yet. The third baseline is Keel raw with
//! `--group-flush`: every write waits for a flush issued after it completed, one flush in
//! flight covering every write completed before it. That is the least a durable write
//! costs on the device (group commit with no engine above it), and `÷ durable` is each
//! row's IOPS over it: how close a store comes to what the device allows for durable
//! acknowledgements. On a device without a volatile cache (or with native FUA) the flush
//! is free and the durable row meets plain raw.
//!
//! The engine only writes: with `--workload randread` it is left out. fio's psync engine
//! has no queue depth (it runs at QD1), so on psync the ratio compares Keel's psync driver
//! at --qd with fio at QD1 — the table says so.
//!
//! With `--pci ADDR` (an NVMe controller, root) the same command compares Keel's userspace
//! NVMe driver with the kernel on that one controller: the `nvme` path runs Keel raw and
//! engine on the userspace driver, the kernel paths run on the controller's first namespace
//! through the kernel's nvme driver, and before each contender compare moves the controller
//! to the side it needs (`keel_drivers::nvme::bind`), giving it back to whoever held it at
//! the end. Each `nvme` row is also reported as a ratio to the same contender on the first
//! kernel path (÷ kernel). This is how the QEMU guest matrix runs it (docs/test-vm.md).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::cli::{parse_command, parse_size, parse_size_u32, Command};
use crate::error::BenchError;
use keel_drivers::nvme::bind;
use keel_drivers::nvme::pci;

use crate::fio::{self, FioJob};
use crate::report::median;
use crate::{engine, raw};

/// `keel-bench compare`: Keel and fio on one file, alternating.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// File or block device (its contents are overwritten). A file is created at --size
    /// and written once in full, so that reads hit data. Required, except with --pci.
    #[arg(long, required_unless_present = "pci", conflicts_with = "pci")]
    pub path: Option<PathBuf>,

    /// An NVMe controller's PCI address (0000:00:04.0): adds the `nvme` path (Keel's
    /// userspace driver) and runs the kernel paths on the controller's first namespace
    /// through the kernel's nvme driver, moving the controller between the two before each
    /// contender. Needs root, and the nvme module (and vfio-pci with an IOMMU) loaded.
    #[arg(long)]
    pub pci: Option<String>,

    /// Bytes of the file the runs use (and the engine formats).
    #[arg(long, default_value = "1g", value_parser = parse_size)]
    pub size: u64,

    /// Workload of the raw and fio runs; the engine runs random writes of --bs (or
    /// overwrites, with randread here, which it has no counterpart for: skipped).
    #[arg(long, value_enum, default_value_t = CompareWorkload::Randwrite)]
    pub workload: CompareWorkload,

    /// Bytes per I/O.
    #[arg(long, default_value = "4k", value_parser = parse_size_u32)]
    pub bs: u32,

    /// Commands (raw, fio) or transactions (engine) in flight.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub qd: u32,

    /// Measured seconds of each run.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,

    /// Rounds: every contender runs once per round, in the same order; the figures are
    /// the medians over rounds.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,

    /// Paths to compare, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "uring,psync")]
    pub paths: Vec<ComparePath>,

    /// Leave fio out even when it is installed.
    #[arg(long)]
    pub no_fio: bool,

    /// Print the JSON report on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// What `compare` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CompareWorkload {
    /// 4 KiB (--bs) writes at random aligned offsets.
    Randwrite,
    /// Reads at random aligned offsets (raw and fio only).
    Randread,
}

impl CompareWorkload {
    /// The name as given on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            CompareWorkload::Randwrite => "randwrite",
            CompareWorkload::Randread => "randread",
        }
    }
}

/// A kernel I/O path both Keel and fio can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ComparePath {
    /// io_uring (Keel's uring driver; fio's io_uring engine).
    Uring,
    /// pread/pwrite (Keel's psync driver; fio's psync engine, which has no queue depth).
    Psync,
    /// Keel's userspace NVMe driver on the --pci controller (no kernel, no fio).
    Nvme,
}

impl ComparePath {
    /// The name as given on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            ComparePath::Uring => "uring",
            ComparePath::Psync => "psync",
            ComparePath::Nvme => "nvme",
        }
    }

    fn kernel(self) -> bool {
        self != ComparePath::Nvme
    }
}

impl CompareArgs {
    /// Checks what clap does not.
    pub fn check(&self) -> Result<(), String> {
        if !(self.seconds > 0.0 && self.seconds.is_finite()) {
            return Err(format!("--seconds {} must be positive", self.seconds));
        }
        if self.bs == 0 || self.bs % 512 != 0 {
            return Err(format!("--bs {} must be a multiple of 512", self.bs));
        }
        if self.size < u64::from(self.bs) * 1024 {
            return Err(format!(
                "--size {} is too small for --bs {}",
                self.size, self.bs
            ));
        }
        if self.paths.is_empty() {
            return Err("--paths needs at least one path".into());
        }
        let nvme = self.paths.contains(&ComparePath::Nvme);
        match (&self.pci, nvme) {
            (None, true) => return Err("the nvme path needs --pci".into()),
            (Some(pci), false) => {
                return Err(format!(
                    "--pci {pci} without the nvme path in --paths: nothing would run on it"
                ))
            }
            _ => {}
        }
        Ok(())
    }
}

/// One contender's figures over all rounds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    /// "keel raw", "keel engine metadata-only", "keel engine full" or "fio".
    pub contender: String,
    /// Kernel path: "uring" or "psync".
    pub path: String,
    /// Queue depth it ran at.
    pub qd: u32,
    /// IOPS of each round.
    pub iops_rounds: Vec<f64>,
    /// Median IOPS.
    pub iops: f64,
    /// Median p50 latency, µs.
    pub p50_us: f64,
    /// Median p99 latency, µs.
    pub p99_us: f64,
    /// Median CPU µs per I/O or transaction.
    pub cpu_us_per_op: f64,
    /// IOPS ÷ fio's on the same path (None without fio).
    pub ratio_to_fio: Option<f64>,
    /// IOPS ÷ fio's with an fdatasync every --qd writes on the same path: a baseline with
    /// the durability a store's acknowledgement carries (randwrite only).
    pub ratio_to_fio_fdatasync: Option<f64>,
    /// IOPS ÷ Keel raw with `--group-flush` on the same path: the device's own cost of
    /// durable acknowledgements, with no engine (randwrite only).
    pub ratio_to_durable: Option<f64>,
    /// `nvme` rows (with --pci): IOPS ÷ the same contender's on the first kernel path, on
    /// the same controller.
    pub ratio_to_kernel: Option<f64>,
}

/// What compare ran and found.
#[derive(Clone, Debug, Serialize)]
pub struct CompareReport {
    /// Which benchmark: "compare".
    pub bench: &'static str,
    /// The file or device, or with --pci the controller ("pci 0000:00:04.0").
    pub path: String,
    /// Bytes covered.
    pub size: u64,
    /// Workload.
    pub workload: &'static str,
    /// Bytes per I/O.
    pub bs: u32,
    /// Queue depth asked for.
    pub qd: u32,
    /// Seconds per run.
    pub seconds: f64,
    /// Rounds.
    pub rounds: u32,
    /// fio took part.
    pub fio: bool,
    /// One row per contender.
    pub rows: Vec<Row>,
}

/// One measurement: IOPS, p50, p99, CPU µs per op.
type Sample = [f64; 4];

/// A contender: how to run it once.
struct Contender {
    name: String,
    path: ComparePath,
    qd: u32,
    kind: Kind,
}

enum Kind {
    Raw(Vec<String>),
    /// Keel raw with `--group-flush`: the durable-write baseline of its path.
    RawGroupFlush(Vec<String>),
    Engine(Vec<String>),
    /// fio; with Some(n), an fdatasync after every n writes.
    Fio(Option<u32>),
}

fn contenders(args: &CompareArgs, with_fio: bool) -> Vec<Contender> {
    let mut v = Vec::new();
    for &p in &args.paths {
        let common = [
            "--bs".to_owned(),
            args.bs.to_string(),
            "--qd".into(),
            args.qd.to_string(),
            "--seconds".into(),
            args.seconds.to_string(),
        ];
        let mut raw = vec!["raw".to_owned()];
        raw.extend(common.iter().cloned());
        raw.extend(["--workload".into(), args.workload.as_str().into()]);
        if args.workload == CompareWorkload::Randwrite {
            let mut durable = raw.clone();
            durable.push("--group-flush".into());
            v.push(Contender {
                name: "keel raw".into(),
                path: p,
                qd: args.qd,
                kind: Kind::Raw(raw),
            });
            v.push(Contender {
                name: "keel raw group-flush".into(),
                path: p,
                qd: args.qd,
                kind: Kind::RawGroupFlush(durable),
            });
            for mode in ["metadata-only", "full"] {
                let mut e = vec!["engine".to_owned()];
                e.extend(common.iter().cloned());
                e.extend([
                    "--mode".into(),
                    mode.into(),
                    "--workload".into(),
                    "randwrite".into(),
                ]);
                v.push(Contender {
                    name: format!("keel engine {mode}"),
                    path: p,
                    qd: args.qd,
                    kind: Kind::Engine(e),
                });
            }
        } else {
            v.push(Contender {
                name: "keel raw".into(),
                path: p,
                qd: args.qd,
                kind: Kind::Raw(raw),
            });
        }
        if with_fio && p.kernel() {
            let qd = if p == ComparePath::Psync { 1 } else { args.qd };
            v.push(Contender {
                name: "fio".into(),
                path: p,
                qd,
                kind: Kind::Fio(None),
            });
            if args.workload == CompareWorkload::Randwrite {
                v.push(Contender {
                    name: format!("fio fdatasync/{}", args.qd),
                    path: p,
                    qd,
                    kind: Kind::Fio(Some(args.qd)),
                });
            }
        }
    }
    v
}

/// Where one contender runs: a file or block device (kernel paths), or a controller.
enum Target {
    Path(PathBuf),
    Pci(String),
}

/// A Keel contender's device arguments for `path` on `target`.
fn device_args(args: &CompareArgs, path: ComparePath, target: &Target) -> Vec<String> {
    let mut v = vec!["--driver".to_owned(), path.as_str().to_owned()];
    match target {
        Target::Path(p) => v.extend(["--path".into(), p.display().to_string()]),
        Target::Pci(a) => v.extend(["--pci".into(), a.clone()]),
    }
    v.extend(["--size".into(), args.size.to_string()]);
    v
}

fn parse(argv: &[String]) -> Result<Command, BenchError> {
    parse_command(argv).map_err(|message| BenchError::Tool {
        tool: "keel-bench",
        message,
    })
}

/// A Keel contender's command (`argv`) on `target`, parsed.
fn command_on(
    args: &CompareArgs,
    c: &Contender,
    argv: &[String],
    target: &Target,
) -> Result<Command, BenchError> {
    let mut v = argv.to_vec();
    v.extend(device_args(args, c.path, target));
    parse(&v)
}

fn run_once(args: &CompareArgs, c: &Contender, target: &Target) -> Result<Sample, BenchError> {
    match &c.kind {
        Kind::Raw(argv) | Kind::RawGroupFlush(argv) => {
            let Command::Raw(a) = command_on(args, c, argv, target)? else {
                unreachable!("raw arguments")
            };
            let r = raw::run(&a)?;
            Ok([r.iops, r.lat_us.p50, r.lat_us.p99, r.cpu_us_per_op])
        }
        Kind::Engine(argv) => {
            let Command::Engine(a) = command_on(args, c, argv, target)? else {
                unreachable!("engine arguments")
            };
            let r = engine::run(&a)?;
            Ok([r.iops, r.lat_us.p50, r.lat_us.p99, r.cpu_us_per_op])
        }
        Kind::Fio(fdatasync) => {
            let Target::Path(path) = target else {
                unreachable!("fio runs on kernel paths only")
            };
            let r = FioJob {
                path,
                size: args.size,
                rw: args.workload.as_str(),
                bs: args.bs,
                qd: c.qd,
                ioengine: match c.path {
                    ComparePath::Uring => "io_uring",
                    _ => "psync",
                },
                seconds: args.seconds,
                fdatasync: *fdatasync,
            }
            .run()?;
            Ok([r.iops, r.p50_us, r.p99_us, r.cpu_us_per_op])
        }
    }
}

/// Creates the file at `size` and writes it once in full (so that reads hit data and the
/// filesystem has allocated every block), unless it exists at that size or more.
fn prepare(path: &Path, size: u64) -> Result<(), BenchError> {
    let err = |what, source| BenchError::File {
        what,
        path: path.to_owned(),
        source,
    };
    if let Ok(m) = std::fs::metadata(path) {
        if !m.is_file() || m.len() >= size {
            return Ok(());
        }
    }
    eprintln!("compare: writing {size} bytes to {} once", path.display());
    let mut f = std::fs::File::create(path).map_err(|e| err("create", e))?;
    let chunk = vec![0x5au8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n]).map_err(|e| err("fill", e))?;
        left -= n as u64;
    }
    f.sync_all().map_err(|e| err("sync", e))
}

/// With --pci: moves the controller to the side each contender needs, and back to the
/// kernel or userspace (whichever held it) when dropped.
struct Controller {
    addr: String,
    was_kernel: bool,
}

impl Controller {
    fn take(addr: &str) -> Result<Controller, BenchError> {
        let addr = pci::find(addr).map_err(pci_err)?;
        Ok(Controller {
            was_kernel: pci::bound_driver(&addr).as_deref() == Some("nvme"),
            addr,
        })
    }

    fn target(&self, path: ComparePath) -> Result<Target, BenchError> {
        let err = pci_err;
        if path.kernel() {
            Ok(Target::Path(bind::to_kernel(&self.addr).map_err(err)?))
        } else {
            bind::to_userspace(&self.addr).map_err(err)?;
            Ok(Target::Pci(self.addr.clone()))
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let back = if self.was_kernel {
            bind::to_kernel(&self.addr).map(|_| ())
        } else {
            bind::to_userspace(&self.addr).map(|_| ())
        };
        if let Err(e) = back {
            eprintln!("compare: could not give {} back: {e}", self.addr);
        }
    }
}

fn pci_err(e: keel_drivers::nvme::NvmeError) -> BenchError {
    BenchError::Tool {
        tool: "compare --pci",
        message: e.to_string(),
    }
}

/// Runs every contender `--rounds` times and reports medians.
pub fn run(args: &CompareArgs) -> Result<CompareReport, BenchError> {
    let with_fio = !args.no_fio && fio::available();
    if !args.no_fio && !with_fio {
        eprintln!("compare: fio is not installed (apt-get install fio): Keel only, no ratios");
    }
    let ctrl = args.pci.as_deref().map(Controller::take).transpose()?;
    if let Some(path) = &args.path {
        prepare(path, args.size)?;
    }
    let cs = contenders(args, with_fio);
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); cs.len()];
    for round in 0..args.rounds {
        for (i, c) in cs.iter().enumerate() {
            let target = match (&ctrl, &args.path) {
                (Some(ctrl), _) => ctrl.target(c.path)?,
                (None, Some(p)) => Target::Path(p.clone()),
                (None, None) => unreachable!("clap requires --path without --pci"),
            };
            let on = match &target {
                Target::Path(p) => p.display().to_string(),
                Target::Pci(a) => a.clone(),
            };
            eprintln!(
                "compare: round {}/{} {} {} qd {} on {on}",
                round + 1,
                args.rounds,
                c.name,
                c.path.as_str(),
                c.qd
            );
            samples[i].push(run_once(args, c, &target)?);
        }
    }
    drop(ctrl);
    let mut rows: Vec<Row> = cs
        .iter()
        .zip(&samples)
        .map(|(c, s)| {
            let col = |k: usize| median(&mut s.iter().map(|x| x[k]).collect::<Vec<_>>());
            Row {
                contender: c.name.clone(),
                path: c.path.as_str().into(),
                qd: c.qd,
                iops_rounds: s.iter().map(|x| x[0]).collect(),
                iops: col(0),
                p50_us: col(1),
                p99_us: col(2),
                cpu_us_per_op: col(3),
                ratio_to_fio: None,
                ratio_to_fio_fdatasync: None,
                ratio_to_durable: None,
                ratio_to_kernel: None,
            }
        })
        .collect();
    add_ratios(&cs, &mut rows);
    Ok(CompareReport {
        bench: "compare",
        path: match (&args.pci, &args.path) {
            (Some(a), _) => format!("pci {a}"),
            (None, Some(p)) => p.display().to_string(),
            (None, None) => String::new(),
        },
        size: args.size,
        workload: args.workload.as_str(),
        bs: args.bs,
        qd: args.qd,
        seconds: args.seconds,
        rounds: args.rounds,
        fio: with_fio,
        rows,
    })
}

/// Each row's ratios: to fio (plain and with fdatasync) and to Keel raw group-flush on its
/// path, and for `nvme` rows to the same contender on the first kernel path.
fn add_ratios(cs: &[Contender], rows: &mut [Row]) {
    // A baseline's IOPS per path, by contender kind.
    let baseline = |is: &dyn Fn(&Kind) -> bool| -> Vec<(String, f64)> {
        cs.iter()
            .zip(rows.iter())
            .filter(|(c, _)| is(&c.kind))
            .map(|(_, r)| (r.path.clone(), r.iops))
            .collect()
    };
    let plain = baseline(&|k| matches!(k, Kind::Fio(None)));
    let synced = baseline(&|k| matches!(k, Kind::Fio(Some(_))));
    let durable = baseline(&|k| matches!(k, Kind::RawGroupFlush(_)));
    let ratio = |base: &[(String, f64)], r: &Row| {
        base.iter()
            .find(|(p, _)| *p == r.path)
            .and_then(|(_, f)| (*f > 0.0).then(|| r.iops / f))
    };
    let kernel_path = cs.iter().map(|c| c.path).find(|p| p.kernel());
    let kernel: Vec<(String, f64)> = rows
        .iter()
        .filter(|r| Some(r.path.as_str()) == kernel_path.map(ComparePath::as_str))
        .map(|r| (r.contender.clone(), r.iops))
        .collect();
    for r in rows.iter_mut() {
        r.ratio_to_fio = ratio(&plain, r);
        r.ratio_to_fio_fdatasync = ratio(&synced, r);
        r.ratio_to_durable = ratio(&durable, r);
        if r.path == ComparePath::Nvme.as_str() {
            r.ratio_to_kernel = kernel
                .iter()
                .find(|(c, _)| *c == r.contender)
                .and_then(|(_, k)| (*k > 0.0).then(|| r.iops / k));
        }
    }
}

/// The report for people.
pub fn table(r: &CompareReport) -> String {
    let mut out = format!(
        "{} {} bs {} qd {} on {}: median of {} round(s) of {} s\n",
        r.workload, "", r.bs, r.qd, r.path, r.rounds, r.seconds
    );
    let kernel = r.rows.iter().any(|x| x.ratio_to_kernel.is_some());
    let opt = |x: Option<f64>| x.map_or_else(|| "-".to_owned(), |x| format!("{x:.2}"));
    out.push_str(&format!(
        "{:<27} {:<6} {:>4} {:>10} {:>21} {:>9} {:>9} {:>9} {:>8} {:>10} {:>9}{}\n",
        "contender",
        "path",
        "qd",
        "iops",
        "spread",
        "p50 µs",
        "p99 µs",
        "cpu µs/op",
        "÷ fio",
        "÷ fio+sync",
        "÷ durable",
        if kernel { "   ÷ kernel" } else { "" }
    ));
    for row in &r.rows {
        let lo = row
            .iops_rounds
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        let hi = row.iops_rounds.iter().copied().fold(0.0, f64::max);
        out.push_str(&format!(
            "{:<27} {:<6} {:>4} {:>10.0} {:>21} {:>9.1} {:>9.1} {:>9.2} {:>8} {:>10} {:>9}{}\n",
            row.contender,
            row.path,
            row.qd,
            row.iops,
            format!("{lo:.0}..{hi:.0}"),
            row.p50_us,
            row.p99_us,
            row.cpu_us_per_op,
            opt(row.ratio_to_fio),
            opt(row.ratio_to_fio_fdatasync),
            opt(row.ratio_to_durable),
            if kernel {
                format!(" {:>10}", opt(row.ratio_to_kernel))
            } else {
                String::new()
            },
        ));
    }
    if r.rows
        .iter()
        .any(|x| x.contender == "fio" && x.path == "psync")
    {
        out.push_str("fio's psync engine has no queue depth: it ran at QD1.\n");
    }
    if r.rows.iter().any(|x| x.ratio_to_durable.is_some()) {
        out.push_str(
            "÷ durable: IOPS over keel raw group-flush on the same path, each write acknowledged once a later flush completed: the least a durable write costs on this device.\n",
        );
    }
    if kernel {
        out.push_str(
            "÷ kernel: an nvme row's IOPS over the same contender's on the kernel path, on the same controller.\n",
        );
    }
    out
}

#[cfg(test)]
#[path = "compare_tests.rs"]
mod tests;
