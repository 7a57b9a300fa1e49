//! `keel-bench integrity`: what Keel's integrity machinery costs, on the sim device, in one
//! run.
//!
//! Three questions, each a set of contenders run one right after the other in every round
//! (as `compare` does), so that drift on a shared machine hits all of them alike:
//!
//! ```text
//!  a. parallel commit   QD1 4 KiB appends, MetadataOnly, --parallel-commit off (serial:
//!                       data, then the record) and on (data and record at once), against
//!                       one raw 4 KiB device write at QD1 with FUA (what a durable commit
//!                       cannot beat) and without it (for reference).
//!  b. overwrite intents 4 KiB overwrites of written pages, MetadataOnly, --intents on and
//!                       off, QD1 (latency) and --qd (IOPS), on a device whose atomic write
//!                       unit is one 512-byte block: a 4 KiB page is not atomic, so each
//!                       overwrite takes the intent-first path (on: the record, then the
//!                       data) or the serial path (off: data, flush, record).
//!  c. atomic unit       the same overwrites on a device whose atomic write unit is 4 KiB
//!                       (8 blocks): the same intent-first path; the unit changes what a
//!                       power cut can leave (never a torn page), not the cost.
//! ```
//!
//! Every run is a fresh sim device (--latency-us per command, a volatile write cache,
//! 512-byte blocks, unlimited parallelism) whose memory is touched before the run
//! (`--sim-prefault`): otherwise the appends, which write pages the store has never used,
//! pay the host's first-touch page faults (about 5 µs each) and the overwrites do not. Each
//! contender is `keel-bench raw` or
//! `keel-bench engine` built from its command line, so it can only ask for what those
//! accept. A row's figures are medians over rounds; a ratio is taken inside each round
//! (numerator and denominator ran seconds apart) and its median over rounds reported.
//! The engine rows carry the store's own counters, parallel commits and intents per
//! transaction, which show that each contender took the path it is named for.

mod report;

use std::path::PathBuf;

use clap::Args;

use crate::cli::{parse_command, parse_size, Command};
use crate::error::BenchError;
use crate::report::ratio;
use crate::{engine, raw};
use report::{ratios, table, IntegrityReport, Row, Sample};

/// `keel-bench integrity`: the cost of parallel commit and overwrite intents.
#[derive(Debug, Args)]
pub struct IntegrityArgs {
    /// Measured seconds of each run.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,

    /// Unmeasured seconds at the start of each run.
    #[arg(long, default_value_t = 0.25)]
    pub warmup_seconds: f64,

    /// Rounds: every contender runs once per round, in the same order; the figures are
    /// medians over rounds.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,

    /// Service time of each sim command, in microseconds.
    #[arg(long, default_value_t = 10)]
    pub latency_us: u64,

    /// Transactions in flight of the overwrite throughput runs.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(2..=1024))]
    pub qd: u32,

    /// Capacity of each sim device. Binary k/m/g suffixes.
    #[arg(long, default_value = "256m", value_parser = parse_size)]
    pub size: u64,

    /// Leave out the overwrites on a device with a 4 KiB atomic write unit.
    #[arg(long)]
    pub no_atomic: bool,

    /// Seed of every run's workload and device.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

impl IntegrityArgs {
    /// Checks what clap does not.
    pub fn check(&self) -> Result<(), String> {
        if !(self.seconds > 0.0 && self.seconds.is_finite()) {
            return Err(format!("--seconds {} must be positive", self.seconds));
        }
        if !(self.warmup_seconds >= 0.0 && self.warmup_seconds.is_finite()) {
            return Err(format!(
                "--warmup-seconds {} must be zero or positive",
                self.warmup_seconds
            ));
        }
        Ok(())
    }
}

/// Bytes of every write.
const BS: u32 = 4096;
/// Block size of every sim device: a 4 KiB page is 8 blocks.
const BLOCK: u32 = 512;
/// Blocks of the atomic write unit of contender c: one 4 KiB page.
const ATOMIC_PAGE_BLOCKS: u32 = BS / BLOCK;
/// The most that `append parallel ÷ raw write+FUA` may be at p50.
pub const PARALLEL_TARGET_P50: f64 = 1.1;

/// How a contender runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Run {
    /// `keel-bench raw --workload seqwrite`, with or without FUA.
    Raw { fua: bool },
    /// `keel-bench engine --mode metadata-only`.
    Engine {
        workload: &'static str,
        parallel_commit: bool,
        intents: bool,
    },
}

/// One contender: its name, queue depth and device.
#[derive(Clone, Debug)]
struct Contender {
    id: String,
    name: String,
    qd: u32,
    atomic_write_blocks: u32,
    run: Run,
}

fn contenders(args: &IntegrityArgs) -> Vec<Contender> {
    let c = |id: &str, name: &str, qd, atomic_write_blocks, run| Contender {
        id: id.into(),
        name: name.into(),
        qd,
        atomic_write_blocks,
        run,
    };
    let engine = |workload, parallel_commit, intents| Run::Engine {
        workload,
        parallel_commit,
        intents,
    };
    let mut v = vec![
        c("raw_fua", "raw write+FUA", 1, 1, Run::Raw { fua: true }),
        c("raw", "raw write", 1, 1, Run::Raw { fua: false }),
        c(
            "append_serial",
            "append serial",
            1,
            1,
            engine("append", false, true),
        ),
        c(
            "append_parallel",
            "append parallel",
            1,
            1,
            engine("append", true, true),
        ),
    ];
    for qd in [1, args.qd] {
        let overwrite = |id: &str, name: &str, blocks, intents| Contender {
            id: format!("overwrite_{id}_qd{qd}"),
            name: format!("overwrite {name}"),
            qd,
            atomic_write_blocks: blocks,
            run: engine("overwrite", true, intents),
        };
        v.push(overwrite("intents_on", "intents on", 1, true));
        v.push(overwrite("intents_off", "intents off", 1, false));
        if !args.no_atomic {
            v.push(overwrite(
                "atomic",
                "atomic 4k unit",
                ATOMIC_PAGE_BLOCKS,
                true,
            ));
        }
    }
    v
}

/// The command line of one run of `c`.
fn argv(args: &IntegrityArgs, c: &Contender) -> Vec<String> {
    let mut v: Vec<String> = match c.run {
        Run::Raw { .. } => vec!["raw".into(), "--workload".into(), "seqwrite".into()],
        Run::Engine {
            workload,
            parallel_commit,
            intents,
        } => {
            let on = |b: bool| if b { "on" } else { "off" }.to_owned();
            vec![
                "engine".into(),
                "--mode".into(),
                "metadata-only".into(),
                "--workload".into(),
                workload.into(),
                "--parallel-commit".into(),
                on(parallel_commit),
                "--intents".into(),
                on(intents),
            ]
        }
    };
    v.extend([
        "--driver".into(),
        "sim".into(),
        "--size".into(),
        args.size.to_string(),
        "--block-size".into(),
        BLOCK.to_string(),
        "--sim-write-cache=true".into(),
        "--sim-latency-us".into(),
        args.latency_us.to_string(),
        "--sim-atomic-write-blocks".into(),
        c.atomic_write_blocks.to_string(),
        "--sim-prefault".into(),
        "--bs".into(),
        BS.to_string(),
        "--qd".into(),
        c.qd.to_string(),
        "--seconds".into(),
        args.seconds.to_string(),
        "--warmup-seconds".into(),
        args.warmup_seconds.to_string(),
        "--seed".into(),
        args.seed.to_string(),
    ]);
    if c.run == (Run::Raw { fua: true }) {
        v.push("--fua".into());
    }
    v
}

fn parse(argv: &[String]) -> Result<Command, BenchError> {
    parse_command(argv).map_err(|message| BenchError::Tool {
        tool: "keel-bench",
        message,
    })
}

fn run_once(argv: &[String]) -> Result<Sample, BenchError> {
    match parse(argv)? {
        Command::Raw(a) => {
            let r = raw::run(&a)?;
            Ok(Sample {
                iops: r.iops,
                p50_us: r.lat_us.p50,
                p99_us: r.lat_us.p99,
                mean_us: r.lat_us.mean,
                writes_per_op: ratio(r.device_write_cmds as f64, r.ops as f64),
                ..Sample::default()
            })
        }
        Command::Engine(a) => {
            let r = engine::run(&a)?;
            Ok(Sample {
                iops: r.iops,
                p50_us: r.lat_us.p50,
                p99_us: r.lat_us.p99,
                mean_us: r.lat_us.mean,
                writes_per_op: r.device_writes_per_client_write,
                flushes_per_op: ratio(r.flushes as f64, r.ops as f64),
                txns: r.ops,
                parallel_txns: r.parallel_txns,
                intents: r.intents,
            })
        }
        other => unreachable!("integrity runs raw and engine only, not {}", other.name()),
    }
}

/// Runs every contender `--rounds` times, alternating, and reports medians and ratios.
pub fn run(args: &IntegrityArgs) -> Result<IntegrityReport, BenchError> {
    let cs = contenders(args);
    let argvs: Vec<Vec<String>> = cs.iter().map(|c| argv(args, c)).collect();
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); cs.len()];
    for round in 0..args.rounds {
        for (i, c) in cs.iter().enumerate() {
            eprintln!(
                "integrity: round {}/{} {} qd {}",
                round + 1,
                args.rounds,
                c.name,
                c.qd
            );
            samples[i].push(run_once(&argvs[i])?);
        }
    }
    Ok(IntegrityReport {
        bench: "integrity",
        latency_us: args.latency_us,
        block_size: BLOCK,
        bs: BS,
        size: args.size,
        seconds: args.seconds,
        warmup_seconds: args.warmup_seconds,
        rounds: args.rounds,
        rows: cs
            .iter()
            .zip(&samples)
            .map(|(c, s)| Row::new(c, s))
            .collect(),
        ratios: ratios(&cs, &samples, args.qd),
    })
}

/// Runs `keel-bench integrity`: the table on stdout, the JSON to --json's file.
pub fn main(args: &IntegrityArgs) -> Result<(), BenchError> {
    let report = run(args)?;
    print!("{}", table(&report));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)? + "\n";
        std::fs::write(path, text).map_err(|source| BenchError::File {
            what: "write",
            path: path.clone(),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> IntegrityArgs {
        let mut argv = vec!["integrity".to_owned()];
        argv.extend(extra.iter().map(|s| s.to_string()));
        match parse_command(&argv).unwrap() {
            Command::Integrity(a) => a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn every_contender_is_a_valid_run_on_the_same_sim_device() {
        let a = args(&[]);
        assert_eq!((a.seconds, a.rounds, a.latency_us, a.qd), (3.0, 3, 10, 32));
        let cs = contenders(&a);
        let ids: Vec<&str> = cs.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "raw_fua",
                "raw",
                "append_serial",
                "append_parallel",
                "overwrite_intents_on_qd1",
                "overwrite_intents_off_qd1",
                "overwrite_atomic_qd1",
                "overwrite_intents_on_qd32",
                "overwrite_intents_off_qd32",
                "overwrite_atomic_qd32",
            ]
        );
        for c in &cs {
            match parse(&argv(&a, c)).unwrap() {
                Command::Raw(r) => {
                    assert_eq!(r.fua, c.id == "raw_fua");
                    assert_eq!(r.device.block_size, Some(BLOCK));
                    assert_eq!(r.device.sim_write_cache, Some(true));
                    assert!(r.device.sim_prefault);
                    assert_eq!((r.qd, r.bs), (1, BS));
                }
                Command::Engine(e) => {
                    assert_eq!(e.device.block_size, Some(BLOCK));
                    assert_eq!(e.device.sim_write_cache, Some(true));
                    assert!(e.device.sim_prefault);
                    assert_eq!(e.device.sim_latency_us, 10);
                    assert_eq!(e.parallel_commit.is_on(), c.id != "append_serial");
                    assert_eq!(e.intents.is_on(), !c.id.contains("intents_off"));
                    let blocks = if c.id.contains("atomic") { 8 } else { 1 };
                    assert_eq!(e.device.sim_atomic_write_blocks, blocks, "{}", c.id);
                }
                _ => panic!("{}", c.id),
            }
        }
        assert_eq!(contenders(&args(&["--no-atomic"])).len(), 8);
        assert!(parse_command(&["integrity".into(), "--seconds".into(), "0".into()]).is_err());
    }

    #[test]
    fn a_brief_run_reports_every_field_and_the_flags_take_effect() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("integrity.json");
        let a = args(&[
            "--seconds",
            "0.2",
            "--warmup-seconds",
            "0",
            "--rounds",
            "1",
            "--size",
            "64m",
            "--qd",
            "8",
            "--json",
            json.to_str().unwrap(),
        ]);
        main(&a).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(v["bench"], "integrity");
        let rows = v["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 10);
        let row = |id: &str| {
            rows.iter()
                .find(|r| r["id"] == id)
                .unwrap_or_else(|| panic!("no row {id} in {v}"))
        };
        for r in rows {
            for key in ["iops", "p50_us", "p99_us", "mean_us", "writes_per_op"] {
                assert!(r[key].as_f64().unwrap() > 0.0, "{key} of {r}");
            }
            assert_eq!(r["iops_rounds"].as_array().unwrap().len(), 1);
        }
        let count = |id: &str, key: &str| row(id)[key].as_u64().unwrap();
        assert!(row("raw_fua")["parallel_txns"].is_null());
        assert_eq!(row("raw_fua")["fua"], true);
        // The flags reach the store: each contender took the path it is named for.
        assert!(count("append_parallel", "parallel_txns") > 0);
        assert_eq!(count("append_serial", "parallel_txns"), 0);
        for qd in [1, 8] {
            assert!(count(&format!("overwrite_intents_on_qd{qd}"), "intents") > 0);
            assert_eq!(
                count(&format!("overwrite_intents_off_qd{qd}"), "intents"),
                0
            );
            assert_eq!(
                count(&format!("overwrite_intents_off_qd{qd}"), "parallel_txns"),
                0
            );
            assert!(count(&format!("overwrite_atomic_qd{qd}"), "intents") > 0);
            assert_eq!(
                count(&format!("overwrite_atomic_qd{qd}"), "parallel_txns"),
                0
            );
        }
        let per_txn = row("overwrite_intents_on_qd1")["intents_per_txn"]
            .as_f64()
            .unwrap();
        assert!(
            (per_txn - 1.0).abs() < 1e-9,
            "one intent per overwrite: {per_txn}"
        );
        let ratios = v["ratios"].as_array().unwrap();
        assert_eq!(ratios.len(), 6);
        for r in ratios {
            for key in ["p50", "p99", "mean", "iops"] {
                assert!(r[key].as_f64().unwrap() > 0.0, "{key} of {r}");
            }
        }
        assert_eq!(ratios[0]["id"], "append_parallel/raw_fua");
        assert!(ratios[0]["target_met"].is_boolean());
        assert!(ratios[1]["target_met"].is_null());
    }
}
