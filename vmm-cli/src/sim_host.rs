//! `vmm-cli sim-host`: runs an unmodified program against the software host, so any VMM
//! launches SEV, SEV-ES, SNP and TDX guests on a machine without the hardware.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use clap::Args;
use clap::builder::TypedValueParser;
use kvm_coco::VmType;
use kvm_coco::sim::host::{FaultPlan, SoftwareHost};

use crate::tee::Tee;
use crate::{CliError, cli_err, util};

/// What `--tee` names: one technology, or every one (`all`, `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ServedTee(Option<Tee>);

/// `vmm-cli sim-host` options.
#[derive(Args, Debug)]
pub(crate) struct SimHostArgs {
    /// The technologies served (repeatable or comma-separated; default: all).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "all",
        value_parser = crate::tee::tee_or("all").map(ServedTee)
    )]
    tee: Vec<ServedTee>,
    /// Seed of the firmware identity, keys and random fault draws.
    #[arg(long, default_value_t = 0, value_parser = crate::util::int::<u64>)]
    seed: u64,
    /// Write one JSON line per served call to FILE.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Inject faults: `COMMAND:ACTION[@N|%P],...` (ACTION: eagain, partial=K, eintr, stall,
    /// e2big, busy, fw=STATUS).
    #[arg(long, value_name = "SPEC")]
    faults: Option<String>,
    /// Write the last attestation report a guest obtained (SNP report or TDREPORT) to FILE.
    #[arg(long, value_name = "FILE")]
    report_out: Option<PathBuf>,
    /// The program and its arguments.
    #[arg(last = true, required = true, value_name = "PROGRAM")]
    program: Vec<String>,
}

fn served(tees: &[ServedTee]) -> Vec<VmType> {
    let mut out: Vec<VmType> = Vec::new();
    for t in tees {
        let add: &[Tee] = match t {
            ServedTee(Some(t)) => std::slice::from_ref(t),
            ServedTee(None) => &Tee::ALL,
        };
        out.extend(add.iter().map(|&t| VmType::from(t)));
    }
    out
}

/// Runs the program; the exit code is the program's (128 + signal if it was killed).
pub(crate) fn run(a: &SimHostArgs) -> Result<ExitCode, CliError> {
    let faults = match &a.faults {
        Some(spec) => spec
            .parse::<FaultPlan>()
            .map_err(|e| cli_err!("--faults: {e}"))?,
        None => FaultPlan::none(),
    };
    if let Some(p) = &a.report_out {
        util::check_output("--report-out", p)?;
    }
    if let Some(p) = &a.trace {
        util::check_output("--trace", p)?;
    }
    let mut builder = SoftwareHost::builder()
        .serve(served(&a.tee))
        .seed(a.seed)
        .faults(faults)
        .default_guest_program(true);
    if let Some(t) = &a.trace {
        builder = builder.trace(t);
    }
    let host = builder.start().map_err(|e| cli_err!("{e}"))?;
    SoftwareHost::probe().map_err(|e| cli_err!("{e}"))?;
    let (program, args) = a
        .program
        .split_first()
        .ok_or_else(|| cli_err!("no program given after --"))?;
    let mut cmd = Command::new(program);
    cmd.args(args);
    let mut child = host.spawn(&mut cmd).map_err(|e| cli_err!("{e}"))?;
    let status = child
        .wait()
        .map_err(|e| cli_err!("waiting for {program}: {e}"))?;
    if let Some(p) = &a.report_out {
        match host.reports().last() {
            Some(r) => {
                std::fs::write(p, r).map_err(|e| cli_err!("--report-out {}: {e}", p.display()))?
            }
            None => eprintln!(
                "sim-host: no guest obtained an attestation report; {} not written",
                p.display()
            ),
        }
    }
    use std::os::unix::process::ExitStatusExt;
    let code = match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        _ => 1,
    };
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}
