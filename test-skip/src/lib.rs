//! How a test of this workspace reports that it cannot run its check because something
//! outside the workspace is missing: `/dev/kvm`, seccomp user notification, QEMU, OVMF,
//! sev-snp-measure, `python3` for `mrtd_ref.py`, Debian's firmware images, hardware.
//!
//! A test that cannot run its check must not pass silently. [`skip`]:
//!
//! * fails the test (panics) when the dependency is required: the environment variable `CI`
//!   or `KVM_COCO_REQUIRE_ORACLES` is set (to anything but empty, `0` or `false`). `.ci/run`
//!   installs every oracle and sets `KVM_COCO_REQUIRE_ORACLES`, so in CI nothing skips;
//! * otherwise writes `SKIPPED (<dependency>) <test>: <reason>` straight to the process's
//!   standard error, which the test harness does not capture, so it shows in the output of
//!   `cargo test` even for a passing test, and appends the same line to the file named by
//!   `KVM_COCO_SKIP_LOG` if that is set. `cargo xtask ci` sets it, prints every skip after the
//!   tests and fails if any happened while the dependencies were required.
//!
//! A test that can only ever run on hardware CI does not have (an SEV host's `/dev/sev`) is
//! `#[ignore = "reason"]` instead, and fails when run with `--ignored` where the hardware is
//! missing.
//!
//! ```no_run
//! /// A test body that needs Debian's OVMF.
//! fn debian_ovmf_is_two_mib() {
//!     let path = "/usr/share/ovmf/OVMF.fd";
//!     let image = match std::fs::read(path) {
//!         Ok(image) => image,
//!         Err(e) => {
//!             kvm_coco_test_skip::skip("OVMF", format_args!("cannot read {path}: {e}"));
//!             return;
//!         }
//!     };
//!     assert_eq!(image.len(), 2 << 20);
//! }
//! # debian_ovmf_is_two_mib();
//! ```

use std::fmt::Display;
use std::io::Write;

/// The variable that makes every dependency required, besides `CI`.
pub const REQUIRE_VAR: &str = "KVM_COCO_REQUIRE_ORACLES";

/// The variable naming the file each skip is appended to (one line per skip).
pub const LOG_VAR: &str = "KVM_COCO_SKIP_LOG";

/// The marker that starts every skip line.
pub const MARKER: &str = "SKIPPED";

/// Whether an environment variable is set to a true value: set, not empty, not `0` and not
/// `false`.
fn truthy(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Whether missing dependencies fail tests instead of skipping them: `CI` or
/// [`REQUIRE_VAR`] is set.
pub fn required() -> bool {
    truthy("CI") || truthy(REQUIRE_VAR)
}

/// The name of the running test: the test harness names each test's thread after the test;
/// the binary's file name is added (doctests and `main`-less harnesses run on `main`).
fn test_name() -> String {
    let binary = std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
        .unwrap_or_default();
    // Cargo's test binaries end in `-<16 hex digits>`.
    let binary = match binary.rsplit_once('-') {
        Some((stem, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            stem.to_owned()
        }
        _ => binary,
    };
    match std::thread::current().name() {
        Some(name) if name != "main" => format!("{binary} {name}"),
        _ => binary,
    }
}

/// The line [`skip`] reports.
pub fn skip_line(dependency: &str, test: &str, reason: &dyn Display) -> String {
    format!("{MARKER} ({dependency}) {test}: {reason}")
}

/// Reports that the running test cannot run its check because `dependency` is missing,
/// for `reason`. Panics, failing the test, when dependencies are [`required`]; otherwise
/// prints the skip line to the real standard error and appends it to the [`LOG_VAR`] file.
/// The caller returns from the test afterwards.
///
/// # Panics
///
/// When dependencies are required, or the [`LOG_VAR`] file cannot be written.
#[track_caller]
pub fn skip(dependency: &str, reason: impl Display) {
    let test = test_name();
    if required() {
        panic!(
            "{dependency} is required here (CI or {REQUIRE_VAR} is set) but unavailable: {reason}"
        );
    }
    let line = skip_line(dependency, &test, &reason);
    // Not `eprintln!`: the harness captures that for passing tests, and a skip must show.
    // One write, so the line is not split by the harness's own output.
    let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
    if let Some(log) = std::env::var_os(LOG_VAR) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap_or_else(|e| {
                panic!("cannot open {LOG_VAR} file {}: {e}", log.to_string_lossy())
            });
        // One write of one line: appends from concurrent test processes do not interleave.
        file.write_all(format!("{line}\n").as_bytes())
            .unwrap_or_else(|e| {
                panic!("cannot write {LOG_VAR} file {}: {e}", log.to_string_lossy())
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn the_line_names_dependency_test_and_reason() {
        assert_eq!(
            skip_line(
                "QEMU",
                "host_qemu snp_guest",
                &"qemu-system-x86_64 not found"
            ),
            "SKIPPED (QEMU) host_qemu snp_guest: qemu-system-x86_64 not found"
        );
    }

    const CHILD: &str = "KVM_COCO_TEST_SKIP_CHILD";

    /// The skipping test that `skip_is_visible_counted_or_fatal` runs in a child process;
    /// it does nothing unless started that way.
    #[test]
    fn child_reports_a_skip() {
        if std::env::var_os(CHILD).is_some() {
            skip("a dependency", "reason 42");
        }
    }

    /// Runs `child_reports_a_skip` in a child process of this test binary (its output
    /// captured as usual), with dependencies required or not.
    fn child(require: Option<(&str, &str)>, log: &std::path::Path) -> std::process::Output {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", "tests::child_reports_a_skip", "--test-threads=1"])
            .env_remove("CI")
            .env_remove(REQUIRE_VAR)
            .env(CHILD, "1")
            .env(LOG_VAR, log);
        if let Some((k, v)) = require {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    #[test]
    fn skip_is_visible_counted_or_fatal() {
        let log =
            std::env::temp_dir().join(format!("kvm-coco-test-skip-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&log);
        let line =
            "SKIPPED (a dependency) kvm_coco_test_skip tests::child_reports_a_skip: reason 42";

        // Not required (also with the variables set to false values): the test passes, the
        // line is on stderr although the harness captured the test's output, and logged.
        for require in [
            None,
            Some(("CI", "")),
            Some(("CI", "false")),
            Some((REQUIRE_VAR, "0")),
        ] {
            let out = child(require, &log);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{require:?}: {out:?}");
            assert!(stderr.lines().any(|l| l == line), "{require:?}: {stderr}");
        }
        let logged = std::fs::read_to_string(&log).unwrap();
        assert_eq!(logged.lines().count(), 4, "{logged}");
        assert!(logged.lines().all(|l| l == line), "{logged}");

        // Required: the test fails with the reason, nothing is logged.
        std::fs::remove_file(&log).unwrap();
        for require in [("CI", "true"), (REQUIRE_VAR, "1")] {
            let out = child(Some(require), &log);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(!out.status.success(), "{require:?}: {out:?}");
            assert!(
                stdout.contains("a dependency is required here") && stdout.contains("reason 42"),
                "{require:?}: {stdout}"
            );
        }
        assert!(!log.exists());
    }
}
