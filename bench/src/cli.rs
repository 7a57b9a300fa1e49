//! The command line: `keel-bench <subcommand> [options]`, one subcommand per benchmark.
//!
//! Options that pick and shape a device ([`DeviceArgs`]) are shared by every subcommand that
//! opens one, each with its own [`DeviceDefaults`] for what is left out; options that say
//! how long to measure ([`MeasureArgs`]) are shared by the load generators. Each subcommand
//! adds its own. Checks that clap cannot express are in `check` methods, reported as usage
//! errors (exit code 2) like clap's own.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use keel_engine::JournalMode;

pub use crate::compare::CompareArgs;
pub use crate::integrity::IntegrityArgs;
pub use crate::scrub::ScrubArgs;
pub use crate::suite::SuiteArgs;

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
            Command::Engine(args) => args.check(),
            Command::Crash(_) => Ok(()),
            Command::Fsck(args) => args.check(),
            Command::Suite(args) => args.check(),
            Command::Compare(args) => args.check(),
            Command::Scrub(args) => args.check(),
            Command::Integrity(args) => args.check(),
            Command::Crashlog(args) => match &args.command {
                crate::crashlog::CrashlogCommand::Run(run) => run.device.check(),
                crate::crashlog::CrashlogCommand::Check(_) => Ok(()),
            },
            Command::Logwrites(_) => Ok(()),
        }
    }
}

/// Parses `keel-bench ARGS...` exactly as the command line would, checks included: how
/// `suite` and `compare` build the runs they make, so that they can only ask for what the
/// subcommand itself accepts.
pub fn parse_command(args: &[String]) -> Result<Command, String> {
    let argv = std::iter::once("keel-bench").chain(args.iter().map(String::as_str));
    let cli = Cli::try_parse_from(argv).map_err(|e| format!("{}: {e}", args.join(" ")))?;
    cli.check()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    Ok(cli.command)
}

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Drive one queue pair of a device directly, with no engine above it: IOPS,
    /// bandwidth, latency percentiles and CPU time per operation.
    Raw(RawArgs),
    /// Run transactions through a whole store (mkfs, open, a workload, fsck, close):
    /// IOPS, latency percentiles, write amplification and device commands per transaction.
    Engine(EngineArgs),
    /// Explore power cuts on the simulated device and check what recovery keeps against
    /// the journal mode's guarantees.
    Crash(CrashArgs),
    /// Open (and so recover) the store on a file or block device and check its metadata.
    Fsck(FsckArgs),
    /// Open (and so recover) the store on a file or block device and read every mapped
    /// page against its checksum: corruption and torn overwrites, by object and range.
    /// Exit code 3 when corruption was found, 4 when only torn overwrites were.
    Scrub(ScrubArgs),
    /// The main job: Full and MetadataOnly side by side on create, append, overwrite and
    /// random writes, at QD1 and QD32, on the sim device; a table, JSON and an SVG plot in
    /// --out.
    Suite(SuiteArgs),
    /// Keel raw, Keel engine (both modes) and fio, on psync and io_uring, on one file or
    /// device, alternating, in one run: IOPS and latency as ratios to fio.
    Compare(CompareArgs),
    /// What the integrity machinery costs, on the sim device, alternating, in one run:
    /// QD1 append latency with and without parallel commit against a raw FUA write, and
    /// 4 KiB overwrites with and without overwrite intents.
    Integrity(IntegrityArgs),
    /// Crash tests with a real controller: run a workload that records its
    /// acknowledgements on the device, then check crash images rebuilt from a write log.
    Crashlog(crate::crashlog::CrashlogArgs),
    /// Read a dm-log-writes log (QEMU blklogwrites): dump it, or replay it onto an image.
    Logwrites(crate::logwrites::LogwritesArgs),
}

impl Command {
    /// The subcommand's name on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Raw(_) => "raw",
            Command::Engine(_) => "engine",
            Command::Crash(_) => "crash",
            Command::Fsck(_) => "fsck",
            Command::Scrub(_) => "scrub",
            Command::Suite(_) => "suite",
            Command::Compare(_) => "compare",
            Command::Integrity(_) => "integrity",
            Command::Crashlog(_) => "crashlog",
            Command::Logwrites(_) => "logwrites",
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
    /// Userspace NVMe on the PCI controller named by --pci: no kernel on the I/O path.
    Nvme,
}

impl Driver {
    /// The name as given on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Null => "null",
            Driver::Sim => "sim",
            Driver::Psync => "psync",
            Driver::Uring => "uring",
            Driver::Nvme => "nvme",
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

    /// nvme: the controller's PCI address (0000:00:04.0), or "auto" for the first NVMe
    /// controller with no driver bound or bound to vfio-pci.
    #[arg(long, required_if_eq("driver", "nvme"))]
    pub pci: Option<String>,

    /// Capacity of a null or sim device; size a psync or uring file is created at. raw's
    /// workload covers the first --size bytes of the device; engine formats all of it.
    /// Binary k/m/g/t suffixes [default: 1g for raw, 256m for engine].
    #[arg(long, value_parser = parse_size)]
    pub size: Option<u64>,

    /// Logical block size of a null or sim device [default: 4k for raw, 512 for engine];
    /// for psync and uring, an override of what the kernel reports.
    #[arg(long, value_parser = parse_size_u32)]
    pub block_size: Option<u32>,

    /// sim: service time of each command, in microseconds.
    #[arg(long, default_value_t = 10)]
    pub sim_latency_us: u64,

    /// sim: a volatile write cache (writes are durable only after a flush) [default: off
    /// for raw, on for engine]; --sim-write-cache=false turns it off.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub sim_write_cache: Option<bool>,

    /// sim: commands the device works on at once (0: unlimited).
    #[arg(long, default_value_t = 0)]
    pub sim_parallelism: u32,

    /// sim: the atomic write unit for power failure the device reports, in blocks (NVMe
    /// AWUPF + 1), and honours at a power cut. A store's overwrite that fits in it is never
    /// torn (it still takes the intent-first path).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub sim_atomic_write_blocks: u32,

    /// sim: touch every page of the device's memory before the run, so that the host's page
    /// faults on a first write (a fresh sim device is memory the kernel maps page by page)
    /// are not measured. Workloads that write fresh pages (append, create) otherwise pay
    /// them until the store has written its whole data area once.
    #[arg(long)]
    pub sim_prefault: bool,

    /// uring: a kernel thread polls the submission queue (its CPU time is not counted in
    /// cpu_seconds).
    #[arg(long)]
    pub sqpoll: bool,
}

/// What a subcommand assumes for the device options left out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceDefaults {
    /// --size; None opens a psync or uring file as it is, neither creating nor extending it
    /// (a null or sim device then needs --size).
    pub size: Option<u64>,
    /// --block-size of a null or sim device.
    pub block_size: u32,
    /// --sim-write-cache.
    pub sim_write_cache: bool,
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
        if self.pci.is_some() && self.driver != Driver::Nvme {
            return Err(format!(
                "--pci is for the nvme driver, not {}",
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

    /// --size, or the subcommand's default.
    pub fn size(&self, defaults: &DeviceDefaults) -> Option<u64> {
        self.size.or(defaults.size)
    }

    /// --sim-write-cache, or the subcommand's default.
    pub fn sim_write_cache(&self, defaults: &DeviceDefaults) -> bool {
        self.sim_write_cache.unwrap_or(defaults.sim_write_cache)
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

    /// Write with FUA (force unit access): each write is durable when it completes, as a
    /// store's commit must be, even with a volatile write cache.
    #[arg(long)]
    pub fua: bool,

    /// Acknowledge each write only once a flush issued after it completed has completed:
    /// one flush in flight at a time, covering every write that completed before it was
    /// issued. The least a durable acknowledgement costs on a device with a volatile write
    /// cache and no native FUA: what a store's group commit pays at best.
    #[arg(long, conflicts_with = "fua")]
    pub group_flush: bool,

    /// How long to measure.
    #[command(flatten)]
    pub measure: MeasureArgs,

    /// Seed of the random offsets (and of the sim device).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Device defaults of `keel-bench raw`.
pub const RAW_DEVICE: DeviceDefaults = DeviceDefaults {
    size: Some(1 << 30),
    block_size: 4096,
    sim_write_cache: false,
};

/// How long a load generator measures, and what it runs first.
#[derive(Debug, Args)]
pub struct MeasureArgs {
    /// Measure for this long [default: 10].
    #[arg(long, conflicts_with = "ops")]
    pub seconds: Option<f64>,

    /// Measure exactly this many operations instead of a duration.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub ops: Option<u64>,

    /// Run the workload this long first, excluded from every figure.
    #[arg(long, default_value_t = 0.0)]
    pub warmup_seconds: f64,
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

impl MeasureArgs {
    /// When the measurement stops.
    pub fn stop(&self) -> Stop {
        match (self.ops, self.seconds) {
            (Some(n), _) => Stop::Ops(n),
            (None, Some(s)) => Stop::Seconds(s),
            (None, None) => Stop::Seconds(DEFAULT_SECONDS),
        }
    }

    /// Checks the durations.
    pub fn check(&self) -> Result<(), String> {
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

/// Checks a transfer size against the smallest block size and the device size.
fn check_bs(bs: u32, size: Option<u64>) -> Result<(), String> {
    if bs % 512 != 0 {
        return Err(format!(
            "--bs {bs}: must be a multiple of 512 bytes (the smallest block size)"
        ));
    }
    match size {
        Some(size) if u64::from(bs) > size => {
            Err(format!("--bs {bs} is larger than --size {size}"))
        }
        _ => Ok(()),
    }
}

impl RawArgs {
    /// Checks what clap does not: the device-independent limits. The block-size checks
    /// that need the device's geometry happen once it is open.
    pub fn check(&self) -> Result<(), String> {
        self.device.check()?;
        check_bs(self.bs, self.device.size(&RAW_DEVICE))?;
        for (set, flag) in [(self.fua, "--fua"), (self.group_flush, "--group-flush")] {
            if set && !self.workload.writes() {
                return Err(format!(
                    "{flag} is for writes, not --workload {}",
                    self.workload.as_str()
                ));
            }
        }
        self.measure.check()
    }
}

/// A store's journal mode, as chosen at mkfs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Data and metadata go to the journal, then data to its home location.
    Full,
    /// Data straight to its location, then only metadata to the journal.
    MetadataOnly,
}

impl From<Mode> for JournalMode {
    fn from(mode: Mode) -> JournalMode {
        match mode {
            Mode::Full => JournalMode::Full,
            Mode::MetadataOnly => JournalMode::MetadataOnly,
        }
    }
}

/// What each transaction of `keel-bench engine` does. One transaction writes --bs bytes
/// unless said otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EngineWorkload {
    /// A write at a random bs-aligned offset below --object-size of a random object. The
    /// objects are created sparse at that size (not timed), so a first write to a page
    /// takes a fresh one and later writes overwrite it.
    Randwrite,
    /// Like randwrite, but the objects are written full first (not timed): every write
    /// overwrites data in place.
    Overwrite,
    /// A write at the end of a random object; one that would pass --object-size instead
    /// truncates the object to zero and writes at 0, in the same transaction.
    Append,
    /// Creates an object with one write; once --objects created objects exist, the same
    /// transaction removes the oldest, so the space used stays bounded.
    Create,
    /// 50% overwrite, 30% append, 10% create, 10% setattr.
    Mixed,
}

impl EngineWorkload {
    /// The name as given on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            EngineWorkload::Randwrite => "randwrite",
            EngineWorkload::Overwrite => "overwrite",
            EngineWorkload::Append => "append",
            EngineWorkload::Create => "create",
            EngineWorkload::Mixed => "mixed",
        }
    }
}

/// `keel-bench engine`: one thread keeps `qd` transactions in flight in a store.
#[derive(Debug, Args)]
pub struct EngineArgs {
    /// The device (sim, psync or uring: the null driver stores nothing).
    #[command(flatten)]
    pub device: DeviceArgs,

    /// The store's journal mode.
    #[arg(long, value_enum)]
    pub mode: Mode,

    /// What each transaction does.
    #[arg(long, value_enum, default_value_t = EngineWorkload::Randwrite)]
    pub workload: EngineWorkload,

    /// Bytes each transaction writes (a multiple of 512). Binary k/m/g suffixes.
    #[arg(long, default_value = "4k", value_parser = parse_size_u32)]
    pub bs: u32,

    /// Transactions kept in flight.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub qd: u32,

    /// How long to measure.
    #[command(flatten)]
    pub measure: MeasureArgs,

    /// Objects the workload spreads over (per kind of object: mixed has written objects
    /// and appended ones, and a window of as many created ones).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub objects: u32,

    /// Size of each object (a multiple of --bs) [default: 4m, or the largest power of two
    /// (down to a multiple of --bs) for which the objects fill at most half of the store's
    /// data area].
    #[arg(long, value_parser = parse_size)]
    pub object_size: Option<u64>,

    /// Seed of the workload (and of the sim device).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Group commit: with no batch in flight, how long ready journal entries may wait for
    /// transactions still writing their data [default: the store's default].
    #[arg(long)]
    pub max_batch_wait_us: Option<u32>,

    /// Parallel commit (metadata-only): a transaction that writes only fresh pages writes
    /// its journal record at the same time as its data, one device round trip instead of
    /// two. Only with --intents on.
    #[arg(long, value_enum, default_value_t = Switch::On)]
    pub parallel_commit: Switch,

    /// Overwrite intents (metadata-only): before rewriting mapped pages in place, a journal
    /// record opens an intent, one more ordered journal write, so that a torn overwrite is
    /// told from corruption after a power cut. Off, every transaction is serial (parallel
    /// commit needs intents).
    #[arg(long, value_enum, default_value_t = Switch::On)]
    pub intents: Switch,

    /// Run the store as N reactor threads (N shards, reactor i pinned to the i-th core
    /// this process may use), fed by this thread through their rings; --qd is then per
    /// reactor (N x qd in flight in all). Without it, this thread polls a one-shard store
    /// itself.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub reactors: Option<u32>,

    /// What an idle reactor turn does: spin (dedicated cores), or back off to sleeps of up
    /// to 50 µs (shared machines).
    #[arg(long, value_enum, default_value_t = ReactorIdle::Spin)]
    pub reactor_idle: ReactorIdle,

    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A feature turned on or off on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    /// On.
    On,
    /// Off.
    Off,
}

impl Switch {
    /// True when on.
    pub fn is_on(self) -> bool {
        self == Switch::On
    }
}

/// `--reactor-idle`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReactorIdle {
    /// Spin.
    Spin,
    /// Spin a little, then sleep.
    Backoff,
}

/// Device defaults of `keel-bench engine`: a fresh sim device is filled page fault by page
/// fault, so it is smaller than raw's; 512-byte blocks and a volatile cache, like a
/// typical NVMe drive.
pub const ENGINE_DEVICE: DeviceDefaults = DeviceDefaults {
    size: Some(256 << 20),
    block_size: 512,
    sim_write_cache: true,
};

impl EngineArgs {
    /// Checks what clap does not.
    pub fn check(&self) -> Result<(), String> {
        self.device.check()?;
        if self.device.driver == Driver::Null {
            return Err(
                "the null driver stores nothing, so a store cannot open on it: use sim, psync \
                 or uring"
                    .into(),
            );
        }
        check_bs(self.bs, self.device.size(&ENGINE_DEVICE))?;
        if let Some(size) = self.object_size {
            if size % u64::from(self.bs) != 0 {
                return Err(format!(
                    "--object-size {size}: must be a multiple of --bs {}",
                    self.bs
                ));
            }
        }
        self.measure.check()
    }
}

/// `keel-bench crash`: the crash explorer on the simulated device.
#[derive(Debug, Args)]
pub struct CrashArgs {
    /// The journal mode under test.
    #[arg(long, value_enum)]
    pub mode: Mode,

    /// Base seed; each cycle is seeded from it and the cycle number.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Cycles to run (each: fresh store, workload, power cut, recovery, checks).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub cycles: u64,

    /// Number of the first cycle (to reproduce one: --first-cycle N --cycles 1).
    #[arg(long, default_value_t = 0)]
    pub first_cycle: u64,

    /// Shards of the store; more than one runs it as reactors, stepped on one thread.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub shards: u32,

    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A store on a file or block device, opened as it is: what `fsck` and `scrub` read.
#[derive(Debug, Args)]
pub struct StoreFileArgs {
    /// The driver (psync or uring: the sim device keeps nothing between runs).
    #[arg(long, value_enum)]
    pub driver: Driver,

    /// File or block device holding the store. It is opened as it is, never created.
    #[arg(long)]
    pub path: PathBuf,

    /// Override of the block size the kernel reports (as given to `engine`).
    #[arg(long, value_parser = parse_size_u32)]
    pub block_size: Option<u32>,

    /// uring: a kernel thread polls the submission queue.
    #[arg(long)]
    pub sqpoll: bool,
}

impl StoreFileArgs {
    /// Checks what clap does not; `what` names the subcommand in the message.
    pub fn check(&self, what: &str) -> Result<(), String> {
        if !self.driver.needs_path() {
            return Err(format!(
                "{what} reads a store from a file or block device, with psync or uring; the \
                 {} device keeps nothing between runs",
                self.driver.as_str()
            ));
        }
        self.device().check()
    }

    /// The device to open: the file as it is, no sim settings.
    pub fn device(&self) -> DeviceArgs {
        DeviceArgs {
            driver: self.driver,
            path: Some(self.path.clone()),
            pci: None,
            size: None,
            block_size: self.block_size,
            sim_latency_us: 0,
            sim_write_cache: None,
            sim_parallelism: 0,
            sim_atomic_write_blocks: 1,
            sim_prefault: false,
            sqpoll: self.sqpoll,
        }
    }
}

/// `keel-bench fsck`: recover and check the store on a file or block device.
#[derive(Debug, Args)]
pub struct FsckArgs {
    /// The store.
    #[command(flatten)]
    pub store: StoreFileArgs,

    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl FsckArgs {
    /// Checks what clap does not.
    pub fn check(&self) -> Result<(), String> {
        self.store.check("fsck")
    }
}

/// Device defaults of `keel-bench fsck` and `scrub`: the file as it is.
pub const FSCK_DEVICE: DeviceDefaults = DeviceDefaults {
    size: None,
    block_size: 4096,
    sim_write_cache: false,
};

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
#[path = "cli_tests.rs"]
mod tests;
