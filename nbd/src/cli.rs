//! keel-nbd's command line (clap derive).

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use keel_engine::volume::DEFAULT_OBJECT_BYTES;
use keel_engine::JournalMode;

/// Serve Keel volumes over NBD: export name = volume name.
#[derive(Debug, Parser)]
#[command(name = "keel-nbd", version, about)]
pub struct Cli {
    /// Device driver: sim (in memory, lost at exit), psync or uring (a file or block
    /// device, kept between runs).
    #[arg(long, value_enum, default_value = "sim")]
    pub driver: Driver,
    /// File or block device for psync and uring (a file is created at --size).
    #[arg(long, required_if_eq_any([("driver", "psync"), ("driver", "uring")]))]
    pub path: Option<PathBuf>,
    /// Device capacity for sim; size a psync or uring file is created at.
    #[arg(long, default_value = "1g", value_parser = parse_size)]
    pub size: u64,
    /// sim: latency of each command, in microseconds.
    #[arg(long, default_value_t = 0)]
    pub sim_latency_us: u64,

    /// sim: a volatile write cache (written data is durable only after a flush or FUA),
    /// so that a power cut (--power-cut-to) can lose what was not made durable.
    #[arg(long)]
    pub sim_write_cache: bool,

    /// sim: start from this device image (written by --power-cut-to) instead of a fresh,
    /// formatted device: the store on it is recovered.
    #[arg(long)]
    pub sim_image: Option<PathBuf>,

    /// sim, for crash tests: on SIGUSR1, cut the device's power, write what survived to
    /// this file (raw 512-byte blocks) and exit at once with status 0, nothing flushed
    /// or checkpointed.
    #[arg(long)]
    pub power_cut_to: Option<PathBuf>,
    /// Format the device even if it holds a store (sim is always formatted; a psync or
    /// uring device is formatted when it holds none).
    #[arg(long)]
    pub format: bool,
    /// The store's journal mode, at format time.
    #[arg(long, value_enum, default_value = "metadata-only")]
    pub store_mode: Mode,
    /// Shards (reactors), at format time.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub shards: u32,
    /// Reactors spin when idle (lowest latency, a core each) instead of backing off.
    #[arg(long)]
    pub spin: bool,
    /// Idle reactors (without --spin) spin a little, then sleep, doubling up to this long
    /// (microseconds): lower is quicker to answer a lone request, higher leaves more CPU.
    #[arg(long, default_value_t = 50)]
    pub reactor_sleep_us_max: u32,
    /// A volume to create if it does not exist, as NAME:SIZE (e.g. disk0:1g); repeatable.
    #[arg(long = "volume", value_parser = parse_volume)]
    pub volumes: Vec<(String, u64)>,
    /// A volume to resize, as NAME:SIZE (shrinking discards the end); repeatable.
    #[arg(long = "resize", value_parser = parse_volume)]
    pub resizes: Vec<(String, u64)>,
    /// A volume to remove with its data; repeatable.
    #[arg(long = "remove")]
    pub removes: Vec<String>,
    /// Print the volumes (after --volume, --resize and --remove) and exit.
    #[arg(long)]
    pub list: bool,
    /// Object size of volumes created here.
    #[arg(long, default_value_t = DEFAULT_OBJECT_BYTES, value_parser = parse_size)]
    pub object_size: u64,
    /// Journal mode of volumes created here.
    #[arg(long, value_enum, default_value = "metadata-only")]
    pub volume_mode: Mode,
    /// TCP address to listen on.
    #[arg(long, default_value = "127.0.0.1:10809", conflicts_with = "unix")]
    pub listen: String,
    /// Listen on this Unix-domain socket instead of TCP.
    #[arg(long)]
    pub unix: Option<PathBuf>,
}

/// Device drivers keel-nbd can open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Driver {
    /// The simulated device, in memory.
    Sim,
    /// pread/pwrite with O_DIRECT.
    Psync,
    /// io_uring with O_DIRECT.
    Uring,
}

/// A journal mode on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Data in place, metadata journaled.
    MetadataOnly,
    /// Data and metadata journaled.
    Full,
}

impl From<Mode> for JournalMode {
    fn from(m: Mode) -> JournalMode {
        match m {
            Mode::MetadataOnly => JournalMode::MetadataOnly,
            Mode::Full => JournalMode::Full,
        }
    }
}

/// A size with an optional k, m, g or t suffix (binary).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, suffix) = t.split_at(digits);
    let bad = || format!("{text:?} is not a size (a number with an optional k, m, g or t suffix)");
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        "t" | "tib" => 40,
        _ => return Err(bad()),
    };
    let n: u64 = number.parse().map_err(|_| bad())?;
    n.checked_mul(1 << shift)
        .filter(|b| *b > 0)
        .ok_or_else(|| format!("{text:?}: size must be above zero and fit in 64 bits"))
}

/// NAME:SIZE.
pub fn parse_volume(text: &str) -> Result<(String, u64), String> {
    let (name, size) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?} is not NAME:SIZE"))?;
    Ok((name.to_string(), parse_size(size)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_parses() {
        Cli::command().debug_assert();
        let c = Cli::try_parse_from(["keel-nbd", "--volume", "a:1g", "--volume", "b:4m"]).unwrap();
        assert_eq!(c.volumes, [("a".into(), 1 << 30), ("b".into(), 4 << 20)]);
        assert_eq!(c.driver, Driver::Sim);
        let c = Cli::try_parse_from(["keel-nbd", "--resize", "a:2g", "--remove", "b", "--list"])
            .unwrap();
        assert_eq!(c.resizes, [("a".into(), 2 << 30)]);
        assert_eq!(c.removes, ["b"]);
        assert!(c.list);
        assert!(Cli::try_parse_from(["keel-nbd", "--driver", "psync"]).is_err());
        assert!(Cli::try_parse_from(["keel-nbd", "--volume", "nosize"]).is_err());
        assert_eq!(parse_size("4k"), Ok(4096));
        assert!(parse_size("0").is_err());
        assert!(parse_size("1x").is_err());
    }
}
