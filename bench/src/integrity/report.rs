//! What `keel-bench integrity` reports: each contender's figures over the rounds, the
//! comparisons between contenders taken round by round, and the table for people.

use serde::Serialize;

use super::{Contender, Run, BLOCK, PARALLEL_TARGET_P50};
use crate::report::{human_bytes, median, ratio};

/// What one run measured.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Sample {
    pub iops: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub mean_us: f64,
    pub writes_per_op: f64,
    pub flushes_per_op: f64,
    /// Engine runs: transactions committed, parallel commits and intents.
    pub txns: u64,
    pub parallel_txns: u64,
    pub intents: u64,
}

/// One contender's figures over all rounds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    /// Stable name for scripts: "raw_fua", "append_parallel", "overwrite_intents_on_qd1", ...
    pub id: String,
    /// Name for people.
    pub contender: String,
    /// "raw" or "engine".
    pub kind: &'static str,
    /// Commands or transactions in flight.
    pub qd: u32,
    /// The device's atomic write unit, in bytes.
    pub atomic_write_bytes: u32,
    /// Raw: writes carried FUA.
    pub fua: Option<bool>,
    /// Engine: --parallel-commit.
    pub parallel_commit: Option<bool>,
    /// Engine: --intents.
    pub intents_enabled: Option<bool>,
    /// Median IOPS.
    pub iops: f64,
    /// IOPS of each round.
    pub iops_rounds: Vec<f64>,
    /// Median p50 latency, µs.
    pub p50_us: f64,
    /// p50 of each round, µs.
    pub p50_us_rounds: Vec<f64>,
    /// Median p99 latency, µs.
    pub p99_us: f64,
    /// Median mean latency, µs.
    pub mean_us: f64,
    /// Median device write commands per operation.
    pub writes_per_op: f64,
    /// Median flushes per operation.
    pub flushes_per_op: f64,
    /// Engine: transactions that committed in parallel, all rounds together.
    pub parallel_txns: Option<u64>,
    /// Engine: parallel commits per transaction, all rounds together.
    pub parallel_per_txn: Option<f64>,
    /// Engine: overwrite intents recorded, all rounds together.
    pub intents: Option<u64>,
    /// Engine: intents per transaction, all rounds together.
    pub intents_per_txn: Option<f64>,
}

impl Row {
    pub(super) fn new(c: &Contender, samples: &[Sample]) -> Row {
        let col = |f: fn(&Sample) -> f64| median(&mut samples.iter().map(f).collect::<Vec<_>>());
        let sum = |f: fn(&Sample) -> u64| samples.iter().map(f).sum::<u64>();
        let (txns, parallel, intents) = (
            sum(|s| s.txns),
            sum(|s| s.parallel_txns),
            sum(|s| s.intents),
        );
        let engine = matches!(c.run, Run::Engine { .. });
        let (fua, parallel_commit, intents_enabled) = match c.run {
            Run::Raw { fua } => (Some(fua), None, None),
            Run::Engine {
                parallel_commit,
                intents,
                ..
            } => (None, Some(parallel_commit), Some(intents)),
        };
        Row {
            id: c.id.clone(),
            contender: c.name.clone(),
            kind: if engine { "engine" } else { "raw" },
            qd: c.qd,
            atomic_write_bytes: c.atomic_write_blocks * BLOCK,
            fua,
            parallel_commit,
            intents_enabled,
            iops: col(|s| s.iops),
            iops_rounds: samples.iter().map(|s| s.iops).collect(),
            p50_us: col(|s| s.p50_us),
            p50_us_rounds: samples.iter().map(|s| s.p50_us).collect(),
            p99_us: col(|s| s.p99_us),
            mean_us: col(|s| s.mean_us),
            writes_per_op: col(|s| s.writes_per_op),
            flushes_per_op: col(|s| s.flushes_per_op),
            parallel_txns: engine.then_some(parallel),
            parallel_per_txn: engine.then(|| ratio(parallel as f64, txns as f64)),
            intents: engine.then_some(intents),
            intents_per_txn: engine.then(|| ratio(intents as f64, txns as f64)),
        }
    }
}

/// One contender against another, round by round.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ratio {
    /// Stable name for scripts: `"<numerator id>/<denominator id>"`.
    pub id: String,
    /// Name for people.
    pub what: String,
    /// Median over rounds of numerator ÷ denominator p50 latency.
    pub p50: f64,
    /// The same, p99 latency.
    pub p99: f64,
    /// The same, mean latency.
    pub mean: f64,
    /// The same, IOPS.
    pub iops: f64,
    /// The most the p50 ratio should be, where Keel has a target.
    pub target_p50_max: Option<f64>,
    /// Whether the p50 ratio met it.
    pub target_met: Option<bool>,
}

/// What integrity ran and found.
#[derive(Clone, Debug, Serialize)]
pub struct IntegrityReport {
    /// Which benchmark: "integrity".
    pub bench: &'static str,
    /// Service time of each sim command, µs.
    pub latency_us: u64,
    /// Block size of the sim devices.
    pub block_size: u32,
    /// Bytes per write.
    pub bs: u32,
    /// Capacity of each sim device.
    pub size: u64,
    /// Seconds per run.
    pub seconds: f64,
    /// Unmeasured seconds before each run.
    pub warmup_seconds: f64,
    /// Rounds.
    pub rounds: u32,
    /// One row per contender, in run order.
    pub rows: Vec<Row>,
    /// The comparisons.
    pub ratios: Vec<Ratio>,
}

/// The comparisons the report makes, by contender id: (what, numerator, denominator,
/// p50 target). Those whose contenders did not run are left out.
fn comparisons(qd: u32) -> Vec<(String, String, String, Option<f64>)> {
    let mut v = vec![
        (
            "append parallel ÷ raw write+FUA".to_owned(),
            "append_parallel".to_owned(),
            "raw_fua".to_owned(),
            Some(PARALLEL_TARGET_P50),
        ),
        (
            "append serial ÷ raw write+FUA".into(),
            "append_serial".into(),
            "raw_fua".into(),
            None,
        ),
    ];
    for q in [1, qd] {
        v.push((
            format!("overwrite intents on ÷ off, qd {q}"),
            format!("overwrite_intents_on_qd{q}"),
            format!("overwrite_intents_off_qd{q}"),
            None,
        ));
        v.push((
            format!("overwrite atomic 4k ÷ intents on, qd {q}"),
            format!("overwrite_atomic_qd{q}"),
            format!("overwrite_intents_on_qd{q}"),
            None,
        ));
    }
    v
}

pub(super) fn ratios(cs: &[Contender], samples: &[Vec<Sample>], qd: u32) -> Vec<Ratio> {
    let find = |id: &str| cs.iter().position(|c| c.id == id);
    comparisons(qd)
        .into_iter()
        .filter_map(|(what, num, den, target)| {
            let (n, d) = (&samples[find(&num)?], &samples[find(&den)?]);
            let per_round = |f: fn(&Sample) -> f64| {
                median(
                    &mut n
                        .iter()
                        .zip(d)
                        .map(|(a, b)| ratio(f(a), f(b)))
                        .collect::<Vec<_>>(),
                )
            };
            let p50 = per_round(|s| s.p50_us);
            Some(Ratio {
                id: format!("{num}/{den}"),
                what,
                p50,
                p99: per_round(|s| s.p99_us),
                mean: per_round(|s| s.mean_us),
                iops: per_round(|s| s.iops),
                target_p50_max: target,
                target_met: target.map(|t| p50 <= t),
            })
        })
        .collect()
}

/// The report for people.
pub fn table(r: &IntegrityReport) -> String {
    let mut out = format!(
        "integrity: sim {} µs per command, volatile write cache, {}-byte blocks, {} writes, \
         MetadataOnly; median of {} round(s) of {} s\n",
        r.latency_us,
        r.block_size,
        human_bytes(u64::from(r.bs)),
        r.rounds,
        r.seconds
    );
    out.push_str(&format!(
        "{:<26} {:>4} {:>5} {:>9} {:>8} {:>8} {:>8} {:>7} {:>7} {:>6} {:>8}\n",
        "contender",
        "qd",
        "unit",
        "iops",
        "p50 µs",
        "p99 µs",
        "mean µs",
        "par/txn",
        "int/txn",
        "wr/op",
        "flush/op"
    ));
    let opt = |x: Option<f64>| x.map_or_else(|| "-".to_owned(), |x| format!("{x:.2}"));
    for row in &r.rows {
        out.push_str(&format!(
            "{:<26} {:>4} {:>5} {:>9.0} {:>8.1} {:>8.1} {:>8.1} {:>7} {:>7} {:>6.2} {:>8.2}\n",
            row.contender,
            row.qd,
            human_bytes(u64::from(row.atomic_write_bytes)),
            row.iops,
            row.p50_us,
            row.p99_us,
            row.mean_us,
            opt(row.parallel_per_txn),
            opt(row.intents_per_txn),
            row.writes_per_op,
            row.flushes_per_op,
        ));
    }
    out.push_str(&format!(
        "\n{:<42} {:>6} {:>6} {:>6} {:>6}\n",
        "ratio (median of per-round ratios)", "p50", "p99", "mean", "iops"
    ));
    for x in &r.ratios {
        let target = match (x.target_p50_max, x.target_met) {
            (Some(t), Some(met)) => {
                format!(
                    "  target p50 ≤ {t:.2}: {}",
                    if met { "met" } else { "MISSED" }
                )
            }
            _ => String::new(),
        };
        out.push_str(&format!(
            "{:<42} {:>6.2} {:>6.2} {:>6.2} {:>6.2}{target}\n",
            x.what, x.p50, x.p99, x.mean, x.iops
        ));
    }
    out.push_str(
        "unit: the device's atomic write unit; par/txn: transactions committed in parallel \
         (record and data at once); int/txn: overwrite intents per transaction.\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{parse_command, Command};
    use crate::integrity::contenders;

    #[test]
    fn ratios_are_taken_per_round() {
        let argv = ["integrity".to_owned(), "--no-atomic".into()];
        let Command::Integrity(a) = parse_command(&argv).unwrap() else {
            unreachable!()
        };
        let cs = contenders(&a);
        let s = |p50_us: f64, iops: f64| Sample {
            p50_us,
            p99_us: p50_us * 2.0,
            mean_us: p50_us,
            iops,
            ..Sample::default()
        };
        let mut samples = vec![vec![s(10.0, 1.0); 3]; cs.len()];
        // The raw write drifts from round to round; the parallel append follows it.
        samples[0] = vec![s(10.0, 100.0), s(20.0, 50.0), s(40.0, 25.0)];
        samples[3] = vec![s(11.0, 90.0), s(22.0, 45.0), s(44.0, 22.5)];
        let r = ratios(&cs, &samples, a.qd);
        assert_eq!(r.len(), 4, "the atomic comparisons are left out");
        assert!((r[0].p50 - 1.1).abs() < 1e-9, "{r:?}");
        assert!((r[0].iops - 0.9).abs() < 1e-9, "{r:?}");
        assert_eq!(r[0].target_met, Some(true));
        assert_eq!(r[1].id, "append_serial/raw_fua");
        assert!(
            (r[1].p50 - 0.5).abs() < 1e-9,
            "median of 1, 0.5, 0.25: {r:?}"
        );
    }
}
