//! Runs fio, the tool users already trust, and reads its JSON output.
//!
//! One job, `--direct=1`, `--norandommap` (offsets may repeat, as keel-bench's do) and,
//! for io_uring, registered buffers and files (`--fixedbufs --registerfiles`), as Keel's
//! uring driver uses. fio's psync engine has no queue depth: it always runs at QD1.

use std::path::Path;
use std::process::Command;

use serde::Serialize;

use crate::error::BenchError;

/// What one fio run measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FioResult {
    /// I/Os per second.
    pub iops: f64,
    /// Completion latency p50, µs.
    pub p50_us: f64,
    /// Completion latency p99, µs.
    pub p99_us: f64,
    /// CPU µs (user + system) per I/O.
    pub cpu_us_per_op: f64,
}

/// One fio job.
#[derive(Clone, Debug)]
pub struct FioJob<'a> {
    /// File or device.
    pub path: &'a Path,
    /// Bytes of it to cover.
    pub size: u64,
    /// "randwrite" or "randread".
    pub rw: &'a str,
    /// Bytes per I/O.
    pub bs: u32,
    /// I/Os in flight (io_uring).
    pub qd: u32,
    /// "io_uring" or "psync".
    pub ioengine: &'a str,
    /// Seconds to run.
    pub seconds: f64,
    /// An fdatasync after every this many writes (fio's `--fdatasync`): the durability a
    /// store's acknowledgement carries, for a like-for-like baseline.
    pub fdatasync: Option<u32>,
}

/// True when `fio` is on the PATH.
pub fn available() -> bool {
    Command::new("fio")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

impl FioJob<'_> {
    /// fio's arguments for this job.
    pub fn args(&self) -> Vec<String> {
        let mut a = vec![
            "--name=keel-compare".to_owned(),
            format!("--filename={}", self.path.display()),
            format!("--size={}", self.size),
            format!("--rw={}", self.rw),
            format!("--bs={}", self.bs),
            format!("--ioengine={}", self.ioengine),
            "--direct=1".into(),
            "--norandommap".into(),
            "--randrepeat=0".into(),
            "--time_based".into(),
            format!("--runtime={}ms", (self.seconds * 1000.0).round() as u64),
            "--output-format=json".into(),
        ];
        if let Some(n) = self.fdatasync {
            a.push(format!("--fdatasync={n}"));
        }
        if self.ioengine == "io_uring" {
            a.push(format!("--iodepth={}", self.qd));
            a.push("--fixedbufs".into());
            a.push("--registerfiles".into());
        }
        a
    }

    /// Runs it.
    pub fn run(&self) -> Result<FioResult, BenchError> {
        let out = Command::new("fio")
            .args(self.args())
            .output()
            .map_err(|e| BenchError::Tool {
                tool: "fio",
                message: format!("could not start: {e}"),
            })?;
        if !out.status.success() {
            return Err(BenchError::Tool {
                tool: "fio",
                message: format!(
                    "{} ({}): {}",
                    out.status,
                    self.args().join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        parse(&String::from_utf8_lossy(&out.stdout), self.rw)
    }
}

/// Reads the figures of the first job of fio's `--output-format=json`. fio may print
/// notes before the JSON; they are skipped.
pub fn parse(text: &str, rw: &str) -> Result<FioResult, BenchError> {
    let bad = |message: String| BenchError::Tool {
        tool: "fio",
        message,
    };
    let start = text
        .find('{')
        .ok_or_else(|| bad("no JSON in the output".into()))?;
    let v: serde_json::Value = serde_json::from_str(&text[start..])
        .map_err(|e| bad(format!("unreadable JSON output: {e}")))?;
    let job = &v["jobs"][0];
    let dir = if rw.contains("read") { "read" } else { "write" };
    let io = &job[dir];
    let num = |x: &serde_json::Value, what: &str| {
        x.as_f64()
            .ok_or_else(|| bad(format!("no {what} in the JSON output")))
    };
    let iops = num(&io["iops"], "iops")?;
    let pct = &io["clat_ns"]["percentile"];
    let p50_us = num(&pct["50.000000"], "clat p50")? / 1000.0;
    let p99_us = num(&pct["99.000000"], "clat p99")? / 1000.0;
    let ios = num(&io["total_ios"], "total_ios")?;
    let runtime_s = num(&io["runtime"], "runtime")? / 1000.0;
    let cpu_pct = num(&job["usr_cpu"], "usr_cpu")? + num(&job["sys_cpu"], "sys_cpu")?;
    let cpu_us_per_op = if ios > 0.0 {
        cpu_pct / 100.0 * runtime_s * 1e6 / ios
    } else {
        0.0
    };
    Ok(FioResult {
        iops,
        p50_us,
        p99_us,
        cpu_us_per_op,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"note: both iodepth >= 1 and synchronous I/O engine are selected
{
  "fio version" : "fio-3.33",
  "jobs" : [
    {
      "jobname" : "keel-compare",
      "read" : { "iops" : 0.0, "total_ios" : 0, "runtime" : 0,
                 "clat_ns" : { "percentile" : { "50.000000" : 0, "99.000000" : 0 } } },
      "write" : { "iops" : 80000.5, "total_ios" : 400000, "runtime" : 5000,
                  "clat_ns" : { "percentile" : { "50.000000" : 350000, "99.000000" : 1200000 } } },
      "usr_cpu" : 10.0,
      "sys_cpu" : 40.0
    }
  ]
}"#;

    #[test]
    fn parses_the_write_side_of_the_first_job() {
        let r = parse(SAMPLE, "randwrite").unwrap();
        assert_eq!(r.iops, 80000.5);
        assert_eq!(r.p50_us, 350.0);
        assert_eq!(r.p99_us, 1200.0);
        // 50% of 5 s over 400k I/Os: 6.25 µs each.
        assert!((r.cpu_us_per_op - 6.25).abs() < 1e-9, "{}", r.cpu_us_per_op);
    }

    #[test]
    fn missing_figures_are_a_clear_error() {
        let no_percentiles = SAMPLE.replace("\"percentile\"", "\"other\"");
        let err = parse(&no_percentiles, "randwrite").unwrap_err().to_string();
        assert!(err.contains("clat p50"), "{err}");
        assert!(parse("fio: no such file", "randwrite")
            .unwrap_err()
            .to_string()
            .contains("no JSON"));
    }

    #[test]
    fn io_uring_jobs_carry_the_queue_depth_and_registered_resources() {
        let job = FioJob {
            path: Path::new("/tmp/x"),
            size: 1 << 30,
            rw: "randwrite",
            bs: 4096,
            qd: 32,
            ioengine: "io_uring",
            seconds: 2.5,
            fdatasync: None,
        };
        let a = job.args();
        assert!(a.contains(&"--iodepth=32".to_owned()));
        assert!(a.contains(&"--fixedbufs".to_owned()));
        assert!(a.contains(&"--runtime=2500ms".to_owned()));
        let psync = FioJob {
            ioengine: "psync",
            ..job
        };
        assert!(!psync.args().iter().any(|x| x.starts_with("--iodepth")));
        assert!(!psync.args().iter().any(|x| x.starts_with("--fdatasync")));
        let durable = FioJob {
            fdatasync: Some(32),
            ..psync
        };
        assert!(durable.args().contains(&"--fdatasync=32".to_owned()));
    }
}
