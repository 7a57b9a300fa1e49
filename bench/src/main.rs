//! # keel-bench: Keel's load generator and benchmark suite
//!
//! One binary, one subcommand per benchmark:
//!
//! - `raw`: one thread drives one queue pair of a driver (null, sim, psync, uring) directly,
//!   keeping `--qd` commands in flight, and reports IOPS, MiB/s, latency percentiles and
//!   CPU time per command. It measures a driver, with nothing of the engine above it.
//! - `engine`: one thread keeps `--qd` transactions in flight in a whole store (sim, psync,
//!   uring) and reports IOPS, latency percentiles, write amplification, device commands per
//!   transaction and CPU time per transaction; the store must pass fsck afterwards.
//! - `crash`: the engine's crash explorer: power cuts on the sim device, recovery, and a
//!   check of every object against what the journal mode guarantees.
//! - `fsck`: recovers the store on a file or block device and checks it.
//! - `scrub`: recovers the store on a file or block device and reads every mapped page
//!   against its checksum ([`scrub`]): corruption and torn overwrites, by object and range.
//! - `suite`: the main job: `engine` runs of Full and MetadataOnly side by side over
//!   create, append, overwrite and random writes at QD1 and QD32 on the sim device; a
//!   table, JSON and an SVG plot ([`plot`]) in an output folder.
//! - `compare`: Keel raw, Keel engine (both modes) and fio ([`fio`]) on one file,
//!   alternating over rounds: medians and ratios to fio.
//! - `integrity`: what the integrity machinery costs on the sim device ([`integrity`]):
//!   QD1 append latency with and without parallel commit against a raw FUA write, and
//!   overwrites with and without intents, alternating over rounds, as ratios.
//! - `crashlog run|check`: crash tests on a real controller: a seeded workload that records
//!   its acknowledgements on the device, and the check of crash images rebuilt from a
//!   dm-log-writes log (QEMU's blklogwrites) against the journal mode's guarantees.
//! - `logwrites dump|replay`: the dm-log-writes log on its own.
//!
//! The pieces: [`cli`] parses the command line; [`device`] opens the driver it names and
//! hands the concrete device to a generic job, so each driver gets its own compiled hot
//! loop; [`raw`] and [`engine`] are the load generators; [`report`] turns a measurement
//! into a table or JSON; [`crash`] and [`fsck`] run the engine's checkers and print what
//! they found; [`cpu`] reads the process's CPU time.
//!
//! Exit codes: 0 success; 1 the benchmark failed, or a check found a problem (the message
//! names the operation and each cause); 2 a usage error; `scrub` only: 3 corruption found,
//! 4 torn overwrites (and no corruption) found.

mod cli;
mod compare;
mod cpu;
mod crash;
mod crashlog;
mod device;
mod engine;
mod error;
mod fio;
mod fsck;
mod integrity;
mod logwrites;
mod plot;
mod raw;
mod report;
mod scrub;
mod suite;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use cli::{Cli, Command};
use error::BenchError;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    if let Err(message) = cli.check() {
        // Reported like clap's own usage errors (exit code 2), with the subcommand's usage.
        let mut command = Cli::command();
        command.build();
        let sub = command
            .find_subcommand_mut(cli.command.name())
            .expect("every subcommand is in the clap command");
        sub.error(clap::error::ErrorKind::ValueValidation, message)
            .exit();
    }
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("keel-bench: {}", error::chain(&e));
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<ExitCode, BenchError> {
    let done = match command {
        Command::Raw(args) => {
            let report = raw::run(&args)?;
            if args.json {
                println!("{}", report.to_json()?);
            } else {
                print!("{}", report::table(&[report]));
            }
            Ok(())
        }
        Command::Engine(args) => {
            let report = engine::run(&args)?;
            if args.json {
                println!("{}", report.to_json()?);
            } else {
                print!("{}", report::engine_table(&[report]));
            }
            Ok(())
        }
        Command::Crash(args) => {
            let summary = crash::run(&args);
            if args.json {
                println!("{}", summary.to_json()?);
            } else {
                print!("{}", summary.table());
            }
            summary.verdict()
        }
        Command::Fsck(args) => {
            let out = fsck::run(&args)?;
            if args.json {
                println!("{}", out.to_json()?);
            } else {
                print!("{}", out.table());
            }
            out.verdict()
        }
        Command::Suite(args) => {
            let report = suite::run(&args)?;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", suite::table(&report));
                eprintln!(
                    "suite: wrote suite.txt, suite.json and suite.svg to {}",
                    args.out.display()
                );
            }
            Ok(())
        }
        Command::Compare(args) => {
            let report = compare::run(&args)?;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", compare::table(&report));
            }
            Ok(())
        }
        // The only subcommand whose findings have exit codes of their own.
        Command::Scrub(args) => return scrub::main(&args),
        Command::Integrity(args) => integrity::main(&args),
        Command::Crashlog(args) => match &args.command {
            crashlog::CrashlogCommand::Run(run) => {
                let s = crashlog::run(run)?;
                if run.json {
                    println!("{}", serde_json::to_string(&s)?);
                } else {
                    println!(
                        "crashlog run: {} transactions ({} ok, {} failed as predicted), {} ack records, {:.1} s",
                        s.txns, s.acked_ok, s.acked_failed, s.records, s.seconds
                    );
                }
                Ok(())
            }
            crashlog::CrashlogCommand::Check(check) => {
                let s = crashlog::check(check)?;
                if check.json {
                    println!("{}", serde_json::to_string(&s)?);
                } else {
                    print!("{}", s.table());
                }
                s.verdict()
            }
        },
        Command::Logwrites(args) => {
            print!("{}", logwrites::run(&args)?);
            Ok(())
        }
    };
    done.map(|()| ExitCode::SUCCESS)
}
