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
//! durable transactions, so the second baseline is the like-for-like one.
//!
//! The engine only writes: with `--workload randread` it is left out. fio's psync engine
//! has no queue depth (it runs at QD1), so on psync the ratio compares Keel's psync driver
//! at --qd with fio at QD1 — the table says so.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::cli::{parse_command, parse_size, parse_size_u32, Command};
use crate::error::BenchError;
use crate::fio::{self, FioJob};
use crate::report::median;
use crate::{engine, raw};

/// `keel-bench compare`: Keel and fio on one file, alternating.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// File or block device (its contents are overwritten). A file is created at --size
    /// and written once in full, so that reads hit data.
    #[arg(long)]
    pub path: PathBuf,

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
}

impl ComparePath {
    /// The name as given on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            ComparePath::Uring => "uring",
            ComparePath::Psync => "psync",
        }
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
}

/// What compare ran and found.
#[derive(Clone, Debug, Serialize)]
pub struct CompareReport {
    /// Which benchmark: "compare".
    pub bench: &'static str,
    /// The file or device.
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
    Engine(Vec<String>),
    /// fio; with Some(n), an fdatasync after every n writes.
    Fio(Option<u32>),
}

fn contenders(args: &CompareArgs, with_fio: bool) -> Vec<Contender> {
    let mut v = Vec::new();
    for &p in &args.paths {
        let device = vec![
            "--driver".to_owned(),
            p.as_str().to_owned(),
            "--path".into(),
            args.path.display().to_string(),
            "--size".into(),
            args.size.to_string(),
            "--bs".into(),
            args.bs.to_string(),
            "--qd".into(),
            args.qd.to_string(),
            "--seconds".into(),
            args.seconds.to_string(),
        ];
        let mut raw = vec!["raw".to_owned()];
        raw.extend(device.iter().cloned());
        raw.extend(["--workload".into(), args.workload.as_str().into()]);
        v.push(Contender {
            name: "keel raw".into(),
            path: p,
            qd: args.qd,
            kind: Kind::Raw(raw),
        });
        if args.workload == CompareWorkload::Randwrite {
            for mode in ["metadata-only", "full"] {
                let mut e = vec!["engine".to_owned()];
                e.extend(device.iter().cloned());
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
        }
        if with_fio {
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

fn parse(argv: &[String]) -> Result<Command, BenchError> {
    parse_command(argv).map_err(|message| BenchError::Tool {
        tool: "keel-bench",
        message,
    })
}

fn run_once(args: &CompareArgs, c: &Contender) -> Result<Sample, BenchError> {
    match &c.kind {
        Kind::Raw(argv) => {
            let Command::Raw(a) = parse(argv)? else {
                unreachable!("raw arguments")
            };
            let r = raw::run(&a)?;
            Ok([r.iops, r.lat_us.p50, r.lat_us.p99, r.cpu_us_per_op])
        }
        Kind::Engine(argv) => {
            let Command::Engine(a) = parse(argv)? else {
                unreachable!("engine arguments")
            };
            let r = engine::run(&a)?;
            Ok([r.iops, r.lat_us.p50, r.lat_us.p99, r.cpu_us_per_op])
        }
        Kind::Fio(fdatasync) => {
            let r = FioJob {
                path: &args.path,
                size: args.size,
                rw: args.workload.as_str(),
                bs: args.bs,
                qd: c.qd,
                ioengine: match c.path {
                    ComparePath::Uring => "io_uring",
                    ComparePath::Psync => "psync",
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

/// Runs every contender `--rounds` times and reports medians.
pub fn run(args: &CompareArgs) -> Result<CompareReport, BenchError> {
    let with_fio = !args.no_fio && fio::available();
    if !args.no_fio && !with_fio {
        eprintln!("compare: fio is not installed (apt-get install fio): Keel only, no ratios");
    }
    prepare(&args.path, args.size)?;
    let cs = contenders(args, with_fio);
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); cs.len()];
    for round in 0..args.rounds {
        for (i, c) in cs.iter().enumerate() {
            eprintln!(
                "compare: round {}/{} {} {} qd {}",
                round + 1,
                args.rounds,
                c.name,
                c.path.as_str(),
                c.qd
            );
            samples[i].push(run_once(args, c)?);
        }
    }
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
            }
        })
        .collect();
    // fio's IOPS per path, plain and with fdatasync, by contender kind.
    let baseline = |durable: bool| -> Vec<(String, f64)> {
        cs.iter()
            .zip(&rows)
            .filter(|(c, _)| matches!(c.kind, Kind::Fio(sync) if sync.is_some() == durable))
            .map(|(_, r)| (r.path.clone(), r.iops))
            .collect()
    };
    let (plain, durable) = (baseline(false), baseline(true));
    let ratio = |base: &[(String, f64)], r: &Row| {
        base.iter()
            .find(|(p, _)| *p == r.path)
            .and_then(|(_, f)| (*f > 0.0).then(|| r.iops / f))
    };
    for r in &mut rows {
        r.ratio_to_fio = ratio(&plain, r);
        r.ratio_to_fio_fdatasync = ratio(&durable, r);
    }
    Ok(CompareReport {
        bench: "compare",
        path: args.path.display().to_string(),
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

/// The report for people.
pub fn table(r: &CompareReport) -> String {
    let mut out = format!(
        "{} {} bs {} qd {} on {}: median of {} round(s) of {} s\n",
        r.workload, "", r.bs, r.qd, r.path, r.rounds, r.seconds
    );
    out.push_str(&format!(
        "{:<27} {:<6} {:>4} {:>10} {:>21} {:>9} {:>9} {:>9} {:>8} {:>10}\n",
        "contender",
        "path",
        "qd",
        "iops",
        "spread",
        "p50 µs",
        "p99 µs",
        "cpu µs/op",
        "÷ fio",
        "÷ fio+sync"
    ));
    for row in &r.rows {
        let lo = row
            .iops_rounds
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        let hi = row.iops_rounds.iter().copied().fold(0.0, f64::max);
        out.push_str(&format!(
            "{:<27} {:<6} {:>4} {:>10.0} {:>21} {:>9.1} {:>9.1} {:>9.2} {:>8} {:>10}\n",
            row.contender,
            row.path,
            row.qd,
            row.iops,
            format!("{lo:.0}..{hi:.0}"),
            row.p50_us,
            row.p99_us,
            row.cpu_us_per_op,
            row.ratio_to_fio
                .map_or_else(|| "-".to_owned(), |x| format!("{x:.2}")),
            row.ratio_to_fio_fdatasync
                .map_or_else(|| "-".to_owned(), |x| format!("{x:.2}")),
        ));
    }
    if r.rows
        .iter()
        .any(|x| x.contender == "fio" && x.path == "psync")
    {
        out.push_str("fio's psync engine has no queue depth: it ran at QD1.\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> CompareArgs {
        let mut argv = vec!["compare".to_owned(), "--path".into(), "/tmp/x".into()];
        argv.extend(extra.iter().map(|s| s.to_string()));
        match parse_command(&argv).unwrap() {
            Command::Compare(a) => a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn randwrite_runs_raw_both_engine_modes_and_fio_per_path() {
        let cs = contenders(&args(&[]), true);
        let names: Vec<String> = cs
            .iter()
            .map(|c| format!("{} {}", c.name, c.path.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                "keel raw uring",
                "keel engine metadata-only uring",
                "keel engine full uring",
                "fio uring",
                "fio fdatasync/32 uring",
                "keel raw psync",
                "keel engine metadata-only psync",
                "keel engine full psync",
                "fio psync",
                "fio fdatasync/32 psync",
            ]
        );
        assert_eq!(cs.last().unwrap().qd, 1, "fio psync has no queue depth");
        // Every Keel contender's arguments parse as its subcommand.
        for c in &cs {
            match &c.kind {
                Kind::Raw(a) => assert!(matches!(parse(a).unwrap(), Command::Raw(_))),
                Kind::Engine(a) => assert!(matches!(parse(a).unwrap(), Command::Engine(_))),
                Kind::Fio(_) => {}
            }
        }
    }

    #[test]
    fn randread_leaves_the_engine_out_and_no_fio_leaves_fio_out() {
        let cs = contenders(
            &args(&["--workload", "randread", "--paths", "uring"]),
            false,
        );
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].name, "keel raw");
    }

    #[test]
    fn an_existing_file_is_left_alone_and_a_new_one_is_filled() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        prepare(&p, 3 << 20).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 3 << 20);
        std::fs::write(&p, vec![1u8; 4 << 20]).unwrap();
        prepare(&p, 3 << 20).unwrap();
        assert_eq!(std::fs::read(&p).unwrap()[0], 1);
    }
}
