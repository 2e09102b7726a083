//! `cargo xtask coverage [--report-only]`: line coverage of the code that talks to the kernel
//! (`KvmBackend`, the `KVM_MEMORY_ENCRYPT_OP` wrappers, psp-driver's `DevSev`) in the tests of
//! kvm-coco and psp-driver, measured with `cargo llvm-cov` (`-C instrument-coverage`) and
//! checked against a floor.
//!
//! Needs `cargo-llvm-cov` (`cargo install cargo-llvm-cov`) and LLVM tools of rustc's LLVM major
//! version: `LLVM_COV` / `LLVM_PROFDATA` if set, else `/usr/bin/llvm-cov-NN` and
//! `/usr/bin/llvm-profdata-NN` (Debian's `llvm-NN`), else rustup's `llvm-tools` component.
//! Instrumented builds go to `target/llvm-cov-target`, so normal builds stay valid.
//! `--report-only` reads the profiles of the previous run.

use std::process::Command;

/// Packages whose tests are measured.
const PACKAGES: [&str; 2] = ["kvm-coco", "psp-driver"];

/// The checked targets: a name and which files (relative to the workspace) it covers: one
/// file, or every `.rs` file below a directory (a path ending in `/`).
const TARGETS: [(&str, &str); 4] = [
    ("kvm-coco/src/launch/kvm.rs", "kvm-coco/src/launch/kvm.rs"),
    // KvmBackend hands every confidential-computing call to the borrowed-VM launch.
    (
        "kvm-coco/src/launch/borrowed.rs",
        "kvm-coco/src/launch/borrowed.rs",
    ),
    ("kvm-coco/src/ops/*.rs", "kvm-coco/src/ops/"),
    ("psp-driver/src/dev_sev.rs", "psp-driver/src/dev_sev.rs"),
];

/// The floor, in percent of lines.
const MIN_PERCENT: f64 = 90.0;

pub fn run(args: &[String]) -> Result<(), String> {
    let report_only = match args {
        [] => false,
        [a] if a == "--report-only" => true,
        _ => return Err("usage: cargo xtask coverage [--report-only]".into()),
    };
    let env = llvm_tools()?;
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut pkgs = Vec::new();
    for p in PACKAGES {
        pkgs.extend(["-p", p]);
    }
    if !report_only {
        // Test binaries of earlier builds stay in the target directory and would be merged
        // into the report with their own line tables: remove the workspace's first.
        super::step(
            "coverage clean",
            "cargo",
            &["llvm-cov", "clean", "--workspace"],
            &env,
        )?;
        let mut a = vec!["llvm-cov", "--no-report"];
        a.extend(&pkgs);
        super::step("coverage run", "cargo", &a, &env)?;
    }
    let json = std::env::temp_dir().join(format!("xtask-coverage-{}.json", std::process::id()));
    let json_s = json.to_string_lossy().into_owned();
    let mut a = vec![
        "llvm-cov",
        "report",
        "--json",
        "--summary-only",
        "--output-path",
        &json_s,
    ];
    a.extend(&pkgs);
    super::step("coverage report", "cargo", &a, &env)?;
    let text = std::fs::read_to_string(&json).map_err(|e| format!("{}: {e}", json.display()))?;
    let _ = std::fs::remove_file(&json);
    check(&text)
}

/// `(LLVM_COV, LLVM_PROFDATA)` for cargo-llvm-cov: the environment's, else Debian's tools of
/// rustc's LLVM major version, else none (cargo-llvm-cov then looks for rustup's).
fn llvm_tools() -> Result<Vec<(&'static str, String)>, String> {
    if std::env::var_os("LLVM_COV").is_some() && std::env::var_os("LLVM_PROFDATA").is_some() {
        return Ok(Vec::new());
    }
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .map_err(|e| format!("cannot run rustc -vV: {e}"))?;
    let info = String::from_utf8_lossy(&out.stdout);
    let major = info
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .ok_or("rustc -vV names no LLVM version")?
        .to_owned();
    let cov = format!("/usr/bin/llvm-cov-{major}");
    let profdata = format!("/usr/bin/llvm-profdata-{major}");
    if std::path::Path::new(&cov).exists() && std::path::Path::new(&profdata).exists() {
        return Ok(vec![("LLVM_COV", cov), ("LLVM_PROFDATA", profdata)]);
    }
    eprintln!(
        "note: no {cov}; install Debian's llvm-{major} (or set LLVM_COV and LLVM_PROFDATA) unless rustup's llvm-tools component is installed"
    );
    Ok(Vec::new())
}

/// Prints the line coverage of every target file and of each target; fails below the floor.
fn check(json: &str) -> Result<(), String> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("llvm-cov JSON: {e}"))?;
    let files = v["data"][0]["files"]
        .as_array()
        .ok_or("llvm-cov JSON without data[0].files")?;
    let root = super::workspace_root();
    let lines: Vec<(String, u64, u64)> = files
        .iter()
        .filter_map(|f| {
            let name = std::path::Path::new(f["filename"].as_str()?);
            let rel = name
                .strip_prefix(&root)
                .ok()?
                .to_string_lossy()
                .into_owned();
            let l = &f["summary"]["lines"];
            Some((rel, l["covered"].as_u64()?, l["count"].as_u64()?))
        })
        .collect();
    let pct = |c: u64, n: u64| {
        if n == 0 {
            100.0
        } else {
            100.0 * c as f64 / n as f64
        }
    };
    let mut failed = Vec::new();
    for (target, path) in TARGETS {
        let mut matched: Vec<&(String, u64, u64)> = lines
            .iter()
            .filter(|(rel, ..)| match path.strip_suffix('/') {
                Some(dir) => {
                    rel.strip_prefix(dir)
                        .is_some_and(|r| r.starts_with('/') && !r[1..].contains('/'))
                        && rel.ends_with(".rs")
                }
                None => rel == path,
            })
            .collect();
        if matched.is_empty() {
            return Err(format!("{path}: not in the coverage report"));
        }
        matched.sort();
        let (mut covered, mut count) = (0, 0);
        for (rel, c, n) in &matched {
            if path.ends_with('/') {
                println!("  {rel:<32} {c:>5} / {n:<5} lines  {:6.2} %", pct(*c, *n));
            }
            covered += c;
            count += n;
        }
        let p = pct(covered, count);
        let verdict = if p >= MIN_PERCENT { "ok" } else { "BELOW" };
        println!("{target:<34} {covered:>5} / {count:<5} lines  {p:6.2} %  {verdict}");
        if p < MIN_PERCENT {
            failed.push(format!("{target} {p:.2} %"));
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "line coverage below {MIN_PERCENT} %: {}",
            failed.join(", ")
        ))
    }
}
