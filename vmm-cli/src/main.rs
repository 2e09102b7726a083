//! `vmm-cli`: the command-line front end of kvm-coco.
//!
//! Subcommands live in their own modules; each returns an [`Outcome`] or a [`CliError`].
//! Exit status: 0 success, 1 negative result (e.g. a measurement that does not match
//! `--expect`), 2 usage or input error (one line on stderr).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod builtin;
mod caps;
mod check;
mod launch;
mod measure;
mod report;
mod sim_host;
mod tee;
mod util;

/// Create, launch, measure and attest confidential VMs on Linux KVM.
#[derive(Debug, Parser)]
#[command(name = "vmm-cli", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compute a guest's expected launch measurement (SEV, SEV-ES, SEV-SNP, TDX MRTD).
    ///
    /// A drop-in replacement for sev-snp-measure: same options, same output.
    Measure(Box<measure::MeasureArgs>),
    /// Check whether this host can launch a confidential guest with the given options.
    ///
    /// Exit status 1 if any check fails; each failure comes with a fix hint.
    Check(check::CheckArgs),
    /// Show everything KVM, /dev/sev and the TDX module report about this host.
    Caps(caps::CapsArgs),
    /// Display and verify an SNP attestation report, a TDX TDREPORT or a TD quote.
    Report(report::ReportArgs),
    /// Launch a confidential guest (by default: the built-in firmware as an SNP guest).
    Launch(Box<launch::LaunchArgs>),
    /// Run a program (any VMM) against the software host: its /dev/kvm and /dev/sev calls for
    /// confidential VMs are answered by the models of KVM and the firmware.
    ///
    /// Exits with the program's status.
    SimHost(sim_host::SimHostArgs),
}

/// What a successful run concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The command did what was asked.
    Success,
    /// The command ran, and the answer is "no" (exit status 1).
    Negative,
}

/// A usage or input error: printed as one line, exit status 2.
#[derive(Debug)]
struct CliError(String);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CliError {}

/// Builds a [`CliError`] from format arguments.
macro_rules! cli_err {
    ($($t:tt)*) => { $crate::CliError(format!($($t)*)) };
}
pub(crate) use cli_err;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            let text = e.render().to_string();
            let mut lines = text.lines().filter(|l| !l.trim().is_empty());
            let first = lines.next().unwrap_or("error: invalid arguments");
            // clap puts the offending argument on the next line for some errors.
            match lines.next().filter(|l| l.starts_with("  ")) {
                Some(detail) => eprintln!("{first} {}", detail.trim()),
                None => eprintln!("{first}"),
            }
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::SimHost(args) => {
            return sim_host::run(&args).unwrap_or_else(|e| {
                eprintln!("error: {e}");
                ExitCode::from(2)
            });
        }
        Command::Measure(args) => measure::run(&args),
        Command::Check(args) => check::run(&args),
        Command::Caps(args) => caps::run(&args),
        Command::Report(args) => report::run(&args),
        Command::Launch(args) => launch::run(&args),
    };
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Negative) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
