//! `keel-bench suite`: the main job. Full and MetadataOnly side by side on the workloads
//! that tell them apart, on one device, in one run.
//!
//! For every workload (create, append, overwrite, randwrite by default) and queue depth
//! (1 and 32), it runs `keel-bench engine` once per journal mode, the two modes one right
//! after the other so that drift on a shared machine hits both alike. Each run is a whole
//! store: mkfs, open, the workload, fsck, close, on a fresh sim device with a realistic
//! latency (10 µs per command, a volatile write cache) unless told otherwise.
//!
//! It writes to the output folder:
//! - `suite.txt`: the table of every run, then the modes side by side (IOPS ratio,
//!   latency, write amplification, device writes per transaction, batch size);
//! - `suite.json`: the parameters, every run's full report and the side-by-side pairs;
//! - `suite.svg`: IOPS and latency (p50 bar, p99 whisker) per workload, mode and QD.
//!
//! A progress line goes to stderr before each run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::cli::{parse_command, Command, EngineWorkload, Mode};
use crate::engine;
use crate::error::BenchError;
use crate::plot;
use crate::report::{self, EngineReport};

/// `keel-bench suite`: the main job.
#[derive(Debug, Args)]
pub struct SuiteArgs {
    /// Folder for suite.txt, suite.json and suite.svg (created if missing).
    #[arg(long, default_value = "keel-out")]
    pub out: PathBuf,

    /// Measured seconds of each run.
    #[arg(long, default_value_t = 2.5)]
    pub seconds: f64,

    /// Workloads, comma-separated (see `keel-bench engine --help`).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "create,append,overwrite,randwrite"
    )]
    pub workloads: Vec<String>,

    /// Journal modes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "metadata-only,full")]
    pub modes: Vec<String>,

    /// Queue depths, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    pub qd: Vec<u32>,

    /// Bytes each transaction writes.
    #[arg(long, default_value = "4k")]
    pub bs: String,

    /// Service time of each sim command, in microseconds (a datacenter NVMe drive writes
    /// 4 KiB into its cache in about 10 µs).
    #[arg(long, default_value_t = 10)]
    pub sim_latency_us: u64,

    /// Capacity of the sim device [default: keel-bench engine's].
    #[arg(long)]
    pub size: Option<String>,

    /// Seed of every run.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// One more argument passed to every `keel-bench engine` run (repeatable), e.g.
    /// `--engine-arg=--max-batch-wait-us=0`.
    #[arg(long, allow_hyphen_values = true)]
    pub engine_arg: Vec<String>,

    /// Print the JSON report on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

impl SuiteArgs {
    /// Checks what clap does not.
    pub fn check(&self) -> Result<(), String> {
        if !(self.seconds > 0.0 && self.seconds.is_finite()) {
            return Err(format!("--seconds {} must be positive", self.seconds));
        }
        if self.workloads.is_empty() || self.modes.is_empty() || self.qd.is_empty() {
            return Err("--workloads, --modes and --qd each need at least one value".into());
        }
        for m in &self.modes {
            Mode::from_str(m, false).map_err(|e| format!("--modes: {e}"))?;
        }
        for w in &self.workloads {
            EngineWorkload::from_str(w, false).map_err(|e| format!("--workloads: {e}"))?;
        }
        Ok(())
    }
}

/// The modes of one workload and queue depth, side by side.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Pair {
    /// Workload name.
    pub workload: String,
    /// Transactions in flight.
    pub qd: u32,
    /// MetadataOnly IOPS ÷ Full IOPS.
    pub iops_ratio_md_to_full: f64,
    /// MetadataOnly write amplification ÷ Full's.
    pub wa_ratio_md_to_full: f64,
    /// MetadataOnly p50 latency ÷ Full's.
    pub p50_ratio_md_to_full: f64,
}

/// What the suite ran and found.
#[derive(Clone, Debug, Serialize)]
pub struct SuiteReport {
    /// Which benchmark: "suite".
    pub bench: &'static str,
    /// The arguments every run shared.
    pub common_args: Vec<String>,
    /// Measured seconds per run.
    pub seconds_per_run: f64,
    /// Wall-clock seconds of the whole suite.
    pub total_seconds: f64,
    /// Every run, in the order they ran.
    pub runs: Vec<EngineReport>,
    /// Full and MetadataOnly side by side, where both ran.
    pub pairs: Vec<Pair>,
}

/// Runs the suite and writes its files; returns the report.
pub fn run(args: &SuiteArgs) -> Result<SuiteReport, BenchError> {
    let started = Instant::now();
    let common = common_args(args);
    let plan = plan(args);
    let mut runs = Vec::with_capacity(plan.len());
    for (i, (workload, qd, mode)) in plan.iter().enumerate() {
        eprintln!(
            "suite [{:>2}/{}] {mode:<13} {workload:<9} qd {qd:<3} ({:.0} s elapsed)",
            i + 1,
            plan.len(),
            started.elapsed().as_secs_f64()
        );
        let engine_args = engine_args(&common, workload, *qd, mode)?;
        runs.push(engine::run(&engine_args)?);
    }
    let report = SuiteReport {
        bench: "suite",
        common_args: common,
        seconds_per_run: args.seconds,
        total_seconds: started.elapsed().as_secs_f64(),
        pairs: pairs(&runs),
        runs,
    };
    write_outputs(&args.out, &report)?;
    Ok(report)
}

/// Arguments of `keel-bench engine` that every run of the suite shares.
fn common_args(args: &SuiteArgs) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "--driver".into(),
        "sim".into(),
        "--sim-latency-us".into(),
        args.sim_latency_us.to_string(),
        "--bs".into(),
        args.bs.clone(),
        "--seconds".into(),
        args.seconds.to_string(),
        "--seed".into(),
        args.seed.to_string(),
    ];
    if let Some(size) = &args.size {
        v.extend(["--size".into(), size.clone()]);
    }
    v.extend(args.engine_arg.iter().cloned());
    v
}

/// (workload, qd, mode) in the order they run: both modes of a cell back to back.
fn plan(args: &SuiteArgs) -> Vec<(String, u32, String)> {
    let mut v = Vec::new();
    for w in &args.workloads {
        for &qd in &args.qd {
            for m in &args.modes {
                v.push((w.clone(), qd, m.clone()));
            }
        }
    }
    v
}

/// One run's `keel-bench engine` arguments.
fn engine_args(
    common: &[String],
    workload: &str,
    qd: u32,
    mode: &str,
) -> Result<crate::cli::EngineArgs, BenchError> {
    let mut argv: Vec<String> = vec!["engine".into()];
    argv.extend(common.iter().cloned());
    argv.extend([
        "--workload".into(),
        workload.into(),
        "--qd".into(),
        qd.to_string(),
        "--mode".into(),
        mode.into(),
    ]);
    match parse_command(&argv) {
        Ok(Command::Engine(a)) => Ok(a),
        Ok(_) => unreachable!("parsed as the engine subcommand"),
        Err(message) => Err(BenchError::Tool {
            tool: "keel-bench engine",
            message,
        }),
    }
}

/// Full and MetadataOnly of the same workload and QD.
fn pairs(runs: &[EngineReport]) -> Vec<Pair> {
    let mut v = Vec::new();
    for md in runs.iter().filter(|r| r.mode == "metadata-only") {
        let Some(full) = runs
            .iter()
            .find(|r| r.mode == "full" && r.workload == md.workload && r.qd == md.qd)
        else {
            continue;
        };
        v.push(Pair {
            workload: md.workload.clone(),
            qd: md.qd,
            iops_ratio_md_to_full: report::ratio(md.iops, full.iops),
            wa_ratio_md_to_full: report::ratio(md.write_amplification, full.write_amplification),
            p50_ratio_md_to_full: report::ratio(md.lat_us.p50, full.lat_us.p50),
        });
    }
    v
}

/// The table of every run, then the modes side by side.
pub fn table(r: &SuiteReport) -> String {
    let mut out = report::engine_table(&r.runs);
    if !r.pairs.is_empty() {
        out.push_str("\nMetadataOnly ÷ Full, same workload and QD, same run:\n");
        out.push_str(&format!(
            "{:<10} {:>4} {:>10} {:>10} {:>10}\n",
            "workload", "qd", "IOPS", "p50", "WA"
        ));
        for p in &r.pairs {
            out.push_str(&format!(
                "{:<10} {:>4} {:>10.2} {:>10.2} {:>10.2}\n",
                p.workload,
                p.qd,
                p.iops_ratio_md_to_full,
                p.p50_ratio_md_to_full,
                p.wa_ratio_md_to_full
            ));
        }
    }
    out.push_str(&format!(
        "\n{} runs of {} s in {:.0} s\n",
        r.runs.len(),
        r.seconds_per_run,
        r.total_seconds
    ));
    out
}

fn write_file(path: PathBuf, text: &str) -> Result<(), BenchError> {
    std::fs::write(&path, text).map_err(|source| BenchError::File {
        what: "write",
        path,
        source,
    })
}

fn write_outputs(dir: &Path, r: &SuiteReport) -> Result<(), BenchError> {
    std::fs::create_dir_all(dir).map_err(|source| BenchError::File {
        what: "create the folder",
        path: dir.to_owned(),
        source,
    })?;
    write_file(dir.join("suite.txt"), &table(r))?;
    write_file(
        dir.join("suite.json"),
        &(serde_json::to_string_pretty(r)? + "\n"),
    )?;
    plot::suite_svg(&dir.join("suite.svg"), &r.runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> SuiteArgs {
        let mut argv = vec!["suite".to_owned()];
        argv.extend(extra.iter().map(|s| s.to_string()));
        match parse_command(&argv).unwrap() {
            Command::Suite(a) => a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn the_default_plan_runs_both_modes_of_each_cell_back_to_back() {
        let p = plan(&args(&[]));
        assert_eq!(p.len(), 4 * 2 * 2);
        for cell in p.chunks(2) {
            assert_eq!(cell[0].0, cell[1].0);
            assert_eq!(cell[0].1, cell[1].1);
            assert_ne!(cell[0].2, cell[1].2);
        }
        let workloads: Vec<&str> = p.iter().step_by(4).map(|c| c.0.as_str()).collect();
        assert_eq!(workloads, ["create", "append", "overwrite", "randwrite"]);
    }

    #[test]
    fn every_planned_run_parses_as_an_engine_run() {
        let a = args(&["--seconds", "0.5", "--size", "64m"]);
        let common = common_args(&a);
        for (w, qd, m) in plan(&a) {
            let e = engine_args(&common, &w, qd, &m).unwrap();
            assert_eq!(e.qd, qd);
            assert_eq!(e.device.sim_latency_us, 10);
        }
    }

    #[test]
    fn a_bad_passthrough_argument_is_a_clear_error() {
        let a = args(&["--engine-arg=--no-such-flag"]);
        let common = common_args(&a);
        let err = engine_args(&common, "randwrite", 1, "full").unwrap_err();
        assert!(err.to_string().contains("--no-such-flag"), "{err}");
    }
}
