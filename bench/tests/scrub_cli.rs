//! `keel-bench scrub` end to end: a store on a temporary file, written through the engine
//! with psync, then scrubbed by the built binary, clean and after a byte of a data page
//! was flipped in the file behind the store's back.

// Not every helper is used here.
#[allow(dead_code)]
mod common;

use std::path::Path;
use std::process::Output;

use common::{bench, u};
use keel_drivers::psync::{PsyncConfig, PsyncDevice};
use keel_engine::{JournalMode, MkfsOptions, ShardConfig, Store, Transaction, PAGE};
use serde_json::Value;

const COLL: u64 = 1;
/// Where the victim's data starts in the object: its third page.
const VICTIM_OFFSET: u64 = 2 * PAGE;
/// Pages of the victim.
const VICTIM_PAGES: usize = 3;

/// Page `i` of the victim: bytes no other page of the file holds.
fn victim_page(i: usize) -> Vec<u8> {
    let mut page = vec![0u8; PAGE as usize];
    fastrand::Rng::with_seed(0x5c2b + i as u64).fill(&mut page);
    page
}

/// A MetadataOnly store on a new 64 MiB file at `path`, holding `victim` (three pages of
/// distinct bytes at VICTIM_OFFSET) and `other` (one page), closed cleanly.
fn make_store(path: &Path) {
    let mut cfg = PsyncConfig::new(path);
    cfg.create_bytes = Some(64 << 20);
    let shard = ShardConfig::default();
    cfg.max_transfer_bytes = shard.io_buf_bytes.max(shard.journal_buf_bytes) as u32;
    let dev = PsyncDevice::open(&cfg).unwrap();
    Store::mkfs(&dev, &MkfsOptions::new(JournalMode::MetadataOnly)).unwrap();
    let mut store = Store::open(dev, shard).unwrap();
    let mut t = Transaction::new();
    t.mkcoll(COLL);
    store.submit_sync(t).unwrap();
    let data: Vec<u8> = (0..VICTIM_PAGES).flat_map(victim_page).collect();
    let mut t = Transaction::new();
    t.write(COLL, "victim", VICTIM_OFFSET, data);
    t.write(COLL, "other", 0, vec![0xa5; PAGE as usize]);
    store.submit_sync(t).unwrap();
    store.close().unwrap();
}

/// XORs one byte in the middle of the file's copy of victim page `i`.
fn flip_victim_page(path: &Path, i: usize) {
    let mut image = std::fs::read(path).unwrap();
    let page = victim_page(i);
    let at: Vec<usize> = image
        .chunks_exact(PAGE as usize)
        .enumerate()
        .filter(|(_, p)| *p == page.as_slice())
        .map(|(n, _)| n * PAGE as usize)
        .collect();
    assert_eq!(at.len(), 1, "the page is in the file once: {at:?}");
    image[at[0] + 1000] ^= 0x10;
    std::fs::write(path, image).unwrap();
}

/// Runs `keel-bench scrub` on the store with --json; returns the run and the JSON.
fn scrub(path: &Path, json: &Path) -> (Output, Value) {
    let out = bench(&[
        "scrub",
        "--driver",
        "psync",
        "--path",
        path.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(json)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad JSON ({e}): {text}"));
    (out, v)
}

#[test]
fn a_clean_store_exits_0_and_a_flipped_byte_is_reported_by_object_and_range() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.img");
    let json = dir.path().join("scrub.json");
    make_store(&path);

    let (out, v) = scrub(&path, &json);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert_eq!(v["verdict"], "clean", "{v}");
    assert_eq!(u(&v, "exit_code"), 0, "{v}");
    assert_eq!(v["mode"], "metadata-only", "{v}");
    assert_eq!(u(&v, "pages"), VICTIM_PAGES as u64 + 1, "{v}");
    assert_eq!(u(&v, "clean"), VICTIM_PAGES as u64 + 1, "{v}");
    assert_eq!((u(&v, "corrupt_pages"), u(&v, "torn_pages")), (0, 0), "{v}");
    assert!(
        stdout.starts_with(&format!("scrub {}: clean\n", path.display())),
        "{stdout}"
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    flip_victim_page(&path, 1);
    let (out, v) = scrub(&path, &json);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stdout}{stderr}");
    assert_eq!(v["verdict"], "corrupt", "{v}");
    assert_eq!(u(&v, "exit_code"), 3, "{v}");
    assert_eq!(u(&v, "corrupt_pages"), 1, "{v}");
    assert_eq!(u(&v, "clean"), VICTIM_PAGES as u64, "{v}");
    let corrupt = v["corrupt"].as_array().unwrap();
    assert_eq!(corrupt.len(), 1, "{v}");
    let bad = &corrupt[0];
    assert_eq!(bad["kind"], "corrupt", "{v}");
    assert_eq!(u(bad, "coll"), COLL, "{v}");
    assert_eq!(bad["object"], "victim", "{v}");
    assert_eq!(u(bad, "offset"), VICTIM_OFFSET + PAGE, "{v}");
    assert_eq!(u(bad, "len"), PAGE, "{v}");
    assert!(v["torn"].as_array().unwrap().is_empty(), "{v}");
    // For people: the headline, the range and what kind it is.
    assert!(
        stdout.contains(": CORRUPT: 1 page in 1 range\n"),
        "{stdout}"
    );
    let range = format!("{}..{}", VICTIM_OFFSET + PAGE, VICTIM_OFFSET + 2 * PAGE);
    let line = stdout
        .lines()
        .find(|l| l.contains("1/victim"))
        .unwrap_or_else(|| panic!("no range line: {stdout}"));
    assert!(line.contains(&range) && line.ends_with("corrupt"), "{line}");
    assert!(stdout.contains("caller-owned"), "{stdout}");
    assert!(
        stderr.contains("scrub found corruption: 1 page(s) in 1 range(s)"),
        "{stderr}"
    );
}

#[test]
fn scrub_needs_a_store_file() {
    for args in [
        &["scrub", "--driver", "sim", "--path", "/tmp/x"][..],
        &["scrub", "--driver", "psync"][..],
    ] {
        let out = bench(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zeros.img");
    std::fs::write(&path, vec![0u8; 1 << 20]).unwrap();
    let out = bench(&[
        "scrub",
        "--driver",
        "psync",
        "--path",
        path.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("keel-bench: open (and recover) the store: "),
        "{stderr}"
    );
}
