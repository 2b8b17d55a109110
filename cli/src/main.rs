//! `kubectl-bulkhead`: parse the command line, run the command, print errors.
//!
//! Exit codes: 0 when the command ran (whatever a simulated verdict is),
//! 1 when the input or the arguments are wrong, 2 for usage errors clap finds;
//! `what-if` exits 3 when observed traffic would be newly denied.

#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use kubectl_bulkhead::args::{Cli, Command};
use kubectl_bulkhead::{compile_cmd, labels_cmd, load_and_compile, matrix, simulate};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::WhatIf(args) = &cli.command {
        return match kubectl_bulkhead::whatif_cmd::run(args) {
            Ok(code) => code,
            Err(err) => {
                eprintln!("error: {err:#}");
                ExitCode::FAILURE
            }
        };
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Flows(args) => return kubectl_bulkhead::flows::run(args),
        Command::TopTalkers(a) => return kubectl_bulkhead::reports::top_talkers(a),
        Command::Unlabeled(a) => return kubectl_bulkhead::reports::unlabeled(a),
        Command::Report(a) => return kubectl_bulkhead::reports::report(a),
        Command::ExternalNode(a) => return kubectl_bulkhead::externalnode::run(a),
        Command::Why(a) => return kubectl_bulkhead::governance::why(a),
        Command::Recertify(a) => return kubectl_bulkhead::governance::recertify::run(a),
        Command::Exception(c) => return kubectl_bulkhead::governance::run(c),
        Command::Import {
            command: kubectl_bulkhead::cmdb::ImportCommand::Cmdb(a),
        } => {
            print!("{}", kubectl_bulkhead::cmdb::run(a)?);
            return Ok(());
        }
        _ => {}
    }
    if let Command::Recommend(args) = &cli.command {
        return kubectl_bulkhead::recommend_cmd::run(args);
    }
    // simulate answers "what would happen": NetworkPolicies in its input
    // count. compile writes what agents enforce: only when asked.
    let (input, shards, auto) = match &cli.command {
        Command::Simulate(a) => (&a.input, None, true),
        Command::Compile(a) => (&a.input, a.shards, false),
        Command::Labels(a) => (&a.input, None, false),
        Command::Flows(_)
        | Command::Recommend(_)
        | Command::WhatIf(_)
        | Command::TopTalkers(_)
        | Command::Unlabeled(_)
        | Command::Report(_)
        | Command::ExternalNode(_)
        | Command::Why(_)
        | Command::Recertify(_)
        | Command::Exception(_)
        | Command::Import { .. } => {
            unreachable!("handled above")
        }
    };
    let compiled = load_and_compile(input, shards, auto)?;
    for warning in &compiled.inventory.warnings {
        eprintln!("warning: {warning}");
    }
    for note in &compiled.notes {
        eprintln!("note: {note}");
    }
    let text = match &cli.command {
        Command::Simulate(a) if a.matrix => matrix::run(a, &compiled)?,
        Command::Simulate(a) => simulate::run(a, &compiled)?,
        Command::Compile(a) => compile_cmd::run(a, &compiled)?,
        Command::Labels(a) => labels_cmd::run(a, &compiled)?,
        Command::Flows(_)
        | Command::Recommend(_)
        | Command::WhatIf(_)
        | Command::TopTalkers(_)
        | Command::Unlabeled(_)
        | Command::Report(_)
        | Command::ExternalNode(_)
        | Command::Why(_)
        | Command::Recertify(_)
        | Command::Exception(_)
        | Command::Import { .. } => {
            unreachable!("handled above")
        }
    };
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
    match written {
        // `| head` closing the pipe early is not an error of ours.
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
