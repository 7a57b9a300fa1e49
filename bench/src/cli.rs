//! The command line: `keel-bench <subcommand> [options]`, one subcommand per benchmark.
//!
//! Options that pick and shape a device ([`DeviceArgs`]) are shared by every subcommand that
//! opens one; each subcommand adds its own. Checks that clap cannot express are in
//! `check` methods, reported as usage errors (exit code 2) like clap's own.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Keel's load generator and benchmark suite.
#[derive(Debug, Parser)]
#[command(name = "keel-bench", version, about)]
pub struct Cli {
    /// The benchmark to run.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Checks the arguments clap could not check on its own.
    pub fn check(&self) -> Result<(), String> {
        match &self.command {
            Command::Raw(args) => args.check(),
        }
    }
}

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Drive one queue pair of a device directly, with no engine above it: IOPS,
    /// bandwidth, latency percentiles and CPU time per operation.
    Raw(RawArgs),
}

impl Command {
    /// The subcommand's name on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Raw(_) => "raw",
        }
    }
}

/// The drivers a benchmark can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Driver {
    /// Completes every command at once, moving no data: the cost of the software alone.
    Null,
    /// The simulated, memory-backed device, with a fixed latency per command.
    Sim,
    /// pread/pwrite on O_DIRECT: the plain kernel path.
    Psync,
    /// io_uring on O_DIRECT: the best kernel path.
    Uring,
}

impl Driver {
    /// The name as given on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Null => "null",
            Driver::Sim => "sim",
            Driver::Psync => "psync",
            Driver::Uring => "uring",
        }
    }

    /// True for the drivers that open a file or block device.
    pub fn needs_path(self) -> bool {
        matches!(self, Driver::Psync | Driver::Uring)
    }
}

/// What a load generator does with each command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// Reads at random block-aligned offsets.
    Randread,
    /// Writes at random block-aligned offsets.
    Randwrite,
    /// Writes one after another, wrapping around at the end of the span.
    Seqwrite,
}

impl Workload {
    /// The name as given on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Workload::Randread => "randread",
            Workload::Randwrite => "randwrite",
            Workload::Seqwrite => "seqwrite",
        }
    }

    /// True when the workload writes.
    pub fn writes(self) -> bool {
        !matches!(self, Workload::Randread)
    }
}

/// Which device to open, and how.
#[derive(Debug, Args)]
pub struct DeviceArgs {
    /// The driver.
    #[arg(long, value_enum)]
    pub driver: Driver,

    /// File or block device for psync and uring. A file is created, or extended, to --size.
    #[arg(long, required_if_eq_any([("driver", "psync"), ("driver", "uring")]))]
    pub path: Option<PathBuf>,

    /// Capacity of a null or sim device; size a psync or uring file is created at. The
    /// workload covers the first --size bytes of the device. Binary k/m/g/t suffixes.
    #[arg(long, default_value = "1G", value_parser = parse_size)]
    pub size: u64,

    /// Logical block size of a null or sim device [default: 4k]; for psync and uring, an
    /// override of what the kernel reports.
    #[arg(long, value_parser = parse_size_u32)]
    pub block_size: Option<u32>,

    /// sim: service time of each command, in microseconds.
    #[arg(long, default_value_t = 10)]
    pub sim_latency_us: u64,

    /// sim: a volatile write cache (writes are durable only after a flush).
    #[arg(long)]
    pub sim_write_cache: bool,

    /// uring: a kernel thread polls the submission queue (its CPU time is not counted in
    /// cpu_seconds).
    #[arg(long)]
    pub sqpoll: bool,
}

impl DeviceArgs {
    /// Checks the combinations clap does not.
    pub fn check(&self) -> Result<(), String> {
        if self.path.is_some() && !self.driver.needs_path() {
            return Err(format!(
                "--path is for the psync and uring drivers, not {}",
                self.driver.as_str()
            ));
        }
        if self.sqpoll && self.driver != Driver::Uring {
            return Err(format!(
                "--sqpoll is for the uring driver, not {}",
                self.driver.as_str()
            ));
        }
        Ok(())
    }
}

/// `keel-bench raw`: one thread keeps `qd` commands in flight on one queue pair.
#[derive(Debug, Args)]
pub struct RawArgs {
    /// The device.
    #[command(flatten)]
    pub device: DeviceArgs,

    /// What each command does.
    #[arg(long, value_enum, default_value_t = Workload::Randread)]
    pub workload: Workload,

    /// Bytes per command (a multiple of the device's block size). Binary k/m/g suffixes.
    #[arg(long, default_value = "4k", value_parser = parse_size_u32)]
    pub bs: u32,

    /// Commands kept in flight.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub qd: u32,

    /// Measure for this long [default: 10].
    #[arg(long, conflicts_with = "ops")]
    pub seconds: Option<f64>,

    /// Measure exactly this many commands instead of a duration.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub ops: Option<u64>,

    /// Run the workload this long first, excluded from every figure.
    #[arg(long, default_value_t = 0.0)]
    pub warmup_seconds: f64,

    /// Seed of the random offsets (and of the sim device).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// When a measurement stops.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stop {
    /// Submit for this many seconds, then drain.
    Seconds(f64),
    /// Submit this many commands, then drain.
    Ops(u64),
}

/// Measured seconds when neither --seconds nor --ops is given.
pub const DEFAULT_SECONDS: f64 = 10.0;

impl RawArgs {
    /// When the measurement stops.
    pub fn stop(&self) -> Stop {
        match (self.ops, self.seconds) {
            (Some(n), _) => Stop::Ops(n),
            (None, Some(s)) => Stop::Seconds(s),
            (None, None) => Stop::Seconds(DEFAULT_SECONDS),
        }
    }

    /// Checks what clap does not: the device-independent limits. The block-size checks
    /// that need the device's geometry happen once it is open.
    pub fn check(&self) -> Result<(), String> {
        self.device.check()?;
        if self.bs % 512 != 0 {
            return Err(format!(
                "--bs {}: must be a multiple of 512 bytes (the smallest block size)",
                self.bs
            ));
        }
        if u64::from(self.bs) > self.device.size {
            return Err(format!(
                "--bs {} is larger than --size {}",
                self.bs, self.device.size
            ));
        }
        if let Some(s) = self.seconds {
            if !(s.is_finite() && s > 0.0) {
                return Err(format!("--seconds {s}: must be a positive number"));
            }
        }
        if !(self.warmup_seconds.is_finite() && self.warmup_seconds >= 0.0) {
            return Err(format!(
                "--warmup-seconds {}: must be zero or a positive number",
                self.warmup_seconds
            ));
        }
        Ok(())
    }
}

/// Parses a byte count: digits, then an optional binary suffix `k`, `m`, `g` or `t`
/// (any case, optionally followed by `b` or `ib`). Zero is refused.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, suffix) = t.split_at(digits);
    let bad = || format!("{text:?} is not a size (a number with an optional k, m, g or t suffix)");
    if number.is_empty() {
        return Err(bad());
    }
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(bad()),
    };
    let n: u64 = number.parse().map_err(|_| bad())?;
    let bytes = n
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))?;
    if bytes == 0 {
        return Err(format!("{text:?}: size must be greater than zero"));
    }
    Ok(bytes)
}

/// [`parse_size`], for sizes that must fit in 32 bits (transfer and block sizes).
pub fn parse_size_u32(text: &str) -> Result<u32, String> {
    let bytes = parse_size(text)?;
    u32::try_from(bytes).map_err(|_| format!("{text:?} is too large (at most 4 GiB - 1)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn sizes_take_binary_suffixes_in_any_case() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("2m"), Ok(2 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1gb"), Ok(1 << 30));
        assert_eq!(parse_size("3t"), Ok(3 << 40));
        assert_eq!(parse_size(" 512 "), Ok(512));
    }

    #[test]
    fn bad_sizes_are_refused_with_the_text() {
        for text in ["", "k", "4x", "1.5g", "-4k", "4 k", "0", "0k"] {
            let err = parse_size(text).expect_err(text);
            assert!(err.contains(&format!("{text:?}")), "{err}");
        }
        assert!(parse_size("99999999999t")
            .unwrap_err()
            .contains("too large"));
        assert_eq!(
            parse_size_u32("4g"),
            Err("\"4g\" is too large (at most 4 GiB - 1)".into())
        );
        assert_eq!(parse_size_u32("1m"), Ok(1 << 20));
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("keel-bench").chain(args.iter().copied()))
    }

    #[test]
    fn raw_defaults() {
        let Command::Raw(raw) = parse(&["raw", "--driver", "null"]).unwrap().command;
        assert_eq!(raw.device.size, 1 << 30);
        assert_eq!(raw.bs, 4096);
        assert_eq!(raw.qd, 32);
        assert_eq!(raw.workload, Workload::Randread);
        assert_eq!(raw.stop(), Stop::Seconds(DEFAULT_SECONDS));
        assert_eq!(raw.device.sim_latency_us, 10);
        assert!(raw.check().is_ok());
    }

    #[test]
    fn raw_usage_errors() {
        // Missing --path for a kernel driver, --seconds with --ops, qd 0.
        assert!(parse(&["raw", "--driver", "psync"]).is_err());
        assert!(parse(&["raw", "--driver", "null", "--seconds", "1", "--ops", "5"]).is_err());
        assert!(parse(&["raw", "--driver", "null", "--qd", "0"]).is_err());
        assert!(parse(&["raw", "--driver", "null", "--ops", "0"]).is_err());
        let checked = |args: &[&str]| parse(args).unwrap().check();
        assert!(checked(&["raw", "--driver", "null", "--bs", "1000"])
            .unwrap_err()
            .contains("multiple of 512"));
        assert!(checked(&["raw", "--driver", "sim", "--sqpoll"]).is_err());
        assert!(checked(&["raw", "--driver", "null", "--path", "/tmp/x"]).is_err());
        assert!(checked(&["raw", "--driver", "null", "--seconds", "0"]).is_err());
        assert!(checked(&["raw", "--driver", "null", "--size", "4k", "--bs", "8k"]).is_err());
        assert!(checked(&["raw", "--driver", "uring", "--path", "/tmp/x", "--sqpoll"]).is_ok());
    }
}
