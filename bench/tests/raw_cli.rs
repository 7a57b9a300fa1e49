//! `keel-bench raw` end to end: the built binary on each driver that needs no hardware,
//! its JSON, its exit codes and its messages.

mod common;

use std::path::Path;

use common::{bench, bench_json, f, parse_json, u};
use serde_json::Value;

/// Runs `keel-bench raw <args> --json`, checks it succeeded, and parses its one JSON object.
fn raw_json(args: &[&str]) -> Value {
    let mut all = vec!["raw"];
    all.extend_from_slice(args);
    bench_json(&all)
}

/// The checks every successful run must pass: the figures add up.
fn check_consistent(v: &Value, ops: u64, bs: u64, writes: bool) {
    assert_eq!(u(v, "ops"), ops, "{v}");
    assert_eq!(u(v, "bs"), bs, "{v}");
    assert!(f(v, "iops") > 0.0, "{v}");
    assert!(f(v, "seconds") > 0.0, "{v}");
    let iops = ops as f64 / f(v, "seconds");
    assert!((f(v, "iops") - iops).abs() <= 1e-6 * iops, "{v}");
    let (done, other) = if writes {
        ("write", "read")
    } else {
        ("read", "write")
    };
    assert_eq!(u(v, &format!("device_{done}_cmds")), ops, "{v}");
    assert_eq!(u(v, &format!("device_{other}_cmds")), 0, "{v}");
    let bytes_key = if writes {
        "device_bytes_written"
    } else {
        "device_bytes_read"
    };
    assert_eq!(u(v, bytes_key), ops * bs, "{v}");
    assert_eq!(u(v, "device_errors"), 0, "{v}");
    let lat = &v["lat_us"];
    let p = |k: &str| {
        lat[k]
            .as_f64()
            .unwrap_or_else(|| panic!("lat_us.{k} in {v}"))
    };
    assert!(
        p("p50") <= p("p99") && p("p99") <= p("p999") && p("p999") <= p("max"),
        "{v}"
    );
    assert!(p("max") > 0.0 && p("mean") > 0.0, "{v}");
    assert!(
        f(v, "cpu_seconds") >= 0.0 && f(v, "cpu_us_per_op") >= 0.0,
        "{v}"
    );
}

#[test]
fn null_randread() {
    let v = raw_json(&["--driver", "null", "--ops", "2000", "--qd", "8"]);
    assert_eq!(v["driver"], "null");
    assert_eq!(v["workload"], "randread");
    assert_eq!(u(&v, "qd"), 8);
    check_consistent(&v, 2000, 4096, false);
}

#[test]
fn null_randwrite_and_seqwrite() {
    for workload in ["randwrite", "seqwrite"] {
        let v = raw_json(&[
            "--driver",
            "null",
            "--ops",
            "2000",
            "--qd",
            "8",
            "--bs",
            "16k",
            "--workload",
            workload,
        ]);
        assert_eq!(v["workload"], workload);
        check_consistent(&v, 2000, 16384, true);
    }
}

#[test]
fn sim_latency_shows_in_the_percentiles() {
    for (workload, writes) in [("randwrite", true), ("randread", false)] {
        let v = raw_json(&[
            "--driver",
            "sim",
            "--size",
            "64m",
            "--ops",
            "500",
            "--qd",
            "4",
            "--sim-latency-us",
            "50",
            "--workload",
            workload,
        ]);
        check_consistent(&v, 500, 4096, writes);
        let p50 = v["lat_us"]["p50"].as_f64().unwrap();
        assert!(p50 >= 50.0, "sim latency is 50 µs, p50 {p50}: {v}");
        // 4 in flight, each at least 50 µs: at most 80k commands a second.
        assert!(f(&v, "iops") <= 80_000.0 * 1.01, "{v}");
    }
}

#[test]
fn a_duration_run_stops_on_time() {
    let v = raw_json(&[
        "--driver",
        "sim",
        "--size",
        "16m",
        "--seconds",
        "0.3",
        "--qd",
        "2",
    ]);
    let secs = f(&v, "seconds");
    assert!((0.3..1.0).contains(&secs), "{v}");
    assert!(u(&v, "ops") > 0, "{v}");
}

fn blocks_written(path: &Path) -> usize {
    let data = std::fs::read(path).unwrap();
    data.chunks(4096)
        .filter(|b| b.iter().any(|&x| x != 0))
        .count()
}

#[test]
fn psync_on_a_temp_file_creates_it_and_writes_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dev.img");
    let p = path.to_str().unwrap();
    let v = raw_json(&[
        "--driver",
        "psync",
        "--path",
        p,
        "--size",
        "8m",
        "--ops",
        "200",
        "--qd",
        "4",
        "--workload",
        "randwrite",
    ]);
    check_consistent(&v, 200, 4096, true);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 8 << 20);
    // 200 random 4 KiB writes over 2048 blocks land on well over 150 distinct blocks.
    let written = blocks_written(&path);
    assert!((150..=200).contains(&written), "{written} blocks hold data");

    let v = raw_json(&[
        "--driver", "psync", "--path", p, "--ops", "200", "--qd", "1", "--size", "8m",
    ]);
    check_consistent(&v, 200, 4096, false);
}

#[test]
fn uring_on_a_temp_file_creates_it_and_writes_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dev.img");
    let p = path.to_str().unwrap();
    let args = [
        "raw",
        "--driver",
        "uring",
        "--path",
        p,
        "--size",
        "8m",
        "--ops",
        "300",
        "--qd",
        "16",
        "--workload",
        "randwrite",
        "--json",
    ];
    let out = bench(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Kernels built without io_uring, or sandboxes that forbid it, refuse io_uring_setup.
    if !out.status.success()
        && stderr.contains("open the uring device")
        && (stderr.contains("Function not implemented")
            || stderr.contains("Operation not permitted"))
    {
        eprintln!("skipped: io_uring is not available here: {stderr}");
        return;
    }
    let v = parse_json(&out, &args);
    assert_eq!(v["driver"], "uring");
    check_consistent(&v, 300, 4096, true);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 8 << 20);
    // 300 random 4 KiB writes over 2048 blocks land on well over 250 distinct blocks.
    let written = blocks_written(&path);
    assert!((250..=300).contains(&written), "{written} blocks hold data");

    let v = raw_json(&[
        "--driver", "uring", "--path", p, "--ops", "300", "--qd", "16", "--size", "8m",
    ]);
    check_consistent(&v, 300, 4096, false);
}

#[test]
fn a_transfer_that_is_not_a_block_multiple_is_a_usage_error() {
    let out = bench(&["raw", "--driver", "null", "--bs", "1000", "--ops", "10"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--bs 1000"), "{stderr}");
    assert!(stderr.contains("multiple of 512"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn a_transfer_smaller_than_the_device_block_fails_with_a_message() {
    let out = bench(&[
        "raw",
        "--driver",
        "sim",
        "--size",
        "1m",
        "--block-size",
        "8k",
        "--bs",
        "4k",
        "--ops",
        "10",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim(),
        "keel-bench: --bs 4096 is not a multiple of the device's 8192-byte block"
    );
}

#[test]
fn an_open_failure_names_the_driver_and_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("dev.img");
    let out = bench(&[
        "raw",
        "--driver",
        "psync",
        "--path",
        path.to_str().unwrap(),
        "--ops",
        "10",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("keel-bench: open the psync device: "),
        "{stderr}"
    );
    assert!(stderr.contains("No such file or directory"), "{stderr}");
}

#[test]
fn bad_arguments_exit_2() {
    for args in [
        &["raw"][..],
        &["raw", "--driver", "floppy"],
        &["raw", "--driver", "uring"],
        &["raw", "--driver", "null", "--size", "1q"],
        &["raw", "--driver", "null", "--ops", "5", "--seconds", "1"],
        &["raw", "--driver", "null", "--sqpoll"],
        &["bogus"],
    ] {
        let out = bench(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}");
    }
}

#[test]
fn without_json_it_prints_a_table() {
    let out = bench(&["raw", "--driver", "null", "--ops", "100", "--qd", "2"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with("driver") && lines[0].contains("iops"),
        "{text}"
    );
    assert!(
        lines[0].contains("p99.9 µs") && lines[0].contains("cpu µs/op"),
        "{text}"
    );
    let cells: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&cells[..4], &["null", "randread", "4k", "2"], "{text}");
}
