//! `keel-bench fsck`: opens the store on a file or block device, which recovers it, and
//! checks its metadata and allocator ([`keel_engine::fsck`]).
//!
//! The device is opened as it is: never created, extended or formatted. Beyond what
//! recovery writes, nothing is written: the store is not closed, so no checkpoint is added.

use std::fmt::Write as _;

use keel_drivers::BlockDevice;
use keel_engine::{ShardConfig, Store};
use serde::Serialize;

use crate::cli::{FsckArgs, FSCK_DEVICE};
use crate::device::{self, DeviceJob};
use crate::error::BenchError;

/// Recovers and checks the store at `args.store.path`.
pub fn run(args: &FsckArgs) -> Result<FsckOutput, BenchError> {
    let cfg = ShardConfig::default();
    let transfer = cfg.io_buf_bytes.max(cfg.journal_buf_bytes) as u32;
    let device = args.store.device();
    let mut out = device::open(&device, &FSCK_DEVICE, 0, transfer, FsckJob { cfg })?;
    out.path = args.store.path.display().to_string();
    Ok(out)
}

struct FsckJob {
    cfg: ShardConfig,
}

impl DeviceJob for FsckJob {
    type Output = FsckOutput;

    fn run<D: BlockDevice + 'static>(self, device: D) -> Result<FsckOutput, BenchError> {
        let mut store = Store::open(device, self.cfg).map_err(|source| BenchError::Store {
            what: "open (and recover) the store",
            source,
        })?;
        let report = store.fsck();
        let replay = store.replay_reports();
        Ok(FsckOutput {
            bench: "fsck",
            path: String::new(),
            mode: store.mode().as_str(),
            shards: replay.len() as u64,
            replayed_batches: replay.iter().map(|r| r.batches).sum(),
            replayed_entries: replay.iter().map(|r| r.entries).sum(),
            collections: report.collections,
            objects: report.objects,
            used_pages: report.used_pages,
            clean: report.is_clean(),
            errors: report.errors,
        })
    }
}

/// What fsck found. Serialised as is for `--json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FsckOutput {
    /// Which command: "fsck".
    pub bench: &'static str,
    /// The file or block device.
    pub path: String,
    /// The store's journal mode.
    pub mode: &'static str,
    /// Shards.
    pub shards: u64,
    /// Journal batches recovery replayed.
    pub replayed_batches: u64,
    /// Transaction entries in them.
    pub replayed_entries: u64,
    /// Collections.
    pub collections: u64,
    /// Objects.
    pub objects: u64,
    /// Data pages mapped by objects.
    pub used_pages: u64,
    /// No problem found.
    pub clean: bool,
    /// The problems, one line each.
    pub errors: Vec<String>,
}

impl FsckOutput {
    /// The output as one line of JSON.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// The output for people.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let verdict = if self.clean {
            "clean".to_owned()
        } else {
            format!("{} problem(s)", self.errors.len())
        };
        let _ = writeln!(out, "fsck {}: {verdict}", self.path);
        let _ = writeln!(out, "  mode         {}", self.mode);
        let _ = writeln!(out, "  shards       {}", self.shards);
        let _ = writeln!(
            out,
            "  replayed     {} batches, {} entries",
            self.replayed_batches, self.replayed_entries
        );
        let _ = writeln!(out, "  collections  {}", self.collections);
        let _ = writeln!(out, "  objects      {}", self.objects);
        let _ = writeln!(out, "  used_pages   {}", self.used_pages);
        for e in &self.errors {
            let _ = writeln!(out, "  error: {e}");
        }
        out
    }

    /// Ok when clean; else the problems as an error.
    pub fn verdict(&self) -> Result<(), BenchError> {
        if self.clean {
            Ok(())
        } else {
            Err(BenchError::Fsck(self.errors.clone()))
        }
    }
}
