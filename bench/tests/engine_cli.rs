//! `keel-bench engine`, `crash` and `fsck` end to end: the built binary on the sim device
//! and on a temporary file, its JSON, its exit codes and its messages.

mod common;

use common::{bench, bench_json, f, u};
use serde_json::Value;

/// Runs `keel-bench engine <args> --json` and parses its one JSON object.
fn engine_json(args: &[&str]) -> Value {
    let mut all = vec!["engine"];
    all.extend_from_slice(args);
    bench_json(&all)
}

/// The checks every successful engine run must pass: the figures add up.
fn check_consistent(v: &Value, ops: u64) {
    assert_eq!(v["bench"], "engine");
    assert_eq!(u(v, "ops"), ops, "{v}");
    assert!(f(v, "seconds") > 0.0, "{v}");
    let iops = ops as f64 / f(v, "seconds");
    assert!((f(v, "iops") - iops).abs() <= 1e-6 * iops, "{v}");
    let lat = |k: &str| {
        v["lat_us"][k]
            .as_f64()
            .unwrap_or_else(|| panic!("lat_us.{k} in {v}"))
    };
    assert!(
        lat("p50") <= lat("p99") && lat("p99") <= lat("p999") && lat("p999") <= lat("max"),
        "{v}"
    );
    assert!(lat("p50") > 0.0, "{v}");
    let (client, device) = (u(v, "client_bytes_written"), u(v, "device_bytes_written"));
    assert!(client > 0 && device >= client, "{v}");
    let wa = device as f64 / client as f64;
    assert!((f(v, "write_amplification") - wa).abs() < 1e-9, "{v}");
    let per_txn = u(v, "device_write_cmds") as f64 / ops as f64;
    assert!(
        (f(v, "device_writes_per_client_write") - per_txn).abs() < 1e-9,
        "{v}"
    );
    assert!(
        u(v, "batches") > 0 && f(v, "avg_batch_entries") >= 1.0,
        "{v}"
    );
    assert!(u(v, "journal_bytes_written") <= device, "{v}");
    assert!(f(v, "cpu_us_per_op") >= 0.0, "{v}");
}

const RANDWRITE_QD32: [&str; 12] = [
    "--driver",
    "sim",
    "--workload",
    "randwrite",
    "--bs",
    "4k",
    "--qd",
    "32",
    "--ops",
    "3000",
    "--mode",
    "",
];

fn randwrite_qd32(mode: &str) -> Value {
    let mut args = RANDWRITE_QD32;
    args[11] = mode;
    engine_json(&args)
}

#[test]
fn metadata_only_writes_data_once_and_a_shared_journal_batch() {
    let v = randwrite_qd32("metadata-only");
    check_consistent(&v, 3000);
    assert_eq!(v["mode"], "metadata-only");
    assert_eq!(v["driver"], "sim");
    assert_eq!(u(&v, "block_size"), 512, "sim defaults to 512-byte blocks");
    assert_eq!(u(&v, "client_bytes_written"), 3000 * 4096, "{v}");
    let wa = f(&v, "write_amplification");
    assert!((1.0..=1.10).contains(&wa), "write amplification {wa}: {v}");
    let per_txn = f(&v, "device_writes_per_client_write");
    assert!(
        per_txn <= 1.10,
        "{per_txn} device writes per transaction: {v}"
    );
    // Random 4 KiB writes into 64 KiB objects: first writes of a page commit in parallel
    // (record and data at once), rewrites write their record first (the intent).
    assert!(u(&v, "parallel_txns") > 0 && u(&v, "intents") > 0, "{v}");
}

#[test]
fn full_journal_writes_data_twice() {
    let v = randwrite_qd32("full");
    check_consistent(&v, 3000);
    assert_eq!(v["mode"], "full");
    let wa = f(&v, "write_amplification");
    assert!(wa >= 1.9, "write amplification {wa}: {v}");
    // The data goes through the journal queue pair, then home.
    assert!(u(&v, "journal_bytes_written") >= 3000 * 4096, "{v}");
}

#[test]
fn every_workload_runs_on_sim() {
    for workload in ["overwrite", "append", "create", "mixed"] {
        let v = engine_json(&[
            "--driver",
            "sim",
            "--size",
            "64m",
            "--mode",
            "metadata-only",
            "--workload",
            workload,
            "--qd",
            "8",
            "--ops",
            "500",
            "--objects",
            "64",
        ]);
        check_consistent(&v, 500);
        assert_eq!(v["workload"], workload);
        if workload == "overwrite" {
            assert_eq!(u(&v, "overwrite_pages"), 500, "in place: {v}");
            assert_eq!(u(&v, "fresh_pages"), 0, "{v}");
        }
    }
}

#[test]
fn psync_store_survives_and_passes_fsck() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.img");
    let p = path.to_str().unwrap();
    let v = engine_json(&[
        "--driver",
        "psync",
        "--path",
        p,
        "--size",
        "64m",
        "--mode",
        "metadata-only",
        "--workload",
        "append",
        "--ops",
        "300",
    ]);
    check_consistent(&v, 300);
    assert_eq!(v["driver"], "psync");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 64 << 20);

    let out = bench(&["fsck", "--driver", "psync", "--path", p, "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let fsck: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(fsck["clean"], true, "{fsck}");
    assert_eq!(fsck["mode"], "metadata-only", "{fsck}");
    assert_eq!(u(&fsck, "collections"), 1, "{fsck}");
    // 300 appends over 1024 log objects: most of them hit a different object.
    let objects = u(&fsck, "objects");
    assert!((200..=300).contains(&objects), "{fsck}");
    assert!(u(&fsck, "used_pages") >= objects, "{fsck}");
    assert_eq!(fsck["errors"].as_array().unwrap().len(), 0, "{fsck}");

    // The same, for people.
    let out = bench(&["fsck", "--driver", "psync", "--path", p]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with(&format!("fsck {p}: clean\n")), "{text}");
    assert!(
        text.contains(&format!("objects      {objects}\n")),
        "{text}"
    );
}

#[test]
fn fsck_of_a_file_without_a_store_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zeros.img");
    std::fs::write(&path, vec![0u8; 1 << 20]).unwrap();
    let out = bench(&[
        "fsck",
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
    assert!(out.stdout.is_empty());
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        1 << 20,
        "not extended"
    );
}

#[test]
fn crash_explorer_finds_no_violation() {
    let v = bench_json(&["crash", "--mode", "metadata-only", "--cycles", "20"]);
    assert_eq!(v["bench"], "crash");
    assert_eq!(u(&v, "cycles"), 20, "{v}");
    assert_eq!(u(&v, "violations"), 0, "{v}");
    assert_eq!(u(&v, "acked_lost"), 0, "{v}");
    assert_eq!(v["failures"].as_array().unwrap().len(), 0, "{v}");
    let cuts: u64 = v["crash_points"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert!(cuts >= 20, "a cut per cycle, and some during replay: {v}");
    let classes = v["classes"].as_object().unwrap();
    for class in ["metadata", "append", "overwrite", "truncate", "clone"] {
        let c = &classes[class];
        for key in [
            "acked",
            "unacked_present",
            "unacked_absent",
            "unacked_ambiguous",
        ] {
            assert!(c[key].is_u64(), "classes.{class}.{key} in {v}");
        }
    }
    let acked: u64 = classes.values().map(|c| c["acked"].as_u64().unwrap()).sum();
    assert!(acked > 0, "{v}");
}

#[test]
fn the_null_driver_cannot_hold_a_store() {
    let out = bench(&[
        "engine", "--driver", "null", "--mode", "full", "--ops", "10",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("null driver stores nothing"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["engine", "--driver", "sim"][..],
        &[
            "engine",
            "--driver",
            "sim",
            "--mode",
            "full",
            "--workload",
            "x",
        ],
        &["engine", "--driver", "sim", "--mode", "full", "--qd", "0"],
        &[
            "engine", "--driver", "sim", "--mode", "full", "--bs", "1000",
        ],
        &["crash", "--mode", "full", "--cycles", "0"],
        &["crash"],
        &["fsck", "--driver", "psync"],
        &["fsck", "--driver", "sim", "--path", "/tmp/x"],
        &["fsck", "--driver", "null", "--path", "/tmp/x"],
    ] {
        let out = bench(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}");
    }
}

#[test]
fn objects_too_large_for_the_device_fail_with_a_message() {
    let out = bench(&[
        "engine",
        "--driver",
        "sim",
        "--size",
        "64m",
        "--mode",
        "full",
        "--object-size",
        "4m",
        "--ops",
        "10",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("do not fit in 90%"), "{stderr}");
}

#[test]
fn without_json_it_prints_a_table() {
    let out = bench(&[
        "engine",
        "--driver",
        "sim",
        "--size",
        "32m",
        "--mode",
        "full",
        "--ops",
        "100",
        "--qd",
        "4",
        "--objects",
        "16",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("driver mode"), "{text}");
    assert!(
        lines[0].contains("WA") && lines[0].contains("wr/txn"),
        "{text}"
    );
    let widths: Vec<usize> = lines.iter().map(|l| l.chars().count()).collect();
    assert_eq!(widths[0], widths[1], "{text}");
    let cells: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        &cells[..5],
        &["sim", "full", "randwrite", "4k", "4"],
        "{text}"
    );
}

#[test]
fn the_commit_path_flags_reach_the_store() {
    let run = |workload: &str, flags: &[&str]| {
        let mut args = vec![
            "--driver",
            "sim",
            "--size",
            "64m",
            "--mode",
            "metadata-only",
            "--workload",
            workload,
            "--qd",
            "4",
            "--ops",
            "200",
            "--objects",
            "16",
        ];
        args.extend_from_slice(flags);
        let v = engine_json(&args);
        check_consistent(&v, 200);
        v
    };
    // Appends write fresh pages: in parallel unless told not to.
    let v = run("append", &[]);
    assert_eq!(
        (v["parallel_commit"].clone(), u(&v, "parallel_txns")),
        (true.into(), 200),
        "{v}"
    );
    assert_eq!(f(&v, "parallel_per_txn"), 1.0, "{v}");
    let v = run("append", &["--parallel-commit", "off"]);
    assert_eq!(v["parallel_commit"], false, "{v}");
    assert_eq!(u(&v, "parallel_txns"), 0, "{v}");
    // 4 KiB overwrites on 512-byte blocks, one-block atomic unit: an intent each, unless off.
    let v = run("overwrite", &[]);
    assert_eq!((u(&v, "intents"), u(&v, "parallel_txns")), (200, 0), "{v}");
    assert_eq!(f(&v, "intents_per_txn"), 1.0, "{v}");
    let v = run("overwrite", &["--intents", "off"]);
    assert_eq!(v["overwrite_intents"], false, "{v}");
    assert_eq!((u(&v, "intents"), u(&v, "parallel_txns")), (0, 0), "{v}");
    // A 4 KiB atomic unit: the same path (the unit changes what a cut leaves, not the cost).
    let v = run("overwrite", &["--sim-atomic-write-blocks", "8"]);
    assert_eq!((u(&v, "intents"), u(&v, "parallel_txns")), (200, 0), "{v}");
}
