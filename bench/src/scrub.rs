//! `keel-bench scrub`: opens the store on a file or block device, which recovers it, reads
//! every mapped page and checks it against its crc32c ([`keel_engine::Store::scrub`]).
//!
//! Each page is clean, *corrupt* (its bytes do not match its sum: media decay, a lost or
//! misdirected write, a bug) or part of a *torn overwrite* (a mismatch inside an overwrite
//! intent that a power cut left open). The two are told apart because they are owned by
//! different parties: corruption is the store's or the device's fault; a torn overwrite
//! is the caller's own unacknowledged write, which it must acknowledge
//! (`Transaction::acknowledge`) or rewrite.
//!
//! Exit codes: [`EXIT_CLEAN`] when every page matched, [`EXIT_CORRUPT`] when any page is
//! corrupt (torn ranges or not), [`EXIT_TORN`] when the only findings are torn overwrites;
//! 1 when the scrub could not run at all. As with `fsck`, the store is not closed, so
//! nothing is written beyond what recovery writes.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use keel_drivers::BlockDevice;
use keel_engine::{BadRange, ShardConfig, Store};
use serde::Serialize;

use crate::cli::{StoreFileArgs, FSCK_DEVICE};
use crate::device::{self, DeviceJob};
use crate::error::BenchError;

/// Every page matched its sum.
pub const EXIT_CLEAN: u8 = 0;
/// Some page is corrupt.
pub const EXIT_CORRUPT: u8 = 3;
/// No corruption, but torn overwrites the caller must acknowledge or rewrite.
pub const EXIT_TORN: u8 = 4;

/// What the output says about torn overwrites, wherever they are counted.
pub const TORN_NOTE: &str = "torn overwrites are caller-owned, not an error of the store: \
                             the caller acknowledges them (Transaction::acknowledge) or \
                             rewrites them";

/// `keel-bench scrub`: check every mapped page of a store against its checksum.
#[derive(Debug, Args)]
pub struct ScrubArgs {
    /// The store.
    #[command(flatten)]
    pub store: StoreFileArgs,

    /// Also write the report as JSON to this file (the table still goes to stdout).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

impl ScrubArgs {
    /// Checks what clap does not.
    pub fn check(&self) -> Result<(), String> {
        self.store.check("scrub")
    }
}

/// Recovers the store at `args.store.path` and scrubs it.
pub fn run(args: &ScrubArgs) -> Result<ScrubOutput, BenchError> {
    let cfg = ShardConfig::default();
    let transfer = cfg.io_buf_bytes.max(cfg.journal_buf_bytes) as u32;
    let device = args.store.device();
    let mut out = device::open(&device, &FSCK_DEVICE, 0, transfer, ScrubJob { cfg })?;
    out.path = args.store.path.display().to_string();
    Ok(out)
}

struct ScrubJob {
    cfg: ShardConfig,
}

impl DeviceJob for ScrubJob {
    type Output = ScrubOutput;

    fn run<D: BlockDevice + 'static>(self, device: D) -> Result<ScrubOutput, BenchError> {
        let mut store = Store::open(device, self.cfg).map_err(|source| BenchError::Store {
            what: "open (and recover) the store",
            source,
        })?;
        let report = store.scrub().map_err(|source| BenchError::Store {
            what: "scrub the store",
            source,
        })?;
        let ranges = |list: &[BadRange], kind| list.iter().map(|r| Range::of(r, kind)).collect();
        Ok(ScrubOutput {
            bench: "scrub",
            path: String::new(),
            mode: store.mode().as_str(),
            shards: store.replay_reports().len() as u64,
            pages: report.pages,
            clean: report.clean,
            skipped: report.skipped,
            torn_pages: report.torn_pages(),
            corrupt_pages: report.corrupt_pages(),
            torn: ranges(&report.torn, "torn"),
            corrupt: ranges(&report.corrupt, "corrupt"),
        })
    }
}

/// A run of bad pages of one object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Range {
    /// "corrupt" or "torn".
    pub kind: &'static str,
    /// The object's collection.
    pub coll: u64,
    /// The object's name, non-printable bytes escaped (`\xNN`).
    pub object: String,
    /// First byte of the range (page aligned).
    pub offset: u64,
    /// Bytes in the range (whole pages).
    pub len: u64,
}

impl Range {
    fn of(r: &BadRange, kind: &'static str) -> Range {
        Range {
            kind,
            coll: r.key.coll,
            object: r.key.name.escape_ascii().to_string(),
            offset: r.offset,
            len: r.len,
        }
    }
}

/// What scrub found. Serialised as is for `--json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ScrubOutput {
    /// Which command: "scrub".
    pub bench: &'static str,
    /// The file or block device.
    pub path: String,
    /// The store's journal mode.
    pub mode: &'static str,
    /// Shards.
    pub shards: u64,
    /// Pages read and checked.
    pub pages: u64,
    /// Of which matched their sums.
    pub clean: u64,
    /// Pages skipped because a write to them was in flight (none on a store opened for
    /// scrub alone).
    pub skipped: u64,
    /// Pages inside torn overwrites.
    pub torn_pages: u64,
    /// Corrupt pages.
    pub corrupt_pages: u64,
    /// Torn overwrites, by object and range: caller-owned, see [`TORN_NOTE`].
    pub torn: Vec<Range>,
    /// Corruption, by object and range.
    pub corrupt: Vec<Range>,
}

/// What a scrub's findings amount to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every page matched its sum.
    Clean,
    /// No corruption, but torn overwrites (caller-owned).
    Torn,
    /// Some page is corrupt.
    Corrupt,
}

impl Verdict {
    /// The name the JSON carries.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Clean => "clean",
            Verdict::Torn => "torn",
            Verdict::Corrupt => "corrupt",
        }
    }

    /// The process's exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Clean => EXIT_CLEAN,
            Verdict::Torn => EXIT_TORN,
            Verdict::Corrupt => EXIT_CORRUPT,
        }
    }
}

/// The output with its verdict and exit code, as the JSON carries them.
#[derive(Serialize)]
struct Json<'a> {
    #[serde(flatten)]
    out: &'a ScrubOutput,
    verdict: &'static str,
    exit_code: u8,
}

impl ScrubOutput {
    /// What the findings amount to: corruption wins over torn overwrites.
    pub fn verdict(&self) -> Verdict {
        if !self.corrupt.is_empty() {
            Verdict::Corrupt
        } else if !self.torn.is_empty() {
            Verdict::Torn
        } else {
            Verdict::Clean
        }
    }

    /// The process's exit code: [`EXIT_CLEAN`], [`EXIT_CORRUPT`] or [`EXIT_TORN`].
    pub fn exit_code(&self) -> u8 {
        self.verdict().exit_code()
    }

    /// What to say on stderr besides the table: None when clean.
    pub fn finding(&self) -> Option<String> {
        match self.verdict() {
            Verdict::Corrupt => Some(format!(
                "scrub found corruption: {} page(s) in {} range(s) of {}",
                self.corrupt_pages,
                self.corrupt.len(),
                self.path
            )),
            Verdict::Torn => Some(format!(
                "scrub found {} torn overwrite range(s) in {} and no corruption; {TORN_NOTE}",
                self.torn.len(),
                self.path
            )),
            Verdict::Clean => None,
        }
    }

    /// The output as one line of JSON, with its verdict and exit code.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(&Json {
            out: self,
            verdict: self.verdict().as_str(),
            exit_code: self.exit_code(),
        })
    }

    /// The output for people.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        let headline = match self.verdict() {
            Verdict::Clean => "clean".to_owned(),
            Verdict::Corrupt => format!(
                "CORRUPT: {} page{} in {} range{}",
                self.corrupt_pages,
                plural(self.corrupt_pages as usize),
                self.corrupt.len(),
                plural(self.corrupt.len())
            ),
            Verdict::Torn => format!(
                "no corruption; {} torn overwrite range{}",
                self.torn.len(),
                plural(self.torn.len())
            ),
        };
        let _ = writeln!(out, "scrub {}: {headline}", self.path);
        let _ = writeln!(out, "  mode      {}", self.mode);
        let _ = writeln!(out, "  shards    {}", self.shards);
        let _ = writeln!(out, "  pages     {} checked", self.pages);
        let _ = writeln!(out, "  clean     {}", self.clean);
        let _ = writeln!(out, "  skipped   {} (being written)", self.skipped);
        let _ = writeln!(
            out,
            "  torn      {} pages in {} ranges (caller-owned)",
            self.torn_pages,
            self.torn.len()
        );
        let _ = writeln!(
            out,
            "  corrupt   {} pages in {} ranges",
            self.corrupt_pages,
            self.corrupt.len()
        );
        let bad: Vec<&Range> = self.corrupt.iter().chain(&self.torn).collect();
        if !bad.is_empty() {
            let width = bad
                .iter()
                .map(|r| object_cell(r).chars().count())
                .max()
                .unwrap_or(0)
                .max("object".len());
            let _ = writeln!(out, "  {:<width$}  {:<25}  kind", "object", "bytes");
            for r in bad {
                let bytes = format!("{}..{}", r.offset, r.offset + r.len);
                let _ = writeln!(out, "  {:<width$}  {bytes:<25}  {}", object_cell(r), r.kind);
            }
        }
        if !self.torn.is_empty() {
            let _ = writeln!(out, "note: {TORN_NOTE}.");
        }
        out
    }
}

/// An object as the table names it: collection/name.
fn object_cell(r: &Range) -> String {
    format!("{}/{}", r.coll, r.object)
}

/// Runs `keel-bench scrub`: the table on stdout, the JSON to --json's file, what was
/// found on stderr; the exit code says what was found.
pub fn main(args: &ScrubArgs) -> Result<ExitCode, BenchError> {
    let out = run(args)?;
    print!("{}", out.table());
    if let Some(path) = &args.json {
        std::fs::write(path, out.to_json()? + "\n").map_err(|source| BenchError::File {
            what: "write",
            path: path.clone(),
            source,
        })?;
    }
    if let Some(finding) = out.finding() {
        eprintln!("keel-bench: {finding}");
    }
    Ok(ExitCode::from(out.exit_code()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(corrupt: &[(&str, u64)], torn: &[(&str, u64)]) -> ScrubOutput {
        let ranges = |list: &[(&str, u64)], kind| {
            list.iter()
                .map(|&(object, offset)| Range {
                    kind,
                    coll: 1,
                    object: object.into(),
                    offset,
                    len: 4096,
                })
                .collect::<Vec<_>>()
        };
        let torn = ranges(torn, "torn");
        let corrupt = ranges(corrupt, "corrupt");
        ScrubOutput {
            bench: "scrub",
            path: "/tmp/s.img".into(),
            mode: "metadata-only",
            shards: 1,
            pages: 10,
            clean: 10 - torn.len() as u64 - corrupt.len() as u64,
            skipped: 0,
            torn_pages: torn.len() as u64,
            corrupt_pages: corrupt.len() as u64,
            torn,
            corrupt,
        }
    }

    #[test]
    fn the_verdict_tells_corruption_from_torn_overwrites() {
        let clean = output(&[], &[]);
        assert_eq!((clean.verdict(), clean.exit_code()), (Verdict::Clean, 0));
        assert_eq!(clean.finding(), None);
        assert!(clean.table().starts_with("scrub /tmp/s.img: clean\n"));

        let torn = output(&[], &[("log7", 8192)]);
        assert_eq!((torn.verdict(), torn.exit_code()), (Verdict::Torn, 4));
        let finding = torn.finding().unwrap();
        assert!(finding.contains("caller-owned"), "{finding}");
        let text = torn.table();
        assert!(text.contains("  1/log7  "), "{text}");
        assert!(text.contains("8192..12288"), "{text}");
        assert!(
            text.contains("note: torn overwrites are caller-owned"),
            "{text}"
        );

        // Corruption wins over torn ranges.
        let both = output(&[("obj1", 0)], &[("log7", 8192)]);
        assert_eq!((both.verdict(), both.exit_code()), (Verdict::Corrupt, 3));
        let text = both.table();
        assert!(text.starts_with("scrub /tmp/s.img: CORRUPT: 1 page in 1 range\n"));
        let lines: Vec<&str> = text.lines().collect();
        let at = lines.iter().position(|l| l.contains("object")).unwrap();
        assert!(lines[at + 1].contains("1/obj1") && lines[at + 1].ends_with("corrupt"));
        assert!(lines[at + 2].contains("1/log7") && lines[at + 2].ends_with("torn"));
    }

    #[test]
    fn json_carries_the_ranges_the_verdict_and_the_exit_code() {
        let v: serde_json::Value =
            serde_json::from_str(&output(&[("obj\u{1}", 4096)], &[]).to_json().unwrap()).unwrap();
        assert_eq!(v["verdict"], "corrupt");
        assert_eq!(v["exit_code"], 3);
        assert_eq!(v["corrupt_pages"], 1);
        assert_eq!(v["corrupt"][0]["object"], "obj\u{1}");
        assert_eq!(v["corrupt"][0]["offset"], 4096);
        assert_eq!(v["corrupt"][0]["len"], 4096);
        for key in ["pages", "clean", "skipped", "torn_pages", "torn", "mode"] {
            assert!(v.get(key).is_some(), "{key} in {v}");
        }
        let name = Range::of(
            &BadRange {
                key: keel_engine::ObjKey::new(2, b"a\xffb".to_vec()),
                offset: 0,
                len: 4096,
            },
            "corrupt",
        );
        assert_eq!(name.object, "a\\xffb", "non-printable bytes are escaped");
    }
}
