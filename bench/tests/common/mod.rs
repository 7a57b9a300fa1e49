//! Running the built `keel-bench` binary and reading its JSON, for the end-to-end tests.

use std::process::{Command, Output};

use serde_json::Value;

/// Runs `keel-bench <args>` and returns what it did.
pub fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel-bench"))
        .args(args)
        .output()
        .expect("run keel-bench")
}

/// Checks that a `--json` run succeeded and parses its one JSON object.
pub fn parse_json(out: &Output, args: &[&str]) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "keel-bench {args:?} failed ({}): {stderr}",
        out.status
    );
    assert_eq!(stdout.lines().count(), 1, "one JSON line: {stdout}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("bad JSON ({e}): {stdout}"))
}

/// Runs `keel-bench <args> --json`, checks it succeeded, and parses its one JSON object.
pub fn bench_json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    parse_json(&bench(&all), &all)
}

/// An integer field.
pub fn u(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not an integer in {v}"))
}

/// A number field.
pub fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}
