//! `cargo xtask`: workspace automation.
//!
//! Commands:
//! - `ci`: exactly the steps `.ci/run` performs, so CI can be run locally. Tests that cannot
//!   run a check for want of something outside the workspace report it through
//!   `kvm_coco_test_skip`; `ci` lists every such skip after the tests and fails if any
//!   happened where the dependencies are required (`CI` or `KVM_COCO_REQUIRE_ORACLES` set).
//! - `uapi-check`: checks every layout and constant of `kvm-coco-uapi` against the real Linux headers.
//! - `hw-test [--json] [--dangerous] [--sim-host] [--firmware FILE] [--vcek FILE]`: detects
//!   the host's KVM, SEV and TDX support and runs the hardware tiers that apply, explaining
//!   every skip; `--sim-host` runs them against kvm-coco's software host.
//! - `bench [--quick]`: runs the criterion benchmarks, the `bench/compare` crate and
//!   sev-snp-measure on the same inputs and prints one table of ratios.
//! - `coverage [--report-only]`: line coverage of `KvmBackend`, the `ops` wrappers and
//!   `DevSev` in the tests (cargo-llvm-cov); fails below 90 %.
//! - `fuzz <smoke|run> [TARGET…] [--secs N]`: the cargo-fuzz targets under `fuzz/`, from
//!   their committed seed corpora; `smoke` (10 s each) is part of `ci`.

use std::process::{Command, ExitCode};

mod bench;
mod coverage;
mod fuzz;
mod hw_test;
mod uapi_check;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("uapi-check") => uapi_check::run(&args[1..]),
        Some("hw-test") => hw_test::run(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("coverage") => coverage::run(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        _ => {
            eprintln!("usage: cargo xtask <ci|uapi-check|hw-test|bench|coverage|fuzz> [options]");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one command from the workspace root, failing with its description if it fails.
fn step(what: &str, program: &str, args: &[&str], env: &[(&str, &str)]) -> Result<(), String> {
    eprintln!("==> {what}: {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(workspace_root())
        .status()
        .map_err(|e| format!("{what}: cannot start {program}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

/// The workspace root (the parent of this crate's manifest directory).
fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// The CI pipeline: the README's test command, then the formatting, lint, doc and uAPI gates.
fn ci() -> Result<(), String> {
    let skip_log = workspace_root().join("target/test-skips.log");
    match std::fs::remove_file(&skip_log) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot remove {}: {e}", skip_log.display())),
    }
    let tests = step(
        "tests",
        "cargo",
        &["test", "--workspace"],
        &[(kvm_coco_test_skip::LOG_VAR, &skip_log.to_string_lossy())],
    );
    let skips = report_skips(&skip_log, kvm_coco_test_skip::required());
    tests?;
    skips?;
    // The hardware tiers against the software host: the same tier code as on SEV, SNP and
    // TDX machines, through real system calls; fails unless every launch and platform tier
    // passes.
    eprintln!("==> hw-test --sim-host (in process)");
    hw_test::run(&["--sim-host".to_owned()])?;
    step("format", "cargo", &["fmt", "--all", "--", "--check"], &[])?;
    step(
        "features",
        "cargo",
        &[
            "hack",
            "--each-feature",
            "--no-dev-deps",
            "check",
            "--workspace",
        ],
        &[],
    )?;
    step(
        "clippy",
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    step(
        "docs",
        "cargo",
        &["doc", "--workspace", "--no-deps"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    uapi_check::run(&[])?;
    // Every fuzz target for a few seconds from its committed seeds: a crash fails CI.
    fuzz::run(&["smoke".to_owned(), "--secs".to_owned(), "10".to_owned()])
}

/// Prints the skips the tests appended to `log` (one `SKIPPED (dependency) test: reason`
/// line each) and fails if there were any while the dependencies are `required`.
fn report_skips(log: &std::path::Path, required: bool) -> Result<(), String> {
    let text = match std::fs::read_to_string(log) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("cannot read the skip log {}: {e}", log.display())),
    };
    let skips: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    if skips.is_empty() {
        eprintln!("==> no test skipped a check");
        return Ok(());
    }
    eprintln!("==> {} test checks skipped:", skips.len());
    for line in &skips {
        eprintln!("    {line}");
    }
    if required {
        return Err(format!(
            "{} test checks skipped where every dependency is required (CI or {} set)",
            skips.len(),
            kvm_coco_test_skip::REQUIRE_VAR
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::report_skips;

    #[test]
    fn skips_are_listed_and_fail_only_where_required() {
        let dir = std::env::temp_dir().join(format!("xtask-skips-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("skips.log");
        // No log: no test skipped.
        assert_eq!(report_skips(&log, true), Ok(()));
        std::fs::write(
            &log,
            "SKIPPED (OVMF) measure_facts t1: cannot read\n\nSKIPPED (QEMU) host_qemu t2: x\n",
        )
        .unwrap();
        assert_eq!(report_skips(&log, false), Ok(()));
        let err = report_skips(&log, true).unwrap_err();
        assert!(err.starts_with("2 test checks skipped"), "{err}");
        std::fs::write(&log, "").unwrap();
        assert_eq!(report_skips(&log, true), Ok(()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
