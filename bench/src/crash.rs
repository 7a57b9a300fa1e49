//! `keel-bench crash`: the engine's crash explorer ([`keel_engine::crash`]) from the
//! command line.
//!
//! Each cycle runs a seeded workload on a fresh simulated device, cuts the power at a
//! chosen kind of point, recovers, and checks every object against what the journal mode
//! guarantees. This module runs the cycles with a progress line on stderr, and turns what
//! they found into a table or one JSON object. A violation comes with the command line
//! that reproduces its cycle alone; any violation makes the run fail (exit code 1).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use keel_engine::crash::{self, ClassCounts, CrashConfig, CrashReport, IntegrityCounts};
use keel_engine::JournalMode;
use serde::Serialize;

use crate::cli::CrashArgs;
use crate::error::BenchError;

/// Least time between two progress lines.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Runs the explorer as the arguments say, printing `crash: N/M cycles` to stderr at
/// most every [`PROGRESS_EVERY`].
pub fn run(args: &CrashArgs) -> CrashSummary {
    let mode = JournalMode::from(args.mode);
    let mut cfg = CrashConfig::new(mode, args.seed, args.cycles);
    cfg.first_cycle = args.first_cycle;
    cfg.shards = args.shards;
    let mut last = Instant::now();
    let report = crash::run(&cfg, |done| {
        if last.elapsed() >= PROGRESS_EVERY {
            eprintln!("crash: {done}/{} cycles", args.cycles);
            last = Instant::now();
        }
    });
    CrashSummary::new(mode, args.first_cycle, &report)
}

/// Counts of one class of transaction. Serialised as is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ClassSummary {
    /// Acknowledged, and checked durable.
    pub acked: u64,
    /// Not acknowledged, and present after recovery.
    pub unacked_present: u64,
    /// Not acknowledged, and absent.
    pub unacked_absent: u64,
    /// Not acknowledged, and present and absent look the same.
    pub unacked_ambiguous: u64,
}

impl From<&ClassCounts> for ClassSummary {
    fn from(c: &ClassCounts) -> Self {
        ClassSummary {
            acked: c.acked,
            unacked_present: c.unacked_present,
            unacked_absent: c.unacked_absent,
            unacked_ambiguous: c.unacked_ambiguous,
        }
    }
}

/// What the scrub after each recovery found, and what recovery settled. Serialised as is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct IntegritySummary {
    /// Pages checked.
    pub pages: u64,
    /// Pages matching their sums.
    pub clean: u64,
    /// Torn-overwrite pages (caller-owned).
    pub torn: u64,
    /// Pages failing their sums outside intents, with intents on (each a violation).
    pub corrupt: u64,
    /// Cycles whose store kept no overwrite intents.
    pub intents_off_cycles: u64,
    /// Pages failing their sums in those cycles (interrupted overwrites, each checked by
    /// the oracle).
    pub corrupt_intents_off: u64,
    /// Cycles on a device with a one-page atomic write unit.
    pub atomic_cycles: u64,
    /// Torn pages in those cycles.
    pub torn_in_atomic_cycles: u64,
    /// Unconfirmed records checked against their data at recovery.
    pub unconfirmed_checked: u64,
    /// Of those, dropped (data never landed, never acknowledged).
    pub unconfirmed_dropped: u64,
    /// Open intents found clean at recovery and closed.
    pub intents_closed: u64,
}

impl From<&IntegrityCounts> for IntegritySummary {
    fn from(c: &IntegrityCounts) -> Self {
        IntegritySummary {
            pages: c.pages,
            clean: c.clean,
            torn: c.torn,
            corrupt: c.corrupt,
            intents_off_cycles: c.intents_off_cycles,
            corrupt_intents_off: c.corrupt_intents_off,
            atomic_cycles: c.atomic_cycles,
            torn_in_atomic_cycles: c.torn_in_atomic_cycles,
            unconfirmed_checked: c.unconfirmed_checked,
            unconfirmed_dropped: c.unconfirmed_dropped,
            intents_closed: c.intents_closed,
        }
    }
}

/// What a `keel-bench crash` run found. Serialised as is for `--json`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CrashSummary {
    /// Which benchmark: "crash".
    pub bench: &'static str,
    /// Journal mode under test.
    pub mode: &'static str,
    /// Base seed.
    pub seed: u64,
    /// Number of the first cycle.
    pub first_cycle: u64,
    /// Cycles run.
    pub cycles: u64,
    /// Power cuts, by the kind of point they hit.
    pub crash_points: BTreeMap<&'static str, u64>,
    /// Recovered states the mode does not allow (fsck errors included).
    pub violations: u64,
    /// Objects whose acknowledged state was lost (also counted in violations).
    pub acked_lost: u64,
    /// Transactions by class.
    pub classes: BTreeMap<&'static str, ClassSummary>,
    /// The first violations, each with the command line that reproduces it.
    pub failures: Vec<String>,
    /// Per-page classification after recovery.
    pub integrity: IntegritySummary,
}

impl CrashSummary {
    /// The summary of an explorer's report.
    pub fn new(mode: JournalMode, first_cycle: u64, r: &CrashReport) -> Self {
        CrashSummary {
            bench: "crash",
            mode: mode.as_str(),
            seed: r.seed,
            first_cycle,
            cycles: r.cycles,
            crash_points: r.crash_points.clone(),
            violations: r.violations,
            acked_lost: r.acked_lost,
            classes: r.classes.iter().map(|(k, c)| (*k, c.into())).collect(),
            failures: r.failures.clone(),
            integrity: (&r.integrity).into(),
        }
    }

    /// The summary as one line of JSON.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// The summary for people: the run, the cuts, the classes, the verdict.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "crash: mode {}, seed {}, cycles {}..{}",
            self.mode,
            self.seed,
            self.first_cycle,
            self.first_cycle + self.cycles
        );
        let _ = writeln!(out, "{:<20} {:>8}", "crash point", "cuts");
        for (point, n) in &self.crash_points {
            let _ = writeln!(out, "{point:<20} {n:>8}");
        }
        let _ = writeln!(
            out,
            "{:<20} {:>8} {:>16} {:>15} {:>18}",
            "class", "acked", "unacked_present", "unacked_absent", "unacked_ambiguous"
        );
        for (class, c) in &self.classes {
            let _ = writeln!(
                out,
                "{class:<20} {:>8} {:>16} {:>15} {:>18}",
                c.acked, c.unacked_present, c.unacked_absent, c.unacked_ambiguous
            );
        }
        let i = &self.integrity;
        let _ = writeln!(
            out,
            "scrub after recovery: {} pages, {} clean, {} torn (caller-owned), {} corrupt",
            i.pages, i.clean, i.torn, i.corrupt
        );
        let _ = writeln!(
            out,
            "intents-off cycles {} (interrupted overwrites read as corruption there, each \
             checked by the oracle: {} pages)",
            i.intents_off_cycles, i.corrupt_intents_off
        );
        let _ = writeln!(
            out,
            "atomic-unit cycles {} (torn pages there {}); unconfirmed records checked {}, \
             dropped {}; intents closed at recovery {}",
            i.atomic_cycles,
            i.torn_in_atomic_cycles,
            i.unconfirmed_checked,
            i.unconfirmed_dropped,
            i.intents_closed
        );
        let _ = writeln!(
            out,
            "violations {}, acked_lost {}",
            self.violations, self.acked_lost
        );
        out
    }

    /// Ok when no violation was found; else prints each failure, with how to reproduce
    /// it, to stderr and says how many there were.
    pub fn verdict(&self) -> Result<(), BenchError> {
        if self.violations == 0 {
            return Ok(());
        }
        for f in &self.failures {
            eprintln!("{f}");
        }
        if (self.failures.len() as u64) < self.violations {
            eprintln!(
                "({} more not shown)",
                self.violations - self.failures.len() as u64
            );
        }
        Err(BenchError::Violations(self.violations))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> CrashReport {
        let mut r = CrashReport {
            seed: 4,
            cycles: 3,
            violations: 0,
            ..Default::default()
        };
        r.crash_points.insert("in_batch", 2);
        r.crash_points.insert("idle", 1);
        r.classes.insert(
            "append",
            ClassCounts {
                acked: 10,
                unacked_present: 1,
                unacked_absent: 2,
                unacked_ambiguous: 3,
            },
        );
        r
    }

    #[test]
    fn the_summary_keeps_every_count() {
        let s = CrashSummary::new(JournalMode::Full, 7, &report());
        let v: serde_json::Value = serde_json::from_str(&s.to_json().unwrap()).unwrap();
        assert_eq!(v["bench"], "crash");
        assert_eq!(v["mode"], "full");
        assert_eq!(
            (v["seed"].as_u64(), v["cycles"].as_u64()),
            (Some(4), Some(3))
        );
        assert_eq!(v["first_cycle"], 7);
        assert_eq!(v["crash_points"]["in_batch"], 2);
        assert_eq!(v["classes"]["append"]["unacked_ambiguous"], 3);
        assert_eq!(v["failures"].as_array().unwrap().len(), 0);
        assert!(s.verdict().is_ok());
        let t = s.table();
        assert!(
            t.starts_with("crash: mode full, seed 4, cycles 7..10\n"),
            "{t}"
        );
        assert!(t.contains("in_batch"), "{t}");
        assert!(t.ends_with("violations 0, acked_lost 0\n"), "{t}");
    }

    #[test]
    fn a_violation_fails_the_run() {
        let mut r = report();
        r.violations = 2;
        r.failures
            .push("cycle 8: lost\n  reproduce: keel-bench crash ...".into());
        let s = CrashSummary::new(JournalMode::MetadataOnly, 0, &r);
        let err = s.verdict().unwrap_err();
        assert!(matches!(err, BenchError::Violations(2)), "{err:?}");
    }
}
