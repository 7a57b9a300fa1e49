//! Tests of the command line (cli.rs).

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
    let Command::Raw(raw) = parse(&["raw", "--driver", "null"]).unwrap().command else {
        panic!("not raw");
    };
    assert_eq!(raw.device.size(&RAW_DEVICE), Some(1 << 30));
    assert!(!raw.device.sim_write_cache(&RAW_DEVICE));
    assert_eq!(raw.device.sim_parallelism, 0);
    assert_eq!(raw.bs, 4096);
    assert_eq!(raw.qd, 32);
    assert_eq!(raw.workload, Workload::Randread);
    assert_eq!(raw.measure.stop(), Stop::Seconds(DEFAULT_SECONDS));
    assert_eq!(raw.device.sim_latency_us, 10);
    assert!(raw.check().is_ok());
}

fn engine(args: &[&str]) -> EngineArgs {
    let all: Vec<&str> = ["engine"].iter().chain(args).copied().collect();
    match parse(&all).unwrap().command {
        Command::Engine(e) => e,
        other => panic!("not engine: {other:?}"),
    }
}

#[test]
fn engine_defaults() {
    let e = engine(&["--driver", "sim", "--mode", "metadata-only"]);
    assert_eq!(e.device.size(&ENGINE_DEVICE), Some(256 << 20));
    assert!(e.device.sim_write_cache(&ENGINE_DEVICE));
    assert_eq!(ENGINE_DEVICE.block_size, 512);
    assert_eq!(e.mode, Mode::MetadataOnly);
    assert_eq!(JournalMode::from(e.mode), JournalMode::MetadataOnly);
    assert_eq!(e.workload, EngineWorkload::Randwrite);
    assert_eq!((e.bs, e.qd, e.objects), (4096, 32, 1024));
    assert_eq!(e.object_size, None);
    assert_eq!(e.measure.stop(), Stop::Seconds(DEFAULT_SECONDS));
    assert_eq!((e.parallel_commit, e.intents), (Switch::On, Switch::On));
    assert_eq!(e.device.sim_atomic_write_blocks, 1);
    assert!(!e.device.sim_prefault);
    assert!(e.check().is_ok());

    let e = engine(&[
        "--driver",
        "sim",
        "--mode",
        "metadata-only",
        "--parallel-commit",
        "off",
        "--intents",
        "off",
        "--sim-atomic-write-blocks",
        "8",
        "--sim-prefault",
    ]);
    assert!(!e.parallel_commit.is_on() && !e.intents.is_on());
    assert_eq!(e.device.sim_atomic_write_blocks, 8);
    assert!(e.device.sim_prefault);
    assert!(parse(&[
        "engine",
        "--driver",
        "sim",
        "--mode",
        "full",
        "--intents",
        "x"
    ])
    .is_err());
    assert!(parse(&[
        "engine",
        "--driver",
        "sim",
        "--mode",
        "full",
        "--sim-atomic-write-blocks",
        "0"
    ])
    .is_err());

    let e = engine(&[
        "--driver",
        "sim",
        "--mode",
        "full",
        "--workload",
        "mixed",
        "--ops",
        "7",
        "--sim-write-cache=false",
        "--sim-parallelism",
        "4",
    ]);
    assert_eq!(e.mode, Mode::Full);
    assert_eq!(e.workload, EngineWorkload::Mixed);
    assert_eq!(e.measure.stop(), Stop::Ops(7));
    assert!(!e.device.sim_write_cache(&ENGINE_DEVICE));
    assert_eq!(e.device.sim_parallelism, 4);
    let e = engine(&["--driver", "sim", "--mode", "full", "--sim-write-cache"]);
    assert!(e.device.sim_write_cache(&RAW_DEVICE));
}

#[test]
fn engine_usage_errors() {
    // --mode is required; qd is at most 1024.
    assert!(parse(&["engine", "--driver", "sim"]).is_err());
    assert!(parse(&["engine", "--driver", "sim", "--mode", "x"]).is_err());
    assert!(parse(&["engine", "--driver", "sim", "--mode", "full", "--qd", "2000"]).is_err());
    let checked = |args: &[&str]| engine(args).check();
    let null = checked(&["--driver", "null", "--mode", "full"]).unwrap_err();
    assert!(null.contains("null driver stores nothing"), "{null}");
    let odd = checked(&[
        "--driver",
        "sim",
        "--mode",
        "full",
        "--bs",
        "8k",
        "--object-size",
        "12k",
    ]);
    assert!(odd.unwrap_err().contains("multiple of --bs"));
    assert!(checked(&["--driver", "sim", "--mode", "full", "--bs", "1000"]).is_err());
}

#[test]
fn crash_and_fsck_arguments() {
    let Command::Crash(c) = parse(&["crash", "--mode", "full"]).unwrap().command else {
        panic!("not crash");
    };
    assert_eq!((c.seed, c.cycles, c.first_cycle), (0, 100, 0));
    assert!(parse(&["crash", "--mode", "full", "--cycles", "0"]).is_err());
    assert!(parse(&["crash"]).is_err());

    let fsck = |args: &[&str]| {
        let all: Vec<&str> = ["fsck"].iter().chain(args).copied().collect();
        parse(&all)
    };
    assert!(fsck(&["--driver", "psync"]).is_err(), "--path is required");
    let cli = fsck(&["--driver", "psync", "--path", "/tmp/x"]).unwrap();
    assert!(cli.check().is_ok());
    let Command::Fsck(f) = cli.command else {
        panic!("not fsck");
    };
    assert_eq!(f.store.device().size(&FSCK_DEVICE), None, "opened as it is");
    let sim = fsck(&["--driver", "sim", "--path", "/tmp/x"])
        .unwrap()
        .check();
    assert!(sim.unwrap_err().contains("keeps nothing"));
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
    assert!(checked(&["raw", "--driver", "null", "--fua"])
        .unwrap_err()
        .contains("--fua is for writes"));
    assert!(checked(&["raw", "--driver", "null", "--fua", "--workload", "seqwrite"]).is_ok());
    assert!(checked(&["raw", "--driver", "null", "--group-flush"])
        .unwrap_err()
        .contains("--group-flush is for writes"));
    let gf = [
        "raw",
        "--driver",
        "null",
        "--group-flush",
        "--workload",
        "randwrite",
    ];
    assert!(checked(&gf).is_ok());
    // A write is either durable on completion or waits for a flush, not both.
    assert!(parse(&[&gf[..], &["--fua"]].concat()).is_err());
}
