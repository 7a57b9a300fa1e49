//! Tests of `keel-bench compare` (compare.rs): its contenders, arguments, ratios and
//! file preparation.

use super::*;

fn try_args(extra: &[&str]) -> Result<CompareArgs, String> {
    let mut argv = vec!["compare".to_owned()];
    argv.extend(extra.iter().map(|s| s.to_string()));
    match parse_command(&argv)? {
        Command::Compare(a) => Ok(a),
        _ => unreachable!(),
    }
}

/// Arguments on the file /tmp/x.
fn args(extra: &[&str]) -> CompareArgs {
    let mut v = vec!["--path", "/tmp/x"];
    v.extend_from_slice(extra);
    try_args(&v).unwrap()
}

fn names(cs: &[Contender]) -> Vec<String> {
    cs.iter()
        .map(|c| format!("{} {}", c.name, c.path.as_str()))
        .collect()
}

#[test]
fn randwrite_runs_raw_both_engine_modes_and_fio_per_path() {
    let cs = contenders(&args(&[]), true);
    assert_eq!(
        names(&cs),
        [
            "keel raw uring",
            "keel raw group-flush uring",
            "keel engine metadata-only uring",
            "keel engine full uring",
            "fio uring",
            "fio fdatasync/32 uring",
            "keel raw psync",
            "keel raw group-flush psync",
            "keel engine metadata-only psync",
            "keel engine full psync",
            "fio psync",
            "fio fdatasync/32 psync",
        ]
    );
    assert_eq!(cs.last().unwrap().qd, 1, "fio psync has no queue depth");
    // Every Keel contender's arguments, with its device's, parse as its subcommand.
    let a = args(&[]);
    let target = Target::Path("/tmp/x".into());
    for c in &cs {
        let with = |argv: &[String]| command_on(&a, c, argv, &target).unwrap();
        match &c.kind {
            Kind::Raw(v) => assert!(matches!(with(v), Command::Raw(a) if !a.group_flush)),
            Kind::RawGroupFlush(v) => {
                assert!(matches!(with(v), Command::Raw(a) if a.group_flush))
            }
            Kind::Engine(v) => assert!(matches!(with(v), Command::Engine(_))),
            Kind::Fio(_) => {}
        }
    }
}

#[test]
fn pci_adds_the_userspace_path_without_fio_and_needs_no_path() {
    let a = try_args(&["--pci", "0000:00:04.0", "--paths", "nvme,uring"]).unwrap();
    let cs = contenders(&a, true);
    assert_eq!(
        names(&cs),
        [
            "keel raw nvme",
            "keel raw group-flush nvme",
            "keel engine metadata-only nvme",
            "keel engine full nvme",
            "keel raw uring",
            "keel raw group-flush uring",
            "keel engine metadata-only uring",
            "keel engine full uring",
            "fio uring",
            "fio fdatasync/32 uring",
        ]
    );
    let target = Target::Pci("0000:00:04.0".into());
    let Kind::Engine(v) = &cs[2].kind else {
        panic!("engine")
    };
    let Command::Engine(e) = command_on(&a, &cs[2], v, &target).unwrap() else {
        panic!("engine")
    };
    assert_eq!(e.device.pci.as_deref(), Some("0000:00:04.0"));
}

#[test]
fn pci_and_the_nvme_path_go_together_and_exclude_path() {
    let e = try_args(&["--path", "/tmp/x", "--paths", "nvme"]).unwrap_err();
    assert!(e.contains("the nvme path needs --pci"), "{e}");
    let e = try_args(&["--pci", "0000:00:04.0"]).unwrap_err();
    assert!(e.contains("without the nvme path"), "{e}");
    let e = try_args(&["--pci", "0000:00:04.0", "--paths", "nvme", "--path", "/x"]).unwrap_err();
    assert!(e.contains("cannot be used with"), "{e}");
    let e = try_args(&["--paths", "uring"]).unwrap_err();
    assert!(e.contains("--path"), "{e}");
}

#[test]
fn an_nvme_row_is_a_ratio_to_the_same_contender_on_the_kernel_path() {
    let a = try_args(&["--pci", "0000:00:04.0", "--paths", "nvme,uring"]).unwrap();
    let cs = contenders(&a, false);
    let mut rows: Vec<Row> = cs
        .iter()
        .enumerate()
        .map(|(i, c)| Row {
            contender: c.name.clone(),
            path: c.path.as_str().into(),
            qd: c.qd,
            iops_rounds: vec![],
            // nvme rows 300, 600, 400, 500; uring rows 100, 300, 200, 0.
            iops: [300.0, 600.0, 400.0, 500.0, 100.0, 300.0, 200.0, 0.0][i],
            p50_us: 0.0,
            p99_us: 0.0,
            cpu_us_per_op: 0.0,
            ratio_to_fio: None,
            ratio_to_fio_fdatasync: None,
            ratio_to_durable: None,
            ratio_to_kernel: None,
        })
        .collect();
    add_ratios(&cs, &mut rows);
    let got: Vec<Option<f64>> = rows.iter().map(|r| r.ratio_to_kernel).collect();
    assert_eq!(
        got,
        [
            Some(3.0),
            Some(2.0),
            Some(2.0),
            None,
            None,
            None,
            None,
            None
        ]
    );
    // Each row over the group-flush row of its own path.
    let got: Vec<Option<f64>> = rows.iter().map(|r| r.ratio_to_durable).collect();
    let want = [
        0.5,
        1.0,
        4.0 / 6.0,
        5.0 / 6.0,
        1.0 / 3.0,
        1.0,
        2.0 / 3.0,
        0.0,
    ];
    assert_eq!(got, want.map(Some));
    assert!(table(&CompareReport {
        bench: "compare",
        path: "pci 0000:00:04.0".into(),
        size: 1,
        workload: "randwrite",
        bs: 4096,
        qd: 32,
        seconds: 1.0,
        rounds: 1,
        fio: false,
        rows,
    })
    .contains("÷ kernel"));
}

#[test]
fn randread_leaves_the_engine_out_and_no_fio_leaves_fio_out() {
    let cs = contenders(
        &args(&["--workload", "randread", "--paths", "uring"]),
        false,
    );
    assert_eq!(cs.len(), 1);
    assert_eq!(cs[0].name, "keel raw");
}

#[test]
fn an_existing_file_is_left_alone_and_a_new_one_is_filled() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    prepare(&p, 3 << 20).unwrap();
    assert_eq!(std::fs::metadata(&p).unwrap().len(), 3 << 20);
    std::fs::write(&p, vec![1u8; 4 << 20]).unwrap();
    prepare(&p, 3 << 20).unwrap();
    assert_eq!(std::fs::read(&p).unwrap()[0], 1);
}
